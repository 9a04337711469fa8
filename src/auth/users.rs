//! User records: reading them, and the original's `UserResponse` shape.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_postgres::GenericClient;
use tokio_postgres::Row;

use super::roles::{AccountState, AccountStatus, Party, Role};
use crate::db::DbError;

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
    pub current_session_token: Option<String>,
    pub primary_shop_id: Option<i64>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const COLUMNS: &str = "u.id, u.username, u.phone, u.username_changed, u.password_hash, u.is_active, u.role, \
     u.permissions, u.account_level_id, u.account_status, u.expires_at, u.parent_user_id, \
     u.current_session_token, u.primary_shop_id, u.last_login_at, u.created_at, u.updated_at";

impl User {
    pub fn from_row(r: &Row) -> User {
        let role: String = r.get("role");
        let status: String = r.get("account_status");
        User {
            id: r.get("id"),
            username: r.get("username"),
            phone: r.get("phone"),
            username_changed: r.get("username_changed"),
            password_hash: r.get("password_hash"),
            is_active: r.get("is_active"),
            // The table's CHECK constraints allow only known values.
            role: Role::parse(&role).unwrap_or(Role::SubAccount),
            permissions: r.get("permissions"),
            account_level_id: r.get("account_level_id"),
            account_status: AccountStatus::parse(&status).unwrap_or(AccountStatus::Disabled),
            expires_at: r.get("expires_at"),
            parent_user_id: r.get("parent_user_id"),
            current_session_token: r.get("current_session_token"),
            primary_shop_id: r.get("primary_shop_id"),
            last_login_at: r.get("last_login_at"),
            created_at: r.get("created_at"),
            updated_at: r.get("updated_at"),
        }
    }

    pub fn party(&self) -> Party<'_> {
        Party {
            id: self.id,
            username: &self.username,
            role: self.role,
            parent_user_id: self.parent_user_id,
        }
    }

    /// The `permissions` JSON column as a list of strings (anything else is ignored).
    pub fn permission_list(&self) -> Vec<String> {
        self.permissions
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub async fn by_id(c: &impl GenericClient, id: i64) -> Result<Option<User>, DbError> {
    let row = c
        .query_opt(
            &format!("SELECT {COLUMNS} FROM users u WHERE u.id = $1"),
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(User::from_row))
}

pub async fn by_username(c: &impl GenericClient, name: &str) -> Result<Option<User>, DbError> {
    let row = c
        .query_opt(
            &format!("SELECT {COLUMNS} FROM users u WHERE u.username = $1"),
            &[&name],
        )
        .await?;
    Ok(row.as_ref().map(User::from_row))
}

/// The original's login lookup: a username, or else a phone number.
pub async fn by_login(c: &impl GenericClient, identifier: &str) -> Result<Option<User>, DbError> {
    let row = c
        .query_opt(
            &format!(
                "SELECT {COLUMNS} FROM users u WHERE u.username = $1 OR u.phone = $1
                 ORDER BY (u.username = $1) DESC LIMIT 1"
            ),
            &[&identifier],
        )
        .await?;
    Ok(row.as_ref().map(User::from_row))
}

pub async fn shop_ids(c: &impl GenericClient, user_id: i64) -> Result<Vec<i64>, DbError> {
    Ok(c.query(
        "SELECT shop_id FROM user_shops WHERE user_id = $1 ORDER BY shop_id",
        &[&user_id],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// What the per-request checks need, with the parent's state for sub-accounts.
pub async fn account_state(
    c: &impl GenericClient,
    user_id: i64,
) -> Result<Option<AccountState>, DbError> {
    let row = c
        .query_opt(
            "SELECT u.id, u.username, u.role, u.is_active, u.account_status, u.expires_at,
                    u.parent_user_id, p.is_active, p.account_status, p.expires_at
               FROM users u LEFT JOIN users p ON p.id = u.parent_user_id
              WHERE u.id = $1",
            &[&user_id],
        )
        .await?;
    Ok(row.map(|r| {
        let role = Role::parse(r.get::<_, &str>(2)).unwrap_or(Role::SubAccount);
        let parent: Option<bool> = r.get(7);
        AccountState {
            user_id: r.get(0),
            username: r.get(1),
            role,
            is_active: r.get(3),
            status: AccountStatus::parse(r.get::<_, &str>(4)).unwrap_or(AccountStatus::Disabled),
            expires_at: r.get(5),
            parent_user_id: r.get(6),
            inherited: parent.map(|active| {
                (
                    active,
                    AccountStatus::parse(r.get::<_, &str>(8)).unwrap_or(AccountStatus::Disabled),
                    r.get(9),
                )
            }),
        }
    }))
}

/// `account_level` in user responses: the level's id, name and quotas.
pub async fn level_summary(
    c: &impl GenericClient,
    level_id: Option<i64>,
) -> Result<Value, DbError> {
    let Some(id) = level_id else {
        return Ok(Value::Null);
    };
    let row = c
        .query_opt(
            "SELECT id, name, alias, max_sub_accounts, max_shops, default_expiration_days
               FROM account_levels WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row
        .map(|r| {
            json!({
                "id": r.get::<_, i64>(0),
                "name": r.get::<_, String>(1),
                "alias": r.get::<_, Option<String>>(2),
                "max_sub_accounts": r.get::<_, i32>(3),
                "max_shops": r.get::<_, i32>(4),
                "default_expiration_days": r.get::<_, i32>(5),
            })
        })
        .unwrap_or(Value::Null))
}

/// `138****5678`: enough to recognise, not enough to misuse.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() < 8 {
        return "****".to_owned();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

/// The original's `UserResponse`. Admins get `shop_ids: null` (all shops).
pub async fn response(c: &impl GenericClient, u: &User) -> Result<Value, DbError> {
    let shops = if u.role == Role::Admin {
        Value::Null
    } else {
        json!(shop_ids(c, u.id).await?)
    };
    let level = level_summary(c, u.account_level_id).await?;
    Ok(json!({
        "id": u.id,
        "username": u.username,
        "phone": u.phone.as_deref().map(mask_phone),
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
        "account_level": level,
        "last_login_at": u.last_login_at,
        "created_at": u.created_at,
        "updated_at": u.updated_at,
    }))
}

/// Whether any admin exists (bootstrap creates the first).
pub async fn admin_exists(c: &impl GenericClient) -> Result<bool, DbError> {
    Ok(c.query_one(
        "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin')",
        &[],
    )
    .await?
    .get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_masked() {
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_phone("+79161234567"), "+79****4567");
        assert_eq!(mask_phone("123"), "****");
    }
}
