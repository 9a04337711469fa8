//! Clone identity: an admin acts as a main account for 30 minutes to help its seller
//! (`/auth/clone/{user_id}`, `/auth/clone/status`, `/auth/clone/restore`).
//!
//! A clone is a login session of the impersonated user (`user_login_sessions`) that records the
//! admin who opened it (`cloned_by`), its public id (`clone_id`) and the admin's own session it
//! came from (`clone_origin_session`). So the ordinary machinery applies to it unchanged —
//! revocation, the per-request session check, refresh rotation with reuse detection — and:
//!
//! - **one clone per admin**: opening a clone ends the admin's previous one, under a lock on the
//!   admin's row, so two parallel requests cannot leave two;
//! - **a hard deadline**: the session's `expires_at` is the clone's deadline. Every token of the
//!   clone expires at the deadline at the latest and carries it (`clone_expires_at`), which the
//!   per-request check enforces without leeway; refreshing a clone yields clone tokens again
//!   (the original's `/auth/refresh` turned them into a normal 7-day token of the seller), and
//!   after the deadline the session cannot be refreshed at all;
//! - **restrictions** (403 `CLONE_RESTRICTED`, see [`restricted`]): the original's `/system` and
//!   `/account-levels`, and what would outlive the clone or change the seller's own account —
//!   `/permissions`, `/api-keys` (a key would be a way past the deadline), the seller's password
//!   and username (`PUT /auth/me`, `PUT /auth/me/password`) — and opening another clone;
//! - **both identities in the audit log**: every audited action of a clone records the seller as
//!   `user_id`/`username` and the admin as `original_user_id`/`original_username`; every write
//!   request of a clone is audited (`module=clone`, `action=request`) before it runs;
//! - **restore** ends the clone and returns the admin's own session (a new token pair for it), if
//!   that session is still active; if the admin logged out or was replaced meanwhile, the admin
//!   logs in again — a clone token never mints a fresh admin session.
//!
//! The seller's own logins do not end a clone (the single-session rule skips clone sessions);
//! the admin logging out of the session the clone was opened from, deactivating the seller or
//! the admin, or resetting either's password, ends it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use http::Method;
use serde_json::{Value, json};

use super::actor::Actor;
use super::audit::{self, Entry};
use super::current_user::CloneOf;
use super::login::{self, Tokens, blocked_error};
use super::roles::Role;
use super::sessions;
use super::tokens::new_jti;
use super::users::{self, UserView};
use super::{Auth, CurrentUser, Via};
use crate::db::sql::Sql;
use crate::domain::{DomainError, Work};

/// How long a clone lasts (the original's 1800 s).
pub const CLONE_TTL: Duration = Duration::from_secs(30 * 60);

fn restricted_error() -> DomainError {
    DomainError::denied(
        "CLONE_RESTRICTED",
        "Not while acting as another account: restore your own identity first",
    )
}

