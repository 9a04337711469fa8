//! JSON Web Tokens with the original's claims, signed HS256 with `EF__SECRET_KEY`.
//!
//! Only HS256 is accepted when reading: `alg: none`, other HMAC sizes and asymmetric algorithms
//! (the "algorithm confusion" attack) are refused, as are tokens without `exp`, of the wrong
//! `type`, or signed with another key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::Secret;

/// Clock skew tolerated between servers.
const LEEWAY_S: u64 = 30;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    /// The user id, as a string (the original's format).
    pub sub: String,
    pub username: String,
    pub role: String,
    pub permissions: Vec<String>,
    pub shop_id: Option<i64>,
    /// `null` for admins: all shops.
    pub shop_ids: Option<Vec<i64>>,
    pub session_token: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    pub jti: String,
    pub exp: u64,
    pub iat: u64,
    /// Clone identity (an admin acting as this user, `auth::clone`): the original's claim names,
    /// which the web app reads, plus the clone's deadline. Absent from ordinary tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_cloned: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_user_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_username: Option<String>,
    /// Unix seconds; no request is served with the clone after it, whatever `exp` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_expires_at: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefreshClaims {
    pub sub: String,
    pub session_token: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub jti: String,
    pub exp: u64,
    pub iat: u64,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not a {0} token")]
    WrongType(&'static str),
    #[error("the token is invalid")]
    Invalid,
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Expired => "TOKEN_EXPIRED",
            TokenError::WrongType(_) => "INVALID_TOKEN_TYPE",
            TokenError::Invalid => "INVALID_TOKEN",
        }
    }
}

pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn new_jti() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Access tokens verified at most this many at a time (see [`Verified`]).
const VERIFIED_CAPACITY: usize = 10_000;

/// Access tokens whose signature and claims were already checked, by the token's exact text.
/// Checking costs ~10 µs of HMAC, base64 and JSON per request (a tenth of an authenticated
/// request's CPU), and a web app sends the same token for its whole lifetime; the same bytes
/// under the same key verify the same way every time. Expiry is still judged on every use.
#[derive(Default)]
struct Verified(std::sync::Mutex<HashMap<Box<str>, Arc<AccessClaims>>>);

impl Verified {
    fn get(&self, token: &str) -> Option<Arc<AccessClaims>> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(token).cloned()
    }

    fn keep(&self, token: &str, claims: &AccessClaims) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_s();
        super::cache::make_room(&mut map, VERIFIED_CAPACITY, |c| !expired(c.exp, now));
        map.insert(token.into(), Arc::new(claims.clone()));
    }
}

/// `exp` has passed, beyond the tolerated skew (as `jsonwebtoken`'s own check).
fn expired(exp: u64, now: u64) -> bool {
    exp.saturating_add(LEEWAY_S) < now
}

/// Signs and checks tokens with one key.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    verified: Arc<Verified>,
}

impl TokenKeys {
    pub fn new(secret: &Secret, access_ttl: Duration, refresh_ttl: Duration) -> Self {
        TokenKeys {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            access_ttl,
            refresh_ttl,
            verified: Arc::default(),
        }
    }

    fn validation() -> Validation {
        let mut v = Validation::new(Algorithm::HS256);
        v.algorithms = vec![Algorithm::HS256];
        v.leeway = LEEWAY_S;
        v.validate_exp = true;
        v.set_required_spec_claims(&["exp", "sub"]);
        v
    }

