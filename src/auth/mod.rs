//! Identity and access: passwords, tokens, sessions, API keys, the current-user extractor, role
//! rules, rate limits and the audit log. Compatible with the original EuraFlow (bcrypt hashes,
//! JWT claims, error codes) and stricter where it was broken (see each module).

pub mod api_keys;
pub mod audit;
pub mod bootstrap;
pub mod captcha;
pub mod current_user;
pub mod password;
pub mod rate_limit;
pub mod roles;
pub mod sessions;
pub mod tokens;
pub mod users;

use std::sync::Arc;

pub use current_user::{AnyStateUser, CurrentUser, RequestMeta, Via};
pub use roles::Role;

use crate::config::Config;
use crate::db::Database;
use crate::redis::Redis;

/// Everything authentication needs, built once per process.
pub struct Auth {
    pub keys: tokens::TokenKeys,
    pub store: sessions::AuthStore,
    pub passwords: password::Passwords,
    pub login_limiter: rate_limit::LoginLimiter,
    /// `None` when `EF__RATE_LIMIT_ENABLED=false`.
    pub rate_limiter: Option<rate_limit::RateLimiter>,
    pub single_session: bool,
}

impl Auth {
    pub fn new(config: &Config, db: Arc<Database>, redis: Arc<Redis>) -> anyhow::Result<Self> {
        let sec = &config.security;
        let keys =
            tokens::TokenKeys::new(&sec.secret_key, sec.access_token_ttl, sec.refresh_token_ttl);
        Ok(Auth {
            store: sessions::AuthStore::new(
                db,
                redis.clone(),
                sec.redis_fail_open,
                sec.refresh_token_ttl.as_secs(),
            ),
            keys,
            passwords: password::Passwords::new(sec.password_hash)?,
            login_limiter: rate_limit::LoginLimiter::new(redis.clone()),
            rate_limiter: sec
                .rate_limit
                .map(|rule| rate_limit::RateLimiter::new(redis, rule)),
            single_session: sec.single_session,
        })
    }
}
