//! One file per HTTP concern, applied in `http::router` in this order (outermost first):
//! client IP → request id → access log → metrics → security headers → CORS → panic guard →
//! header limit → body limit → compression.
//! The order matters: the access log must see the final status of everything inside it, security
//! headers go on every response including errors and preflights, and CORS answers preflights
//! before any route or authentication runs.

pub mod access_log;
pub mod body_limit;
pub mod client_ip;
pub mod compression;
pub mod cors;
pub mod header_limit;
pub mod metrics;
pub mod panic;
pub mod request_id;
pub mod security_headers;
pub mod timeout;
