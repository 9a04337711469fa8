//! Login sessions and the per-request checks that make a token usable.
//!
//! PostgreSQL is the record (`user_login_sessions`, `users.current_session_token`); Redis is the
//! fast path, so a request normally costs one Redis round trip and no database query:
//!
//! - `session:<token>` is `1` while the session is active and `0` once it ended (logout, replaced
//!   by a newer login, refresh-token reuse), kept for the refresh lifetime;
//! - `state:<user id>` caches the account state (active, status, expiry, and the parent's for
//!   sub-accounts), invalidated by every change to a user;
//! - `revoked:<jti>` marks a revoked token until it would have expired anyway.
//!
//! A missing key (Redis restarted empty) is refilled from PostgreSQL. While Redis is down,
//! `EF__AUTH_REDIS_FAIL_OPEN=false` (the default) checks PostgreSQL instead, one query per request;
//! `true` trusts the token's own claims until it expires.

use std::sync::Arc;

use super::roles::{AccountState, AccountStatus, Role};
use super::tokens::{AccessClaims, now_s};
use super::users;
use crate::db::sql::Sql;
use crate::db::{Database, DbError};
use crate::domain::Effects;
use crate::redis::Redis;

use super::cache::{AuthCache, Stale};

/// Account state is re-read from PostgreSQL at least this often even if nothing invalidated it.
const STATE_TTL_S: u64 = 600;
/// A session's `last_activity_at` is written at most this often.
const SESSION_SEEN_TTL_S: u64 = 60;

/// Why a token is not accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    Revoked,
    SessionEnded,
    UnknownUser,
    /// A token that names no session: every token this server mints has one.
    NoSession,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0:?}")]
    Rejected(Rejection),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// 64 hex characters from 32 random bytes: the original's session token format.
pub fn new_session_token() -> String {
    let mut b = [0u8; 32];
    rand::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Clone)]
pub struct AuthStore {
    db: Arc<Database>,
    redis: Arc<Redis>,
    fail_open: bool,
    session_ttl_s: u64,
    /// Tokens that passed `check` a moment ago, and users' profiles (`cache`).
    cache: AuthCache,
}

impl AuthStore {
    pub fn new(db: Arc<Database>, redis: Arc<Redis>, fail_open: bool, session_ttl_s: u64) -> Self {
        AuthStore {
            cache: AuthCache::new(redis.clone()),
            db,
            redis,
            fail_open,
            session_ttl_s,
        }
    }

    /// This process's sign-in cache (its subscriber runs in server processes only).
    pub fn cache(&self) -> &AuthCache {
        &self.cache
    }

    fn session_key(&self, token: &str) -> String {
        self.redis.key(&format!("session:{token}"))
    }

    fn state_key(&self, user_id: i64) -> String {
        self.redis.key(&format!("state:{user_id}"))
    }

    fn revoked_key(&self, jti: &str) -> String {
        self.redis.key(&format!("revoked:{jti}"))
    }

    /// Present while a session's `last_activity_at` is fresh (set when it is written).
    fn seen_key(&self, token: &str) -> String {
        self.redis.key(&format!("session_seen:{token}"))
    }

    /// Is this access token still good, and what is its user's account state?
    pub async fn check(&self, claims: &AccessClaims) -> Result<AccountState, CheckError> {
        let user_id: i64 = claims
            .sub
            .parse()
            .map_err(|_| CheckError::Rejected(Rejection::UnknownUser))?;
        // Every token this server issues belongs to a session; one without is refused (it would
        // skip the session checks, and mattered only if the signing key leaked).
        let Some(token) = claims.session_token.as_deref() else {
            return Err(CheckError::Rejected(Rejection::NoSession));
        };
        if let Some(state) = self.cache.token(&claims.jti, user_id) {
            return Ok(state);
        }
        let seen = self.cache.generation();
        let (state, from_redis) = self.check_in_redis(claims, user_id, token).await?;
        if from_redis {
            // What PostgreSQL alone said while Redis failed is not kept: the cache stands on
            // Redis's invalidations.
            self.cache.offer_token(seen, &claims.jti, &state);
        }
        Ok(state)
    }

