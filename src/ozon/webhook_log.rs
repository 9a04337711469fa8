//! The push log of 系统管理 → 日志管理 → Webhook 日志 (contract §2.9 W3, W4): every push received,
//! newest first, with cursor paging, for admins only. The rows are written by [`super::webhook`].
//!
//! Filters as the original: `posting_number` with two dashes (a whole posting number) matches the
//! posting exactly, with one dash (an order number) every posting of that order; dates default
//! to the last 7 days. Unlike the original, a bad date or page size is a 422 naming the field, not
//! a 500, and the detail's headers are the few the receiver keeps (never a cookie or token).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_postgres::Row;

use super::webhook::require_admin;
use crate::auth::Actor;
use crate::db::sql::Sql;
use crate::domain::DomainError;

/// The query of `GET /audit/webhooks/logs`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct LogQuery {
    pub shop_id: Option<i64>,
    pub event_type: Option<String>,
    pub status: Option<String>,
    pub posting_number: Option<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    /// The `next_cursor` of the previous page: rows with a smaller id.
    pub cursor: Option<String>,
    pub page_size: Option<i64>,
}

const DEFAULT_DAYS: i64 = 7;
const MAX_PAGE: i64 = 200;
const MAX_FILTER_LEN: usize = 100;

/// An ISO timestamp (what the page sends) or a plain date (its start, UTC).
fn parse_time(field: &str, v: &str) -> Result<DateTime<Utc>, DomainError> {
    DateTime::parse_from_rfc3339(v.trim())
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
                .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        })
        .map_err(|_| {
            DomainError::invalid(
                field,
                "value_error",
                "must be an ISO 8601 time (2025-01-31T16:00:00Z) or a date (2025-01-31)",
            )
        })
}

fn text_filter(field: &str, v: Option<String>) -> Result<Option<String>, DomainError> {
    match v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) {
        Some(s) if s.len() > MAX_FILTER_LEN => Err(DomainError::invalid(
            field,
            "string_too_long",
            format!("at most {MAX_FILTER_LEN} characters"),
        )),
        other => Ok(other),
    }
}

/// The columns [`item`], [`detail`] and [`with_receipt`] read, in this order; `FROM` must name the
/// events `w` and left-join the shops as `s`.
pub(crate) const COLUMNS: &str =
    "w.id, w.event_id, w.event_type, w.shop_id, coalesce(s.shop_name_cn, s.shop_name),
       w.status, w.entity_type, w.entity_id, w.retry_count, w.error_message, w.result_message,
       w.processing_duration_ms, w.created_at, w.processed_at, w.payload, w.headers, w.signature,
       w.is_verified, w.idempotency_key, w.updated_at, w.message_type, w.reason, w.received_count,
       w.job_id";

/// One row as the page's table reads it.
pub(crate) fn item(r: &Row) -> Value {
    let shop_id: Option<i64> = r.get(3);
    let entity_type: Option<String> = r.get(6);
    let entity_id: Option<String> = r.get(7);
    json!({
        "id": r.get::<_, i64>(0),
        "event_id": r.get::<_, String>(1),
        "event_type": r.get::<_, String>(2),
        "shop_id": shop_id,
        "shop_name": r.get::<_, Option<String>>(4).or_else(|| shop_id.map(|id| format!("店铺{id}"))),
        "status": r.get::<_, String>(5),
        "posting_number": (entity_type.as_deref() == Some("posting")).then(|| entity_id.clone()).flatten(),
        "entity_type": entity_type,
        "entity_id": entity_id,
        "retry_count": r.get::<_, i32>(8),
        "error_message": r.get::<_, Option<String>>(9),
        "result_message": r.get::<_, Option<String>>(10),
        "processing_duration_ms": r.get::<_, Option<i32>>(11),
        "created_at": r.get::<_, DateTime<Utc>>(12),
        "processed_at": r.get::<_, Option<DateTime<Utc>>>(13),
    })
}

/// [`item`] with how the push was received and handled (Ozon's type, why it was ignored, copies,
/// the job, the payload): the rows of `GET /ozon/webhook/events`.
pub(crate) fn with_receipt(r: &Row) -> Value {
    let mut v = item(r);
    v["message_type"] = json!(r.get::<_, String>(20));
    v["reason"] = json!(r.get::<_, Option<String>>(21));
    v["is_verified"] = json!(r.get::<_, bool>(17));
    v["received_count"] = json!(r.get::<_, i32>(22));
    v["task_id"] = json!(r.get::<_, Option<i64>>(23).map(|id| id.to_string()));
    v["payload"] = r.get::<_, Value>(14);
    v["signature"] = json!(r.get::<_, Option<String>>(16));
    v["updated_at"] = json!(r.get::<_, DateTime<Utc>>(19));
    v
}

