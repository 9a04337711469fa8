//! What the ledger shows: the balance (every role, on every login), the history of an account,
//! and the admins' lists of accounts and recharges. Nothing here writes: an account that has
//! never moved reads as the defaults (balance 0, threshold 100) without being created.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{CREDIT_NAME, OWNER_SQL, user_not_found};
use crate::auth::Actor;
use crate::auth::roles::Role;
use crate::db::sql::Sql;
use crate::domain::DomainError;

const DEFAULT_THRESHOLD: &str = "100.0000";
const ZERO: &str = "0.0000";

fn money(v: Option<Decimal>, default: &str) -> String {
    v.map_or_else(|| default.to_owned(), |d| d.to_string())
}

fn logged_in(actor: &Actor) -> Result<(i64, Role), DomainError> {
    actor
        .user()
        .map(|u| (u.id, u.role))
        .ok_or_else(|| DomainError::denied("INSUFFICIENT_PERMISSIONS", "Log in first"))
}

/// `GET /credit/balance`: the balance the caller spends (a sub-account's or shipper's is its
/// main account's), for every role.
pub async fn balance(c: &impl Sql, actor: &Actor) -> Result<Value, DomainError> {
    let (me, _) = logged_in(actor)?;
    let row = c
        .maybe_row(
            &format!(
                "SELECT o.id, o.username, a.balance, a.total_recharged, a.total_consumed,
                        a.low_balance_threshold, a.low_balance_alert_muted
                   FROM users u JOIN users o ON o.id = {OWNER_SQL}
                   LEFT JOIN credit_accounts a ON a.user_id = o.id
                  WHERE u.id = $1"
            ),
            &[&me],
        )
        .await?
        .ok_or_else(user_not_found)?;
    let balance: Option<Decimal> = row.get(2);
    let threshold: Option<Decimal> = row.get(5);
    let low = balance.unwrap_or(Decimal::ZERO) < threshold.unwrap_or(Decimal::ONE_HUNDRED);
    Ok(json!({
        "balance": money(balance, ZERO),
        "total_recharged": money(row.get(3), ZERO),
        "total_consumed": money(row.get(4), ZERO),
        "low_balance_threshold": money(threshold, DEFAULT_THRESHOLD),
        "low_balance_alert_muted": row.get::<_, Option<bool>>(6).unwrap_or(false),
        "is_low_balance": low,
        "credit_name": CREDIT_NAME,
        "account_user_id": row.get::<_, i64>(0),
        "account_username": row.get::<_, String>(1),
    }))
}

/// Page numbers and sizes as the original: `page` from 1, `page_size` 1 to 100 (20).
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub page: i64,
    pub page_size: i64,
}

impl Page {
    pub const MAX_PAGE: i64 = 1_000_000;

    pub fn new(page: Option<i64>, page_size: Option<i64>) -> Result<Page, DomainError> {
        let page = page.unwrap_or(1);
        let page_size = page_size.unwrap_or(20);
        if !(1..=Self::MAX_PAGE).contains(&page) {
            return Err(DomainError::invalid(
                "query.page",
                "value_error",
                format!("1 to {}", Self::MAX_PAGE),
            ));
        }
        if !(1..=100).contains(&page_size) {
            return Err(DomainError::invalid(
                "query.page_size",
                "value_error",
                "1 to 100",
            ));
        }
        Ok(Page { page, page_size })
    }

    fn offset(self) -> i64 {
        (self.page - 1) * self.page_size
    }

    fn wrap(self, items: Vec<Value>, total: i64) -> Value {
        json!({"items": items, "total": total, "page": self.page, "page_size": self.page_size})
    }
}

/// `YYYY-MM-DD` as a UTC day: its start, or (`end`) the start of the next day.
fn day_bound(
    raw: Option<&str>,
    loc: &str,
    end: bool,
) -> Result<Option<DateTime<Utc>>, DomainError> {
    let Some(s) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let day = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| if end { d.succ_opt() } else { Some(d) })
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(|| DomainError::invalid(loc, "value_error", "must be a date YYYY-MM-DD"))?;
    Ok(Some(day.and_utc()))
}

#[derive(Debug, Default)]
pub struct TxFilter {
    pub transaction_type: Option<String>,
    pub module: Option<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
}

const TYPES: [&str; 4] = ["recharge", "consume", "refund", "adjust"];

