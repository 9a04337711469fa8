//! The account service: creating, changing, resetting, disabling, deleting and listing users.
//! The API (`api::users`, `api::auth`'s `/me` routes), the CLI (`ops::users`) and the first-admin
//! bootstrap all come here, so there is one way to insert a user, one way to hash a password
//! (`Passwords`, behind its semaphore) and one rule for who sees whom.
//!
//! Each function takes a [`Work`] (the transaction, with the effects a commit must publish) or a
//! client, and the [`Actor`]; it checks the input's rules and the actor's rights (`roles`),
//! writes its audit row in the same transaction, and returns a [`DomainError`]. Sessions that a
//! change ends and cached states it makes stale are recorded in the work's effects, applied
//! after the commit (`Auth::apply`). This is the shape the other domain services copy.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::actor::Actor;
use super::audit::{self, Entry};
use super::password::Passwords;
use super::roles::{self, AccountStatus, Denied, Role};
use super::sessions;
use super::users::{self, UserView};
use super::values::{NewPassword, Phone, Username};
use crate::db::sql::{self, Sql};
use crate::db::{DbError, Transaction};
use crate::domain::{DomainError, Work};

/// `GET /auth/users` returns at most this many users.
pub const MAX_LISTED: i64 = 5000;
pub const MAX_SHOPS_PER_USER: usize = 1000;

mod own;
mod quota;

pub use own::{change_own_password, me, rename_self};
pub use quota::{Quota, quota};

fn not_found() -> DomainError {
    DomainError::not_found("USER_NOT_FOUND", "No such user")
}

/// Whether `me` may know that `target` exists: admins see everyone, others themselves, their
/// children and their parent. For anyone else a user route answers 404 as for a missing id (a
/// 403 told a non-admin which ids exist).
fn visible(me: roles::Party<'_>, target: roles::Party<'_>) -> bool {
    me.role == Role::Admin
        || me.id == target.id
        || target.parent_user_id == Some(me.id)
        || me.parent_user_id == Some(target.id)
}

impl From<Denied> for DomainError {
    fn from(d: Denied) -> Self {
        DomainError::denied(d.code(), d.message())
    }
}

/// A new account, parsed.
#[derive(Debug)]
pub struct NewAccount {
    pub username: Username,
    pub password: NewPassword,
    pub phone: Option<Phone>,
    pub role: Role,
    pub is_active: bool,
    pub account_status: AccountStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub primary_shop_id: Option<i64>,
    pub shop_ids: Option<Vec<i64>>,
    /// `None`: admins get `["*"]`, everyone else nothing.
    pub permissions: Option<Vec<String>>,
    /// `None`: main accounts get the default level.
    pub account_level_id: Option<i64>,
    /// Admins (and the operator) may put a sub-account or shipper under a main account; a main
    /// account's children are always its own.
    pub parent_user_id: Option<i64>,
}

impl NewAccount {
    /// An account with the defaults, for the CLI and the bootstrap.
    pub fn basic(username: Username, password: NewPassword, role: Role) -> NewAccount {
        NewAccount {
            username,
            password,
            phone: None,
            role,
            is_active: true,
            account_status: AccountStatus::Active,
            expires_at: None,
            primary_shop_id: None,
            shop_ids: None,
            permissions: None,
            account_level_id: None,
            parent_user_id: None,
        }
    }
}

/// The users `actor` may see (admins all, main accounts themselves and their children, others
/// themselves), in one statement.
pub async fn list(c: &impl Sql, actor: &Actor) -> Result<Vec<UserView>, DomainError> {
    actor.require_session()?;
    let Some(me) = actor.user() else {
        return Err(DomainError::denied(
            "INSUFFICIENT_PERMISSIONS",
            "Log in to list users",
        ));
    };
    Ok(users::visible_to(c, me.id, me.role, MAX_LISTED).await?)
}

pub async fn get(c: &impl Sql, id: i64) -> Result<UserView, DomainError> {
    users::by_id(c, id).await?.ok_or_else(not_found)
}

