//! User records: reading them, and the original's `UserResponse` shape.
//!
//! Everything a response or a check needs about a user — the row, the parent's state (a
//! sub-account inherits it), the shop ids and the level's summary — comes from one statement
//! ([`VIEW`]), so listing 5 000 users is one query and a login one more, not two per user.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_postgres::Row;

use super::roles::{AccountState, AccountStatus, Party, Role};
use super::values::Phone;
use crate::db::DbError;
use crate::db::sql::Sql;

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub phone: Option<String>,
    pub username_changed: bool,
    pub password_hash: String,
    pub is_active: bool,
    pub role: Role,
    pub permissions: Value,
    pub account_level_id: Option<i64>,
    pub account_status: AccountStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub parent_user_id: Option<i64>,
    pub primary_shop_id: Option<i64>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The level's summary shown with a user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LevelSummary {
    pub id: i64,
    pub name: String,
    pub alias: Option<String>,
    pub max_sub_accounts: i32,
    pub max_shops: i32,
    pub default_expiration_days: i32,
}

/// A user with everything around it that responses and checks read.
#[derive(Debug, Clone)]
pub struct UserView {
    pub user: User,
    /// The shops linked to the user (admins see every shop regardless).
    pub shop_ids: Vec<i64>,
    pub level: Option<LevelSummary>,
    /// The parent's (is_active, status, expires_at), for sub-accounts' inherited state.
    pub parent: Option<(bool, AccountStatus, Option<DateTime<Utc>>)>,
}

/// The one statement behind every user read; callers append `WHERE ...` and `ORDER BY ...`.
pub const VIEW: &str = "SELECT u.id, u.username, u.phone, u.username_changed, u.password_hash, u.is_active,
        u.role, u.permissions, u.account_level_id, u.account_status, u.expires_at, u.parent_user_id,
        u.primary_shop_id, u.last_login_at, u.created_at, u.updated_at,
        COALESCE((SELECT array_agg(s.shop_id ORDER BY s.shop_id) FROM user_shops s WHERE s.user_id = u.id),
                 '{}'::bigint[]) AS shop_ids,
        l.id AS level_id, l.name AS level_name, l.alias AS level_alias,
        l.max_sub_accounts AS level_max_sub_accounts, l.max_shops AS level_max_shops,
        l.default_expiration_days AS level_default_expiration_days,
        p.is_active AS parent_is_active, p.account_status AS parent_status,
        p.expires_at AS parent_expires_at
   FROM users u
   LEFT JOIN account_levels l ON l.id = u.account_level_id
   LEFT JOIN users p ON p.id = u.parent_user_id";

fn status_of(s: &str) -> AccountStatus {
    // The table's CHECK constraint allows only known values; anything else is treated as the
    // safest state.
    AccountStatus::parse(s).unwrap_or(AccountStatus::Disabled)
}

impl UserView {
    pub fn from_row(r: &Row) -> UserView {
        let role: String = r.get("role");
        let status: String = r.get("account_status");
        let user = User {
            id: r.get("id"),
            username: r.get("username"),
            phone: r.get("phone"),
            username_changed: r.get("username_changed"),
            password_hash: r.get("password_hash"),
            is_active: r.get("is_active"),
            role: Role::parse(&role).unwrap_or(Role::SubAccount),
            permissions: r.get("permissions"),
            account_level_id: r.get("account_level_id"),
            account_status: status_of(&status),
            expires_at: r.get("expires_at"),
            parent_user_id: r.get("parent_user_id"),
            primary_shop_id: r.get("primary_shop_id"),
            last_login_at: r.get("last_login_at"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
        };
        let level = r.get::<_, Option<i64>>("level_id").map(|id| LevelSummary {
            id,
            name: r.get("level_name"),
            alias: r.get("level_alias"),
            max_sub_accounts: r.get("level_max_sub_accounts"),
            max_shops: r.get("level_max_shops"),
            default_expiration_days: r.get("level_default_expiration_days"),
        });
        let parent = r.get::<_, Option<bool>>("parent_is_active").map(|active| {
            let s: String = r.get("parent_status");
            (active, status_of(&s), r.get("parent_expires_at"))
        });
        UserView {
            user,
            shop_ids: r.get("shop_ids"),
            level,
            parent,
        }
    }

    /// What the per-request checks need.
    pub fn account_state(&self) -> AccountState {
        let u = &self.user;
        AccountState {
            user_id: u.id,
            username: u.username.clone(),
            role: u.role,
            is_active: u.is_active,
            status: u.account_status,
            expires_at: u.expires_at,
            parent_user_id: u.parent_user_id,
            inherited: self.parent,
        }
    }

    /// The original's `UserResponse`. `shop_ids` lists the shops linked to the user, for an
    /// admin too: an admin may act on every shop, but the web app opens its undismissable
    /// 当前没有添加店铺 modal on every page when the list is empty or null, so an admin who
    /// created shops must see them here (what the admin may reach is decided by the role).
    pub fn response(&self) -> Value {
        let u = &self.user;
        let shops = json!(self.shop_ids);
        json!({
            "id": u.id,
            "username": u.username,
            "phone": u.phone.as_deref().map(Phone::masked),
            "username_changed": u.username_changed,
            "role": u.role.as_str(),
            "permissions": u.permissions,
            "is_active": u.is_active,
            "account_status": u.account_status.as_str(),
            "expires_at": u.expires_at,
            "parent_user_id": u.parent_user_id,
            "primary_shop_id": u.primary_shop_id,
            "shop_ids": shops,
            "account_level_id": u.account_level_id,
            "account_level": self.level,
            "last_login_at": u.last_login_at,
            "created_at": u.created_at,
            "updated_at": u.updated_at,
        })
    }
}

impl User {
    pub fn party(&self) -> Party<'_> {
        Party {
            id: self.id,
            username: &self.username,
            role: self.role,
            parent_user_id: self.parent_user_id,
        }
    }
}

