//! Logging in, refreshing tokens and logging out: the session life cycle behind `/auth/login`,
//! `/auth/refresh` and `/auth/logout`.
//!
//! A login costs two database round trips: one statement reads the user with everything the
//! checks and the response need (`users::VIEW`), and one statement starts the session — ending
//! the user's other sessions under the single-session rule, recording the login on the user and
//! writing the audit row, atomically. No database connection is held while the password is
//! checked.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use super::actor::{Actor, Origin, UserActor, Who};
use super::audit::{self, Entry};
use super::captcha;
use super::clone;
use super::current_user::CloneOf;
use super::password::{self, needs_upgrade};
use super::roles::{Blocked, Role};
use super::sessions::{self, Rotation};
use super::tokens::{AccessClaims, RefreshClaims, new_jti, now_s};
use super::users::{self, UserView};
use super::{Auth, CurrentUser, Via};
use crate::db::sql::Sql;
use crate::domain::{Checks, DomainError, Work};

const MAX_IDENTIFIER: usize = 50;

fn invalid_credentials() -> DomainError {
    DomainError::unauthenticated("INVALID_CREDENTIALS", "Wrong username or password")
}

fn session_ended() -> DomainError {
    DomainError::unauthenticated(
        "SESSION_EXPIRED",
        "This session has ended: you logged in elsewhere or logged out",
    )
}

/// A refused login or refresh for the account's state.
pub fn blocked_error(b: Blocked) -> DomainError {
    match b {
        Blocked::Inactive => DomainError::unauthenticated("USER_INACTIVE", b.message()),
        _ => DomainError::denied("ACCOUNT_DISABLED", b.message()),
    }
}

fn locked(wait: Duration) -> DomainError {
    let secs = wait.as_secs().max(1);
    DomainError::Throttled {
        code: "RATE_LIMIT_EXCEEDED",
        message: format!("Too many failed logins; try again in {secs} seconds").into(),
        retry_after_s: secs,
    }
}

/// The answer to a login while the password-check queue is full (also given at the door, by
/// `api::middleware::login_gate`).
pub fn busy() -> DomainError {
    DomainError::Unavailable {
        code: "LOGIN_BUSY",
        message: "Too many logins are being checked right now; try again in a few seconds".into(),
        retry_after_s: 2,
    }
}

/// What the login form sends.
#[derive(Debug, serde::Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Checked only with `EF__LOGIN_CAPTCHA=true`; the web app always sends it.
    #[serde(default)]
    pub captcha_token: Option<String>,
}

/// An access and a refresh token for one session.
#[derive(Debug)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

impl Tokens {
    pub fn to_json(&self) -> Value {
        json!({
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
        })
    }
}

/// Mint an access token and a refresh token for a session, carrying `permissions` (the role's
/// codes, see `auth::permissions`). A clone's tokens carry its claims and never outlive its
/// deadline: the access token expires at the earlier of its lifetime and the deadline, the
/// refresh token at the deadline.
pub fn issue(
    auth: &Auth,
    view: &UserView,
    session_token: &str,
    refresh_jti: &str,
    permissions: Vec<String>,
    clone: Option<&CloneOf>,
) -> Result<Tokens, DomainError> {
    let keys = &auth.keys;
    let user = &view.user;
    let now = now_s();
    let admin = user.role == Role::Admin;
    let mut access_exp = now + keys.access_ttl.as_secs();
    let mut refresh_exp = now + keys.refresh_ttl.as_secs();
    if let Some(c) = clone {
        access_exp = access_exp.min(c.expires_at);
        refresh_exp = refresh_exp.min(c.expires_at);
    }
    let access = AccessClaims {
        sub: user.id.to_string(),
        username: user.username.clone(),
        role: user.role.as_str().to_owned(),
        permissions,
        shop_id: user
            .primary_shop_id
            .or_else(|| view.shop_ids.first().copied()),
        shop_ids: if admin {
            None
        } else {
            Some(view.shop_ids.clone())
        },
        session_token: Some(session_token.to_owned()),
        kind: "access".into(),
        jti: new_jti(),
        exp: access_exp,
        iat: now,
        is_cloned: clone.map(|_| true),
        clone_session_id: clone.map(|c| c.session_id.clone()),
        original_user_id: clone.map(|c| c.admin_id),
        original_username: clone.map(|c| c.admin_username.clone()),
        clone_expires_at: clone.map(|c| c.expires_at),
    };
    let refresh = RefreshClaims {
        sub: user.id.to_string(),
        session_token: session_token.to_owned(),
        kind: "refresh".into(),
        jti: refresh_jti.to_owned(),
        exp: refresh_exp,
        iat: now,
    };
    Ok(Tokens {
        access_token: keys.sign(&access)?,
        refresh_token: keys.sign(&refresh)?,
        expires_in: access_exp.saturating_sub(now),
    })
}