/// Whether a clone may not call `method path` (relative to the API prefix).
pub fn restricted(method: &Method, path: &str) -> bool {
    let under = |prefix: &str| {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    if path == "/auth/clone/status" || path == "/auth/clone/restore" {
        return false;
    }
    under("/system")
        || under("/account-levels")
        || under("/permissions")
        || under("/api-keys")
        || under("/auth/clone")
        || (method == Method::PUT && (path == "/auth/me" || path == "/auth/me/password"))
}

/// The clone behind a session, when it is one.
pub enum Found {
    Valid(CloneOf),
    /// The admin who opened it is no longer an active admin.
    AdminGone,
}

/// Whether a session is a clone, and whose.
pub async fn of_session(c: &impl Sql, session_token: &str) -> Result<Option<Found>, DomainError> {
    let row = c
        .maybe_row(
            "SELECT s.clone_id::text, a.id, a.username, s.expires_at, a.is_active AND a.role = 'admin'
               FROM user_login_sessions s JOIN users a ON a.id = s.cloned_by
              WHERE s.session_token = $1",
            &[&session_token],
        )
        .await?;
    let Some(r) = row else {
        return Ok(None);
    };
    if !r.get::<_, bool>(4) {
        return Ok(Some(Found::AdminGone));
    }
    let expires: Option<DateTime<Utc>> = r.get(3);
    Ok(Some(Found::Valid(CloneOf {
        session_id: r.get::<_, Option<String>>(0).unwrap_or_default(),
        admin_id: r.get(1),
        admin_username: r.get(2),
        expires_at: expires.map(|e| e.timestamp().max(0) as u64).unwrap_or(0),
    })))
}

fn user_info(v: &UserView) -> Value {
    json!({
        "id": v.user.id,
        "username": v.user.username,
        "role": v.user.role.as_str(),
        "shop_ids": v.shop_ids,
    })
}

fn session_json(original: &UserView, cloned: &UserView, clone: &CloneOf) -> Value {
    let expires = DateTime::<Utc>::from_timestamp(clone.expires_at as i64, 0);
    json!({
        "session_id": clone.session_id,
        "original_user": user_info(original),
        "cloned_user": user_info(cloned),
        "expires_at": expires,
        "remaining_seconds": clone.expires_at.saturating_sub(super::tokens::now_s()),
    })
}

/// `POST /auth/clone/{user_id}`: open a clone of a main account for the acting admin; the clone's
/// tokens and its description (`clone_session`). The caller commits and applies the effects.
pub async fn start(
    auth: &Auth,
    work: &mut Work<'_>,
    actor: &Actor,
    admin_session: &str,
    target_id: i64,
) -> Result<(Tokens, Value), DomainError> {
    actor.require_session()?;
    actor.require_role(Role::Admin)?;
    if actor.cloned_by().is_some() {
        return Err(restricted_error());
    }
    let Some(admin) = actor.user() else {
        return Err(DomainError::denied(
            "INSUFFICIENT_PERMISSIONS",
            "Log in as an admin",
        ));
    };
    let tx = work.tx();
    // One clone per admin: parallel starts by the same admin queue here.
    tx.exec("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&admin.id])
        .await?;
    let admin_view = users::by_id(tx, admin.id).await?.ok_or_else(|| {
        DomainError::unauthenticated("USER_NOT_FOUND", "The user no longer exists")
    })?;
    let target = users::by_id(tx, target_id)
        .await?
        .ok_or_else(|| DomainError::not_found("USER_NOT_FOUND", "No such user"))?;
    if target.user.role != Role::MainAccount {
        return Err(DomainError::rejected(
            "INVALID_CLONE_TARGET",
            "Only main accounts can be cloned",
        ));
    }
    if let Some(b) = target.account_state().login_blocked(Utc::now()) {
        return Err(match blocked_error(b) {
            DomainError::Unauthenticated { message, .. } | DomainError::Denied { message, .. } => {
                DomainError::rejected("CLONE_TARGET_BLOCKED", message)
            }
            other => other,
        });
    }
    let replaced: Vec<(String, i64)> = tx
        .rows(
            "UPDATE user_login_sessions SET is_active = false, ended_at = now(), end_reason = 'clone_replaced'
              WHERE cloned_by = $1 AND is_active RETURNING session_token, user_id",
            &[&admin.id],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let session_token = sessions::new_session_token();
    let refresh_jti = new_jti();
    let clone_id = uuid::Uuid::new_v4().to_string();
    let row = tx
        .row(
            "INSERT INTO user_login_sessions (user_id, session_token, ip_address, user_agent, refresh_jti,
                                              expires_at, cloned_by, clone_id, clone_origin_session)
             VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6), $7, $8::text::uuid, $9)
             RETURNING expires_at",
            &[
                &target.user.id,
                &session_token,
                &actor.origin.ip.map(|i| i.to_string()),
                &actor.origin.user_agent,
                &refresh_jti,
                &(CLONE_TTL.as_secs() as f64),
                &admin.id,
                &clone_id,
                &admin_session,
            ],
        )
        .await?;
    let expires_at: DateTime<Utc> = row.get(0);
    let clone = CloneOf {
        session_id: clone_id.clone(),
        admin_id: admin.id,
        admin_username: admin.username.clone(),
        expires_at: expires_at.timestamp().max(0) as u64,
    };
    audit::write(
        tx,
        actor,
        Entry::new("clone", "start", "克隆身份")
            .record("users", target.user.id)
            .changes(json!({
                "cloned_user_id": target.user.id,
                "cloned_username": target.user.username,
                "clone_session_id": clone.session_id,
                "expires_at": expires_at,
            }))
            .notes(if replaced.is_empty() {
                "clone opened".to_owned()
            } else {
                "clone opened; the previous clone was ended".to_owned()
            }),
    )
    .await?;
    for (token, user_id) in replaced {
        work.effects()
            .end_sessions(user_id, vec![token], "clone_replaced");
    }
    work.effects().started_sessions.push(session_token.clone());
    let codes = login::codes_for(auth, target.user.role).await?;
    let tokens = login::issue(
        auth,
        &target,
        &session_token,
        &refresh_jti,
        codes,
        Some(&clone),
    )?;
    Ok((tokens, session_json(&admin_view, &target, &clone)))
}

/// `GET /auth/clone/status`.
pub async fn status(c: &impl Sql, user: &CurrentUser) -> Result<Value, DomainError> {
    let Some(clone) = &user.clone else {
        return Ok(json!({"is_cloned": false}));
    };
    let admin = users::by_id(c, clone.admin_id).await?;
    let cloned = users::by_id(c, user.id).await?;
    let (Some(admin), Some(cloned)) = (admin, cloned) else {
        return Ok(json!({"is_cloned": false}));
    };
    let mut v = session_json(&admin, &cloned, clone);
    v["is_cloned"] = json!(true);
    Ok(v)
}

/// What restoring gave.
pub enum Restored {
    /// The admin's own session, with a new token pair.
    Back(Tokens, Box<UserView>),
    /// The clone is over, but the admin's own session is not there to return to (ended, or the
    /// account may not log in): the error to answer, after committing.
    Ended(DomainError),
}

