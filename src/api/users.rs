//! `/auth/users`: managing other accounts — an adapter over `auth::accounts`, which holds the
//! role rules. This file turns JSON into the service's parsed input and the results back into
//! the original's `UserResponse` shape.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use super::json::{ApiJson, ApiPath};
use crate::auth::accounts::{self, AccountChanges, MAX_SHOPS_PER_USER, NewAccount};
use crate::auth::roles::{AccountStatus, Role};
use crate::auth::values::{NewPassword, Phone, Username};
use crate::auth::{CurrentUser, Origin};
use crate::domain::{Checks, DomainError, Work, field, string_list_problem};
use crate::state::AppState;

/// `GET /auth/users`: admins see everyone, main accounts themselves and their children, others
/// themselves (ordered by role, then creation, as the original).
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    let views = accounts::list(&client, &user.actor(&origin)).await?;
    Ok(Json(accounts::responses(&views)))
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

/// An ISO 8601 date-time, or a date (then the end of that day, UTC); empty means none.
fn parse_expiry(raw: &Option<String>) -> Result<Option<DateTime<Utc>>, DomainError> {
    match raw.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|d| Some(d.with_timezone(&Utc)))
            .or_else(|_| {
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(|d| d.and_hms_opt(23, 59, 59).map(|t| t.and_utc()))
            })
            .map_err(|_| {
                DomainError::rejected(
                    "INVALID_DATE",
                    "expires_at must be an ISO 8601 date or date-time",
                )
            }),
    }
}

/// Phone, shops, permissions and status: the checks create and update share.
struct Common {
    /// `Some(None)`: sent empty (clears it).
    phone: Option<Option<Phone>>,
    status: Option<AccountStatus>,
}

fn common_checks(
    checks: &mut Checks,
    phone: &Option<String>,
    shop_ids: &Option<Vec<i64>>,
    permissions: &Option<Vec<String>>,
    status: &Option<String>,
) -> Common {
    let phone = phone.as_deref().map(str::trim).map(|p| {
        if p.is_empty() {
            None
        } else {
            checks.parsed("phone", Phone::parse(p))
        }
    });
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
    let status = status.as_deref().and_then(|s| {
        let parsed = AccountStatus::parse(s);
        checks.check(
            parsed.is_some(),
            "account_status",
            "enum",
            "must be active, suspended or disabled",
        );
        parsed
    });
    Common { phone, status }
}

/// `POST /auth/users`
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Json<Value>, ApiError> {
    let actor = user.actor(&origin);
    actor.require_session()?;
    let mut checks = Checks::new();
    let username = checks.parsed("username", Username::parse(&body.username));
    let password = checks.parsed("password", NewPassword::parse(&body.password));
    let role = Role::parse(&body.role);
    checks.check(
        role.is_some(),
        "role",
        "enum",
        "must be main_account, sub_account or shipper",
    );
    let common = common_checks(
        &mut checks,
        &body.phone,
        &body.shop_ids,
        &body.permissions,
        &body.account_status,
    );
    checks.finish()?;
    let (Some(username), Some(password), Some(role)) = (username, password, role) else {
        return Err(ApiError::internal());
    };
    let new = NewAccount {
        username,
        password,
        phone: common.phone.flatten(),
        role,
        is_active: body.is_active,
        account_status: common.status.unwrap_or(AccountStatus::Active),
        expires_at: parse_expiry(&body.expires_at)?,
        primary_shop_id: body.primary_shop_id,
        shop_ids: body.shop_ids,
        permissions: body.permissions,
        account_level_id: body.account_level_id,
        parent_user_id: body.parent_user_id,
    };
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let id = accounts::create(&mut work, &actor, &state.auth().passwords, new).await?;
    let effects = work.commit().await?;
    state.auth().apply(effects).await;
    Ok(Json(accounts::get(&client, id).await?.response()))
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
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Json<Value>, ApiError> {
    let actor = user.actor(&origin);
    actor.require_session()?;
    let mut checks = Checks::new();
    let username = body
        .username
        .as_deref()
        .and_then(|n| checks.parsed("username", Username::parse(n)));
    let role = body.role.as_deref().map(Role::parse);
    checks.check(
        !matches!(role, Some(None)),
        "role",
        "enum",
        "must be admin, main_account, sub_account or shipper",
    );
    let common = common_checks(
        &mut checks,
        &body.phone,
        &body.shop_ids,
        &body.permissions,
        &body.account_status,
    );
    checks.finish()?;
    let changes = AccountChanges {
        username,
        phone: common.phone,
        role: role.flatten(),
        is_active: body.is_active,
        account_status: common.status,
        expires_at: match &body.expires_at {
            Some(_) => Some(parse_expiry(&body.expires_at)?),
            None => None,
        },
        primary_shop_id: body.primary_shop_id,
        shop_ids: body.shop_ids,
        permissions: body.permissions,
        account_level_id: body.account_level_id,
    };
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    accounts::update(&mut work, &actor, id, changes).await?;
    let effects = work.commit().await?;
    state.auth().apply(effects).await;
    Ok(Json(accounts::get(&client, id).await?.response()))
}

/// `DELETE /auth/users/{id}` → 204.
pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    accounts::delete(&mut work, &user.actor(&origin), id).await?;
    let effects = work.commit().await?;
    state.auth().apply(effects).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct ResetPasswordBody {
    new_password: String,
}

/// `GET /auth/users/{id}/quota` → `{sub_accounts_count, max_sub_accounts, shops_count, max_shops}`.
pub async fn quota(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<accounts::Quota>, ApiError> {
    let actor = user.actor(&origin);
    let client = state.db().get().await?;
    Ok(Json(accounts::quota(&client, &actor, id).await?))
}

/// `PATCH /auth/users/{id}/password` → 204: the target's sessions end, so the new password is
/// needed.
pub async fn reset_password(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ResetPasswordBody>,
) -> Result<StatusCode, ApiError> {
    let actor = user.actor(&origin);
    actor.require_session()?;
    let password = field("new_password", NewPassword::parse(&body.new_password))?;
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    accounts::reset_password(&mut work, &actor, &state.auth().passwords, id, &password).await?;
    let effects = work.commit().await?;
    state.auth().apply(effects).await;
    Ok(StatusCode::NO_CONTENT)
}
