//! One file per HTTP concern. `edge` composes them, in this order (outermost first):
//! client IP → request id → access log → metrics → security headers → CORS → panic guard →
//! header limit → body limit → compression (`edge` says why the order matters and why they are
//! composed there rather than layered one by one).

pub mod access_log;
pub mod body_limit;
pub mod client_ip;
pub mod compression;
pub mod cors;
pub mod edge;
pub mod header_limit;
pub mod metrics;
pub mod panic;
pub mod request_id;
pub mod security_headers;
pub mod timeout;
