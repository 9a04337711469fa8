//! `EF__REQUEST_TIMEOUT` for API requests (nginx's `proxy_read_timeout 60s`): a handler that has
//! not produced its response in time is dropped and the client gets 504 with a JSON error, instead
//! of a connection that hangs. Static files and an established websocket are not bounded by it.

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::api::error::ApiError;
use crate::state::AppState;

/// `answer` within `EF__REQUEST_TIMEOUT`, else the 504 answer.
pub async fn bound(state: &AppState, answer: impl Future<Output = Response>) -> Response {
    let limit = state.config().http.request_timeout;
    match tokio::time::timeout(limit, answer).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(timeout_s = limit.as_secs_f64(), "request timed out");
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "REQUEST_TIMEOUT",
                format!(
                    "The request took longer than {} seconds",
                    limit.as_secs_f64()
                ),
            )
            .into_response()
        }
    }
}
