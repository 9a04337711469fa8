//! `/ozon/shops`: the shop list (for selectors and the 店铺列表 page), adding, editing, deleting
//! and testing a shop — an adapter over `ozon::shops`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::json::{ApiJson, ApiPath, ApiQuery};
use crate::auth::{CurrentUser, Origin};
use crate::domain::Work;
use crate::ozon::shops::{self, NewShop, ShopChanges};
use crate::state::AppState;

#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    include_stats: bool,
}

/// `GET /ozon/shops` → `{data: [...]}`
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(
        shops::list(&client, &user.actor(&origin), q.include_stats).await?,
    ))
}

/// `GET /ozon/shops/management` → `{data: [...]}` with owner and `can_edit`.
pub async fn management(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(
        shops::management(&client, &user.actor(&origin)).await?,
    ))
}

/// `POST /ozon/shops` → the shop with its (masked) credentials.
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiJson(body): ApiJson<NewShop>,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let shop = shops::create(&mut work, &user.actor(&origin), state.ozon(), body).await?;
    let effects = work.commit().await?;
    state.auth().apply(effects).await;
    Ok(Json(shop.to_json(true)))
}

/// `PUT /ozon/shops/{id}` → the shop.
pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ShopChanges>,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let shop = shops::update(&mut work, &user.actor(&origin), state.ozon(), id, body).await?;
    state.auth().apply(work.commit().await?).await;
    Ok(Json(shop.to_json(true)))
}

/// `DELETE /ozon/shops/{id}` → `{message}`.
pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    shops::delete(&mut work, &user.actor(&origin), id).await?;
    state.auth().apply(work.commit().await?).await;
    Ok(Json(json!({"message": "Shop deleted successfully"})))
}

/// `POST /ozon/shops/{id}/test-connection` → `{success, message, details}`.
pub async fn test_connection(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        shops::test_connection(state.db(), &user.actor(&origin), state.ozon(), id).await?,
    ))
}

/// `GET /ozon/scan-shipping/access` → `{has_access, is_shipper, shop_count}`.
pub async fn scan_shipping_access(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(
        shops::scan_shipping_access(&client, &user.actor(&origin)).await?,
    ))
}
