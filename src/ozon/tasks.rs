//! The web app's sync task protocol (contract §1.2, §2.3 Y1/Y6) over the durable job queue.
//!
//! A sync button POSTs, gets a `task_id`, and polls `GET /ozon/sync/status/{task_id}` every 2 s
//! until `status` is `completed` or `failed`, showing `progress` (0–100) and `message` meanwhile.
//! Here a task is a job of the queue (its id is the task id), so its state survives restarts and
//! is the same from every server process; the job reports its progress with
//! `JobContext::progress`. One sync per shop and kind runs at a time: a second request while one
//! is queued or running gets the same task. An unknown task — or one of a shop the caller may
//! not see — is answered as a terminal `failed` (the original answered `{ok:false}`, and the page
//! polled forever).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::tenancy;
use crate::auth::Actor;
use crate::auth::audit::{self, Entry};
use crate::db::sql::Sql;
use crate::domain::{DomainError, Work};
use crate::jobs::{Enqueued, NewJob, enqueue};

/// The kinds of sync a shop has; one of each may run at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    Products,
    /// Postings; the web app's task `type` is `orders`.
    Orders,
}

impl SyncKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncKind::Products => "products",
            SyncKind::Orders => "orders",
        }
    }
}

/// A started (or already running) sync.
#[derive(Debug, Clone)]
pub struct Started {
    pub task_id: String,
    /// False when an earlier request's sync was still queued or running.
    pub new: bool,
}

/// The exclusive key of a shop's sync of `kind`: jobs holding it run one at a time, whichever
/// way they were started (button, schedule, push).
pub fn exclusive_key(kind: SyncKind, shop_id: i64) -> String {
    format!("ozon:{}:{shop_id}", kind.as_str())
}

/// Start `job` as the actor's sync of `kind` for `shop_id` (which the actor must be allowed to
/// change), or return the one already in flight.
pub async fn start(
    work: &mut Work<'_>,
    actor: &Actor,
    shop_id: i64,
    kind: SyncKind,
    job: NewJob,
) -> Result<Started, DomainError> {
    actor.require_session()?;
    tenancy::editable_shop(work.tx(), actor, shop_id).await?;
    let mut job = job.exclusive(exclusive_key(kind, shop_id));
    if let Some(me) = actor.user() {
        job = job.requested_by(me.id);
    }
    let enqueued = enqueue(&**work.tx(), &job)
        .await
        .map_err(|e| DomainError::Internal(anyhow::anyhow!("enqueueing the sync: {e}")))?;
    let (id, new) = match enqueued {
        Enqueued::New(id) => (id, true),
        Enqueued::Existing(id) => (id, false),
    };
    audit::write(
        work.tx(),
        actor,
        Entry::new("ozon_shop", "sync", "同步店铺")
            .record("ozon_shops", shop_id)
            .changes(json!({"kind": kind.as_str(), "task_id": id.to_string(), "new": new, "payload": job.payload})),
    )
    .await?;
    Ok(Started {
        task_id: id.to_string(),
        new,
    })
}

fn unknown(task_id: &str) -> Value {
    json!({
        "task_id": task_id,
        "status": "failed",
        "progress": 0,
        "message": "任务不存在或已过期",
        "error": format!("Task {task_id} not found"),
    })
}

/// `GET /ozon/sync/status/{task_id}`: the task's state in the web app's shape.
pub async fn status(c: &impl Sql, actor: &Actor, task_id: &str) -> Result<Value, DomainError> {
    let digits = task_id.strip_prefix("task_").unwrap_or(task_id);
    let Ok(id) = digits.parse::<i64>() else {
        return Ok(unknown(task_id));
    };
    let row = c
        .maybe_row(
            "SELECT job_type, state, progress, progress_message, payload, result, last_error,
                    created_at, started_at, finished_at, attempts, max_attempts
               FROM jobs WHERE id = $1 AND job_type LIKE 'ef.ozon.%'",
            &[&id],
        )
        .await?;
    let Some(row) = row else {
        return Ok(unknown(task_id));
    };
    let payload: Value = row.get(4);
    let shop_id = payload.get("shop_id").and_then(Value::as_i64);
    // Another tenant's task is as unknown as a missing one.
    let allowed = match (shop_id, tenancy::visible_shop_ids(c, actor).await?) {
        (_, None) => true,
        (Some(s), Some(ids)) => ids.contains(&s),
        (None, Some(_)) => false,
    };
    if !allowed {
        return Ok(unknown(task_id));
    }
    let job_type: String = row.get(0);
    let state: String = row.get(1);
    let progress: Option<i16> = row.get(2);
    let progress_message: Option<String> = row.get(3);
    let result: Option<Value> = row.get(5);
    let last_error: Option<String> = row.get(6);
    let created_at: DateTime<Utc> = row.get(7);
    let started_at: Option<DateTime<Utc>> = row.get(8);
    let finished_at: Option<DateTime<Utc>> = row.get(9);
    let attempts: i32 = row.get(10);
    let max_attempts: i32 = row.get(11);
    let kind = if job_type.contains(".products.") {
        "products"
    } else {
        "orders"
    };
    let error_text = last_error.clone().unwrap_or_default();
    let (status, pct, message, error) = match state.as_str() {
        "queued" => (
            "pending",
            0,
            progress_message.unwrap_or_else(|| "任务已创建，等待执行...".into()),
            None,
        ),
        "running" => (
            "running",
            progress.unwrap_or(0),
            progress_message.unwrap_or_else(|| "正在同步...".into()),
            None,
        ),
        "failed_retrying" => (
            "running",
            progress.unwrap_or(0),
            format!(
                "第 {attempts}/{max_attempts} 次尝试失败，稍后自动重试：{}",
                first_line(&error_text)
            ),
            None,
        ),
        "succeeded" => (
            "completed",
            100,
            result
                .as_ref()
                .and_then(|r| r.get("message"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or(progress_message)
                .unwrap_or_else(|| "同步完成".into()),
            None,
        ),
        "cancelled" => (
            "failed",
            progress.unwrap_or(0),
            "任务已取消".into(),
            Some("cancelled".to_owned()),
        ),
        _ => (
            "failed",
            progress.unwrap_or(0),
            format!("同步失败：{}", first_line(&error_text)),
            Some(error_text.clone()),
        ),
    };
    let mut v = json!({
        "task_id": task_id,
        "status": status,
        "progress": pct,
        "message": message,
        "type": kind,
        "shop_id": shop_id,
        "mode": payload.get("mode"),
        "created_at": created_at,
        "started_at": started_at,
        "result": result,
        "error": error,
    });
    match status {
        "completed" => v["completed_at"] = json!(finished_at),
        "failed" => v["failed_at"] = json!(finished_at),
        _ => {}
    }
    Ok(v)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}
