//! `/exchange-rates/*` (contract §2.8 X1–X7): an adapter over `exchange_rates::service`. Bare
//! JSON objects as the original answered them; configuration, refresh and the connection test
//! are admins' only (the service says so, 403 `PERMISSION_DENIED`).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde_json::Value;

use crate::api::error::ApiError;
use crate::api::json::{ApiJson, ApiQuery};
use crate::auth::{CurrentUser, Origin};
use crate::domain::Work;
use crate::exchange_rates::service::{
    self, ConfigBody, ConvertBody, HistoryQuery, RateQuery, TestBody,
};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/exchange-rates/config", get(config).post(configure))
        .route("/exchange-rates/rate", get(rate))
        .route("/exchange-rates/convert", post(convert))
        .route("/exchange-rates/refresh", post(refresh))
        .route("/exchange-rates/history", get(history))
        .route("/exchange-rates/test-connection", post(test_connection))
}

/// X2 `GET /exchange-rates/config` → `{configured, ...}` (the key as `******`).
async fn config(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(service::config_view(&client).await?))
}

/// X1 `POST /exchange-rates/config` (admins) → `{id, api_provider, is_enabled, base_currency}`.
async fn configure(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiJson(body): ApiJson<ConfigBody>,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let v = service::configure(
        &mut work,
        &user.actor(&origin),
        state.exchange_rates(),
        body,
    )
    .await?;
    let _ = work.commit().await?;
    Ok(Json(v))
}

/// X3 `GET /exchange-rates/rate?from_currency&to_currency&force_refresh` → `{from_currency,
/// to_currency, rate, cached, fetched_at, age_seconds, stale}`.
async fn rate(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiQuery(q): ApiQuery<RateQuery>,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    Ok(Json(
        service::rate(
            &mut client,
            &user.actor(&origin),
            state.exchange_rates(),
            &q,
        )
        .await?,
    ))
}

/// X4 `POST /exchange-rates/convert {amount, from_currency, to_currency}`.
async fn convert(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiJson(body): ApiJson<ConvertBody>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(service::convert(&client, &body).await?))
}

/// X5 `POST /exchange-rates/refresh` (admins) → `{status, message, rate, fetched_at, ...}`.
async fn refresh(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let done = service::refresh(&mut client, state.exchange_rates(), &user.actor(&origin)).await?;
    Ok(Json(done.to_json()))
}

/// X6 `GET /exchange-rates/history?from_currency&to_currency&range`.
async fn history(
    State(state): State<AppState>,
    _user: CurrentUser,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(service::history(&client, &q).await?))
}

/// X7 `POST /exchange-rates/test-connection {api_key}` (admins) → `{success, message, rate}`.
async fn test_connection(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiJson(body): ApiJson<TestBody>,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(
        service::test_connection(&client, &user.actor(&origin), state.exchange_rates(), &body)
            .await?,
    ))
}
