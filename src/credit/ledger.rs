//! The movements of a balance: recharge, consume, refund. Each one, inside the caller's
//! transaction:
//!
//! 1. locks the paying account's row (`SELECT ... FOR UPDATE`, creating the account first when
//!    it has none), so movements of one account take turns until the transaction ends;
//! 2. looks up the idempotency key — only now, so a concurrent retry waits for the first and
//!    then finds it — and hands back the first movement instead of making a second;
//! 3. checks the balance it just locked, changes it, and appends the ledger row with the
//!    balance before and after;
//! 4. writes the audit row.
//!
//! The original read the balance, then updated it under a version check and gave up after three
//! conflicts; under load that refused charges it could have made. A lock costs the same round
//! trips and never refuses.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tokio_postgres::Row;

use super::{
    CREDIT_NAME, MAX_AMOUNT, MAX_BALANCE, MAX_UNITS, check_key, owner_of, stored_key,
    user_not_found,
};
use crate::auth::Actor;
use crate::auth::audit::{self, Entry};
use crate::auth::roles::Role;
use crate::db::DbError;
use crate::db::sql::{self, Sql};
use crate::domain::{DomainError, Work};

/// The account row of the paying user, locked until the transaction ends.
struct Locked {
    id: i64,
    balance: Decimal,
}

async fn lock_account(c: &impl Sql, owner: i64) -> Result<Locked, DomainError> {
    const SELECT: &str = "SELECT id, balance FROM credit_accounts WHERE user_id = $1 FOR UPDATE";
    let row = match c.maybe_row(SELECT, &[&owner]).await? {
        Some(r) => r,
        None => {
            // Two first movements at once: one inserts, the other waits for it and inserts
            // nothing; both then lock the same row.
            c.exec(
                "INSERT INTO credit_accounts (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING",
                &[&owner],
            )
            .await?;
            c.row(SELECT, &[&owner]).await?
        }
    };
    Ok(Locked {
        id: row.get(0),
        balance: row.get(1),
    })
}

/// An earlier movement with the same stored key.
struct Earlier {
    id: i64,
    transaction_type: String,
    amount: Decimal,
    balance_before: Decimal,
    balance_after: Decimal,
    refund_of_id: Option<i64>,
}

async fn earlier(c: &impl Sql, key: Option<&str>) -> Result<Option<Earlier>, DomainError> {
    let Some(key) = key else { return Ok(None) };
    let row = c
        .maybe_row(
            "SELECT id, transaction_type, amount, balance_before, balance_after, refund_of_id
               FROM credit_transactions WHERE idempotency_key = $1",
            &[&key],
        )
        .await?;
    Ok(row.map(|r| Earlier {
        id: r.get(0),
        transaction_type: r.get(1),
        amount: r.get(2),
        balance_before: r.get(3),
        balance_after: r.get(4),
        refund_of_id: r.get(5),
    }))
}

fn key_reused() -> DomainError {
    DomainError::conflict(
        "IDEMPOTENCY_KEY_REUSED",
        "This idempotency key was used for a different movement; use a new key for a new one",
    )
}

fn ip_of(actor: &Actor) -> Option<String> {
    actor.origin.ip.map(|ip| ip.to_string())
}

/// The operator recorded on a ledger row: the acting user, or (the operator at the machine, a
/// job) the user the movement is for.
fn operator_id(actor: &Actor, for_user: Option<i64>) -> Option<i64> {
    actor.user().map(|u| u.id).or(for_user)
}

/// Insert a ledger row; a unique violation of the key means a movement of another account used
/// it (the key of one account can never collide, it is locked).
#[allow(clippy::too_many_arguments)]
async fn append(
    c: &impl Sql,
    account_id: i64,
    kind: &str,
    amount: Decimal,
    before: Decimal,
    module: Option<&str>,
    operator: Option<i64>,
    details: &Value,
    key: Option<&str>,
    ip: Option<&str>,
    notes: Option<&str>,
    refund_of: Option<i64>,
) -> Result<(i64, DateTime<Utc>), DomainError> {
    let row = c
        .row(
            "INSERT INTO credit_transactions (account_id, transaction_type, amount, balance_before,
                                              balance_after, module, operator_user_id, details,
                                              idempotency_key, ip_address, notes, refund_of_id)
             VALUES ($1, $2, $3, $4, $4::numeric + $3::numeric, $5, $6, $7, $8, $9, $10, $11)
             RETURNING id, created_at",
            &[
                &account_id,
                &kind,
                &amount,
                &before,
                &module,
                &operator,
                details,
                &key,
                &ip,
                &notes,
                &refund_of,
            ],
        )
        .await
        .map_err(|e: DbError| {
            if sql::violates(&e, "credit_transactions_idempotency_key_key") {
                key_reused()
            } else {
                e.into()
            }
        })?;
    Ok((row.get(0), row.get(1)))
}

