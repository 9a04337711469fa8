//! Account levels: the quotas of main accounts (sub-accounts, shops, default expiry). Admins only.
//! One level may be the default (given to new main accounts); making a level the default clears
//! the previous one in the same transaction.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_postgres::Row;

use super::actor::Actor;
use super::audit::{self, Entry};
use super::roles::Role;
use crate::db::DbError;
use crate::db::sql::{self, Sql};
use crate::domain::{Checks, DomainError, Work};

const COLUMNS: &str = "id, name, alias, max_sub_accounts, max_shops, default_expiration_days, \
                       extra_config, is_default, sort_order, created_at, updated_at";

fn to_json(r: &Row) -> Value {
    json!({
        "id": r.get::<_, i64>(0),
        "name": r.get::<_, String>(1),
        "alias": r.get::<_, Option<String>>(2),
        "max_sub_accounts": r.get::<_, i32>(3),
        "max_shops": r.get::<_, i32>(4),
        "default_expiration_days": r.get::<_, i32>(5),
        "extra_config": r.get::<_, Value>(6),
        "is_default": r.get::<_, bool>(7),
        "sort_order": r.get::<_, i32>(8),
        "created_at": r.get::<_, DateTime<Utc>>(9),
        "updated_at": r.get::<_, DateTime<Utc>>(10),
    })
}

fn not_found() -> DomainError {
    DomainError::not_found("LEVEL_NOT_FOUND", "No such account level")
}

fn admin(actor: &Actor) -> Result<(), DomainError> {
    actor.require_session()?;
    actor.require_role(Role::Admin)
}

fn name_taken(e: DbError) -> DomainError {
    if sql::is_unique_violation(&e) {
        DomainError::conflict("LEVEL_EXISTS", "A level with this name exists")
    } else {
        e.into()
    }
}

/// A level's fields as sent; `None` keeps (update) or defaults (create).
#[derive(Debug, Deserialize, Default)]
pub struct LevelInput {
    pub name: Option<String>,
    pub alias: Option<String>,
    pub max_sub_accounts: Option<i32>,
    pub max_shops: Option<i32>,
    pub default_expiration_days: Option<i32>,
    pub extra_config: Option<Value>,
    pub is_default: Option<bool>,
    pub sort_order: Option<i32>,
}

impl LevelInput {
    fn check(&self, creating: bool) -> Result<(), DomainError> {
        let mut c = Checks::new();
        match &self.name {
            Some(n) => {
                c.len_between(n.trim(), "name", 1, 50);
            }
            None => {
                c.check(!creating, "name", "missing", "is required");
            }
        }
        if let Some(a) = &self.alias {
            c.len_between(a, "alias", 0, 50);
        }
        for (v, loc) in [
            (self.max_sub_accounts, "max_sub_accounts"),
            (self.max_shops, "max_shops"),
            (self.default_expiration_days, "default_expiration_days"),
        ] {
            if let Some(v) = v {
                c.check(
                    (0..=100_000).contains(&v),
                    loc,
                    "value_error",
                    "must be 0 to 100000",
                );
            }
        }
        if let Some(x) = &self.extra_config {
            c.check(
                x.is_object() && x.to_string().len() <= 16 * 1024,
                "extra_config",
                "value_error",
                "must be a JSON object of at most 16 KiB",
            );
        }
        c.finish()
    }
}

pub async fn list(c: &impl Sql, actor: &Actor) -> Result<Vec<Value>, DomainError> {
    admin(actor)?;
    let rows = c
        .rows(
            &format!("SELECT {COLUMNS} FROM account_levels ORDER BY sort_order, id"),
            &[],
        )
        .await?;
    Ok(rows.iter().map(to_json).collect())
}

