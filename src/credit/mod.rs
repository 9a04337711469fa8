//! The credit ledger (积分): one account per main account, the movements of its balance, what
//! each module costs, and the low-balance alert.
//!
//! - **Who pays.** A sub-account and a shipper spend their main account's balance (the original
//!   let shippers spend their own); an admin, a main account, and a sub-account or shipper
//!   without a main account hold their own. [`owner_of`] is that one rule.
//! - **Movements** (`ledger`): recharge (admins), consume (the features that cost, inside their
//!   own transaction: [`consume`]) and refund of a consume ([`refund`]). Each locks the account
//!   row for the rest of the transaction, so concurrent movements on one account take turns and
//!   each sees the balance the previous one left: no overdraft, no lost update, and every row's
//!   `balance_before` is the previous row's `balance_after`.
//! - **Idempotency.** A caller's key is stored as a SHA-256 of the movement's kind, the account
//!   and the key (64 hex characters: any key fits the original's `varchar(64)`), and it is looked
//!   up only after the account is locked, so a retry — even a concurrent one — finds the first
//!   movement and gets it back instead of a second charge.
//! - **Money** is `rust_decimal::Decimal` in Rust and `numeric` in PostgreSQL, never a float, and
//!   a decimal string in JSON (`"100.0000"`), as the original sent it.
//! - Reads (`read`): the balance every role's login asks for, the transaction history (a main
//!   account sees its whole account, a sub-account or shipper its own movements), and the admin
//!   lists. Settings (`prices`): module prices, the cost estimate, the threshold and the mute.
//!
//! Every change writes its audit row in the same transaction.

mod ledger;
mod prices;
mod read;

use std::str::FromStr;

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::db::sql::Sql;
use crate::domain::DomainError;

pub use ledger::{
    Charge, ChargeError, Consumed, Recharge, Recharged, Refund, Refunded, Shortfall, consume,
    recharge, refund,
};
pub(crate) use prices::{
    ModuleChanges, calculate, module_configs, mute_alert, set_threshold, update_module_config,
};
pub(crate) use read::{
    AccountFilter, Page, RechargeFilter, TxFilter, accounts, balance, recharge_records,
    transactions,
};

/// The name the web app shows for a point. The original read it from `ozon_global_settings`
/// (`credit_name`, seeded `积分`); that table arrives with the global settings.
pub const CREDIT_NAME: &str = "积分";

/// The largest single recharge, consume or refund (points).
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// The largest balance an account may reach: well inside `numeric(18,4)`.
pub const MAX_BALANCE: Decimal = Decimal::from_parts(1_316_134_912, 2_328, 0, false, 0);
/// Units one consume may charge for.
pub const MAX_UNITS: u32 = 100_000;
/// Longest idempotency key a caller may give (it is hashed before it is stored).
pub const MAX_KEY_LEN: usize = 4096;

/// The user whose account pays for `user_id`'s actions, in SQL (`u` is the `users` row): the
/// main account of a sub-account or shipper, else the user itself.
const OWNER_SQL: &str = "CASE WHEN u.role IN ('sub_account', 'shipper') \
                         THEN COALESCE(u.parent_user_id, u.id) ELSE u.id END";

fn user_not_found() -> DomainError {
    DomainError::not_found("USER_NOT_FOUND", "No such user")
}

/// The id of the user whose account pays for `user_id` (see the module header).
pub(crate) async fn owner_of(c: &impl Sql, user_id: i64) -> Result<i64, DomainError> {
    let row = c
        .maybe_row(
            &format!("SELECT {OWNER_SQL} FROM users u WHERE u.id = $1"),
            &[&user_id],
        )
        .await?
        .ok_or_else(user_not_found)?;
    Ok(row.get(0))
}

/// The stored form of a caller's idempotency key: SHA-256 over the movement's kind, the account
/// and the key, as 64 hex characters.
fn stored_key(kind: &str, account_id: i64, key: &str) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(account_id.to_be_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn check_key(key: Option<&str>) -> Result<(), DomainError> {
    match key {
        Some(k) if k.is_empty() || k.len() > MAX_KEY_LEN || k.chars().any(char::is_control) => {
            Err(DomainError::invalid(
                "idempotency_key",
                "value_error",
                format!("must be 1 to {MAX_KEY_LEN} bytes of printable text"),
            ))
        }
        _ => Ok(()),
    }
}

/// A decimal string of at most `scale` decimal places, from 0 (or above 0 when `positive`) up
/// to `max`. The message names the rule, never the value.
pub(crate) fn parse_amount(
    raw: &str,
    scale: u32,
    positive: bool,
    max: Decimal,
) -> Result<Decimal, &'static str> {
    let s = raw.trim();
    let plain = !s.is_empty()
        && s.len() <= 40
        && s.chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-');
    let d = plain
        .then(|| Decimal::from_str(s).ok())
        .flatten()
        .ok_or("must be a decimal number such as \"100\" or \"12.5\"")?
        .normalize();
    if d.scale() > scale {
        return Err("has more decimal places than allowed (4 for points, 2 for yuan)");
    }
    if d.is_sign_negative() && !d.is_zero() {
        return Err("must not be negative");
    }
    if positive && d.is_zero() {
        return Err("must be greater than 0");
    }
    if d > max {
        return Err("is larger than allowed");
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_exactly_and_name_the_rule() {
        let max = Decimal::from(1000);
        assert_eq!(
            parse_amount(" 12.5000 ", 4, true, max).unwrap().to_string(),
            "12.5"
        );
        assert_eq!(
            parse_amount("0.1", 4, true, max).unwrap() + parse_amount("0.2", 4, true, max).unwrap(),
            Decimal::from_str("0.3").unwrap()
        );
        assert!(parse_amount("0", 4, true, max).is_err());
        assert!(parse_amount("0", 4, false, max).is_ok());
        assert!(parse_amount("-1", 4, false, max).is_err());
        assert!(
            parse_amount("1.00001", 4, true, max)
                .unwrap_err()
                .contains("decimal places")
        );
        assert!(parse_amount("1001", 4, true, max).is_err());
        for bad in ["", "abc", "1e3", "NaN", "1,5", "١٢"] {
            assert!(parse_amount(bad, 4, true, max).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_fit_the_columns() {
        // numeric(18,4): 14 integer digits.
        assert_eq!(MAX_BALANCE.to_string(), "10000000000000");
        assert!(MAX_AMOUNT < MAX_BALANCE);
    }

    #[test]
    fn stored_keys_fit_their_column_and_are_scoped() {
        let long = "print:".to_owned() + &"12345678-0001-1,".repeat(200);
        let k = stored_key("consume", 7, &long);
        assert_eq!(k.len(), 64);
        assert_eq!(k, stored_key("consume", 7, &long));
        assert_ne!(k, stored_key("consume", 8, &long));
        assert_ne!(k, stored_key("refund", 7, &long));
    }
}
