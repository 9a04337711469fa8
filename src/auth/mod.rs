//! Identity and access: the domain services for accounts, API keys, levels and the session life
//! cycle, and what they stand on — passwords, tokens, sessions, credentials, role rules, rate
//! limits, the captcha and the audit log. Compatible with the original EuraFlow (bcrypt hashes,
//! JWT claims, error codes) and stricter where it was broken (see each module).
//!
//! The services (`accounts`, `api_keys`, `levels`, `login`, and `crate::settings`) follow one
//! shape, which the business modules (`crate::ozon`) copy:
//! - a function per use case taking a [`Work`](crate::domain::Work) (the transaction) or a client,
//!   and an [`Actor`] (who, from where);
//! - input arrives parsed ([`values`]: `Username`, `NewPassword`, `Phone`) or is checked with
//!   [`Checks`](crate::domain::Checks);
//! - the actor's rights are checked by the rules in [`roles`];
//! - the audit row is written in the same transaction;
//! - errors are a [`DomainError`](crate::domain::DomainError); what caches and clients must learn
//!   is collected as [`Effects`](crate::domain::Effects) and applied after the commit
//!   ([`Auth::apply`]).
//!
//! Adapters — `api::*` handlers, `ops::users` for the CLI — only translate input and errors.

pub(crate) mod accounts;
pub(crate) mod actor;
pub(crate) mod api_keys;
pub(crate) mod audit;
pub(crate) mod bootstrap;
pub(crate) mod cache;
pub(crate) mod captcha;
pub(crate) mod clone;
pub(crate) mod credentials;
pub(crate) mod current_user;
pub(crate) mod levels;
pub(crate) mod login;
pub mod password;
pub(crate) mod permissions;
pub mod rate_limit;
pub(crate) mod roles;
pub(crate) mod sessions;
pub mod tokens;
pub(crate) mod users;
pub(crate) mod values;

use std::sync::Arc;

pub use actor::{Actor, Origin};
pub use current_user::{CurrentUser, Via};
pub use roles::Role;

use crate::config::Config;
use crate::db::Database;
use crate::domain::Effects;
use crate::redis::Redis;

/// Everything authentication needs, built once per process.
pub struct Auth {
    pub keys: tokens::TokenKeys,
    pub store: sessions::AuthStore,
    pub passwords: password::Passwords,
    pub login_limiter: rate_limit::LoginLimiter,
    /// `None` when `EF__RATE_LIMIT_ENABLED=false`.
    pub rate_limiter: Option<rate_limit::RateLimiter>,
    /// `GET /auth/captcha` per client IP (always on: each one costs image work).
    pub captcha_limiter: rate_limit::RateLimiter,
    pub single_session: bool,
    pub login_captcha: bool,
    pub db: Arc<Database>,
    pub redis: Arc<Redis>,
    /// Tells the websockets of ended sessions (`session_expired`).
    pub realtime: crate::realtime::Realtime,
    /// The roles' permission grants, in memory (`permissions`).
    pub permissions: permissions::Catalog,
}

impl Auth {
    pub fn new(
        config: &Config,
        db: Arc<Database>,
        redis: Arc<Redis>,
        realtime: crate::realtime::Realtime,
    ) -> anyhow::Result<Self> {
        let sec = &config.security;
        let keys =
            tokens::TokenKeys::new(&sec.secret_key, sec.access_token_ttl, sec.refresh_token_ttl);
        Ok(Auth {
            store: sessions::AuthStore::new(
                db.clone(),
                redis.clone(),
                sec.redis_fail_open,
                sec.refresh_token_ttl.as_secs(),
            ),
            keys,
            passwords: password::Passwords::new(sec.password_hash)?,
            login_limiter: rate_limit::LoginLimiter::new(redis.clone()),
            rate_limiter: sec
                .rate_limit
                .map(|rule| rate_limit::RateLimiter::new(redis.clone(), rule)),
            captcha_limiter: rate_limit::RateLimiter::new(redis.clone(), captcha::RATE_LIMIT),
            single_session: sec.single_session,
            login_captcha: sec.login_captcha,
            permissions: permissions::Catalog::new(db.clone()),
            db,
            redis,
            realtime,
        })
    }

    /// Publish what a committed change did (ended and started sessions, stale account states).
    /// PostgreSQL already holds the truth; this brings the caches in line at once, and the
    /// websockets of ended sessions get `session_expired`.
    pub async fn apply(&self, effects: Effects) {
        if effects.is_empty() {
            return;
        }
        self.store.apply(&effects).await;
        self.realtime.end_sessions(&effects.ended_sessions).await;
    }
}
