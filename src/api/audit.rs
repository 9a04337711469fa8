//! `/audit`: the action log, for admins. Envelope responses and cursor paging (by id,
//! descending), as the original.

use axum::extract::{Query, State};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::envelope::Envelope;
use super::error::ApiError;
use crate::auth::{CurrentUser, Role};
use crate::db::DbError;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    user_id: Option<i32>,
    module: Option<String>,
    action: Option<String>,
    table_name: Option<String>,
    record_id: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    cursor: Option<i64>,
    page_size: Option<i64>,
}

fn bad(msg: &str) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR", msg)
}

fn parse_bound(raw: &Option<String>, end_of_day: bool) -> Result<Option<DateTime<Utc>>, ApiError> {
    match raw.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => {
            if let Ok(d) = DateTime::parse_from_rfc3339(s) {
                return Ok(Some(d.with_timezone(&Utc)));
            }
            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| bad("dates are YYYY-MM-DD or RFC 3339"))?;
            let t = if end_of_day {
                d.and_hms_opt(23, 59, 59)
            } else {
                d.and_hms_opt(0, 0, 0)
            };
            Ok(t.map(|t| t.and_utc()))
        }
    }
}

/// `GET /audit/logs`
pub async fn logs(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(q): Query<LogQuery>,
) -> Result<Envelope<Value>, ApiError> {
    user.require_session()?;
    user.require_role(Role::Admin)?;
    let page_size = q.page_size.unwrap_or(50);
    if !(1..=200).contains(&page_size) {
        return Err(bad("page_size must be 1 to 200"));
    }
    for (v, name) in [
        (&q.module, "module"),
        (&q.action, "action"),
        (&q.table_name, "table_name"),
        (&q.record_id, "record_id"),
    ] {
        if v.as_ref().is_some_and(|s| s.len() > 100) {
            return Err(bad(&format!("{name} may have at most 100 characters")));
        }
    }
    let start =
        parse_bound(&q.start_date, false)?.unwrap_or_else(|| Utc::now() - Duration::days(30));
    let end = parse_bound(&q.end_date, true)?;
    let client = state.db().get().await?;
    let rows = client
        .query(
            "SELECT id, user_id, username, module, action, action_display, table_name, record_id,
                    changes, host(ip_address), user_agent, request_id, notes, created_at
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
        .await
        .map_err(DbError::from)?;
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
            })
        })
        .collect();
    let next_cursor = if has_more {
        items.last().and_then(|i| i["id"].as_i64())
    } else {
        None
    };
    Ok(Envelope(json!({
        "items": items,
        "total": null,
        "page_size": page_size,
        "offset": 0,
        "has_more": has_more,
        "next_cursor": next_cursor,
    })))
}

/// `GET /audit/stats`: last 7 days.
pub async fn stats(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Envelope<Value>, ApiError> {
    user.require_session()?;
    user.require_role(Role::Admin)?;
    let client = state.db().get().await?;
    let row = client
        .query_one(
            "SELECT count(*),
                    count(*) FILTER (WHERE action = 'login'),
                    count(*) FILTER (WHERE action = 'login_failed')
               FROM audit_logs WHERE created_at >= now() - interval '7 days'",
            &[],
        )
        .await
        .map_err(DbError::from)?;
    Ok(Envelope(json!({
        "period_days": 7,
        "audit_logs": row.get::<_, i64>(0),
        "logins": row.get::<_, i64>(1),
        "failed_logins": row.get::<_, i64>(2),
        // Marketplace webhooks arrive with the Ozon integration; none are recorded yet.
        "webhooks": {"total": 0, "success": 0, "failed": 0},
    })))
}