/// The permission codes a role's tokens carry now.
pub async fn codes_for(auth: &Auth, role: Role) -> Result<Vec<String>, DomainError> {
    Ok(auth.permissions.snapshot().await?.codes_of(role.as_str()))
}

/// The actor a user is once their password is checked (for the login's audit row).
fn as_actor(view: &UserView, origin: &Origin) -> Actor {
    Actor {
        who: Who::User(UserActor {
            id: view.user.id,
            username: view.user.username.clone(),
            role: view.user.role,
            parent_user_id: view.user.parent_user_id,
            expires_at: view.user.expires_at,
            via_api_key: false,
            shop_ids: None,
            cloned_by: None,
        }),
        origin: origin.clone(),
    }
}

/// Start a session in one statement: end the user's other sessions (single-session rule),
/// insert the new one, record the login on the user, write the audit row. Returns the ended
/// sessions' tokens and the new `last_login_at`.
const START_SESSION: &str = "WITH ended AS (
        UPDATE user_login_sessions SET is_active = false, ended_at = now(), end_reason = 'replaced'
         WHERE $7 AND user_id = $1 AND is_active AND cloned_by IS NULL RETURNING session_token
    ), started AS (
        INSERT INTO user_login_sessions (user_id, session_token, ip_address, user_agent, refresh_jti, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6)
    ), login AS (
        UPDATE users SET current_session_token = $2, last_login_at = now() WHERE id = $1
        RETURNING last_login_at
    ), audited AS (
        INSERT INTO audit_logs (user_id, username, module, action, action_display, table_name,
                                record_id, ip_address, user_agent, request_id, notes)
        SELECT $8, $9, 'user', 'login', '登录', 'users', $1::text, $10, $4, $11,
               CASE (SELECT count(*) FROM ended) WHEN 0 THEN 'new session'
                    ELSE format('new session; ended %s previous', (SELECT count(*) FROM ended)) END
    )
    SELECT (SELECT last_login_at FROM login), ARRAY(SELECT session_token FROM ended)";

