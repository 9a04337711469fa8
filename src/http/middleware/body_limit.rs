//! Request body limits, by route.
//!
//! Every request is bounded by `EF__MAX_BODY_SIZE` (nginx's `client_max_body_size 50M`): the
//! ceiling, applied before routing, and the limit of routes that take uploads (there are none
//! yet; such a route must stream to disk, never buffer). The API's JSON routes — login and every
//! other one, authenticated or not — take a small body, `EF__MAX_JSON_BODY_SIZE` (64 KiB): their
//! extractors buffer the whole body before parsing it, and with the ceiling alone 50 concurrent
//! 45 MB login bodies took the server to 1.3 GiB.
//!
//! Either way a declared length over the limit is answered with 413 before a byte of the body is
//! read, and a body without one (chunked, HTTP/2) is cut off as soon as it passes the limit, so
//! the extractor reading it answers 413 having buffered at most the limit.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

use crate::api::error::ApiError;
use crate::config::HttpConfig;

/// The body limit that applies to a request, in bytes; also put into the request's extensions so
/// an extractor that hits it can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub u64);

impl BodyLimit {
    /// The ceiling of every request (and the limit of upload routes): `EF__MAX_BODY_SIZE`.
    pub fn ceiling(cfg: &HttpConfig) -> BodyLimit {
        BodyLimit(cfg.max_body_size)
    }

    /// The limit of the API's JSON routes: `EF__MAX_JSON_BODY_SIZE`, never above the ceiling.
    pub fn json(cfg: &HttpConfig) -> BodyLimit {
        BodyLimit(cfg.max_json_body_size.min(cfg.max_body_size))
    }
}

/// Apply `limit` to the request body: `from_fn_with_state(BodyLimit::json(cfg), enforce)`.
pub async fn enforce(State(limit): State<BodyLimit>, req: Request, next: Next) -> Response {
    match apply(limit, req) {
        Ok(req) => next.run(req).await,
        Err(refused) => refused.into_response(),
    }
}

/// Refuse a declared length over `limit` (`Err` with the 413 answer), else bound the body as it
/// is read.
pub fn apply(limit: BodyLimit, mut req: Request) -> Result<Request, ApiError> {
    let max = limit.0;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large(max));
    }
    req.extensions_mut().insert(limit);
    let cap = usize::try_from(max).unwrap_or(usize::MAX);
    Ok(req.map(|body| Body::new(http_body_util::Limited::new(body, cap))))
}

pub fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "REQUEST_TOO_LARGE",
        format!(
            "The request body is larger than the {max} bytes this route accepts; send a smaller one"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::middleware::from_fn_with_state;
    use axum::routing::post;
    use tower::ServiceExt;

    async fn read_all(body: axum::body::Bytes) -> String {
        body.len().to_string()
    }

    /// The mechanism an upload route opts into: JSON routes get the small limit as a route
    /// layer, an upload route merged beside them keeps only the ceiling.
    #[tokio::test]
    async fn json_routes_get_the_small_limit_and_upload_routes_the_ceiling() {
        let json = Router::new()
            .route("/json", post(read_all))
            .route_layer(from_fn_with_state(BodyLimit(1024), enforce));
        let uploads = Router::new().route("/upload", post(read_all));
        let app = json
            .merge(uploads)
            .layer(from_fn_with_state(BodyLimit(64 * 1024), enforce));
        let send = |path: &str, n: usize| {
            let app = app.clone();
            let req = Request::post(path).body(Body::from(vec![b'x'; n])).unwrap();
            async move { app.oneshot(req).await.unwrap().status() }
        };
        assert_eq!(send("/json", 1024).await, StatusCode::OK);
        assert_eq!(send("/json", 1025).await, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(send("/upload", 32 * 1024).await, StatusCode::OK);
        assert_eq!(
            send("/upload", 64 * 1024 + 1).await,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        // Without a declared length the limit still holds while streaming.
        let stream = futures_util::stream::iter(
            (0..4).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; 512]))),
        );
        let req = Request::post("/json")
            .body(Body::from_stream(stream))
            .unwrap();
        assert_eq!(
            app.clone().oneshot(req).await.unwrap().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