/// `POST /auth/clone/restore`: end the clone and return the admin's own session — new tokens for
/// it and the admin's user view. The caller commits and applies the effects in both outcomes,
/// then revokes the clone's access token.
pub async fn restore(
    auth: &Auth,
    work: &mut Work<'_>,
    user: &CurrentUser,
    actor: &Actor,
) -> Result<Restored, DomainError> {
    let Some(clone) = &user.clone else {
        return Err(DomainError::rejected(
            "NOT_CLONED",
            "This token is not a clone: there is nothing to restore",
        ));
    };
    let Via::Session {
        session_token: Some(clone_token),
        ..
    } = &user.via
    else {
        return Err(DomainError::rejected(
            "NOT_CLONED",
            "This token is not a clone",
        ));
    };
    let tx = work.tx();
    let origin: Option<String> = tx
        .maybe_row(
            "SELECT clone_origin_session FROM user_login_sessions
              WHERE session_token = $1 AND cloned_by = $2 FOR UPDATE",
            &[clone_token, &clone.admin_id],
        )
        .await?
        .and_then(|r| r.get(0));
    sessions::end(tx, clone_token, "clone_restored").await?;
    audit::write(
        tx,
        actor,
        Entry::new("clone", "restore", "恢复身份")
            .record("users", user.id)
            .notes(format!("clone {} ended", clone.session_id)),
    )
    .await?;
    work.effects()
        .end_sessions(user.id, vec![clone_token.clone()], "clone_restored");
    let tx = work.tx();
    let own_session_ended = || {
        DomainError::unauthenticated(
            "SESSION_EXPIRED",
            "The clone has ended, but your own session ended meanwhile; log in again",
        )
    };
    let Some(origin) = origin else {
        return Ok(Restored::Ended(own_session_ended()));
    };
    let active = tx
        .maybe_row(
            "SELECT 1 FROM user_login_sessions
              WHERE session_token = $1 AND user_id = $2 AND is_active
                AND (expires_at IS NULL OR expires_at > now()) FOR UPDATE",
            &[&origin, &clone.admin_id],
        )
        .await?
        .is_some();
    if !active {
        return Ok(Restored::Ended(own_session_ended()));
    }
    let Some(admin) = users::by_id(tx, clone.admin_id).await? else {
        return Ok(Restored::Ended(own_session_ended()));
    };
    if admin.user.role != Role::Admin {
        return Ok(Restored::Ended(own_session_ended()));
    }
    if let Some(b) = admin.account_state().login_blocked(Utc::now()) {
        return Ok(Restored::Ended(blocked_error(b)));
    }
    let jti = new_jti();
    tx.exec(
        "UPDATE user_login_sessions SET refresh_jti = $2, last_activity_at = now() WHERE session_token = $1",
        &[&origin, &jti],
    )
    .await?;
    let codes = login::codes_for(auth, admin.user.role).await?;
    let tokens = login::issue(auth, &admin, &origin, &jti, codes, None)?;
    Ok(Restored::Back(tokens, Box::new(admin)))
}

/// End the clones opened from an admin's session (the admin logs out: nothing opened from that
/// login outlives it). Returns the ended sessions' (token, user id).
pub async fn end_opened_from(
    c: &impl Sql,
    admin_session: &str,
) -> Result<Vec<(String, i64)>, DomainError> {
    Ok(c.rows(
        "UPDATE user_login_sessions SET is_active = false, ended_at = now(), end_reason = 'clone_admin_logout'
          WHERE clone_origin_session = $1 AND is_active RETURNING session_token, user_id",
        &[&admin_session],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect())
}

/// Record a clone's write request before it runs (both identities), so even an action no
/// service audits leaves a trace.
pub async fn audit_request(
    c: &impl Sql,
    actor: &Actor,
    method: &Method,
    path: &str,
) -> Result<(), DomainError> {
    let path: String = path.chars().take(300).collect();
    audit::write(
        c,
        actor,
        Entry::new("clone", "request", "克隆操作").notes(format!("{method} {path}")),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restrictions() {
        for (m, p) in [
            (Method::GET, "/system/info"),
            (Method::GET, "/account-levels"),
            (Method::PUT, "/account-levels/3"),
            (Method::GET, "/permissions/roles"),
            (Method::POST, "/api-keys/"),
            (Method::POST, "/auth/clone/7"),
            (Method::PUT, "/auth/me/password"),
            (Method::PUT, "/auth/me"),
        ] {
            assert!(restricted(&m, p), "{m} {p}");
        }
        for (m, p) in [
            (Method::GET, "/auth/me"),
            (Method::GET, "/auth/clone/status"),
            (Method::POST, "/auth/clone/restore"),
            (Method::GET, "/ozon/shops"),
            (Method::GET, "/systemx"),
            (Method::POST, "/auth/logout"),
        ] {
            assert!(!restricted(&m, p), "{m} {p}");
        }
    }
}
