//! nginx's `large_client_header_buffers 4 8k`: a request line or one header line longer than
//! 8 KiB is refused (414 for the URI, 431 for a header) in the API's error shape. The whole head
//! is bounded before this by the connection (32 KiB, `http::server`); this adds the bound per
//! line, so no single value an attacker chooses (a cookie, a token) reaches a handler or a log
//! at more than 8 KiB.

use axum::extract::Request;
use http::StatusCode;

use crate::api::error::ApiError;

/// The longest request target (path and query) and the longest header line (name and value).
pub const MAX_LINE: usize = 8 * 1024;

/// `Err` with the 414 or 431 answer when a line is too long.
pub fn check(req: &Request) -> Result<(), ApiError> {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if target > MAX_LINE {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "URI_TOO_LONG",
            format!("The request URI is longer than {MAX_LINE} bytes; send long data in a body"),
        ));
    }
    if let Some((name, _)) = req
        .headers()
        .iter()
        .find(|(name, value)| name.as_str().len() + value.len() + 2 > MAX_LINE)
    {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "HEADER_TOO_LARGE",
            format!("The {name} header is longer than {MAX_LINE} bytes"),
        ));
    }
    Ok(())
}
