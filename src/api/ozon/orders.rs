//! The order and overview pages' routes — adapters over `ozon::postings` (list, detail, sync
//! buttons, one posting's sync), `ozon::overview` (daily statistics) and `ozon::global_settings`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::json::{ApiJson, ApiPath, ApiQuery};
use crate::auth::{CurrentUser, Origin};
use crate::domain::{DomainError, Work};
use crate::ozon::global_settings;
use crate::ozon::overview::{self, DailyQuery};
use crate::ozon::postings::{self, ListQuery};
use crate::ozon::product_sync::Mode;
use crate::state::AppState;

/// `GET /ozon/orders` → `{data, total, page, page_size, total_pages, next_cursor, has_more,
/// stats, offer_id_images}`.
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(
        postings::list(&client, &user.actor(&origin), &q).await?,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ShopQuery {
    shop_id: Option<i64>,
}

/// `GET /ozon/orders/{posting_number}?shop_id` → `{success, data, summary, offer_id_images}`.
pub async fn detail(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(posting_number): ApiPath<String>,
    ApiQuery(q): ApiQuery<ShopQuery>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(
        postings::detail(&client, &user.actor(&origin), &posting_number, q.shop_id).await?,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SyncBody {
    shop_id: Option<i64>,
    mode: Option<String>,
}

/// `POST /ozon/orders/sync {shop_id, mode}` → `{success, message, task_id, sync_mode}`, or
/// `{ok:false, error}` for a missing shop or an unknown mode (as the page expects).
pub async fn sync(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiJson(body): ApiJson<SyncBody>,
) -> Result<Json<Value>, ApiError> {
    let Some(mode) = Mode::parse(body.mode.as_deref().unwrap_or("incremental")) else {
        return Ok(Json(json!({"ok": false, "error": "无效的同步模式"})));
    };
    let Some(shop_id) = body.shop_id else {
        return Ok(Json(json!({"ok": false, "error": "请先选择店铺"})));
    };
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let started = postings::start_sync(&mut work, &user.actor(&origin), shop_id, mode).await?;
    let _ = work.commit().await?;
    Ok(Json(json!({
        "success": true,
        "message": if mode == Mode::Full { "订单全量同步已启动" } else { "订单增量同步已启动" },
        "task_id": started.task_id,
        "sync_mode": mode.as_str(),
        "already_running": !started.new,
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct OneQuery {
    shop_id: Option<i64>,
}

/// `POST /ozon/orders/{posting_number}/sync?shop_id` → `{success, message, data}`.
pub async fn sync_one(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(posting_number): ApiPath<String>,
    ApiQuery(q): ApiQuery<OneQuery>,
) -> Result<Json<Value>, ApiError> {
    let shop_id = q.shop_id.ok_or_else(|| {
        DomainError::invalid("shop_id", "missing", "the posting's shop is required")
    })?;
    Ok(Json(
        postings::sync_one(
            state.db(),
            &user.actor(&origin),
            state.ozon(),
            shop_id,
            &posting_number,
        )
        .await?,
    ))
}

/// `GET /ozon/daily-stats?shop_id&range_type&start_date&end_date`.
pub async fn daily_stats(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiQuery(q): ApiQuery<DailyQuery>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(
        overview::daily(&client, &user.actor(&origin), &q).await?,
    ))
}

/// `GET /ozon/global-settings` → `{settings, exchange_rate}`.
pub async fn global_settings_all(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    let rate = crate::exchange_rates::service::for_global_settings(&client).await?;
    Ok(Json(global_settings::all(&client, rate).await?))
}

/// `GET /ozon/global-settings/{key}`.
pub async fn global_setting(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(global_settings::one(&client, &key).await?))
}

#[derive(Debug, Deserialize)]
pub struct SettingBody {
    setting_value: Value,
}

/// `PUT /ozon/global-settings/{key} {setting_value}` (admins) → the setting.
pub async fn put_global_setting(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(key): ApiPath<String>,
    ApiJson(body): ApiJson<SettingBody>,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let v = global_settings::put(&mut work, &user.actor(&origin), &key, body.setting_value).await?;
    let _ = work.commit().await?;
    Ok(Json(v))
}
