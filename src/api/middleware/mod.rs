//! The API's own concerns, around every route under the prefix, composed by `gate` (which gives
//! their order): request timeout → login gate → authenticate → rate limit. Generic HTTP concerns
//! (request id, access log, security headers, ...) are in `http::middleware`.

pub mod authenticate;
pub mod gate;
pub mod login_gate;
pub mod rate_limit;
