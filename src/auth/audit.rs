//! The audit log (`audit_logs`): who did what, from where, with which request id. Written in the
//! same transaction as the change where there is one, so a change and its record stand or fall
//! together. Never holds secrets: password changes are recorded as events without values. Admins
//! read it (`/audit/logs`, `/audit/stats`) through [`logs`] and [`stats`].

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::actor::Actor;
use super::roles::Role;
use crate::db::DbError;
use crate::db::sql::Sql;
use crate::domain::DomainError;

#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub module: &'a str,
    pub action: &'a str,
    pub action_display: &'a str,
    pub table_name: Option<&'a str>,
    pub record_id: Option<String>,
    pub changes: Option<Value>,
    pub notes: Option<String>,
}

impl<'a> Entry<'a> {
    pub fn new(module: &'a str, action: &'a str, action_display: &'a str) -> Self {
        Entry {
            module,
            action,
            action_display,
            table_name: None,
            record_id: None,
            changes: None,
            notes: None,
        }
    }

    pub fn record(mut self, table: &'a str, id: impl ToString) -> Self {
        self.table_name = Some(table);
        self.record_id = Some(id.to_string());
        self
    }

    pub fn changes(mut self, changes: Value) -> Self {
        self.changes = Some(changes);
        self
    }

    pub fn notes(mut self, notes: impl Into<String>) -> Self {
        self.notes = Some(notes.into());
        self
    }
}

/// The `INSERT` of one entry, shared with statements that write their audit row themselves (the
/// login's single statement).
pub const INSERT: &str =
    "INSERT INTO audit_logs (user_id, username, module, action, action_display, table_name,
                                 record_id, changes, ip_address, user_agent, request_id, notes,
                                 original_user_id, original_username)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

pub async fn write(c: &impl Sql, actor: &Actor, e: Entry<'_>) -> Result<(), DbError> {
    let (user_id, username) = actor.audit_identity();
    let user_id = user_id.and_then(|id| i32::try_from(id).ok());
    let original = actor.cloned_by();
    let original_id = original.and_then(|(id, _)| i32::try_from(*id).ok());
    let original_name = original.map(|(_, name)| name.as_str());
    c.exec(
        INSERT,
        &[
            &user_id,
            &username,
            &e.module,
            &e.action,
            &e.action_display,
            &e.table_name,
            &e.record_id,
            &e.changes,
            &actor.origin.ip,
            &actor.origin.user_agent,
            &actor.origin.request_id,
            &e.notes,
            &original_id,
            &original_name,
        ],
    )
    .await?;
    Ok(())
}

/// `{field: {old, new}}` for the fields that differ.
pub fn diff(pairs: &[(&str, Value, Value)]) -> Value {
    let mut out = serde_json::Map::new();
    for (field, old, new) in pairs {
        if old != new {
            out.insert(
                (*field).to_owned(),
                serde_json::json!({"old": old, "new": new}),
            );
        }
    }
    Value::Object(out)
}

/// Filters of `GET /audit/logs`; cursor paging by id, descending, as the original.
#[derive(Debug, Deserialize, Default)]
pub struct LogQuery {
    pub user_id: Option<i32>,
    pub module: Option<String>,
    pub action: Option<String>,
    pub table_name: Option<String>,
    pub record_id: Option<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub cursor: Option<i64>,
    pub page_size: Option<i64>,
}

fn bad(param: &str, msg: &str) -> DomainError {
    DomainError::invalid(&format!("query.{param}"), "value_error", msg)
}

fn parse_bound(
    raw: &Option<String>,
    param: &str,
    end_of_day: bool,
) -> Result<Option<DateTime<Utc>>, DomainError> {
    match raw.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => {
            if let Ok(d) = DateTime::parse_from_rfc3339(s) {
                return Ok(Some(d.with_timezone(&Utc)));
            }
            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| bad(param, "dates are YYYY-MM-DD or RFC 3339"))?;
            let t = if end_of_day {
                d.and_hms_opt(23, 59, 59)
            } else {
                d.and_hms_opt(0, 0, 0)
            };
            Ok(t.map(|t| t.and_utc()))
        }
    }
}