// ---------------------------------------------------------------------------------------------
// Consume

/// What a feature charges for: `units` of `module` at the module's price, on behalf of
/// `user_id` (whose main account pays).
#[derive(Debug, Clone)]
pub struct Charge {
    /// The user whose action costs. A logged-in actor may only charge itself.
    pub user_id: i64,
    /// `credit_module_configs.module_key`, e.g. `print_label`.
    pub module: String,
    pub units: u32,
    /// The same key charges once: a retry gets the first charge back. Build it from what makes
    /// the charge unique (e.g. `print:<posting number>`), never from a clock.
    pub idempotency_key: Option<String>,
    /// Shown in the history (`posting_numbers`, `billable_count`, ...); at most 16 KiB.
    pub details: Value,
    pub notes: Option<String>,
}

/// A charge made (or found again by its key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    /// `None` when the module is free or disabled: nothing was written.
    pub transaction_id: Option<i64>,
    /// Points charged (positive).
    pub cost: Decimal,
    pub balance_before: Option<Decimal>,
    pub balance_after: Option<Decimal>,
    /// The key named an earlier charge; this is that one.
    pub replayed: bool,
}

/// Not enough points: nothing was written, the caller's transaction is still usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub required: Decimal,
    pub balance: Decimal,
    pub credit_name: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum ChargeError {
    /// The original answered this with 402 and `{error: "INSUFFICIENT_CREDIT", required,
    /// balance, credit_name}`; the feature that charges shapes that answer.
    #[error("{}不足，当前余额 {}，需要 {}", .0.credit_name, .0.balance, .0.required)]
    Insufficient(Shortfall),
    #[error(transparent)]
    Domain(#[from] DomainError),
}

impl From<DbError> for ChargeError {
    fn from(e: DbError) -> Self {
        ChargeError::Domain(e.into())
    }
}

impl From<ChargeError> for DomainError {
    fn from(e: ChargeError) -> Self {
        match e {
            ChargeError::Insufficient(_) => {
                DomainError::rejected("INSUFFICIENT_CREDIT", e.to_string())
            }
            ChargeError::Domain(d) => d,
        }
    }
}

/// Charge `charge.units` of a module to the main account of `charge.user_id`, inside the
/// caller's transaction (a feature charges in the same transaction as the work it charges for,
/// so both commit or neither). Refuses with [`ChargeError::Insufficient`] rather than overdraw.
///
/// The account stays locked until that transaction ends, so every other charge of the account
/// waits for it: charge last, just before the commit, never across a call to Ozon or another
/// slow service. A transaction that charges two accounts may deadlock with one charging them
/// in the other order (PostgreSQL then aborts one of them); charge one account per transaction.
pub async fn consume(
    work: &mut Work<'_>,
    actor: &Actor,
    charge: &Charge,
) -> Result<Consumed, ChargeError> {
    match actor.user() {
        Some(u) if u.id != charge.user_id => {
            return Err(DomainError::denied(
                "INSUFFICIENT_PERMISSIONS",
                "A user can only be charged for its own actions",
            )
            .into());
        }
        None if !actor.is_operator() => {
            return Err(DomainError::denied("INSUFFICIENT_PERMISSIONS", "Log in first").into());
        }
        _ => {}
    }
    check_key(charge.idempotency_key.as_deref())?;
    if charge.units == 0 || charge.units > MAX_UNITS {
        return Err(
            DomainError::invalid("units", "value_error", format!("1 to {MAX_UNITS}")).into(),
        );
    }
    if charge.details.to_string().len() > 16 * 1024 || !charge.details.is_object() {
        return Err(DomainError::invalid(
            "details",
            "value_error",
            "must be a JSON object of at most 16 KiB",
        )
        .into());
    }
    let tx = work.tx();
    let price = tx
        .maybe_row(
            "SELECT cost_per_unit, is_enabled FROM credit_module_configs WHERE module_key = $1",
            &[&charge.module],
        )
        .await?
        .ok_or_else(|| {
            DomainError::not_found("CREDIT_MODULE_NOT_FOUND", "No such credit module")
        })?;
    let (unit, enabled): (Decimal, bool) = (price.get(0), price.get(1));
    let cost = unit * Decimal::from(charge.units);
    if !enabled || cost.is_zero() {
        return Ok(Consumed {
            transaction_id: None,
            cost: Decimal::ZERO,
            balance_before: None,
            balance_after: None,
            replayed: false,
        });
    }
    if cost > MAX_AMOUNT {
        return Err(DomainError::rejected(
            "AMOUNT_TOO_LARGE",
            format!("One charge may cost at most {MAX_AMOUNT} points"),
        )
        .into());
    }
    let owner = owner_of(tx, charge.user_id).await?;
    let account = lock_account(tx, owner).await?;
    let key = charge
        .idempotency_key
        .as_deref()
        .map(|k| stored_key("consume", account.id, k));
    if let Some(e) = earlier(tx, key.as_deref()).await? {
        if e.transaction_type != "consume" || e.amount != -cost {
            return Err(key_reused().into());
        }
        return Ok(Consumed {
            transaction_id: Some(e.id),
            cost,
            balance_before: Some(e.balance_before),
            balance_after: Some(e.balance_after),
            replayed: true,
        });
    }
    if account.balance < cost {
        return Err(ChargeError::Insufficient(Shortfall {
            required: cost,
            balance: account.balance,
            credit_name: CREDIT_NAME,
        }));
    }
    tx.exec(
        "UPDATE credit_accounts
            SET balance = balance - $2, total_consumed = total_consumed + $2,
                version = version + 1, updated_at = now()
          WHERE id = $1",
        &[&account.id, &cost],
    )
    .await?;
    let (id, _) = append(
        tx,
        account.id,
        "consume",
        -cost,
        account.balance,
        Some(&charge.module),
        operator_id(actor, Some(charge.user_id)),
        &charge.details,
        key.as_deref(),
        ip_of(actor).as_deref(),
        charge.notes.as_deref(),
        None,
    )
    .await?;
    audit::write(
        tx,
        actor,
        Entry::new("credit", "consume", "额度消费")
            .record("credit_transactions", id)
            .changes(json!({
                "account_user_id": owner,
                "module": charge.module,
                "units": charge.units,
                "amount": (-cost).to_string(),
            })),
    )
    .await?;
    Ok(Consumed {
        transaction_id: Some(id),
        cost,
        balance_before: Some(account.balance),
        balance_after: Some(account.balance - cost),
        replayed: false,
    })
}

// ---------------------------------------------------------------------------------------------
// Refund

/// Give back (part of) a consume: when the work it paid for failed or was undone.
#[derive(Debug, Clone)]
pub struct Refund {
    pub consume_id: i64,
    /// `None`: all that is not refunded yet.
    pub amount: Option<Decimal>,
    pub idempotency_key: Option<String>,
    pub notes: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refunded {
    pub transaction_id: i64,
    pub amount: Decimal,
    pub balance_before: Decimal,
    pub balance_after: Decimal,
    pub replayed: bool,
}

/// Refund a consume, in the caller's transaction. Admins, the operator and jobs may refund any;
/// a user only its own consumes. The refunds of one consume never add up to more than it cost.
pub async fn refund(
    work: &mut Work<'_>,
    actor: &Actor,
    r: &Refund,
) -> Result<Refunded, DomainError> {
    check_key(r.idempotency_key.as_deref())?;
    if let Some(a) = r.amount
        && (a <= Decimal::ZERO || a > MAX_AMOUNT || a.normalize().scale() > 4)
    {
        return Err(DomainError::invalid(
            "amount",
            "value_error",
            format!("must be above 0, at most {MAX_AMOUNT}, with at most 4 decimal places"),
        ));
    }
    let tx = work.tx();
    let not_found = || DomainError::not_found("TRANSACTION_NOT_FOUND", "No such consume");
    let row = tx
        .maybe_row(
            "SELECT t.transaction_type, t.amount, t.operator_user_id, t.module, a.user_id
               FROM credit_transactions t JOIN credit_accounts a ON a.id = t.account_id
              WHERE t.id = $1",
            &[&r.consume_id],
        )
        .await?
        .ok_or_else(not_found)?;
    let (kind, charged, operator, module, owner): (
        String,
        Decimal,
        Option<i64>,
        Option<String>,
        i64,
    ) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let allowed = actor.is_operator()
        || actor.is_admin()
        || actor.user().is_some_and(|u| Some(u.id) == operator);
    if !allowed {
        // Someone else's movement: as if it did not exist.
        return Err(not_found());
    }
    if kind != "consume" {
        return Err(DomainError::rejected(
            "NOT_A_CONSUME",
            "Only a consume can be refunded",
        ));
    }
    let account = lock_account(tx, owner).await?;
    let key = r
        .idempotency_key
        .as_deref()
        .map(|k| stored_key("refund", account.id, k));
    if let Some(e) = earlier(tx, key.as_deref()).await? {
        if e.transaction_type != "refund"
            || e.refund_of_id != Some(r.consume_id)
            || r.amount.is_some_and(|a| a != e.amount)
        {
            return Err(key_reused());
        }
        return Ok(Refunded {
            transaction_id: e.id,
            amount: e.amount,
            balance_before: e.balance_before,
            balance_after: e.balance_after,
            replayed: true,
        });
    }
    // Read under the account lock: concurrent refunds of one consume take turns.
    let refunded: Decimal = tx
        .row(
            "SELECT COALESCE(sum(amount), 0) FROM credit_transactions WHERE refund_of_id = $1",
            &[&r.consume_id],
        )
        .await?
        .get(0);
    let left = -charged - refunded;
    let amount = r.amount.unwrap_or(left);
    if left <= Decimal::ZERO {
        return Err(DomainError::conflict(
            "ALREADY_REFUNDED",
            "This consume has been refunded in full",
        ));
    }
    if amount > left {
        return Err(DomainError::rejected(
            "REFUND_TOO_LARGE",
            format!("At most {left} points of this consume are left to refund"),
        ));
    }
    tx.exec(
        "UPDATE credit_accounts
            SET balance = balance + $2, total_consumed = total_consumed - $2,
                version = version + 1, updated_at = now()
          WHERE id = $1",
        &[&account.id, &amount],
    )
    .await?;
    let (id, _) = append(
        tx,
        account.id,
        "refund",
        amount,
        account.balance,
        module.as_deref(),
        operator_id(actor, operator),
        &json!({"refund_of": r.consume_id}),
        key.as_deref(),
        ip_of(actor).as_deref(),
        r.notes.as_deref(),
        Some(r.consume_id),
    )
    .await?;
    audit::write(
        tx,
        actor,
        Entry::new("credit", "refund", "额度退还")
            .record("credit_transactions", id)
            .changes(json!({
                "account_user_id": owner,
                "refund_of": r.consume_id,
                "amount": amount.to_string(),
            })),
    )
    .await?;
    Ok(Refunded {
        transaction_id: id,
        amount,
        balance_before: account.balance,
        balance_after: account.balance + amount,
        replayed: false,
    })
}

// ---------------------------------------------------------------------------------------------
// Recharge

pub const PAYMENT_METHODS: [&str; 3] = ["manual", "wechat", "alipay"];

/// An admin's top-up, parsed (`api::credit` checks the strings).
#[derive(Debug, Clone)]
pub struct Recharge {
    pub user_id: i64,
    pub amount: Decimal,
    pub payment_method: String,
    pub payment_amount_cny: Option<Decimal>,
    pub payment_order_no: Option<String>,
    pub notes: Option<String>,
    /// The client's key (`Idempotency-Key`), else a wechat/alipay order number: a recharge is
    /// made once per key.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recharged {
    pub transaction_id: i64,
    pub amount: Decimal,
    pub balance_before: Decimal,
    pub balance_after: Decimal,
    pub replayed: bool,
}

fn row_recharged(r: &Row) -> Recharged {
    Recharged {
        transaction_id: r.get(0),
        amount: r.get(1),
        balance_before: r.get(2),
        balance_after: r.get(3),
        replayed: false,
    }
}

/// Top up the account of `user_id` (admins only). The account must be its own: a sub-account's
/// or a shipper's main account is the one to recharge. Recharging clears the low-balance mute.
pub async fn recharge(
    work: &mut Work<'_>,
    actor: &Actor,
    r: &Recharge,
) -> Result<Recharged, DomainError> {
    actor.require_session()?;
    actor.require_role(Role::Admin)?;
    check_key(r.idempotency_key.as_deref())?;
    if !PAYMENT_METHODS.contains(&r.payment_method.as_str()) {
        return Err(DomainError::invalid(
            "payment_method",
            "enum",
            "must be manual, wechat or alipay",
        ));
    }
    if r.amount <= Decimal::ZERO || r.amount > MAX_AMOUNT {
        return Err(DomainError::invalid(
            "amount",
            "value_error",
            format!("must be above 0 and at most {MAX_AMOUNT}"),
        ));
    }
    let tx = work.tx();
    let owner = owner_of(tx, r.user_id).await?;
    if owner != r.user_id {
        let name: String = tx
            .maybe_row("SELECT username FROM users WHERE id = $1", &[&owner])
            .await?
            .ok_or_else(user_not_found)?
            .get(0);
        return Err(DomainError::rejected(
            "RECHARGE_MAIN_ACCOUNT",
            format!("This user spends the points of its main account {name}: recharge that one"),
        ));
    }
    let account = lock_account(tx, owner).await?;
    let key = r
        .idempotency_key
        .as_deref()
        .map(|k| stored_key("recharge", account.id, k))
        .or_else(|| match (r.payment_method.as_str(), &r.payment_order_no) {
            ("wechat" | "alipay", Some(no)) => Some(stored_key(
                &format!("recharge-order:{}", r.payment_method),
                account.id,
                no,
            )),
            _ => None,
        });
    if let Some(e) = earlier(tx, key.as_deref()).await? {
        if e.transaction_type != "recharge" || e.amount != r.amount {
            return Err(key_reused());
        }
        return Ok(Recharged {
            transaction_id: e.id,
            amount: e.amount,
            balance_before: e.balance_before,
            balance_after: e.balance_after,
            replayed: true,
        });
    }
    if account.balance + r.amount > MAX_BALANCE {
        return Err(DomainError::rejected(
            "BALANCE_TOO_LARGE",
            format!("A balance may not exceed {MAX_BALANCE} points"),
        ));
    }
    tx.exec(
        "UPDATE credit_accounts
            SET balance = balance + $2, total_recharged = total_recharged + $2,
                low_balance_alert_muted = false, version = version + 1, updated_at = now()
          WHERE id = $1",
        &[&account.id, &r.amount],
    )
    .await?;
    let admin_id = actor.user().map(|u| u.id);
    let row = tx
        .row(
            "INSERT INTO credit_transactions (account_id, transaction_type, amount, balance_before,
                                              balance_after, operator_user_id, payment_method,
                                              payment_amount_cny, payment_order_no, approved_by,
                                              idempotency_key, ip_address, notes)
             VALUES ($1, 'recharge', $2, $3, $3::numeric + $2::numeric, COALESCE($4::bigint, $9::bigint), $5, $6, $7, $4, $8, $10, $11)
             RETURNING id, amount, balance_before, balance_after",
            &[
                &account.id,
                &r.amount,
                &account.balance,
                &admin_id,
                &r.payment_method,
                &r.payment_amount_cny,
                &r.payment_order_no,
                &key,
                &r.user_id,
                &ip_of(actor),
                &r.notes,
            ],
        )
        .await
        .map_err(|e: DbError| {
            if sql::violates(&e, "credit_transactions_idempotency_key_key") {
                key_reused()
            } else {
                e.into()
            }
        })?;
    let done = row_recharged(&row);
    audit::write(
        tx,
        actor,
        Entry::new("credit", "recharge", "额度充值")
            .record("credit_transactions", done.transaction_id)
            .changes(json!({
                "user_id": r.user_id,
                "amount": done.amount.to_string(),
                "balance": {"old": done.balance_before.to_string(), "new": done.balance_after.to_string()},
                "payment_method": r.payment_method,
            })),
    )
    .await?;
    Ok(done)
}
