//! What modules cost (`credit_module_configs`), the estimate of a charge, and the low-balance
//! alert: its threshold (admins) and its mute (the account's users, until the next recharge).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tokio_postgres::Row;

use super::{CREDIT_NAME, MAX_AMOUNT, MAX_UNITS, owner_of, user_not_found};
use crate::auth::Actor;
use crate::auth::audit::{self, Entry};
use crate::auth::roles::Role;
use crate::db::sql::Sql;
use crate::domain::{Checks, DomainError, Work};

fn logged_in(actor: &Actor) -> Result<i64, DomainError> {
    actor
        .user()
        .map(|u| u.id)
        .ok_or_else(|| DomainError::denied("INSUFFICIENT_PERMISSIONS", "Log in first"))
}

fn admin(actor: &Actor) -> Result<(), DomainError> {
    actor.require_session()?;
    actor.require_role(Role::Admin)
}

const MODULE_COLUMNS: &str = "id, module_key, module_name, cost_per_unit, unit_description, is_enabled, created_at, updated_at";

/// A module's price; admins see the row's id and times too, as the original's admin page.
fn module_json(r: &Row, full: bool) -> Value {
    let mut v = json!({
        "module_key": r.get::<_, String>(1),
        "module_name": r.get::<_, String>(2),
        "cost_per_unit": r.get::<_, Decimal>(3).to_string(),
        "unit_description": r.get::<_, String>(4),
        "is_enabled": r.get::<_, bool>(5),
    });
    if full && let Some(o) = v.as_object_mut() {
        o.insert("id".into(), json!(r.get::<_, i64>(0)));
        o.insert("created_at".into(), json!(r.get::<_, DateTime<Utc>>(6)));
        o.insert("updated_at".into(), json!(r.get::<_, DateTime<Utc>>(7)));
    }
    v
}

/// `{items: [...]}`: every logged-in user may read the prices; `admin_view` (admins only) adds
/// ids and times.
pub async fn module_configs(
    c: &impl Sql,
    actor: &Actor,
    admin_view: bool,
) -> Result<Value, DomainError> {
    if admin_view {
        admin(actor)?;
    } else {
        logged_in(actor)?;
    }
    let rows = c
        .rows(
            &format!("SELECT {MODULE_COLUMNS} FROM credit_module_configs ORDER BY module_key"),
            &[],
        )
        .await?;
    Ok(json!({"items": rows.iter().map(|r| module_json(r, admin_view)).collect::<Vec<_>>()}))
}

/// A price edit, parsed; `None` keeps the field.
#[derive(Debug, Default)]
pub struct ModuleChanges {
    pub cost_per_unit: Option<Decimal>,
    pub module_name: Option<String>,
    pub unit_description: Option<String>,
    pub is_enabled: Option<bool>,
}

pub async fn update_module_config(
    work: &mut Work<'_>,
    actor: &Actor,
    module_key: &str,
    ch: &ModuleChanges,
) -> Result<Value, DomainError> {
    admin(actor)?;
    let mut checks = Checks::new();
    if let Some(n) = &ch.module_name {
        checks.len_between(n.trim(), "module_name", 1, 100);
    }
    if let Some(u) = &ch.unit_description {
        checks.len_between(u.trim(), "unit_description", 1, 50);
    }
    if let Some(c) = ch.cost_per_unit {
        checks.check(
            c >= Decimal::ZERO && c <= MAX_AMOUNT && c.normalize().scale() <= 4,
            "cost_per_unit",
            "value_error",
            format!("0 to {MAX_AMOUNT}, at most 4 decimal places"),
        );
    }
    checks.finish()?;
    let tx = work.tx();
    let before = tx
        .maybe_row(
            &format!(
                "SELECT {MODULE_COLUMNS} FROM credit_module_configs WHERE module_key = $1 FOR UPDATE"
            ),
            &[&module_key],
        )
        .await?
        .ok_or_else(|| {
            DomainError::not_found("CREDIT_MODULE_NOT_FOUND", "No such credit module")
        })?;
    let after = tx
        .row(
            &format!(
                "UPDATE credit_module_configs
                    SET cost_per_unit = COALESCE($2, cost_per_unit),
                        module_name = COALESCE($3, module_name),
                        unit_description = COALESCE($4, unit_description),
                        is_enabled = COALESCE($5, is_enabled),
                        updated_at = now()
                  WHERE module_key = $1
              RETURNING {MODULE_COLUMNS}"
            ),
            &[
                &module_key,
                &ch.cost_per_unit,
                &ch.module_name.as_deref().map(str::trim),
                &ch.unit_description.as_deref().map(str::trim),
                &ch.is_enabled,
            ],
        )
        .await?;
    let (old, new) = (module_json(&before, false), module_json(&after, false));
    let fields = [
        "module_name",
        "cost_per_unit",
        "unit_description",
        "is_enabled",
    ];
    let pairs: Vec<(&str, Value, Value)> = fields
        .iter()
        .map(|f| (*f, old[*f].clone(), new[*f].clone()))
        .collect();
    audit::write(
        tx,
        actor,
        Entry::new("credit", "update_module_config", "修改模块计费")
            .record("credit_module_configs", after.get::<_, i64>(0))
            .changes(audit::diff(&pairs)),
    )
    .await?;
    Ok(module_json(&after, true))
}