fn unique_or(e: DbError) -> DomainError {
    if sql::violates(&e, "ix_users_phone") {
        DomainError::conflict("PHONE_EXISTS", "This phone number is taken")
    } else if sql::violates(&e, "users_primary_shop_id_fkey") {
        DomainError::rejected("SHOP_NOT_FOUND", "primary_shop_id does not name a shop")
    } else if sql::is_foreign_key_violation(&e) {
        DomainError::rejected("LEVEL_NOT_FOUND", "account_level_id does not name a level")
    } else if sql::is_unique_violation(&e) {
        DomainError::conflict("USERNAME_EXISTS", "This username is taken")
    } else {
        e.into()
    }
}

fn admin_only_field(
    actor: &Actor,
    set: bool,
    code: &'static str,
    msg: &'static str,
) -> Result<(), DomainError> {
    if set && !actor.is_admin() && !actor.is_operator() {
        return Err(DomainError::denied(code, msg));
    }
    Ok(())
}

/// Create a user; returns its id.
pub async fn create(
    work: &mut Work<'_>,
    actor: &Actor,
    passwords: &Passwords,
    new: NewAccount,
) -> Result<i64, DomainError> {
    actor.require_session()?;
    if let Some(me) = actor.party() {
        roles::may_create(me, new.role)?;
    }
    admin_only_field(
        actor,
        new.phone.is_some(),
        "PHONE_ADMIN_ONLY",
        "Only admins may set a phone number",
    )?;
    admin_only_field(
        actor,
        new.account_level_id.is_some(),
        "INSUFFICIENT_PERMISSIONS",
        "Only admins may assign account levels",
    )?;
    let tx = work.tx();
    let parent_id = match actor.user() {
        Some(me) if me.role == Role::MainAccount => Some(me.id),
        _ => new.parent_user_id,
    };
    // A sub-account inherits its main account's state, level and shops: without one it would
    // inherit from nobody (the original's CLI made such accounts, and the UI named a parent that
    // did not exist).
    if new.role == Role::SubAccount && parent_id.is_none() {
        return Err(DomainError::rejected(
            "PARENT_REQUIRED",
            "A sub-account belongs to a main account: give parent_user_id (CLI: --parent <main account>)",
        ));
    }
    if let Some(pid) = parent_id {
        check_parent(tx, pid, new.role, new.expires_at).await?;
    }
    let hash = passwords.hash(new.password.expose()).await?;
    let permissions = json!(new.permissions.unwrap_or_else(|| {
        if new.role == Role::Admin {
            vec!["*".to_owned()]
        } else {
            Vec::new()
        }
    }));
    let id: i64 = tx
        .row(
            "INSERT INTO users (username, password_hash, phone, role, is_active, account_status,
                                expires_at, parent_user_id, primary_shop_id, permissions, account_level_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                     COALESCE($11, CASE WHEN $4::varchar = 'main_account'
                                        THEN (SELECT id FROM account_levels WHERE is_default LIMIT 1) END))
             RETURNING id",
            &[
                &new.username.as_str(),
                &hash,
                &new.phone.as_ref().map(Phone::as_str),
                &new.role.as_str(),
                &new.is_active,
                &new.account_status.as_str(),
                &new.expires_at,
                &parent_id,
                &new.primary_shop_id,
                &permissions,
                &new.account_level_id,
            ],
        )
        .await
        .map_err(unique_or)?
        .get(0);
    set_shops(tx, actor, id, new.shop_ids.as_deref()).await?;
    audit::write(
        tx,
        actor,
        Entry::new("user", "create", "创建用户")
            .record("users", id)
            .changes(json!({"username": new.username.as_str(), "role": new.role.as_str(), "parent_user_id": parent_id})),
    )
    .await?;
    Ok(id)
}

