//! What users change on their own account (`/auth/me`): the username, and the password, which
//! takes the current one as proof.

use serde_json::json;

use super::not_found;
use crate::auth::actor::Actor;
use crate::auth::audit::{self, Entry};
use crate::auth::password::Passwords;
use crate::auth::users::{self, UserView};
use crate::auth::values::{NewPassword, Username};
use crate::db::sql::{self, Sql};
use crate::domain::{DomainError, Work};

/// `PUT /auth/me`: change one's own username.
pub async fn rename_self(
    work: &mut Work<'_>,
    actor: &Actor,
    name: &Username,
) -> Result<(), DomainError> {
    actor.require_session()?;
    let Some(me) = actor.user() else {
        return Err(not_found());
    };
    let tx = work.tx();
    let taken = users::by_username(tx, name.as_str())
        .await?
        .is_some_and(|u| u.user.id != me.id);
    if taken {
        return Err(DomainError::conflict(
            "USERNAME_EXISTS",
            "This username is taken",
        ));
    }
    tx.exec(
        "UPDATE users SET username = $2, updated_at = now() WHERE id = $1",
        &[&me.id, &name.as_str()],
    )
    .await
    .map_err(|e| {
        if sql::is_unique_violation(&e) {
            DomainError::conflict("USERNAME_EXISTS", "This username is taken")
        } else {
            e.into()
        }
    })?;
    audit::write(
        tx,
        actor,
        Entry::new("user", "update", "修改用户名")
            .record("users", me.id)
            .changes(audit::diff(&[(
                "username",
                json!(me.username),
                json!(name.as_str()),
            )])),
    )
    .await?;
    work.effects().stale([me.id]);
    Ok(())
}

/// `PUT /auth/me/password`: the current password proves it is the user.
pub async fn change_own_password(
    work: &mut Work<'_>,
    actor: &Actor,
    passwords: &Passwords,
    current: &str,
    new: &NewPassword,
) -> Result<(), DomainError> {
    actor.require_session()?;
    let Some(me) = actor.user() else {
        return Err(not_found());
    };
    let stored = users::by_id(work.tx(), me.id)
        .await?
        .ok_or_else(|| DomainError::unauthenticated("AUTH_FAILED", "The user no longer exists"))?;
    if !passwords
        .verify(current, Some(&stored.user.password_hash))
        .await?
    {
        return Err(DomainError::rejected(
            "INVALID_PASSWORD",
            "The current password is wrong",
        ));
    }
    let hash = passwords.hash(new.expose()).await?;
    work.tx()
        .exec(
            "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
            &[&me.id, &hash],
        )
        .await?;
    audit::write(
        work.tx(),
        actor,
        Entry::new("user", "change_password", "修改密码").record("users", me.id),
    )
    .await?;
    Ok(())
}

/// The user's record for `/auth/me`, with the settings added by the caller.
pub async fn me(c: &impl Sql, user_id: i64) -> Result<UserView, DomainError> {
    users::by_id(c, user_id)
        .await?
        .ok_or_else(|| DomainError::unauthenticated("AUTH_FAILED", "The user no longer exists"))
}