    pub fn sign<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| anyhow::anyhow!("signing a token: {e}"))
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, TokenError> {
        // Tokens are a few hundred bytes; refuse anything absurd before parsing.
        if token.len() > 8192 {
            return Err(TokenError::Invalid);
        }
        jsonwebtoken::decode::<T>(token, &self.decoding, &Self::validation())
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }

    /// Check signature and expiry once, then the type, then the shape of the claims.
    fn verify_kind<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        kind: &'static str,
    ) -> Result<T, TokenError> {
        let value: serde_json::Value = self.decode(token)?;
        if value.get("type").and_then(|t| t.as_str()) != Some(kind) {
            return Err(TokenError::WrongType(kind));
        }
        serde_json::from_value(value).map_err(|_| TokenError::Invalid)
    }

    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if let Some(claims) = self.verified.get(token) {
            if expired(claims.exp, now_s()) {
                return Err(TokenError::Expired);
            }
            return Ok(AccessClaims::clone(&claims));
        }
        let claims: AccessClaims = self.verify_kind(token, "access")?;
        self.verified.keep(token, &claims);
        Ok(claims)
    }

    pub fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenError> {
        self.verify_kind(token, "refresh")
    }

    /// The user id a token claims, when its signature is good — for rate-limit keys, before the
    /// full check.
    pub fn peek_user(&self, token: &str) -> Option<i64> {
        self.decode::<serde_json::Value>(token)
            .ok()?
            .get("sub")?
            .as_str()?
            .parse()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(
            &Secret::new("k".repeat(64)),
            Duration::from_secs(480 * 60),
            Duration::from_secs(7 * 86400),
        )
    }

    fn access(exp: u64) -> AccessClaims {
        AccessClaims {
            sub: "7".into(),
            username: "alice".into(),
            role: "main_account".into(),
            permissions: vec![],
            shop_id: Some(3),
            shop_ids: Some(vec![3, 4]),
            session_token: Some("s".repeat(64)),
            kind: "access".into(),
            jti: new_jti(),
            exp,
            iat: now_s(),
            is_cloned: None,
            clone_session_id: None,
            original_user_id: None,
            original_username: None,
            clone_expires_at: None,
        }
    }

    fn b64(v: &serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn round_trip_and_claim_names() {
        let k = keys();
        let t = k.sign(&access(now_s() + 60)).unwrap();
        assert_eq!(t.split('.').count(), 3);
        let payload: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        for claim in [
            "sub",
            "username",
            "role",
            "permissions",
            "shop_id",
            "shop_ids",
            "session_token",
            "type",
            "jti",
            "exp",
            "iat",
        ] {
            assert!(payload.get(claim).is_some(), "missing {claim}");
        }
        assert_eq!(k.verify_access(&t).unwrap().username, "alice");
        assert_eq!(k.peek_user(&t), Some(7));
    }

    #[test]
    fn a_token_verified_once_is_judged_the_same_from_memory() {
        let k = keys();
        // Within the tolerated skew: good now, from the first check and from memory.
        let t = k.sign(&access(now_s() - LEEWAY_S / 2)).unwrap();
        let first = k.verify_access(&t).unwrap();
        assert_eq!(k.verify_access(&t), Ok(first.clone()));
        assert_eq!(
            k.clone().verify_access(&t),
            Ok(first),
            "clones share the memory"
        );
        // A one-character change is another text: checked in full, and refused.
        let at = t.rfind('.').unwrap() + 1; // the signature's first character: 6 whole bits
        let mut tampered = t.clone();
        let swap = if &t[at..=at] == "A" { "B" } else { "A" };
        tampered.replace_range(at..=at, swap);
        assert_eq!(k.verify_access(&tampered), Err(TokenError::Invalid));
        // Another key remembers nothing of this one's tokens.
        let other = TokenKeys::new(&Secret::new("z".repeat(64)), k.access_ttl, k.refresh_ttl);
        assert_eq!(other.verify_access(&t), Err(TokenError::Invalid));
        // Expiry from memory is the same rule as the full check's.
        let now = now_s();
        assert!(!expired(now - LEEWAY_S, now));
        assert!(expired(now - LEEWAY_S - 1, now));
    }

    #[test]
    fn expired_tampered_wrong_key_wrong_type_and_alg_none_are_refused() {
        let k = keys();
        let expired = k.sign(&access(now_s() - 3600)).unwrap();
        assert_eq!(k.verify_access(&expired), Err(TokenError::Expired));

        let good = k.sign(&access(now_s() + 60)).unwrap();
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut claims = access(now_s() + 60);
        claims.role = "admin".into();
        parts[1] = b64(&serde_json::to_value(&claims).unwrap());
        assert_eq!(k.verify_access(&parts.join(".")), Err(TokenError::Invalid));

        let other = TokenKeys::new(&Secret::new("z".repeat(64)), k.access_ttl, k.refresh_ttl);
        assert_eq!(other.verify_access(&good), Err(TokenError::Invalid));

        let refresh = k
            .sign(&RefreshClaims {
                sub: "7".into(),
                session_token: "s".into(),
                kind: "refresh".into(),
                jti: new_jti(),
                exp: now_s() + 60,
                iat: now_s(),
            })
            .unwrap();
        assert_eq!(
            k.verify_access(&refresh),
            Err(TokenError::WrongType("access"))
        );
        assert_eq!(
            k.verify_refresh(&good),
            Err(TokenError::WrongType("refresh"))
        );

        // alg: none, unsigned.
        let none = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(&serde_json::to_value(access(now_s() + 60)).unwrap())
        );
        assert_eq!(k.verify_access(&none), Err(TokenError::Invalid));
        // HS512 with the same secret is another algorithm: refused.
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &access(now_s() + 60),
            &EncodingKey::from_secret("k".repeat(64).as_bytes()),
        )
        .unwrap();
        assert_eq!(k.verify_access(&hs512), Err(TokenError::Invalid));
        assert_eq!(k.verify_access("garbage"), Err(TokenError::Invalid));
        assert_eq!(
            k.verify_access(&"a".repeat(10_000)),
            Err(TokenError::Invalid)
        );
    }
}
