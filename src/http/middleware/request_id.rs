//! Every request gets an id, returned as `X-Trace-Id` (the original's header) and logged with the
//! access-log line and every event of the request, so a user's report can be found in the journal.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;

pub const HEADER: &str = "x-trace-id";

/// The request's id, available to handlers and other middleware as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub async fn assign(mut req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp.extensions_mut().insert(RequestId(id));
    resp
}