/// A new child of `parent_id` must have a main account as parent, not be a main account itself,
/// not outlive the parent, and fit the parent's level quota (serialised on the parent's row).
async fn check_parent(
    tx: &Transaction<'_>,
    parent_id: i64,
    role: Role,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(), DomainError> {
    let row = tx
        .maybe_row(
            "SELECT p.role, p.expires_at,
                    (SELECT count(*) FROM users WHERE parent_user_id = p.id),
                    (SELECT max_sub_accounts FROM account_levels WHERE id = p.account_level_id)
               FROM users p WHERE p.id = $1 FOR UPDATE",
            &[&parent_id],
        )
        .await?
        .ok_or_else(|| {
            DomainError::rejected("PARENT_NOT_FOUND", "parent_user_id does not name a user")
        })?;
    if Role::parse(row.get::<_, &str>(0)) != Some(Role::MainAccount) {
        return Err(DomainError::rejected(
            "INVALID_PARENT",
            "A parent must be a main account",
        ));
    }
    if role == Role::MainAccount {
        return Err(DomainError::rejected(
            "INVALID_PARENT",
            "A main account has no parent",
        ));
    }
    let parent_expiry: Option<DateTime<Utc>> = row.get(1);
    if let (Some(mine), Some(theirs)) = (expires_at, parent_expiry)
        && mine > theirs
    {
        return Err(DomainError::rejected(
            "EXPIRES_AT_EXCEEDS_MAIN_ACCOUNT",
            "A sub-account cannot expire after its main account",
        ));
    }
    let children: i64 = row.get(2);
    let quota: Option<i32> = row.get(3);
    if let Some(q) = quota
        && children >= i64::from(q)
    {
        return Err(DomainError::rejected(
            "QUOTA_EXCEEDED",
            format!("The account level allows {q} sub-accounts, all in use"),
        ));
    }
    Ok(())
}

/// Link `user_id` to exactly `shop_ids` (when given). Every shop must exist and be one the actor
/// may see (admins: any): a main account cannot hand its child another tenant's shop.
async fn set_shops(
    tx: &Transaction<'_>,
    actor: &Actor,
    user_id: i64,
    shop_ids: Option<&[i64]>,
) -> Result<(), DomainError> {
    let Some(ids) = shop_ids else { return Ok(()) };
    let allowed: Vec<i64> = if actor.is_admin() || actor.is_operator() {
        tx.rows("SELECT id FROM ozon_shops WHERE id = ANY($1)", &[&ids])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        match actor.user() {
            Some(me) => users::shops_visible_to(tx, me.id).await?,
            None => Vec::new(),
        }
    };
    if let Some(bad) = ids.iter().find(|id| !allowed.contains(id)) {
        return Err(DomainError::rejected(
            "SHOP_NOT_FOUND",
            format!("shop {bad} does not exist or is not yours to assign"),
        ));
    }
    tx.exec("DELETE FROM user_shops WHERE user_id = $1", &[&user_id])
        .await?;
    tx.exec(
        "INSERT INTO user_shops (user_id, shop_id) SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING",
        &[&user_id, &ids],
    )
    .await?;
    Ok(())
}

/// Changes to an account; `None` leaves a field as it is. `phone: Some(None)` clears it.
#[derive(Debug, Default)]
pub struct AccountChanges {
    pub username: Option<Username>,
    pub phone: Option<Option<Phone>>,
    pub role: Option<Role>,
    pub is_active: Option<bool>,
    pub account_status: Option<AccountStatus>,
    /// `Some(None)` clears the expiry.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub primary_shop_id: Option<i64>,
    pub shop_ids: Option<Vec<i64>>,
    pub permissions: Option<Vec<String>>,
    pub account_level_id: Option<i64>,
}

/// Change another user's account (an admin, or the user's main account).
pub async fn update(
    work: &mut Work<'_>,
    actor: &Actor,
    id: i64,
    ch: AccountChanges,
) -> Result<(), DomainError> {
    actor.require_session()?;
    let target = users::by_id_for_update(work.tx(), id)
        .await?
        .ok_or_else(not_found)?
        .user;
    let me = actor.party();
    if let Some(me) = me {
        if !visible(me, target.party()) {
            return Err(not_found());
        }
        roles::may_manage(me, target.party())?;
    }
    let new_role = ch.role.unwrap_or(target.role);
    if new_role != target.role
        && let Some(me) = me
    {
        roles::may_assign_role(me, target.party(), new_role)?;
    }
    admin_only_field(
        actor,
        ch.phone.is_some(),
        "PHONE_ADMIN_ONLY",
        "Only admins may set a phone number",
    )?;
    admin_only_field(
        actor,
        ch.account_level_id.is_some(),
        "INSUFFICIENT_PERMISSIONS",
        "Only admins may change account levels",
    )?;
    let expires_at = ch.expires_at.unwrap_or(target.expires_at);
    if let Some(me) = actor.user()
        && me.role == Role::MainAccount
        && let (Some(mine), Some(theirs)) = (expires_at, me.expires_at)
        && mine > theirs
    {
        return Err(DomainError::rejected(
            "EXPIRES_AT_EXCEEDS_MAIN_ACCOUNT",
            "A sub-account cannot expire after its main account",
        ));
    }
    let username = ch
        .username
        .as_ref()
        .map(|u| u.as_str().to_owned())
        .unwrap_or_else(|| target.username.clone());
    let phone = match &ch.phone {
        Some(p) => p.as_ref().map(|p| p.as_str().to_owned()),
        None => target.phone.clone(),
    };
    let status = ch.account_status.unwrap_or(target.account_status);
    let is_active = ch.is_active.unwrap_or(target.is_active);
    let permissions = ch
        .permissions
        .as_ref()
        .map(|p| json!(p))
        .unwrap_or_else(|| target.permissions.clone());
    let level_id = ch.account_level_id.or(target.account_level_id);
    let primary_shop = ch.primary_shop_id.or(target.primary_shop_id);
    let tx = work.tx();
    tx.exec(
        "UPDATE users SET username = $2, phone = $3, role = $4, is_active = $5, account_status = $6,
                          expires_at = $7, permissions = $8, account_level_id = $9, primary_shop_id = $10,
                          updated_at = now()
          WHERE id = $1",
        &[&id, &username, &phone, &new_role.as_str(), &is_active, &status.as_str(), &expires_at, &permissions, &level_id, &primary_shop],
    )
    .await
    .map_err(unique_or)?;
    set_shops(tx, actor, id, ch.shop_ids.as_deref()).await?;
    let changes = audit::diff(&[
        ("username", json!(target.username), json!(username)),
        (
            "role",
            json!(target.role.as_str()),
            json!(new_role.as_str()),
        ),
        ("is_active", json!(target.is_active), json!(is_active)),
        (
            "account_status",
            json!(target.account_status.as_str()),
            json!(status.as_str()),
        ),
        ("expires_at", json!(target.expires_at), json!(expires_at)),
        (
            "account_level_id",
            json!(target.account_level_id),
            json!(level_id),
        ),
        (
            "permissions",
            target.permissions.clone(),
            permissions.clone(),
        ),
        ("phone_changed", json!(false), json!(phone != target.phone)),
    ]);
    audit::write(
        tx,
        actor,
        Entry::new("user", "update", "更新用户")
            .record("users", id)
            .changes(changes),
    )
    .await?;
    // Deactivating or disabling ends the user's sessions at once (the original let them go on
    // reading with their old tokens).
    if (!is_active && target.is_active)
        || (status == AccountStatus::Disabled && target.account_status != AccountStatus::Disabled)
    {
        let ended = sessions::end_all(tx, id, "account_disabled").await?;
        work.effects().end_sessions(id, ended, "account_disabled");
    }
    // Children inherit this account's state: their cached states are stale too.
    let children: Vec<i64> = work
        .tx()
        .rows("SELECT id FROM users WHERE parent_user_id = $1", &[&id])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    work.effects().stale(children.into_iter().chain([id]));
    Ok(())
}

/// Delete a user: audited first, then deleted (children go with it, as the original's foreign key
/// cascades); every session of every deleted user ends.
pub async fn delete(work: &mut Work<'_>, actor: &Actor, id: i64) -> Result<(), DomainError> {
    actor.require_session()?;
    let target = users::by_id_for_update(work.tx(), id)
        .await?
        .ok_or_else(not_found)?
        .user;
    if let Some(me) = actor.party() {
        if !visible(me, target.party()) {
            return Err(not_found());
        }
        roles::may_manage(me, target.party())?;
    }
    let tx = work.tx();
    let affected: Vec<i64> = tx
        .rows(
            "WITH RECURSIVE tree AS (SELECT id FROM users WHERE id = $1
                                     UNION SELECT u.id FROM users u JOIN tree t ON u.parent_user_id = t.id)
             SELECT id FROM tree",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let sessions: Vec<(i64, String)> = tx
        .rows(
            "SELECT user_id, session_token FROM user_login_sessions WHERE user_id = ANY($1) AND is_active",
            &[&affected],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    audit::write(
        tx,
        actor,
        Entry::new("user", "delete", "删除用户")
            .record("users", id)
            .changes(json!({"username": target.username, "role": target.role.as_str(), "deleted_user_ids": affected})),
    )
    .await?;
    tx.exec("DELETE FROM users WHERE id = $1", &[&id]).await?;
    for (user_id, token) in sessions {
        work.effects()
            .end_sessions(user_id, vec![token], "account_deleted");
    }
    work.effects().stale(affected);
    Ok(())
}

/// Set another user's password (`PATCH /auth/users/{id}/password`, `euraflow user passwd`); the
/// user's sessions end, so the new password is needed.
pub async fn reset_password(
    work: &mut Work<'_>,
    actor: &Actor,
    passwords: &Passwords,
    id: i64,
    password: &NewPassword,
) -> Result<usize, DomainError> {
    actor.require_session()?;
    let target = users::by_id_for_update(work.tx(), id)
        .await?
        .ok_or_else(not_found)?
        .user;
    if let Some(me) = actor.party() {
        if !visible(me, target.party()) {
            return Err(not_found());
        }
        roles::may_reset_password(me, target.party())?;
    }
    let hash = passwords.hash(password.expose()).await?;
    set_password(
        work,
        actor,
        id,
        &hash,
        "reset_password",
        "重置密码",
        "password_reset",
    )
    .await
}

/// Write a password hash, end the user's sessions, audit it.
async fn set_password(
    work: &mut Work<'_>,
    actor: &Actor,
    id: i64,
    hash: &str,
    action: &'static str,
    display: &'static str,
    reason: &'static str,
) -> Result<usize, DomainError> {
    let tx = work.tx();
    tx.exec(
        "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
        &[&id, &hash],
    )
    .await?;
    let ended = sessions::end_all(tx, id, reason).await?;
    audit::write(
        tx,
        actor,
        Entry::new("user", action, display).record("users", id),
    )
    .await?;
    let n = ended.len();
    work.effects().end_sessions(id, ended, reason);
    work.effects().stale([id]);
    Ok(n)
}

/// Disable an account now (the operator's `euraflow user disable`, admins too): no login, and
/// every session ends.
pub async fn disable(work: &mut Work<'_>, actor: &Actor, id: i64) -> Result<usize, DomainError> {
    if !actor.is_operator() {
        return Err(DomainError::denied(
            "INSUFFICIENT_PERMISSIONS",
            "Only the operator disables accounts this way; admins edit the account instead",
        ));
    }
    let tx = work.tx();
    let n = tx
        .exec(
            "UPDATE users SET account_status = 'disabled', is_active = false, updated_at = now() WHERE id = $1",
            &[&id],
        )
        .await?;
    if n == 0 {
        return Err(not_found());
    }
    let ended = sessions::end_all(tx, id, "account_disabled").await?;
    audit::write(
        tx,
        actor,
        Entry::new("user", "update", "命令行")
            .record("users", id)
            .notes("disabled by `euraflow user disable`"),
    )
    .await?;
    let count = ended.len();
    let children: Vec<i64> = work
        .tx()
        .rows("SELECT id FROM users WHERE parent_user_id = $1", &[&id])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    work.effects().end_sessions(id, ended, "account_disabled");
    work.effects().stale(children.into_iter().chain([id]));
    Ok(count)
}

/// `users` as JSON, for lists.
pub fn responses(views: &[UserView]) -> Value {
    Value::Array(views.iter().map(UserView::response).collect())
}
