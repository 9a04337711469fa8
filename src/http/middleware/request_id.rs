//! Every request gets an id, returned as `X-Trace-Id` (the original's header) and logged with the
//! access-log line and every event of the request, so a user's report can be found in the journal.

use axum::extract::Request;
use axum::response::Response;
use http::HeaderValue;

pub const HEADER: &str = "x-trace-id";

/// The request's id, available to handlers and other middleware as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Give the request its id (an extension, for handlers and the access log) and return it for
/// [`stamp`].
pub fn assign(req: &mut Request) -> RequestId {
    let id = RequestId(new_id());
    req.extensions_mut().insert(id.clone());
    id
}

/// Return the id with the response: the `X-Trace-Id` header, and the extension for whoever
/// handles the response after us.
pub fn stamp(resp: &mut Response, id: RequestId) {
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp.extensions_mut().insert(id);
}

/// A random (v4) UUID, as the original's ids. From the thread's own generator: `Uuid::new_v4`
/// asks the kernel (`getrandom`) once per request, which cost more than the rest of this file.
fn new_id() -> String {
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    uuid.hyphenated().encode_lower(&mut buf).to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_distinct_v4_uuids() {
        let a = super::new_id();
        let b = super::new_id();
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(a, parsed.hyphenated().to_string());
    }
}