/// Check the credentials and start a session: the tokens and the user.
pub async fn login(
    auth: &Auth,
    origin: &Origin,
    body: &Credentials,
) -> Result<(Tokens, UserView), DomainError> {
    Checks::new()
        .len_between(&body.username, "username", 1, MAX_IDENTIFIER)
        .check(
            body.password.len() <= password::MAX_BYTES,
            "password",
            "string_too_long",
            "may be at most 1024 bytes",
        )
        .finish()?;
    if auth.login_captcha {
        let token = body.captcha_token.as_deref().unwrap_or_default();
        if token.is_empty() {
            return Err(DomainError::rejected(
                "CAPTCHA_REQUIRED",
                "Solve the captcha first",
            ));
        }
        if !captcha::consume_token(&auth.redis, token).await? {
            return Err(DomainError::rejected(
                "CAPTCHA_INVALID",
                "The captcha has expired or was used; solve a new one",
            ));
        }
    }
    // A full password-check queue refuses at once, before any round trip (see
    // `Passwords::is_full`; the API checks at the door already, this is for the queue filling up
    // since). The place itself is taken below, once the attempt is reserved, so a locked address
    // still learns its wait (429) whenever the queue has room.
    if auth.passwords.is_full() {
        return Err(busy());
    }
    let identifier = body.username.trim();
    let ip = origin.ip_text();
    // The attempt is counted before the password is checked, atomically (see
    // `rate_limit::LoginLimiter`): parallel guesses cannot slip past the limit.
    let attempt = auth
        .login_limiter
        .reserve(&ip, identifier)
        .await
        .map_err(locked)?;

    // A place in the password-check queue before anything else costs: when it is full, the
    // login is refused at once, holding no database connection and no request for seconds.
    let Some(ticket) = auth.passwords.admit() else {
        auth.login_limiter.give_back(&attempt).await;
        return Err(busy());
    };
    // The connection goes back to the pool before the (deliberately slow) password check and
    // the failure floor.
    let view = async {
        let client = auth.db.get().await?;
        users::by_login(&client, identifier).await
    }
    .await;
    let view = match view {
        Ok(v) => v,
        Err(e) => {
            auth.login_limiter.give_back(&attempt).await;
            return Err(e.into());
        }
    };
    let ok = match auth
        .passwords
        .verify_admitted(
            ticket,
            &body.password,
            view.as_ref().map(|v| v.user.password_hash.as_str()),
        )
        .await
    {
        Ok(ok) => ok,
        Err(e) => {
            auth.login_limiter.give_back(&attempt).await;
            return Err(e.into());
        }
    };
    let Some(mut view) = view.filter(|_| ok) else {
        let lock = auth.login_limiter.failed(&attempt).await;
        let client = auth.db.get().await?;
        audit::write(
            &client,
            &Actor::anonymous(origin.clone()),
            Entry::new("user", "login_failed", "登录失败").notes(format!(
                "identifier {:?}",
                identifier.chars().take(MAX_IDENTIFIER).collect::<String>()
            )),
        )
        .await?;
        return Err(match lock {
            Some(wait) => locked(wait),
            None => invalid_credentials(),
        });
    };
    // The password was right: whatever the account's state, this address knows it.
    auth.login_limiter.succeeded(&attempt).await;
    if let Some(b) = view.account_state().login_blocked(Utc::now()) {
        return Err(blocked_error(b));
    }

    // A bcrypt hash from the original is replaced by argon2id now that we know the password.
    let upgraded = if needs_upgrade(&view.user.password_hash, auth.passwords.scheme()) {
        Some(auth.passwords.hash(&body.password).await?)
    } else {
        None
    };

    let refresh_jti = new_jti();
    let session_token = sessions::new_session_token();
    let expires_at = Utc::now()
        + chrono::Duration::from_std(auth.keys.refresh_ttl).unwrap_or(chrono::Duration::days(7));
    let actor = as_actor(&view, origin);
    let (audit_user, audit_name) = actor.audit_identity();
    let client = auth.db.get().await?;
    if let Some(new_hash) = upgraded {
        client
            .exec(
                "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1 AND password_hash = $3",
                &[&view.user.id, &new_hash, &view.user.password_hash],
            )
            .await?;
        tracing::info!(
            user_id = view.user.id,
            "upgraded a bcrypt password hash to argon2id"
        );
    }
    let row = client
        .row(
            START_SESSION,
            &[
                &view.user.id,
                &session_token,
                &origin.ip.map(|i| i.to_string()),
                &origin.user_agent,
                &refresh_jti,
                &expires_at,
                &auth.single_session,
                &audit_user.and_then(|id| i32::try_from(id).ok()),
                &audit_name,
                &origin.ip,
                &origin.request_id,
            ],
        )
        .await?;
    drop(client);
    view.user.last_login_at = row.get(0);
    let ended: Vec<String> = row.get(1);
    let mut effects = crate::domain::Effects::default();
    effects.end_sessions(view.user.id, ended, "replaced");
    effects.started_sessions.push(session_token.clone());
    effects.stale([view.user.id]);
    auth.apply(effects).await;
    auth.store
        .mark_session_of(view.user.id, &session_token)
        .await;

    let codes = codes_for(auth, view.user.role).await?;
    let tokens = issue(auth, &view, &session_token, &refresh_jti, codes, None)?;
    Ok((tokens, view))
}