/// `GET /credit/transactions`: the caller's account, newest first. A main account (or admin)
/// sees every movement of its account; a sub-account or shipper only the ones it made.
pub async fn transactions(
    c: &impl Sql,
    actor: &Actor,
    f: &TxFilter,
    page: Page,
) -> Result<Value, DomainError> {
    let (me, role) = logged_in(actor)?;
    if let Some(t) = &f.transaction_type
        && !TYPES.contains(&t.as_str())
    {
        return Err(DomainError::invalid(
            "query.transaction_type",
            "enum",
            "must be recharge, consume, refund or adjust",
        ));
    }
    if f.module.as_ref().is_some_and(|m| m.chars().count() > 50) {
        return Err(DomainError::invalid(
            "query.module",
            "string_length",
            "at most 50 characters",
        ));
    }
    let from = day_bound(f.start_date.as_deref(), "query.start_date", false)?;
    let to = day_bound(f.end_date.as_deref(), "query.end_date", true)?;
    let own_only: Option<i64> = matches!(role, Role::SubAccount | Role::Shipper).then_some(me);
    // One filter for the count and the page: the account the caller spends, then the filters.
    let filter = format!(
        "FROM credit_transactions t
         JOIN credit_accounts a ON a.id = t.account_id
         JOIN users u ON u.id = $1 AND a.user_id = {OWNER_SQL}
        WHERE ($2::varchar IS NULL OR t.transaction_type = $2)
          AND ($3::varchar IS NULL OR t.module = $3)
          AND ($4::timestamptz IS NULL OR t.created_at >= $4)
          AND ($5::timestamptz IS NULL OR t.created_at < $5)
          AND ($6::bigint IS NULL OR t.operator_user_id = $6)"
    );
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&me, &f.transaction_type, &f.module, &from, &to, &own_only];
    let total: i64 = c
        .row(&format!("SELECT count(*) {filter}"), &params)
        .await?
        .get(0);
    let limit = page.page_size;
    let offset = page.offset();
    let mut paged: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.to_vec();
    paged.push(&limit);
    paged.push(&offset);
    let rows = c
        .rows(
            &format!(
                "SELECT t.id, t.transaction_type, t.amount, t.balance_before, t.balance_after,
                        t.module, t.operator_user_id,
                        (SELECT username FROM users WHERE id = t.operator_user_id),
                        t.details, t.payment_method, t.payment_amount_cny, t.notes, t.ip_address,
                        t.created_at
                 {filter}
                 ORDER BY t.created_at DESC, t.id DESC LIMIT $7 OFFSET $8"
            ),
            &paged,
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.get::<_, i64>(0),
                "transaction_type": r.get::<_, String>(1),
                "amount": r.get::<_, Decimal>(2).to_string(),
                "balance_before": r.get::<_, Decimal>(3).to_string(),
                "balance_after": r.get::<_, Decimal>(4).to_string(),
                "module": r.get::<_, Option<String>>(5),
                "operator_user_id": r.get::<_, Option<i64>>(6).unwrap_or(0),
                "operator_username": r.get::<_, Option<String>>(7).unwrap_or_else(|| "未知".into()),
                "details": r.get::<_, Value>(8),
                "payment_method": r.get::<_, Option<String>>(9),
                "payment_amount_cny": r.get::<_, Option<Decimal>>(10).map(|d| d.to_string()),
                "notes": r.get::<_, Option<String>>(11),
                "ip_address": r.get::<_, Option<String>>(12),
                "created_at": r.get::<_, DateTime<Utc>>(13),
            })
        })
        .collect();
    Ok(page.wrap(items, total))
}

fn admin(actor: &Actor) -> Result<(), DomainError> {
    actor.require_session()?;
    actor.require_role(Role::Admin)
}

