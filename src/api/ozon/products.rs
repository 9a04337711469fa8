//! The product page's routes — adapters over `ozon::products` (list, statistics, sync errors,
//! single-product sync) and the sync buttons (`POST /ozon/shops/{id}/sync`,
//! `POST /ozon/products/sync`), which start a product sync job and return its task id.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::json::{ApiJson, ApiPath, ApiQuery};
use crate::auth::{CurrentUser, Origin};
use crate::domain::{DomainError, Work};
use crate::ozon::postings;
use crate::ozon::product_sync::Mode;
use crate::ozon::products::{self, ListQuery};
use crate::state::AppState;

/// `GET /ozon/products` → `{data, total, page, page_size[, stats, search_info]}`.
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(
        products::list(&client, &user.actor(&origin), &q).await?,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ShopQuery {
    shop_id: Option<i64>,
}

/// `GET /ozon/statistics?shop_id` → `{products, orders, revenue, balance}`.
pub async fn statistics(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiQuery(q): ApiQuery<ShopQuery>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(
        products::statistics(&client, &user.actor(&origin), q.shop_id).await?,
    ))
}

/// `GET /ozon/watermark/configs` → `[]`. The product page asks on every mount (silently);
/// watermarks are not part of this appliance yet, so the answer is "none configured" rather than
/// a 404 in every seller's browser console. Logged-in users only, like the page.
pub async fn watermark_configs(_user: CurrentUser) -> Json<Value> {
    Json(Value::Array(Vec::new()))
}

/// `GET /ozon/products/{id}/sync-errors` → `{has_errors, sync_error | message}`.
pub async fn sync_errors(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(
        products::sync_errors(&client, &user.actor(&origin), id).await?,
    ))
}

/// `POST /ozon/products/{id}/sync` → `{success, message}`.
pub async fn sync_product(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        products::sync_product(state.db(), &user.actor(&origin), state.ozon(), id).await?,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SyncQuery {
    sync_type: Option<String>,
    products_mode: Option<String>,
    orders_mode: Option<String>,
}

fn mode(field: &str, value: Option<&str>) -> Result<Mode, DomainError> {
    match value.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(Mode::Incremental),
        Some(v) => Mode::parse(v).ok_or_else(|| {
            DomainError::invalid(field, "value_error", "must be incremental or full")
        }),
    }
}

/// `POST /ozon/shops/{id}/sync?sync_type&products_mode` → `{task_id, status:"started", ...}`.
pub async fn sync_shop(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(shop_id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<SyncQuery>,
) -> Result<Json<Value>, ApiError> {
    let sync_type = q.sync_type.as_deref().unwrap_or("all");
    let (products, orders) = match sync_type {
        "all" => (true, true),
        "products" => (true, false),
        "orders" => (false, true),
        _ => {
            return Err(DomainError::invalid(
                "sync_type",
                "value_error",
                "must be all, products or orders",
            )
            .into());
        }
    };
    let products_mode = mode("products_mode", q.products_mode.as_deref())?;
    let orders_mode = mode("orders_mode", q.orders_mode.as_deref())?;
    let actor = user.actor(&origin);
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let product_task = if products {
        Some(products::start_sync(&mut work, &actor, shop_id, products_mode).await?)
    } else {
        None
    };
    let order_task = if orders {
        Some(postings::start_sync(&mut work, &actor, shop_id, orders_mode).await?)
    } else {
        None
    };
    let _ = work.commit().await?;
    // The task the page polls: the products' with `all` (as the original), else the orders'.
    let (main, other) = match (product_task, order_task) {
        (Some(p), o) => (p, o),
        (None, Some(o)) => (o, None),
        (None, None) => return Err(DomainError::Internal(anyhow::anyhow!("no sync chosen")).into()),
    };
    Ok(Json(json!({
        "task_id": main.task_id,
        "status": "started",
        "sync_type": sync_type,
        "products_mode": products.then_some(products_mode.as_str()),
        "orders_mode": orders.then_some(orders_mode.as_str()),
        "orders_task_id": other.map(|o| o.task_id),
        "already_running": !main.new,
        "message": format!("Sync {sync_type} started for shop {shop_id}"),
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProductsSyncBody {
    shop_id: Option<i64>,
    full_sync: Option<bool>,
}

/// `POST /ozon/products/sync {shop_id, full_sync}` → the task, or `{ok:false}` without a shop.
pub async fn sync_products(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiJson(body): ApiJson<ProductsSyncBody>,
) -> Result<Json<Value>, ApiError> {
    let Some(shop_id) = body.shop_id else {
        return Ok(Json(json!({"ok": false, "error": "请先选择店铺"})));
    };
    let mode = if body.full_sync.unwrap_or(false) {
        Mode::Full
    } else {
        Mode::Incremental
    };
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let started = products::start_sync(&mut work, &user.actor(&origin), shop_id, mode).await?;
    let _ = work.commit().await?;
    Ok(Json(json!({
        "success": true,
        "task_id": started.task_id,
        "status": "started",
        "already_running": !started.new,
        "message": if mode == Mode::Full { "商品全量同步已启动" } else { "商品增量同步已启动" },
    })))
}