    /// `check` without the cache: one `MGET` (revocation, account state, session, activity
    /// marker), refilled from PostgreSQL where Redis has nothing, or PostgreSQL alone while Redis
    /// is down.
    async fn check_in_redis(
        &self,
        claims: &AccessClaims,
        user_id: i64,
        token: &str,
    ) -> Result<(AccountState, bool), CheckError> {
        let keys = vec![
            self.revoked_key(&claims.jti),
            self.state_key(user_id),
            self.session_key(token),
            self.seen_key(token),
        ];
        let cached: Result<Vec<Option<String>>, _> =
            self.redis.query(redis::cmd("MGET").arg(&keys)).await;
        let Ok(cached) = cached else {
            return Ok((self.check_without_redis(claims, user_id).await?, false));
        };
        if cached.first().is_some_and(Option::is_some) {
            return Err(CheckError::Rejected(Rejection::Revoked));
        }
        // The cached session names its user ("1:<id>"): a session token is good only for the
        // user it was started for (PostgreSQL checks the same on a refill).
        let active = match cached.get(2).cloned().flatten().as_deref() {
            Some(v) if v == bound(user_id) => true,
            Some("0") => false,
            Some(v) if v.starts_with("1:") => false,
            _ => self.refill_session(token, user_id).await?,
        };
        if !active {
            return Err(CheckError::Rejected(Rejection::SessionEnded));
        }
        if cached.get(3).is_none_or(Option::is_none) {
            self.touch_session(token);
        }
        let state = match cached
            .get(1)
            .cloned()
            .flatten()
            .and_then(|s| serde_json::from_str::<AccountState>(&s).ok())
        {
            Some(s) => s,
            None => self.refill_state(user_id).await?,
        };
        Ok((state, true))
    }

    /// Record that the session was used (`last_activity_at`), at most once a minute per session
    /// and off the request's path: the marker key in Redis is what makes it rare, and it rides
    /// along in the check's one MGET, so an ordinary request costs nothing extra.
    fn touch_session(&self, token: &str) {
        let db = self.db.clone();
        let redis = self.redis.clone();
        let seen = self.seen_key(token);
        let token = token.to_owned();
        tokio::spawn(async move {
            let first: Result<Option<String>, _> = redis
                .query(
                    redis::cmd("SET")
                        .arg(&seen)
                        .arg(1)
                        .arg("NX")
                        .arg("EX")
                        .arg(SESSION_SEEN_TTL_S),
                )
                .await;
            if !matches!(first, Ok(Some(_))) {
                return; // another request (or process) does it, or Redis is down
            }
            let updated = async {
                let client = db.get().await?;
                client
                    .exec(
                        "UPDATE user_login_sessions SET last_activity_at = now()
                          WHERE session_token = $1 AND is_active",
                        &[&token],
                    )
                    .await
            };
            if let Err(e) = updated.await {
                tracing::debug!(error = %e, "session activity not recorded");
            }
        });
    }

    async fn check_without_redis(
        &self,
        claims: &AccessClaims,
        user_id: i64,
    ) -> Result<AccountState, CheckError> {
        if self.fail_open {
            // Documented trade-off: trust the signed claims until the token expires.
            return Ok(AccountState {
                user_id,
                username: claims.username.clone(),
                role: Role::parse(&claims.role).unwrap_or(Role::SubAccount),
                is_active: true,
                status: AccountStatus::Active,
                expires_at: None,
                parent_user_id: None,
                inherited: None,
            });
        }
        let Some(token) = claims.session_token.as_deref() else {
            return Err(CheckError::Rejected(Rejection::NoSession));
        };
        let client = self.db.get().await?;
        if !session_active_in_db(&client, token, user_id).await? {
            return Err(CheckError::Rejected(Rejection::SessionEnded));
        }
        users::account_state(&client, user_id)
            .await?
            .ok_or(CheckError::Rejected(Rejection::UnknownUser))
    }

    async fn refill_session(&self, token: &str, user_id: i64) -> Result<bool, CheckError> {
        let client = self.db.get().await?;
        let active = session_active_in_db(&client, token, user_id).await?;
        if active {
            self.mark_session_of(user_id, token).await;
        }
        Ok(active)
    }