pub async fn get(c: &impl Sql, actor: &Actor, id: i64) -> Result<Value, DomainError> {
    admin(actor)?;
    let row = c
        .maybe_row(
            &format!("SELECT {COLUMNS} FROM account_levels WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or_else(not_found)?;
    Ok(to_json(&row))
}

pub async fn create(
    work: &mut Work<'_>,
    actor: &Actor,
    b: &LevelInput,
) -> Result<Value, DomainError> {
    admin(actor)?;
    b.check(true)?;
    let tx = work.tx();
    let is_default = b.is_default.unwrap_or(false);
    if is_default {
        tx.exec(
            "UPDATE account_levels SET is_default = false WHERE is_default",
            &[],
        )
        .await?;
    }
    let row = tx
        .row(
            &format!(
                "INSERT INTO account_levels (name, alias, max_sub_accounts, max_shops, default_expiration_days,
                                             extra_config, is_default, sort_order)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
            ),
            &[
                &b.name.as_deref().map(str::trim),
                &b.alias,
                &b.max_sub_accounts.unwrap_or(5),
                &b.max_shops.unwrap_or(10),
                &b.default_expiration_days.unwrap_or(30),
                &b.extra_config.clone().unwrap_or_else(|| json!({})),
                &is_default,
                &b.sort_order.unwrap_or(0),
            ],
        )
        .await
        .map_err(name_taken)?;
    let v = to_json(&row);
    audit::write(
        tx,
        actor,
        Entry::new("account_level", "create", "创建账号等级")
            .record("account_levels", &v["id"])
            .changes(v.clone()),
    )
    .await?;
    Ok(v)
}

/// Partial update.
pub async fn update(
    work: &mut Work<'_>,
    actor: &Actor,
    id: i64,
    b: &LevelInput,
) -> Result<Value, DomainError> {
    admin(actor)?;
    b.check(false)?;
    // Every user at this level shows it in `/auth/me`.
    work.effects().stale_everyone();
    let tx = work.tx();
    let before = tx
        .maybe_row(
            &format!("SELECT {COLUMNS} FROM account_levels WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await?
        .ok_or_else(not_found)?;
    if b.is_default == Some(true) {
        tx.exec(
            "UPDATE account_levels SET is_default = false WHERE is_default AND id <> $1",
            &[&id],
        )
        .await?;
    }
    let row = tx
        .row(
            &format!(
                "UPDATE account_levels SET
                    name = COALESCE($2, name), alias = COALESCE($3, alias),
                    max_sub_accounts = COALESCE($4, max_sub_accounts), max_shops = COALESCE($5, max_shops),
                    default_expiration_days = COALESCE($6, default_expiration_days),
                    extra_config = COALESCE($7, extra_config), is_default = COALESCE($8, is_default),
                    sort_order = COALESCE($9, sort_order), updated_at = now()
                  WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &b.name.as_deref().map(str::trim),
                &b.alias,
                &b.max_sub_accounts,
                &b.max_shops,
                &b.default_expiration_days,
                &b.extra_config,
                &b.is_default,
                &b.sort_order,
            ],
        )
        .await
        .map_err(name_taken)?;
    let after = to_json(&row);
    let old = to_json(&before);
    let pairs: Vec<(&str, Value, Value)> = [
        "name",
        "alias",
        "max_sub_accounts",
        "max_shops",
        "default_expiration_days",
        "extra_config",
        "is_default",
        "sort_order",
    ]
    .iter()
    .map(|f| (*f, old[*f].clone(), after[*f].clone()))
    .collect();
    audit::write(
        tx,
        actor,
        Entry::new("account_level", "update", "更新账号等级")
            .record("account_levels", id)
            .changes(audit::diff(&pairs)),
    )
    .await?;
    Ok(after)
}

/// Delete a level no user has.
pub async fn delete(work: &mut Work<'_>, actor: &Actor, id: i64) -> Result<(), DomainError> {
    admin(actor)?;
    work.effects().stale_everyone();
    let tx = work.tx();
    let in_use: i64 = tx
        .row(
            "SELECT count(*) FROM users WHERE account_level_id = $1",
            &[&id],
        )
        .await?
        .get(0);
    if in_use > 0 {
        return Err(DomainError::rejected(
            "LEVEL_IN_USE",
            format!("{in_use} users have this level; move them first"),
        ));
    }
    let n = tx
        .exec("DELETE FROM account_levels WHERE id = $1", &[&id])
        .await?;
    if n == 0 {
        return Err(not_found());
    }
    audit::write(
        tx,
        actor,
        Entry::new("account_level", "delete", "删除账号等级").record("account_levels", id),
    )
    .await?;
    Ok(())
}
