//! The API's own layers, around every route under the prefix (outermost first):
//! authenticate (credentials parsed and verified once) → rate limit (counted per user, key or
//! IP). Generic HTTP concerns (request id, access log, security headers, ...) are in
//! `http::middleware`.

pub mod authenticate;
pub mod rate_limit;
