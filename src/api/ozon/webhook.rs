//! Ozon pushes over HTTP — adapters over `ozon::webhook`:
//!
//! - `POST /ozon/webhook/{shop_id}/{secret}` and the legacy `POST /ozon/webhook`: public (Ozon
//!   calls them), answered in Ozon's shapes (`{"result": true}`, the `TYPE_PING` answer, or
//!   `{"error": {code, message, details}}` with a 4xx/5xx code);
//! - `GET|POST /ozon/shops/{id}/webhook`: the shop's push URL, for its users;
//! - `GET /ozon/webhook/events`, `POST /ozon/webhook/events/{id}/retry`: the admin push log.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use crate::api::envelope::Envelope;
use crate::api::error::ApiError;
use crate::api::json::{ApiPath, ApiQuery};
use crate::auth::{CurrentUser, Origin};
use crate::domain::{DomainError, Work};
use crate::ozon::webhook::{self, Answer, EventQuery, Incoming};
use crate::state::AppState;

/// A push body is at most this large (Ozon's are a few hundred bytes); the API's JSON limit
/// (`EF__MAX_JSON_BODY_SIZE`) applies first when it is smaller.
pub const MAX_PUSH_BODY: usize = 256 * 1024;

fn ozon_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message, "details": ""}})),
    )
        .into_response()
}

fn render(answer: Result<Answer, DomainError>) -> Response {
    match answer {
        Ok(Answer::Ping) => Json(webhook::ping_answer()).into_response(),
        Ok(Answer::Accepted) => Json(json!({"result": true})).into_response(),
        // One answer for an unknown shop, a shop without a secret and a wrong secret.
        Ok(Answer::Refused) => ozon_error(
            StatusCode::NOT_FOUND,
            "ERROR_UNKNOWN",
            "Unknown push URL; copy the shop's push URL from EuraFlow again",
        ),
        Ok(Answer::BadRequest(m)) => {
            ozon_error(StatusCode::BAD_REQUEST, "ERROR_PARAMETER_VALUE_MISSED", m)
        }
        Err(e) => {
            tracing::error!(error = %e, "an Ozon push could not be stored; Ozon will resend it");
            ozon_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ERROR_UNKNOWN",
                "The push could not be stored now; send it again later",
            )
        }
    }
}

/// The body, or the 413 answer.
async fn read_body(body: Body) -> Result<axum::body::Bytes, Response> {
    axum::body::to_bytes(body, MAX_PUSH_BODY)
        .await
        .map_err(|_| {
            ozon_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "ERROR_PARAMETER_VALUE_MISSED",
                "The push body is too large",
            )
        })
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn incoming<'a>(h: &'a HeaderMap, body: &'a [u8]) -> Incoming<'a> {
    Incoming {
        body,
        user_agent: header_str(h, header::USER_AGENT.as_str()),
        content_type: header_str(h, header::CONTENT_TYPE.as_str()),
        signature: header_str(h, "signature").or_else(|| header_str(h, "x-ozon-signature")),
    }
}

/// `POST /ozon/webhook/{shop_id}/{secret}`: a push through the shop's secret URL.
pub async fn receive(
    State(state): State<AppState>,
    Path((shop_id, secret)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    render(webhook::receive(state.db(), &shop_id, &secret, incoming(&headers, &body)).await)
}

/// `POST /ozon/webhook`: the legacy URL without a secret.
pub async fn receive_legacy(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    render(webhook::receive_legacy(state.db(), incoming(&headers, &body)).await)
}

/// The base URL sellers reach the server at: `EF__PUBLIC_URL`, else the request's host.
fn base_url(state: &AppState, h: &HeaderMap, uri: &http::Uri) -> String {
    if let Some(url) = &state.config().business.public_url {
        return url.clone();
    }
    let proto = header_str(h, "x-forwarded-proto")
        .filter(|p| *p == "http" || *p == "https")
        .unwrap_or("https");
    let host = header_str(h, "x-forwarded-host")
        .or_else(|| header_str(h, header::HOST.as_str()))
        // HTTP/2 sends no Host header: the authority is in the request's URI.
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .filter(|host| {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost");
    format!("{proto}://{host}")
}

/// `GET /ozon/shops/{id}/webhook` → `{shop_id, configured, webhook_url_masked, last_received_at,
/// supported_events, ...}`.
pub async fn shop_config(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
    headers: HeaderMap,
    uri: http::Uri,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    let base = base_url(&state, &headers, &uri);
    Ok(Json(
        webhook::shop_config(&client, &user.actor(&origin), id, &base).await?,
    ))
}

/// `POST /ozon/shops/{id}/webhook` → the new push URL, shown this once.
pub async fn rotate(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
    headers: HeaderMap,
    uri: http::Uri,
) -> Result<Json<Value>, ApiError> {
    let base = base_url(&state, &headers, &uri);
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let out = webhook::rotate_secret(&mut work, &user.actor(&origin), id, &base).await?;
    let _ = work.commit().await?;
    Ok(Json(out))
}

/// `GET /ozon/webhook/events` (admins) → `{ok, data: {items, total, page, page_size, has_more}}`.
pub async fn events(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> Result<Envelope<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Envelope(
        webhook::list_events(&client, &user.actor(&origin), q).await?,
    ))
}

/// `POST /ozon/webhook/events/{id}/retry` (admins) → `{ok, data: {id, status, task_id}}`.
pub async fn retry(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Envelope<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let out = webhook::retry_event(&mut work, &user.actor(&origin), id).await?;
    let _ = work.commit().await?;
    Ok(Envelope(out))
}

/// `GET /audit/webhooks/logs` (admins) → `{ok, data: {items, total, page_size, offset, has_more,
/// next_cursor}}`, the page 日志管理 → Webhook 日志.
pub async fn audit_logs(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiQuery(q): ApiQuery<crate::ozon::webhook_log::LogQuery>,
) -> Result<Envelope<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Envelope(
        crate::ozon::webhook_log::list(&client, &user.actor(&origin), q).await?,
    ))
}

/// `GET /audit/webhooks/logs/{id}` (admins) → `{ok, data: {..., payload, headers, signature}}`.
pub async fn audit_log(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Envelope<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Envelope(
        crate::ozon::webhook_log::detail(&client, &user.actor(&origin), id).await?,
    ))
}

/// `GET /ozon/webhook/health` (public, as the original) → `{status, service, timestamp}`: lets an
/// operator check the push path through a CDN or proxy without sending a push.
pub async fn health() -> Json<Value> {
    Json(json!({
        "status": "healthy",
        "service": "ozon-webhook",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }))
}
