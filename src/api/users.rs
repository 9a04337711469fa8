//! `/auth/users`: managing other accounts, with the original's role rules (see `auth::roles`).

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::unique_violation;
use super::error::ApiError;
use super::json::ApiJson;
use super::validate::{Checks, phone_problem, string_list_problem, username_problem};
use crate::auth::audit::{self, Entry};
use crate::auth::current_user::forbidden;
use crate::auth::password;
use crate::auth::roles::{self, AccountStatus, Denied, Role};
use crate::auth::sessions;
use crate::auth::users::{self, User};
use crate::auth::{CurrentUser, RequestMeta};
use crate::db::DbError;
use crate::state::AppState;

const MAX_SHOPS_PER_USER: usize = 1000;

fn denied(d: Denied) -> ApiError {
    forbidden(d.code(), d.message())
}

fn not_found() -> ApiError {
    ApiError::coded(StatusCode::NOT_FOUND, "USER_NOT_FOUND", "No such user")
}

fn bad_request(code: &'static str, msg: &str) -> ApiError {
    ApiError::coded(StatusCode::BAD_REQUEST, code, msg)
}

/// `GET /auth/users`: admins see everyone, main accounts themselves and their children, others
/// themselves (ordered by role, then creation, as the original).
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    user.require_session()?;
    let client = state.db().get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {} FROM users u
                  WHERE $2 OR u.id = $1 OR ($3 AND u.parent_user_id = $1)
                  ORDER BY u.role DESC, u.created_at
                  LIMIT 5000",
                users::COLUMNS
            ),
            &[
                &user.id,
                &(user.role == Role::Admin),
                &(user.role == Role::MainAccount),
            ],
        )
        .await
        .map_err(DbError::from)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(users::response(&**client, &User::from_row(r)).await?);
    }
    Ok(Json(Value::Array(out)))
}

#[derive(Debug, Deserialize)]
pub struct CreateBody {
    username: String,
    password: String,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default = "default_role")]
    role: String,
    #[serde(default = "yes")]
    is_active: bool,
    #[serde(default)]
    account_status: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    primary_shop_id: Option<i64>,
    #[serde(default)]
    shop_ids: Option<Vec<i64>>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    account_level_id: Option<i64>,
    /// Admins may put a sub-account or shipper under a main account.
    #[serde(default)]
    parent_user_id: Option<i64>,
}

fn default_role() -> String {
    "sub_account".into()
}

fn yes() -> bool {
    true
}

fn parse_expiry(raw: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    match raw.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|d| Some(d.with_timezone(&Utc)))
            .or_else(|_| {
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(|d| d.and_hms_opt(23, 59, 59).map(|t| t.and_utc()))
            })
            .map_err(|_| {
                bad_request(
                    "INVALID_DATE",
                    "expires_at must be an ISO 8601 date or date-time",
                )
            }),
    }
}

fn common_checks(
    checks: &mut Checks,
    phone: &Option<String>,
    shop_ids: &Option<Vec<i64>>,
    permissions: &Option<Vec<String>>,
    status: &Option<String>,
) {
    if let Some(p) = phone.as_deref().filter(|p| !p.is_empty())
        && let Some(why) = phone_problem(p)
    {
        checks.check(false, "phone", "value_error", why);
    }
    if let Some(ids) = shop_ids {
        checks.check(
            ids.len() <= MAX_SHOPS_PER_USER,
            "shop_ids",
            "too_long",
            format!("at most {MAX_SHOPS_PER_USER} shops"),
        );
    }
    if let Some(p) = permissions
        && let Some(why) = string_list_problem(p, 200, 100)
    {
        checks.check(false, "permissions", "value_error", why);
    }
    if let Some(s) = status {
        checks.check(
            AccountStatus::parse(s).is_some(),
            "account_status",
            "enum",
            "must be active, suspended or disabled",
        );
    }
}