    async fn refill_state(&self, user_id: i64) -> Result<AccountState, CheckError> {
        let client = self.db.get().await?;
        let state = users::account_state(&client, user_id)
            .await?
            .ok_or(CheckError::Rejected(Rejection::UnknownUser))?;
        if let Ok(json) = serde_json::to_string(&state) {
            let _: Result<(), _> = self
                .redis
                .query(
                    redis::cmd("SET")
                        .arg(self.state_key(user_id))
                        .arg(json)
                        .arg("EX")
                        .arg(STATE_TTL_S),
                )
                .await;
        }
        Ok(state)
    }

    /// Cache a session as active for `user_id` (`login` does, so its first request needs no
    /// database).
    pub async fn mark_session_of(&self, user_id: i64, token: &str) {
        let r: Result<(), _> = self
            .redis
            .query(
                redis::cmd("SET")
                    .arg(self.session_key(token))
                    .arg(bound(user_id))
                    .arg("EX")
                    .arg(self.session_ttl_s.max(1)),
            )
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "session cache not updated");
        }
    }

    /// Record a session as active or ended in the cache. Failures are logged: PostgreSQL stays
    /// the record and a later miss refills the cache.
    pub async fn mark_session(&self, token: &str, active: bool) {
        let r: Result<(), _> = self
            .redis
            .query(
                redis::cmd("SET")
                    .arg(self.session_key(token))
                    .arg(if active { "1" } else { "0" })
                    .arg("EX")
                    .arg(self.session_ttl_s.max(1)),
            )
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "session cache not updated");
        }
    }

    /// Tell the cache what a committed change did: ended sessions stop working at once, started
    /// ones need no database on their first request, stale account states are re-read.
    pub async fn apply(&self, effects: &Effects) {
        for ended in &effects.ended_sessions {
            self.mark_session(&ended.token, false).await;
        }
        // Started sessions are cached with their user by whoever knows it (`login` calls
        // `mark_session_of`); otherwise the first request reads PostgreSQL once.
        let mut stale = effects.stale_users.clone();
        stale.sort_unstable();
        stale.dedup();
        self.invalidate_states(&stale).await;
        // After Redis holds the new truth: a server that drops its entry and re-reads at once
        // must not read the old one.
        let forget: Vec<Stale> = if effects.everyone_stale {
            vec![Stale::Everyone]
        } else {
            let mut users: Vec<i64> = effects.ended_sessions.iter().map(|e| e.user_id).collect();
            users.extend(stale);
            users.sort_unstable();
            users.dedup();
            users.into_iter().map(Stale::User).collect()
        };
        self.cache.publish(&forget).await;
    }

    /// Forget cached account states (after any change to these users or their parents).
    pub async fn invalidate_states(&self, user_ids: &[i64]) {
        if user_ids.is_empty() {
            return;
        }
        let keys: Vec<String> = user_ids.iter().map(|id| self.state_key(*id)).collect();
        let r: Result<(), _> = self.redis.query(redis::cmd("DEL").arg(&keys)).await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "cached account states could not be cleared; they expire within 10 minutes");
        }
    }

    /// Refuse a token (by `jti`) until its `exp`.
    pub async fn revoke(&self, jti: &str, exp: u64) {
        let ttl = exp.saturating_sub(now_s()).max(1);
        let r: Result<(), _> = self
            .redis
            .query(
                redis::cmd("SET")
                    .arg(self.revoked_key(jti))
                    .arg("1")
                    .arg("EX")
                    .arg(ttl),
            )
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "token revocation not stored in Redis; its session is ended in PostgreSQL");
        }
        self.cache.publish(&[Stale::Token(jti.to_owned())]).await;
    }
}

/// The cached value of an active session of `user_id`.
fn bound(user_id: i64) -> String {
    format!("1:{user_id}")
}