/// A `permissions` JSON value as a list of strings (anything else is ignored).
pub fn permission_list(permissions: &Value) -> Vec<String> {
    permissions
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn by_id(c: &impl Sql, id: i64) -> Result<Option<UserView>, DbError> {
    let sql = const_format(VIEW, " WHERE u.id = $1");
    Ok(c.maybe_row(&sql, &[&id])
        .await?
        .as_ref()
        .map(UserView::from_row))
}

/// `by_id`, locking the user's row for the rest of the transaction (changes to one user, and
/// quota checks on a parent, are serialised on it).
pub async fn by_id_for_update(c: &impl Sql, id: i64) -> Result<Option<UserView>, DbError> {
    let sql = const_format(VIEW, " WHERE u.id = $1 FOR UPDATE OF u");
    Ok(c.maybe_row(&sql, &[&id])
        .await?
        .as_ref()
        .map(UserView::from_row))
}

pub async fn by_username(c: &impl Sql, name: &str) -> Result<Option<UserView>, DbError> {
    let sql = const_format(VIEW, " WHERE u.username = $1");
    Ok(c.maybe_row(&sql, &[&name])
        .await?
        .as_ref()
        .map(UserView::from_row))
}

/// The original's login lookup: a username, or else a phone number.
pub async fn by_login(c: &impl Sql, identifier: &str) -> Result<Option<UserView>, DbError> {
    let sql = const_format(
        VIEW,
        " WHERE u.username = $1 OR u.phone = $1 ORDER BY (u.username = $1) DESC LIMIT 1",
    );
    Ok(c.maybe_row(&sql, &[&identifier])
        .await?
        .as_ref()
        .map(UserView::from_row))
}

/// Who `viewer` may see in `GET /auth/users`: admins everyone, main accounts themselves and their
/// children, others themselves — ordered by role, then creation, as the original. At most
/// `limit` users, in one statement.
pub async fn visible_to(
    c: &impl Sql,
    viewer_id: i64,
    viewer_role: Role,
    limit: i64,
) -> Result<Vec<UserView>, DbError> {
    let sql = const_format(
        VIEW,
        " WHERE $2 OR u.id = $1 OR ($3 AND u.parent_user_id = $1)
          ORDER BY u.role DESC, u.created_at LIMIT $4",
    );
    let rows = c
        .rows(
            &sql,
            &[
                &viewer_id,
                &(viewer_role == Role::Admin),
                &(viewer_role == Role::MainAccount),
                &limit,
            ],
        )
        .await?;
    Ok(rows.iter().map(UserView::from_row).collect())
}

/// The shops a (non-admin) user may see: the ones they own and the ones linked to them.
/// `ozon::tenancy` builds its rules on this; account changes use it to check shop assignments.
pub async fn shops_visible_to(c: &impl Sql, user_id: i64) -> Result<Vec<i64>, DbError> {
    Ok(c.rows(
        "SELECT id FROM ozon_shops WHERE owner_user_id = $1
          UNION SELECT shop_id FROM user_shops WHERE user_id = $1
          ORDER BY 1",
        &[&user_id],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// What the per-request checks need, with the parent's state for sub-accounts.
pub async fn account_state(c: &impl Sql, user_id: i64) -> Result<Option<AccountState>, DbError> {
    Ok(by_id(c, user_id).await?.map(|v| v.account_state()))
}

/// Whether any admin exists (bootstrap creates the first).
pub async fn admin_exists(c: &impl Sql) -> Result<bool, DbError> {
    Ok(c.row(
        "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin')",
        &[],
    )
    .await?
    .get(0))
}

/// `VIEW` with a tail; the texts are constant per call site, so the statement cache holds one
/// entry per site.
fn const_format(head: &str, tail: &str) -> String {
    let mut s = String::with_capacity(head.len() + tail.len());
    s.push_str(head);
    s.push_str(tail);
    s
}