/// A new pair for a current refresh token. Presenting an already-used refresh token ends the
/// whole session (someone replayed a stolen token, or raced).
pub async fn refresh(
    auth: &Auth,
    origin: &Origin,
    refresh_token: &str,
) -> Result<Tokens, DomainError> {
    let claims = auth
        .keys
        .verify_refresh(refresh_token)
        .map_err(|e| DomainError::unauthenticated(e.code(), e.to_string()))?;
    // No early exit on the revocation list: a revoked (already rotated) refresh token must reach
    // the rotation below, which recognises the replay and ends the session.
    let user_id: i64 = claims
        .sub
        .parse()
        .map_err(|_| DomainError::unauthenticated("INVALID_TOKEN", "The token is invalid"))?;
    let mut client = auth.db.get().await?;
    let mut work = Work::begin(&mut client).await?;
    let new_jti = new_jti();
    let rotation = sessions::rotate_refresh(
        work.tx(),
        &claims.session_token,
        user_id,
        &claims.jti,
        &new_jti,
    )
    .await?;
    match rotation {
        Rotation::Rotated => {}
        Rotation::Inactive => return Err(session_ended()),
        Rotation::Reused => {
            let actor = Actor {
                who: Who::Claimed { user_id },
                origin: origin.clone(),
            };
            audit::write(
                work.tx(),
                &actor,
                Entry::new("user", "refresh_reuse", "刷新令牌重复使用")
                    .record(
                        "user_login_sessions",
                        claims.session_token.chars().take(8).collect::<String>(),
                    )
                    .notes("an already-used refresh token was presented; the session was ended"),
            )
            .await?;
            work.effects().end_sessions(
                user_id,
                vec![claims.session_token.clone()],
                "refresh_reuse",
            );
            let effects = work.commit().await?;
            auth.apply(effects).await;
            tracing::warn!(user_id, "refresh token reuse: session ended");
            return Err(DomainError::unauthenticated(
                "SESSION_EXPIRED",
                "This refresh token was already used; the session has been ended for safety. Log in again.",
            ));
        }
    }
    let Some(view) = users::by_id(work.tx(), user_id).await? else {
        return Err(DomainError::unauthenticated(
            "USER_NOT_FOUND",
            "The user no longer exists",
        ));
    };
    // The original never re-checked the account on refresh; a disabled user kept minting tokens.
    if let Some(b) = view.account_state().login_blocked(Utc::now()) {
        sessions::end(work.tx(), &claims.session_token, "account_blocked").await?;
        work.effects().end_sessions(
            user_id,
            vec![claims.session_token.clone()],
            "account_blocked",
        );
        let effects = work.commit().await?;
        auth.apply(effects).await;
        return Err(blocked_error(b));
    }
    // A clone's refresh stays a clone (the original's escape: it minted an ordinary 7-day token
    // for the impersonated user), bounded by the clone's deadline, and only while its admin is
    // still an active admin.
    let clone = match clone::of_session(work.tx(), &claims.session_token).await? {
        None => None,
        Some(clone::Found::Valid(c)) => Some(c),
        Some(clone::Found::AdminGone) => {
            sessions::end(work.tx(), &claims.session_token, "clone_admin_gone").await?;
            work.effects().end_sessions(
                user_id,
                vec![claims.session_token.clone()],
                "clone_admin_gone",
            );
            let effects = work.commit().await?;
            auth.apply(effects).await;
            return Err(session_ended());
        }
    };
    let effects = work.commit().await?;
    drop(client);
    auth.apply(effects).await;
    auth.store.revoke(&claims.jti, claims.exp).await;
    let codes = codes_for(auth, view.user.role).await?;
    issue(
        auth,
        &view,
        &claims.session_token,
        &new_jti,
        codes,
        clone.as_ref(),
    )
}

/// Revoke the access token (and the refresh token when it belongs to the same session) and end
/// the session — the original only blacklisted the tokens and left the session alive.
pub async fn logout(
    auth: &Auth,
    user: &CurrentUser,
    origin: &Origin,
    refresh_token: Option<&str>,
) -> Result<(), DomainError> {
    let Via::Session {
        session_token,
        jti,
        exp,
    } = &user.via
    else {
        return Err(DomainError::denied(
            "API_KEY_NOT_ALLOWED",
            "API keys do not log in or out",
        ));
    };
    auth.store.revoke(jti, *exp).await;
    if let Some(rt) = refresh_token
        && let Ok(rc) = auth.keys.verify_refresh(rt)
        && Some(&rc.session_token) == session_token.as_ref()
    {
        auth.store.revoke(&rc.jti, rc.exp).await;
    }
    if let Some(token) = session_token {
        let mut client = auth.db.get().await?;
        let mut work = Work::begin(&mut client).await?;
        sessions::end(work.tx(), token, "logout").await?;
        for (clone_token, clone_user) in clone::end_opened_from(work.tx(), token).await? {
            work.effects()
                .end_sessions(clone_user, vec![clone_token], "clone_admin_logout");
        }
        audit::write(
            work.tx(),
            &user.actor(origin),
            Entry::new("user", "logout", "退出登录").record("users", user.id),
        )
        .await?;
        work.effects()
            .end_sessions(user.id, vec![token.clone()], "logout");
        let effects = work.commit().await?;
        auth.apply(effects).await;
    }
    Ok(())
}