/// `GET /audit/webhooks/logs` → `{items, total: null, page_size, offset: 0, has_more, next_cursor}`.
pub async fn list(c: &impl Sql, actor: &Actor, q: LogQuery) -> Result<Value, DomainError> {
    require_admin(actor)?;
    let page_size = q.page_size.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&page_size) {
        return Err(DomainError::invalid(
            "page_size",
            "value_error",
            format!("must be 1 to {MAX_PAGE}"),
        ));
    }
    let cursor = match q.cursor.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse::<i64>().map_err(|_| {
            DomainError::invalid("cursor", "value_error", "must be the next_cursor of a page")
        })?),
        None => None,
    };
    let end = match q.end_date.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(v) => parse_time("end_date", v)?,
        None => Utc::now(),
    };
    let start = match q.start_date.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(v) => parse_time("start_date", v)?,
        None => end - Duration::days(DEFAULT_DAYS),
    };
    let event_type = text_filter("event_type", q.event_type)?;
    let status = text_filter("status", q.status)?;
    let posting = text_filter("posting_number", q.posting_number)?;
    // Two dashes: one posting; one dash: the postings of one order (`<order>-<n>`).
    let (exact, prefix) = match &posting {
        Some(p) if p.matches('-').count() >= 2 => (Some(p.clone()), None),
        Some(p) => (None, Some(format!("{}-%", p.replace(['%', '_', '\\'], "")))),
        None => (None, None),
    };
    let rows = c
        .rows(
            &format!(
                "SELECT {COLUMNS}
                   FROM ozon_webhook_events w LEFT JOIN ozon_shops s ON s.id = w.shop_id
                  WHERE w.created_at >= $1 AND w.created_at <= $2
                    AND ($3::bigint IS NULL OR w.shop_id = $3)
                    AND ($4::text IS NULL OR w.event_type = $4 OR w.message_type = $4)
                    AND ($5::text IS NULL OR w.status = $5)
                    AND ($6::text IS NULL OR w.entity_id = $6)
                    AND ($7::text IS NULL OR w.entity_id LIKE $7)
                    AND ($8::bigint IS NULL OR w.id < $8)
                  ORDER BY w.id DESC
                  LIMIT $9"
            ),
            &[
                &start,
                &end,
                &q.shop_id,
                &event_type,
                &status,
                &exact,
                &prefix,
                &cursor,
                &(page_size + 1),
            ],
        )
        .await?;
    let has_more = rows.len() as i64 > page_size;
    let items: Vec<Value> = rows.iter().take(page_size as usize).map(item).collect();
    let next_cursor = if has_more {
        items
            .last()
            .and_then(|i| i["id"].as_i64())
            .map(|id| id.to_string())
    } else {
        None
    };
    Ok(json!({
        "items": items,
        "total": Value::Null,
        "page_size": page_size,
        "offset": 0,
        "has_more": has_more,
        "next_cursor": next_cursor,
    }))
}

/// `GET /audit/webhooks/logs/{id}`: the row with its payload, kept headers and keys.
pub async fn detail(c: &impl Sql, actor: &Actor, id: i64) -> Result<Value, DomainError> {
    require_admin(actor)?;
    let r = c
        .maybe_row(
            &format!(
                "SELECT {COLUMNS} FROM ozon_webhook_events w
                   LEFT JOIN ozon_shops s ON s.id = w.shop_id WHERE w.id = $1"
            ),
            &[&id],
        )
        .await?
        .ok_or_else(|| DomainError::not_found("WEBHOOK_LOG_NOT_FOUND", "Webhook 日志不存在"))?;
    let mut v = item(&r);
    v["payload"] = r.get::<_, Value>(14);
    v["headers"] = r.get::<_, Option<Value>>(15).unwrap_or(Value::Null);
    v["signature"] = json!(r.get::<_, Option<String>>(16));
    v["is_verified"] = json!(r.get::<_, bool>(17));
    v["idempotency_key"] = json!(r.get::<_, String>(18));
    v["updated_at"] = json!(r.get::<_, DateTime<Utc>>(19));
    Ok(v)
}
