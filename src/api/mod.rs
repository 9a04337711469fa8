//! The API under `EF__API_PREFIX` (`/api/ef/v1`): the original's paths and JSON shapes, one module
//! per resource. Unknown paths and wrong methods answer in the API's error shape, not HTML.

pub mod envelope;
pub mod error;
pub mod health;
pub mod json;
pub mod system;

use axum::Router;
use axum::extract::OriginalUri;
use axum::routing::get;
use http::header::{CACHE_CONTROL, HeaderValue};
use http::{Method, StatusCode};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::state::AppState;
use error::ApiError;

/// The routes below the prefix; `http::router` nests this under `EF__API_PREFIX`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health::health))
        .route("/system/health", get(health::health))
        .route("/system/info", get(system::info))
        .route("/system/metrics", get(system::metrics))
        .route("/system/status", get(system::server_status))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // API answers are per user and per moment: no browser or proxy may cache them (the
        // original's nginx cached authenticated GETs). Handlers that may be cached say so.
        .layer(SetResponseHeaderLayer::if_not_present(
            CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

pub async fn not_found(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found(format!("No API route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