/// What `units` of a module would cost the caller's account now.
#[derive(Debug)]
pub struct Estimate {
    pub total_cost: Decimal,
    pub unit_cost: Decimal,
    pub billable_count: u32,
    pub reprint_count: u32,
    pub current_balance: Decimal,
    pub sufficient: bool,
    pub credit_name: &'static str,
}

/// `POST /credit/calculate`. A disabled or unknown module costs nothing (the original's rule).
/// `reprints` of the units are free (the label printing feature knows which those are).
pub async fn calculate(
    c: &impl Sql,
    actor: &Actor,
    module: &str,
    units: u32,
    reprints: u32,
) -> Result<Estimate, DomainError> {
    let me = logged_in(actor)?;
    if units > MAX_UNITS || reprints > units {
        return Err(DomainError::invalid(
            "posting_numbers",
            "value_error",
            format!("at most {MAX_UNITS}"),
        ));
    }
    let row = c
        .row(
            &format!(
                "SELECT (SELECT cost_per_unit FROM credit_module_configs
                          WHERE module_key = $2 AND is_enabled),
                        COALESCE(a.balance, 0)
                   FROM users u LEFT JOIN credit_accounts a ON a.user_id = {owner}
                  WHERE u.id = $1",
                owner = super::OWNER_SQL
            ),
            &[&me, &module],
        )
        .await?;
    let mut unit_cost: Decimal = row.get::<_, Option<Decimal>>(0).unwrap_or(Decimal::ZERO);
    let balance: Decimal = row.get(1);
    let billable = units - reprints;
    let mut total = unit_cost * Decimal::from(billable);
    // Four places always, as the `numeric(…, 4)` columns print ("0.0000", not "0").
    unit_cost.rescale(4);
    total.rescale(4);
    Ok(Estimate {
        total_cost: total,
        unit_cost,
        billable_count: billable,
        reprint_count: reprints,
        current_balance: balance,
        sufficient: balance >= total,
        credit_name: CREDIT_NAME,
    })
}

/// `POST /credit/mute-alert`: no low-balance popup for the caller's account until it is next
/// recharged. A sub-account mutes its main account's alert (they share the balance).
pub async fn mute_alert(work: &mut Work<'_>, actor: &Actor) -> Result<(), DomainError> {
    let me = logged_in(actor)?;
    let tx = work.tx();
    let owner = owner_of(tx, me).await?;
    // The account may not exist yet: its alert shows (balance 0 is below the threshold) and so
    // it can be muted.
    let id: i64 = tx
        .row(
            "INSERT INTO credit_accounts (user_id, low_balance_alert_muted) VALUES ($1, true)
             ON CONFLICT (user_id) DO UPDATE
                SET low_balance_alert_muted = true, updated_at = now()
             RETURNING id",
            &[&owner],
        )
        .await?
        .get(0);
    audit::write(
        tx,
        actor,
        Entry::new("credit", "mute_alert", "静默余额预警").record("credit_accounts", id),
    )
    .await?;
    Ok(())
}

/// `PUT /admin/credit/accounts/{user_id}/threshold`: below it the account's users are warned.
/// Returns the stored threshold.
pub async fn set_threshold(
    work: &mut Work<'_>,
    actor: &Actor,
    user_id: i64,
    threshold: Decimal,
) -> Result<Decimal, DomainError> {
    admin(actor)?;
    let tx = work.tx();
    let owner = owner_of(tx, user_id).await?;
    if owner != user_id {
        return Err(DomainError::rejected(
            "RECHARGE_MAIN_ACCOUNT",
            "This user spends the points of its main account: set the threshold there",
        ));
    }
    let old = tx
        .maybe_row(
            "SELECT low_balance_threshold FROM credit_accounts WHERE user_id = $1",
            &[&user_id],
        )
        .await?
        .map(|r| r.get::<_, Decimal>(0).to_string());
    let row = tx
        .maybe_row(
            "INSERT INTO credit_accounts (user_id, low_balance_threshold) VALUES ($1, $2)
             ON CONFLICT (user_id) DO UPDATE
                SET low_balance_threshold = EXCLUDED.low_balance_threshold, updated_at = now()
             RETURNING id, low_balance_threshold",
            &[&user_id, &threshold],
        )
        .await?
        .ok_or_else(user_not_found)?;
    let stored: Decimal = row.get(1);
    audit::write(
        tx,
        actor,
        Entry::new("credit", "set_threshold", "修改预警阈值")
            .record("credit_accounts", row.get::<_, i64>(0))
            .changes(json!({"low_balance_threshold": {"old": old, "new": stored.to_string()}})),
    )
    .await?;
    Ok(stored)
}