fn admin(actor: &Actor) -> Result<(), DomainError> {
    actor.require_session()?;
    actor.require_role(Role::Admin)
}

/// One page of the log (default the last 30 days).
pub async fn logs(c: &impl Sql, actor: &Actor, q: &LogQuery) -> Result<Value, DomainError> {
    admin(actor)?;
    let page_size = q.page_size.unwrap_or(50);
    if !(1..=200).contains(&page_size) {
        return Err(bad("page_size", "must be 1 to 200"));
    }
    for (v, name) in [
        (&q.module, "module"),
        (&q.action, "action"),
        (&q.table_name, "table_name"),
        (&q.record_id, "record_id"),
    ] {
        if v.as_ref().is_some_and(|s| s.len() > 100) {
            return Err(bad(name, "may have at most 100 characters"));
        }
    }
    let start = parse_bound(&q.start_date, "start_date", false)?
        .unwrap_or_else(|| Utc::now() - Duration::days(30));
    let end = parse_bound(&q.end_date, "end_date", true)?;
    let rows = c
        .rows(
            "SELECT id, user_id, username, module, action, action_display, table_name, record_id,
                    changes, host(ip_address), user_agent, request_id, notes, created_at,
                    original_user_id, original_username
               FROM audit_logs
              WHERE created_at >= $1 AND ($2::timestamptz IS NULL OR created_at <= $2)
                AND ($3::int IS NULL OR user_id = $3)
                AND ($4::text IS NULL OR module = $4)
                AND ($5::text IS NULL OR action = $5)
                AND ($6::text IS NULL OR table_name = $6)
                AND ($7::text IS NULL OR record_id = $7)
                AND ($8::bigint IS NULL OR id < $8)
              ORDER BY id DESC
              LIMIT $9",
            &[
                &start,
                &end,
                &q.user_id,
                &q.module,
                &q.action,
                &q.table_name,
                &q.record_id,
                &q.cursor,
                &(page_size + 1),
            ],
        )
        .await?;
    let has_more = rows.len() as i64 > page_size;
    let items: Vec<Value> = rows
        .iter()
        .take(page_size as usize)
        .map(|r| {
            json!({
                "id": r.get::<_, i64>(0),
                "user_id": r.get::<_, Option<i32>>(1),
                "username": r.get::<_, Option<String>>(2),
                "module": r.get::<_, String>(3),
                "action": r.get::<_, String>(4),
                "action_display": r.get::<_, Option<String>>(5),
                "table_name": r.get::<_, Option<String>>(6),
                "record_id": r.get::<_, Option<String>>(7),
                "changes": r.get::<_, Option<Value>>(8),
                "ip_address": r.get::<_, Option<String>>(9),
                "user_agent": r.get::<_, Option<String>>(10),
                "request_id": r.get::<_, Option<String>>(11),
                "notes": r.get::<_, Option<String>>(12),
                "created_at": r.get::<_, DateTime<Utc>>(13),
                // The admin behind a clone, when one acted.
                "original_user_id": r.get::<_, Option<i32>>(14),
                "original_username": r.get::<_, Option<String>>(15),
            })
        })
        .collect();
    let next_cursor = if has_more {
        items.last().and_then(|i| i["id"].as_i64())
    } else {
        None
    };
    Ok(json!({
        "items": items,
        "total": null,
        "page_size": page_size,
        "offset": 0,
        "has_more": has_more,
        "next_cursor": next_cursor,
    }))
}

/// Counts of the last 7 days.
pub async fn stats(c: &impl Sql, actor: &Actor) -> Result<Value, DomainError> {
    admin(actor)?;
    let row = c
        .row(
            "SELECT count(*),
                    count(*) FILTER (WHERE action = 'login'),
                    count(*) FILTER (WHERE action = 'login_failed')
               FROM audit_logs WHERE created_at >= now() - interval '7 days'",
            &[],
        )
        .await?;
    Ok(json!({
        "period_days": 7,
        "audit_logs": row.get::<_, i64>(0),
        "logins": row.get::<_, i64>(1),
        "failed_logins": row.get::<_, i64>(2),
        // Marketplace webhooks arrive with the Ozon integration; none are recorded yet.
        "webhooks": {"total": 0, "success": 0, "failed": 0},
    }))
}
