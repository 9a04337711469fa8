//! `EF__MAX_BODY_SIZE` (nginx's `client_max_body_size 50M`). A declared length over the limit is
//! answered with 413 before a byte of the body is read; a chunked body is cut off when it passes
//! the limit, and the extractor reading it answers 413 too.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

use crate::api::error::ApiError;
use crate::state::AppState;

pub async fn enforce(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let max = state.config().http.max_body_size;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return too_large(max).into_response();
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    let req = req.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
    next.run(req).await
}

pub fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "REQUEST_TOO_LARGE",
        format!("The request body is larger than the {} bytes accepted", max),
    )
}