/// `POST /auth/users`
pub async fn create(
    State(state): State<AppState>,
    actor: CurrentUser,
    meta: RequestMeta,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Json<Value>, ApiError> {
    actor.require_session()?;
    let mut checks = Checks::new();
    let username = body.username.trim().to_owned();
    if let Some(p) = username_problem(&username) {
        checks.check(false, "username", "value_error", p);
    }
    if let Some(p) = password::policy_violation(&body.password) {
        checks.check(false, "password", "value_error", p);
    }
    let role = Role::parse(&body.role);
    checks.check(
        role.is_some(),
        "role",
        "enum",
        "must be main_account, sub_account or shipper",
    );
    common_checks(
        &mut checks,
        &body.phone,
        &body.shop_ids,
        &body.permissions,
        &body.account_status,
    );
    checks.finish()?;
    let role = role.ok_or_else(|| denied(Denied::InvalidRole))?;
    roles::may_create(actor.party(), role).map_err(denied)?;
    let phone = body
        .phone
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    if phone.is_some() && actor.role != Role::Admin {
        return Err(forbidden(
            "PHONE_ADMIN_ONLY",
            "Only admins may set a phone number",
        ));
    }
    if body.account_level_id.is_some() && actor.role != Role::Admin {
        return Err(forbidden(
            "INSUFFICIENT_PERMISSIONS",
            "Only admins may assign account levels",
        ));
    }
    let expires_at = parse_expiry(&body.expires_at)?;
    let status = body
        .account_status
        .clone()
        .unwrap_or_else(|| "active".into());

    let mut client = state.db().get().await?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    // Who the new account belongs to.
    let parent_id = match actor.role {
        Role::MainAccount => Some(actor.id),
        _ => body.parent_user_id,
    };
    if let Some(pid) = parent_id {
        let parent = users::by_id(&*tx, pid).await?.ok_or_else(|| {
            bad_request("PARENT_NOT_FOUND", "parent_user_id does not name a user")
        })?;
        if parent.role != Role::MainAccount {
            return Err(bad_request(
                "INVALID_PARENT",
                "A parent must be a main account",
            ));
        }
        if role == Role::MainAccount {
            return Err(bad_request(
                "INVALID_PARENT",
                "A main account has no parent",
            ));
        }
        // A child cannot outlive its parent.
        if let (Some(mine), Some(theirs)) = (expires_at, parent.expires_at)
            && mine > theirs
        {
            return Err(bad_request(
                "EXPIRES_AT_EXCEEDS_MAIN_ACCOUNT",
                "A sub-account cannot expire after its main account",
            ));
        }
        // Quota from the parent's level (serialised on the parent row).
        let row = tx
            .query_one(
                "SELECT (SELECT count(*) FROM users WHERE parent_user_id = p.id),
                        (SELECT max_sub_accounts FROM account_levels WHERE id = p.account_level_id)
                   FROM users p WHERE p.id = $1 FOR UPDATE",
                &[&pid],
            )
            .await
            .map_err(DbError::from)?;
        let children: i64 = row.get(0);
        let quota: Option<i32> = row.get(1);
        if let Some(q) = quota
            && children >= i64::from(q)
        {
            return Err(bad_request(
                "QUOTA_EXCEEDED",
                &format!("The account level allows {q} sub-accounts, all in use"),
            ));
        }
    }
    let hash = state.auth().passwords.hash(&body.password).await?;
    let permissions = json!(body.permissions.clone().unwrap_or_default());
    let level_id = match body.account_level_id {
        Some(id) => Some(id),
        None if role == Role::MainAccount => tx
            .query_opt("SELECT id FROM account_levels WHERE is_default", &[])
            .await
            .map_err(DbError::from)?
            .map(|r| r.get(0)),
        None => None,
    };
    let row = tx
        .query_one(
            "INSERT INTO users (username, password_hash, phone, role, is_active, account_status,
                                expires_at, parent_user_id, primary_shop_id, permissions, account_level_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            &[
                &username,
                &hash,
                &phone,
                &role.as_str(),
                &body.is_active,
                &status,
                &expires_at,
                &parent_id,
                &body.primary_shop_id,
                &permissions,
                &level_id,
            ],
        )
        .await
        .map_err(|e| {
            if e.as_db_error().is_some_and(|d| d.constraint() == Some("ix_users_phone")) {
                ApiError::coded(StatusCode::CONFLICT, "PHONE_EXISTS", "This phone number is taken")
            } else if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) {
                bad_request("LEVEL_NOT_FOUND", "account_level_id does not name a level")
            } else {
                unique_violation(e, "USERNAME_EXISTS", "This username is taken")
            }
        })?;
    let id: i64 = row.get(0);
    set_shops(&*tx, id, body.shop_ids.as_deref()).await?;
    audit::write(
        &*tx,
        &actor.actor(&meta),
        Entry::new("user", "create", "创建用户")
            .record("users", id)
            .changes(
                json!({"username": username, "role": role.as_str(), "parent_user_id": parent_id}),
            ),
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    let created = users::by_id(&**client, id).await?.ok_or_else(not_found)?;
    Ok(Json(users::response(&**client, &created).await?))
}

async fn set_shops(
    tx: &impl tokio_postgres::GenericClient,
    user_id: i64,
    shop_ids: Option<&[i64]>,
) -> Result<(), DbError> {
    let Some(ids) = shop_ids else { return Ok(()) };
    tx.execute("DELETE FROM user_shops WHERE user_id = $1", &[&user_id])
        .await?;
    tx.execute(
        "INSERT INTO user_shops (user_id, shop_id) SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING",
        &[&user_id, &ids],
    )
    .await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
pub struct UpdateBody {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    is_active: Option<bool>,
    #[serde(default)]
    account_status: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    primary_shop_id: Option<i64>,
    #[serde(default)]
    shop_ids: Option<Vec<i64>>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    account_level_id: Option<i64>,
}

/// `PUT /auth/users/{id}`
pub async fn update(
    State(state): State<AppState>,
    actor: CurrentUser,
    meta: RequestMeta,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<Value>, ApiError> {
    actor.require_session()?;
    let mut checks = Checks::new();
    if let Some(name) = &body.username
        && let Some(p) = username_problem(name.trim())
    {
        checks.check(false, "username", "value_error", p);
    }
    let role = body.role.as_deref().map(Role::parse);
    checks.check(
        !matches!(role, Some(None)),
        "role",
        "enum",
        "must be admin, main_account, sub_account or shipper",
    );
    common_checks(
        &mut checks,
        &body.phone,
        &body.shop_ids,
        &body.permissions,
        &body.account_status,
    );
    checks.finish()?;

    let mut client = state.db().get().await?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    let target = users::by_id(&*tx, id).await?.ok_or_else(not_found)?;
    roles::may_manage(actor.party(), target.party()).map_err(denied)?;
    let new_role = role.flatten().unwrap_or(target.role);
    if new_role != target.role {
        roles::may_assign_role(actor.party(), target.party(), new_role).map_err(denied)?;
    }
    if body.phone.is_some() && actor.role != Role::Admin {
        return Err(forbidden(
            "PHONE_ADMIN_ONLY",
            "Only admins may set a phone number",
        ));
    }
    if body.account_level_id.is_some() && actor.role != Role::Admin {
        return Err(forbidden(
            "INSUFFICIENT_PERMISSIONS",
            "Only admins may change account levels",
        ));
    }
    let expires_at = match &body.expires_at {
        Some(_) => parse_expiry(&body.expires_at)?,
        None => target.expires_at,
    };
    if actor.role == Role::MainAccount
        && let (Some(mine), Some(theirs)) = (expires_at, actor.state.expires_at)
        && mine > theirs
    {
        return Err(bad_request(
            "EXPIRES_AT_EXCEEDS_MAIN_ACCOUNT",
            "A sub-account cannot expire after its main account",
        ));
    }
    let username = body
        .username
        .as_deref()
        .map(str::trim)
        .unwrap_or(&target.username)
        .to_owned();
    let phone = match body.phone.as_deref().map(str::trim) {
        Some("") => None,
        Some(p) => Some(p.to_owned()),
        None => target.phone.clone(),
    };
    let status = body
        .account_status
        .clone()
        .unwrap_or_else(|| target.account_status.as_str().to_owned());
    let is_active = body.is_active.unwrap_or(target.is_active);
    let permissions = body
        .permissions
        .as_ref()
        .map(|p| json!(p))
        .unwrap_or(target.permissions.clone());
    let level_id = body.account_level_id.or(target.account_level_id);
    let primary_shop = body.primary_shop_id.or(target.primary_shop_id);
    tx.execute(
        "UPDATE users SET username = $2, phone = $3, role = $4, is_active = $5, account_status = $6,
                          expires_at = $7, permissions = $8, account_level_id = $9, primary_shop_id = $10,
                          updated_at = now()
          WHERE id = $1",
        &[&id, &username, &phone, &new_role.as_str(), &is_active, &status, &expires_at, &permissions, &level_id, &primary_shop],
    )
    .await
    .map_err(|e| {
        if e.as_db_error().is_some_and(|d| d.constraint() == Some("ix_users_phone")) {
            ApiError::coded(StatusCode::CONFLICT, "PHONE_EXISTS", "This phone number is taken")
        } else if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) {
            bad_request("LEVEL_NOT_FOUND", "account_level_id does not name a level")
        } else {
            unique_violation(e, "USERNAME_EXISTS", "This username is taken")
        }
    })?;
    set_shops(&*tx, id, body.shop_ids.as_deref()).await?;
    // Deactivating or disabling ends the user's sessions at once (the original let them go on
    // reading with their old tokens).
    let mut ended = Vec::new();
    if (!is_active && target.is_active)
        || (status == "disabled" && target.account_status != AccountStatus::Disabled)
    {
        ended = sessions::end_all(&*tx, id, "account_disabled").await?;
    }
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
            json!(status),
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
        &*tx,
        &actor.actor(&meta),
        Entry::new("user", "update", "更新用户")
            .record("users", id)
            .changes(changes),
    )
    .await?;
    // Children inherit this account's state: their cached states are stale too.
    let children: Vec<i64> = tx
        .query("SELECT id FROM users WHERE parent_user_id = $1", &[&id])
        .await
        .map_err(DbError::from)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.commit().await.map_err(DbError::from)?;
    let store = &state.auth().store;
    for t in &ended {
        store.mark_session(t, false).await;
    }
    let mut stale = children;
    stale.push(id);
    store.invalidate_states(&stale).await;
    let updated = users::by_id(&**client, id).await?.ok_or_else(not_found)?;
    Ok(Json(users::response(&**client, &updated).await?))
}

/// `DELETE /auth/users/{id}`: audited first, then deleted (children go with it, as the original's
/// foreign key cascades).
pub async fn delete(
    State(state): State<AppState>,
    actor: CurrentUser,
    meta: RequestMeta,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    actor.require_session()?;
    let mut client = state.db().get().await?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    let target = users::by_id(&*tx, id).await?.ok_or_else(not_found)?;
    roles::may_manage(actor.party(), target.party()).map_err(denied)?;
    let affected: Vec<i64> = tx
        .query(
            "WITH RECURSIVE tree AS (SELECT id FROM users WHERE id = $1
                                     UNION SELECT u.id FROM users u JOIN tree t ON u.parent_user_id = t.id)
             SELECT id FROM tree",
            &[&id],
        )
        .await
        .map_err(DbError::from)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let sessions: Vec<String> = tx
        .query(
            "SELECT session_token FROM user_login_sessions WHERE user_id = ANY($1) AND is_active",
            &[&affected],
        )
        .await
        .map_err(DbError::from)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    audit::write(
        &*tx,
        &actor.actor(&meta),
        Entry::new("user", "delete", "删除用户")
            .record("users", id)
            .changes(json!({"username": target.username, "role": target.role.as_str(), "deleted_user_ids": affected})),
    )
    .await?;
    tx.execute("DELETE FROM users WHERE id = $1", &[&id])
        .await
        .map_err(DbError::from)?;
    tx.commit().await.map_err(DbError::from)?;
    let store = &state.auth().store;
    for t in &sessions {
        store.mark_session(t, false).await;
    }
    store.invalidate_states(&affected).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct ResetPasswordBody {
    new_password: String,
}

/// `PATCH /auth/users/{id}/password`: the target's sessions end, so the new password is needed.
pub async fn reset_password(
    State(state): State<AppState>,
    actor: CurrentUser,
    meta: RequestMeta,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<ResetPasswordBody>,
) -> Result<StatusCode, ApiError> {
    actor.require_session()?;
    let mut checks = Checks::new();
    if let Some(p) = password::policy_violation(&body.new_password) {
        checks.check(false, "new_password", "value_error", p);
    }
    checks.finish()?;
    let mut client = state.db().get().await?;
    let target = users::by_id(&**client, id).await?.ok_or_else(not_found)?;
    roles::may_reset_password(actor.party(), target.party()).map_err(denied)?;
    let hash = state.auth().passwords.hash(&body.new_password).await?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    tx.execute(
        "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
        &[&id, &hash],
    )
    .await
    .map_err(DbError::from)?;
    let ended = sessions::end_all(&*tx, id, "password_reset").await?;
    audit::write(
        &*tx,
        &actor.actor(&meta),
        Entry::new("user", "reset_password", "重置密码").record("users", id),
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    for t in &ended {
        state.auth().store.mark_session(t, false).await;
    }
    Ok(StatusCode::NO_CONTENT)
}
