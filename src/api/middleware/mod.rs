//! The API's own layers, around every route under the prefix (outermost first):
//! login gate (logins refused at once while the password-check queue is full) → authenticate
//! (credentials parsed and verified once) → rate limit (counted per user, key or IP). Generic HTTP concerns (request id, access log, security headers, ...) are in
//! `http::middleware`.

pub mod authenticate;
pub mod login_gate;
pub mod rate_limit;
