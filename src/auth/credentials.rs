//! What a request presents to prove who it is, read and checked once per request.
//!
//! `Authorization: Bearer <access JWT>` (the scheme case-insensitive, RFC 9110 §11.1) or
//! `X-API-Key: ef_live_...`. The signature and expiry of a JWT are verified here, and an API key
//! is shape-checked and hashed here — once: the rate limiter takes its subject from the result
//! and the current-user resolver ([`super::current_user::resolve`]) its identity, without parsing
//! or verifying anything again.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::api_keys;
use super::tokens::{AccessClaims, TokenError, TokenKeys};

pub const API_KEY_HEADER: &str = "x-api-key";

/// The request's credentials, parsed and verified.
// The claims are a few hundred bytes, made once per request: not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Presented {
    /// Nothing presented.
    Nothing,
    /// An `Authorization` header that is not `Bearer <token>`.
    MalformedAuthorization,
    /// A bearer token; its signature, expiry and type checked.
    Bearer(Result<AccessClaims, TokenError>),
    /// An API key: its hash, or `None` when it cannot be one of ours.
    ApiKey(Option<String>),
}

impl Presented {
    pub fn from_headers(headers: &HeaderMap, keys: &TokenKeys) -> Presented {
        if let Some(value) = headers.get(AUTHORIZATION) {
            return match value.to_str().ok().and_then(bearer_token) {
                Some(token) => Presented::Bearer(keys.verify_access(token)),
                None => Presented::MalformedAuthorization,
            };
        }
        if let Some(key) = headers.get(API_KEY_HEADER) {
            let hash = key
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| api_keys::looks_valid(k))
                .map(api_keys::hash);
            return Presented::ApiKey(hash);
        }
        Presented::Nothing
    }

    /// Whom the rate limit counts this request against, when not its client IP: the user of a
    /// valid token, or the key.
    pub fn rate_subject(&self) -> Option<String> {
        match self {
            Presented::Bearer(Ok(claims)) => Some(format!("user:{}", claims.sub)),
            Presented::ApiKey(Some(hash)) => Some(format!("key:{}", &hash[..32])),
            _ => None,
        }
    }

    /// Whether anything that looks like credentials was sent (for answers that differ between
    /// "log in" and "your login is wrong").
    pub fn is_present(&self) -> bool {
        !matches!(self, Presented::Nothing)
    }
}

/// The token of an `Authorization: Bearer <token>` value: the scheme compares case-insensitively,
/// one or more spaces separate it from the token (RFC 9110 §11.1, §11.4), and the token may not
/// be empty or contain spaces.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches(' ').trim_end();
    if token.is_empty() || token.contains(' ') {
        return None;
    }
    Some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_strict_about_the_token() {
        assert_eq!(bearer_token("Bearer abc.def.ghi"), Some("abc.def.ghi"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER   abc  "), Some("abc"));
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Basic dXNlcjpwYXNz"), None);
        assert_eq!(bearer_token("Bearer a b"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }
}