/// `%`, `_` and `\` match themselves in a search.
fn like_pattern(s: &str) -> String {
    let mut p = String::with_capacity(s.len() + 2);
    p.push('%');
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

#[derive(Debug, Default)]
pub struct AccountFilter {
    pub search: Option<String>,
    pub role: Option<String>,
}

/// `GET /admin/credit/accounts`: every user who holds an account (admins, main accounts, and
/// sub-accounts or shippers without a main account), with or without movements yet.
pub async fn accounts(
    c: &impl Sql,
    actor: &Actor,
    f: &AccountFilter,
    page: Page,
) -> Result<Value, DomainError> {
    admin(actor)?;
    if let Some(r) = &f.role
        && Role::parse(r).is_none()
    {
        return Err(DomainError::invalid(
            "query.role",
            "enum",
            "must be admin, main_account, sub_account or shipper",
        ));
    }
    let search = f
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(50).collect::<String>())
        .map(|s| like_pattern(&s));
    let filter = format!(
        "FROM users u LEFT JOIN credit_accounts a ON a.user_id = u.id
        WHERE {OWNER_SQL} = u.id
          AND ($1::varchar IS NULL OR u.username ILIKE $1)
          AND ($2::varchar IS NULL OR u.role = $2)"
    );
    let total: i64 = c
        .row(&format!("SELECT count(*) {filter}"), &[&search, &f.role])
        .await?
        .get(0);
    let rows = c
        .rows(
            &format!(
                "SELECT COALESCE(a.id, 0), u.id, u.username, u.role, a.balance, a.total_recharged,
                        a.total_consumed, a.low_balance_threshold,
                        (SELECT count(*) FROM users s WHERE s.parent_user_id = u.id),
                        COALESCE(a.created_at, u.created_at), COALESCE(a.updated_at, u.updated_at)
                 {filter}
                 ORDER BY u.created_at DESC, u.id DESC LIMIT $3 OFFSET $4"
            ),
            &[&search, &f.role, &page.page_size, &page.offset()],
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| {
            let balance: Option<Decimal> = r.get(4);
            let threshold: Option<Decimal> = r.get(7);
            json!({
                "id": r.get::<_, i64>(0),
                "user_id": r.get::<_, i64>(1),
                "username": r.get::<_, String>(2),
                "role": r.get::<_, String>(3),
                "balance": money(balance, ZERO),
                "total_recharged": money(r.get(5), ZERO),
                "total_consumed": money(r.get(6), ZERO),
                "low_balance_threshold": money(threshold, DEFAULT_THRESHOLD),
                "is_low_balance": balance.unwrap_or(Decimal::ZERO)
                    < threshold.unwrap_or(Decimal::ONE_HUNDRED),
                "sub_accounts_count": r.get::<_, i64>(8),
                "created_at": r.get::<_, DateTime<Utc>>(9),
                "updated_at": r.get::<_, DateTime<Utc>>(10),
            })
        })
        .collect();
    Ok(page.wrap(items, total))
}

#[derive(Debug, Default)]
pub struct RechargeFilter {
    pub user_id: Option<i64>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
}

/// `GET /admin/credit/recharge-records`: recharges of every account (or one user's), newest
/// first, with who approved them.
pub async fn recharge_records(
    c: &impl Sql,
    actor: &Actor,
    f: &RechargeFilter,
    page: Page,
) -> Result<Value, DomainError> {
    admin(actor)?;
    let from = day_bound(f.start_date.as_deref(), "query.start_date", false)?;
    let to = day_bound(f.end_date.as_deref(), "query.end_date", true)?;
    let filter = "FROM credit_transactions t JOIN credit_accounts a ON a.id = t.account_id
                  JOIN users u ON u.id = a.user_id
                  LEFT JOIN users ap ON ap.id = t.approved_by
                 WHERE t.transaction_type = 'recharge'
                   AND ($1::bigint IS NULL OR a.user_id = $1)
                   AND ($2::timestamptz IS NULL OR t.created_at >= $2)
                   AND ($3::timestamptz IS NULL OR t.created_at < $3)";
    let total: i64 = c
        .row(
            &format!("SELECT count(*) {filter}"),
            &[&f.user_id, &from, &to],
        )
        .await?
        .get(0);
    let rows = c
        .rows(
            &format!(
                "SELECT t.id, u.id, u.username, t.amount, t.payment_method, t.payment_amount_cny,
                        t.payment_order_no, t.balance_before, t.balance_after, t.approved_by,
                        ap.username, t.notes, t.ip_address, t.created_at
                 {filter}
                 ORDER BY t.created_at DESC, t.id DESC LIMIT $4 OFFSET $5"
            ),
            &[&f.user_id, &from, &to, &page.page_size, &page.offset()],
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| {
            let approved_by: Option<i64> = r.get(9);
            let approver: Option<String> = r.get(10);
            json!({
                "id": r.get::<_, i64>(0),
                "user_id": r.get::<_, i64>(1),
                "username": r.get::<_, String>(2),
                "amount": r.get::<_, Decimal>(3).to_string(),
                "payment_method": r.get::<_, Option<String>>(4).unwrap_or_else(|| "manual".into()),
                "payment_amount_cny": r.get::<_, Option<Decimal>>(5).map(|d| d.to_string()),
                "payment_order_no": r.get::<_, Option<String>>(6),
                "balance_before": r.get::<_, Decimal>(7).to_string(),
                "balance_after": r.get::<_, Decimal>(8).to_string(),
                "approved_by": approved_by.unwrap_or(0),
                "approved_by_username": match (approved_by, approver) {
                    (None, _) => "系统".to_owned(),
                    (Some(_), Some(name)) => name,
                    (Some(_), None) => "未知".to_owned(),
                },
                "notes": r.get::<_, Option<String>>(11),
                "ip_address": r.get::<_, Option<String>>(12),
                "created_at": r.get::<_, DateTime<Utc>>(13),
            })
        })
        .collect();
    Ok(page.wrap(items, total))
}