async fn session_active_in_db(c: &impl Sql, token: &str, user_id: i64) -> Result<bool, DbError> {
    Ok(c.maybe_row(
        "SELECT 1 FROM user_login_sessions
              WHERE session_token = $1 AND user_id = $2 AND is_active
                AND (expires_at IS NULL OR expires_at > now())",
        &[&token, &user_id],
    )
    .await?
    .is_some())
}

/// End one session; returns whether it was active.
pub async fn end(c: &impl Sql, token: &str, reason: &str) -> Result<bool, DbError> {
    let row = c
        .maybe_row(
            "UPDATE user_login_sessions SET is_active = false, ended_at = now(), end_reason = $2
              WHERE session_token = $1 AND is_active RETURNING user_id",
            &[&token, &reason],
        )
        .await?;
    if let Some(r) = &row {
        let user_id: i64 = r.get(0);
        c.exec(
            "UPDATE users SET current_session_token = NULL WHERE id = $1 AND current_session_token = $2",
            &[&user_id, &token],
        )
        .await?;
    }
    Ok(row.is_some())
}

/// End every active session of a user (password reset, deactivation), and every clone the user
/// opened as an admin; returns their tokens.
pub async fn end_all(c: &impl Sql, user_id: i64, reason: &str) -> Result<Vec<String>, DbError> {
    let tokens: Vec<String> = c
        .rows(
            "UPDATE user_login_sessions SET is_active = false, ended_at = now(), end_reason = $2
              WHERE (user_id = $1 OR cloned_by = $1) AND is_active RETURNING session_token",
            &[&user_id, &reason],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    c.exec(
        "UPDATE users SET current_session_token = NULL WHERE id = $1",
        &[&user_id],
    )
    .await?;
    Ok(tokens)
}

/// End the active sessions of accounts that have expired (or whose main account has); returns
/// (user id, session token) of each. The REST API already refuses such accounts; this makes
/// their tokens stop at once and tells their websockets.
pub async fn end_expired(c: &impl Sql) -> Result<Vec<(i64, String)>, DbError> {
    let ended: Vec<(i64, String)> = c
        .rows(
            "UPDATE user_login_sessions s
                SET is_active = false, ended_at = now(), end_reason = 'account_expired'
               FROM users u LEFT JOIN users p ON p.id = u.parent_user_id
              WHERE s.user_id = u.id AND s.is_active
                AND (u.expires_at <= now() OR p.expires_at <= now())
          RETURNING s.user_id, s.session_token",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut users: Vec<i64> = ended.iter().map(|(u, _)| *u).collect();
    users.sort_unstable();
    users.dedup();
    if !users.is_empty() {
        c.exec(
            "UPDATE users SET current_session_token = NULL WHERE id = ANY($1)",
            &[&users],
        )
        .await?;
    }
    Ok(ended)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The presented refresh token was the current one; it is replaced by `new_jti`.
    Rotated,
    /// An older refresh token of an active session was presented: stolen and replayed, or raced.
    /// The session has been ended.
    Reused,
    /// The session is over (or belongs to someone else).
    Inactive,
}

/// Swap the session's refresh token, detecting reuse (inside the caller's transaction).
pub async fn rotate_refresh(
    tx: &impl Sql,
    token: &str,
    user_id: i64,
    presented_jti: &str,
    new_jti: &str,
) -> Result<Rotation, DbError> {
    let row = tx
        .maybe_row(
            "SELECT refresh_jti, is_active, (expires_at IS NULL OR expires_at > now())
               FROM user_login_sessions WHERE session_token = $1 AND user_id = $2 FOR UPDATE",
            &[&token, &user_id],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Rotation::Inactive);
    };
    let current: Option<String> = row.get(0);
    let active: bool = row.get(1);
    let unexpired: bool = row.get(2);
    if !active || !unexpired {
        return Ok(Rotation::Inactive);
    }
    if current.as_deref() != Some(presented_jti) {
        end(tx, token, "refresh_reuse").await?;
        return Ok(Rotation::Reused);
    }
    tx.exec(
        "UPDATE user_login_sessions SET refresh_jti = $2, last_activity_at = now() WHERE session_token = $1",
        &[&token, &new_jti],
    )
    .await?;
    Ok(Rotation::Rotated)
}
