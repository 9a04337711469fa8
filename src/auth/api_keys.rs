//! API keys for scripts and the browser extension: `ef_live_` + 32 random URL-safe characters,
//! shown once, stored as SHA-256 (the original's format, so its keys keep working) — and the
//! service that creates, lists, regenerates and deletes a user's keys, and resolves a presented
//! key to its user in one statement.

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::actor::Actor;
use super::audit::{self, Entry};
use super::roles::{AccountState, AccountStatus, Role};
use crate::db::DbError;
use crate::db::sql::Sql;
use crate::domain::{Checks, DomainError, Work, string_list_problem};

pub const PREFIX: &str = "ef_live_";
pub const MAX_PER_USER: i64 = 20;
pub const DEFAULT_PERMISSIONS: &[&str] = &["product_selection:write"];

/// A new key (to show once) and its hash (to store).
pub fn generate() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let key = format!("{PREFIX}{}", &encoded[..32]);
    let hash = hash(&key);
    (key, hash)
}

pub fn hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Cheap shape check before touching the database.
pub fn looks_valid(key: &str) -> bool {
    key.len() == PREFIX.len() + 32
        && key.starts_with(PREFIX)
        && key[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn not_found() -> DomainError {
    DomainError::not_found("API_KEY_NOT_FOUND", "No such API key")
}

/// A key as created or regenerated: the secret is in here once and never again.
#[derive(Debug)]
pub struct IssuedKey {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub permissions: Value,
    pub expires_at: Option<DateTime<Utc>>,
    /// `created_at` for a new key, `updated_at` for a regenerated one.
    pub at: DateTime<Utc>,
}

/// Parse a key's name, permissions and lifetime.
fn check_new(
    name: &str,
    permissions: Option<Vec<String>>,
    expires_in_days: Option<i64>,
) -> Result<(String, Vec<String>, Option<i64>), DomainError> {
    let name = name.trim().to_owned();
    let permissions = permissions.unwrap_or_else(|| {
        DEFAULT_PERMISSIONS
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    });
    let mut checks = Checks::new();
    checks.len_between(&name, "name", 1, 100);
    if let Some(why) = string_list_problem(&permissions, 50, 100) {
        checks.check(false, "permissions", "value_error", why);
    }
    if let Some(d) = expires_in_days {
        checks.check(
            (1..=3650).contains(&d),
            "expires_in_days",
            "value_error",
            "must be 1 to 3650 days",
        );
    }
    checks.finish()?;
    Ok((name, permissions, expires_in_days))
}

fn owner(actor: &Actor) -> Result<i64, DomainError> {
    actor.require_session()?;
    actor.require_shops()?;
    actor.user().map(|u| u.id).ok_or_else(|| {
        DomainError::denied(
            "INSUFFICIENT_PERMISSIONS",
            "API keys belong to users; log in",
        )
    })
}

/// Create a key for the actor (at most [`MAX_PER_USER`], enforced under concurrency).
pub async fn create(
    work: &mut Work<'_>,
    actor: &Actor,
    name: &str,
    permissions: Option<Vec<String>>,
    expires_in_days: Option<i64>,
) -> Result<IssuedKey, DomainError> {
    let user_id = owner(actor)?;
    let (name, permissions, expires_in_days) = check_new(name, permissions, expires_in_days)?;
    let expires_at = expires_in_days.map(|d| Utc::now() + Duration::days(d));
    let (key, hash) = generate();
    let tx = work.tx();
    // Serialise this user's key creations so the limit holds under concurrency.
    tx.exec("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&user_id])
        .await?;
    let count: i64 = tx
        .row(
            "SELECT count(*) FROM api_keys WHERE user_id = $1",
            &[&user_id],
        )
        .await?
        .get(0);
    if count >= MAX_PER_USER {
        return Err(DomainError::rejected(
            "API_KEY_LIMIT",
            format!("At most {MAX_PER_USER} API keys per user; delete one first"),
        ));
    }
    let permissions = json!(permissions);
    let row = tx
        .row(
            "INSERT INTO api_keys (user_id, key_hash, name, permissions, expires_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at",
            &[&user_id, &hash, &name, &permissions, &expires_at],
        )
        .await?;
    let id: i64 = row.get(0);
    audit::write(
        tx,
        actor,
        Entry::new("api_key", "create", "创建API密钥")
            .record("api_keys", id)
            .changes(json!({"name": name})),
    )
    .await?;
    Ok(IssuedKey {
        id,
        key,
        name,
        permissions,
        expires_at,
        at: row.get(1),
    })
}

/// The actor's own keys, without secrets.
pub async fn list(c: &impl Sql, actor: &Actor) -> Result<Vec<Value>, DomainError> {
    let user_id = owner(actor)?;
    let rows = c
        .rows(
            "SELECT id, name, permissions, is_active, last_used_at, expires_at, created_at, updated_at
               FROM api_keys WHERE user_id = $1 ORDER BY id",
            &[&user_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            json!({
                "id": r.get::<_, i64>(0),
                "name": r.get::<_, String>(1),
                "permissions": r.get::<_, Value>(2),
                "is_active": r.get::<_, bool>(3),
                "last_used_at": r.get::<_, Option<DateTime<Utc>>>(4),
                "expires_at": r.get::<_, Option<DateTime<Utc>>>(5),
                "created_at": r.get::<_, DateTime<Utc>>(6),
                "updated_at": r.get::<_, DateTime<Utc>>(7),
            })
        })
        .collect())
}

/// Delete one of the actor's keys; another user's key is "not found".
pub async fn delete(work: &mut Work<'_>, actor: &Actor, id: i64) -> Result<(), DomainError> {
    let user_id = owner(actor)?;
    let tx = work.tx();
    let n = tx
        .exec(
            "DELETE FROM api_keys WHERE id = $1 AND user_id = $2",
            &[&id, &user_id],
        )
        .await?;
    if n == 0 {
        return Err(not_found());
    }
    audit::write(
        tx,
        actor,
        Entry::new("api_key", "delete", "删除API密钥").record("api_keys", id),
    )
    .await?;
    Ok(())
}

/// A new secret for the same key; the old one stops working.
pub async fn regenerate(
    work: &mut Work<'_>,
    actor: &Actor,
    id: i64,
) -> Result<IssuedKey, DomainError> {
    let user_id = owner(actor)?;
    let (key, hash) = generate();
    let tx = work.tx();
    let row = tx
        .maybe_row(
            "UPDATE api_keys SET key_hash = $3, updated_at = now()
              WHERE id = $1 AND user_id = $2
          RETURNING name, permissions, expires_at, updated_at",
            &[&id, &user_id, &hash],
        )
        .await?
        .ok_or_else(not_found)?;
    audit::write(
        tx,
        actor,
        Entry::new("api_key", "regenerate", "重新生成API密钥").record("api_keys", id),
    )
    .await?;
    Ok(IssuedKey {
        id,
        key,
        name: row.get(0),
        permissions: row.get(1),
        expires_at: row.get(2),
        at: row.get(3),
    })
}

/// The user behind a key, with what the per-request checks need.
#[derive(Debug, Clone)]
pub struct KeyOwner {
    pub key_id: i64,
    pub permissions: Value,
    pub state: AccountState,
    /// `None` for admins: every shop.
    pub shop_ids: Option<Vec<i64>>,
}

/// Find an active key by its hash, note its use (at most once a minute), and read its user's
/// state, parent's state and shops — one statement, one round trip.
pub async fn resolve(c: &impl Sql, key_hash: &str) -> Result<Option<KeyOwner>, DbError> {
    let row = c
        .maybe_row(
            "WITH k AS (
                SELECT id, user_id, permissions FROM api_keys
                 WHERE key_hash = $1 AND is_active AND (expires_at IS NULL OR expires_at > now())
                 LIMIT 1
             ), used AS (
                UPDATE api_keys SET last_used_at = now()
                 WHERE id = (SELECT id FROM k)
                   AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
             )
             SELECT k.id, k.permissions, u.id, u.username, u.role, u.is_active, u.account_status,
                    u.expires_at, u.parent_user_id, p.is_active, p.account_status, p.expires_at,
                    COALESCE((SELECT array_agg(s.shop_id ORDER BY s.shop_id) FROM user_shops s
                               WHERE s.user_id = u.id), '{}'::bigint[])
               FROM k JOIN users u ON u.id = k.user_id
               LEFT JOIN users p ON p.id = u.parent_user_id",
            &[&key_hash],
        )
        .await?;
    Ok(row.map(|r| {
        let status = |s: &str| AccountStatus::parse(s).unwrap_or(AccountStatus::Disabled);
        let role = Role::parse(r.get::<_, &str>(4)).unwrap_or(Role::SubAccount);
        let parent_active: Option<bool> = r.get(9);
        let state = AccountState {
            user_id: r.get(2),
            username: r.get(3),
            role,
            is_active: r.get(5),
            status: status(r.get::<_, &str>(6)),
            expires_at: r.get(7),
            parent_user_id: r.get(8),
            inherited: parent_active.map(|a| {
                let s: Option<&str> = r.get(10);
                (a, status(s.unwrap_or("disabled")), r.get(11))
            }),
        };
        let shops: Vec<i64> = r.get(12);
        KeyOwner {
            key_id: r.get(0),
            permissions: r.get(1),
            shop_ids: (role != Role::Admin).then_some(shops),
            state,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_hash() {
        let (k, h) = generate();
        assert!(looks_valid(&k), "{k}");
        assert_eq!(k.len(), 40);
        assert_eq!(h.len(), 64);
        assert_eq!(hash(&k), h);
        assert_ne!(generate().0, k);
        assert!(!looks_valid("ef_live_short"));
    }
}
