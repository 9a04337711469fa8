//! The built-in jobs, with real work (the original's core tasks were mostly no-ops):
//!
//! - `ef.core.system_health_check` (every 5 minutes): probes the database, Redis, migrations and
//!   the worker heartbeat with the server's health logic, and records the result in
//!   `system_health_checks`;
//! - `ef.core.cleanup` (daily 03:00 UTC): deletes finished jobs, run logs and health records past
//!   `EF__JOB_RETENTION_DAYS`, Ozon push rows past 30 days and stale heartbeats; moves audit rows older than 180 days to
//!   `audit_logs_archive` and deletes ended login sessions, when those tables exist;
//! - `ef.system.database_backup` (05:00 and 17:00 UTC, as the original): `pg_dump` into
//!   `EF__BACKUP_DIR`, keeping `EF__BACKUP_RETENTION_DAYS`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Queue;
use super::registry::{Job, JobContext, JobError, JobResult, Registry, RetryPolicy, TimeLimits};
use super::run_log;
use crate::db::quote_ident;

/// Add the core jobs to `r` (`jobs::builtin_registry` calls it for the shipped worker).
pub fn register(r: &mut Registry) {
    r.register::<SystemHealthCheck>();
    r.register::<Cleanup>();
    r.register::<DatabaseBackup>();
}

/// Rows deleted per statement, so cleanup never holds long locks.
const BATCH: i64 = 5_000;
/// Audit rows older than this move to the archive (the original's `archive_old_logs(days=180)`).
const AUDIT_ARCHIVE_DAYS: i32 = 180;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SystemHealthCheck {}

impl Job for SystemHealthCheck {
    const NAME: &'static str = "ef.core.system_health_check";
    const QUEUE: Queue = Queue::Core;
    // The operators read Chinese: 后台服务 shows this text as the service's description.
    const DESCRIPTION: &'static str =
        "系统健康检查：检测数据库、Redis、数据库迁移和 worker 心跳，并记录结果";
    const SCHEDULE: Option<&'static str> = Some("*/5 * * * *");

    fn limits() -> TimeLimits {
        TimeLimits {
            soft: Duration::from_secs(60),
            hard: Duration::from_secs(90),
        }
    }

    fn retry() -> RetryPolicy {
        // The next check is five minutes away; retrying an old one says nothing new.
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    async fn run(self, ctx: JobContext) -> JobResult {
        let report = ctx.health().report().await;
        let status = serde_json::to_value(report.status).unwrap_or(json!("unknown"));
        let checks = report.detailed(Duration::ZERO)["checks"].clone();
        let client = ctx.db().get().await?;
        client
            .execute(
                "INSERT INTO system_health_checks (status, checks, job_id) VALUES ($1, $2, $3)",
                &[&status.as_str().unwrap_or("unknown"), &checks, &ctx.job_id],
            )
            .await?;
        Ok(json!({"status": status, "checks": checks}))
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cleanup {}

impl Job for Cleanup {
    const NAME: &'static str = "ef.core.cleanup";
    const QUEUE: Queue = Queue::Core;
    const DESCRIPTION: &'static str =
        "数据清理：删除已完成的任务、旧的运行日志、健康检查记录和失效心跳；归档 180 天前的审计日志";
    const SCHEDULE: Option<&'static str> = Some("0 3 * * *");

    fn limits() -> TimeLimits {
        TimeLimits {
            soft: Duration::from_secs(1800),
            hard: Duration::from_secs(2100),
        }
    }

    fn retry() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_secs(60),
            cap: Duration::from_secs(600),
        }
    }

    async fn run(self, ctx: JobContext) -> JobResult {
        let days = ctx.config().worker.job_retention_days.min(100_000) as i32;
        let client = ctx.db().get().await?;
        let mut out = serde_json::Map::new();
        let batched = [
            (
                "jobs",
                "DELETE FROM jobs WHERE id IN (
                    SELECT id FROM jobs WHERE state IN ('succeeded', 'dead', 'cancelled')
                       AND finished_at < now() - make_interval(days => $1) LIMIT $2)",
            ),
            ("sync_service_logs", run_log::PRUNE_BATCH),
            (
                "system_health_checks",
                "DELETE FROM system_health_checks WHERE id IN (
                    SELECT id FROM system_health_checks
                     WHERE checked_at < now() - make_interval(days => $1) LIMIT $2)",
            ),
        ];
        for (what, sql) in batched {
            let mut total = 0u64;
            loop {
                if ctx.is_cancelled() {
                    return Err(JobError::failed(format!(
                        "stopped at its time limit while deleting {what}; the next run continues"
                    )));
                }
                let n = client.execute(sql, &[&days, &BATCH]).await?;
                total += n;
                if n < BATCH as u64 {
                    break;
                }
            }
            out.insert(format!("{what}_deleted"), json!(total));
        }
        // Ozon pushes: kept 30 days whatever the job retention (they hold order payloads).
        let mut pushes = 0u64;
        loop {
            let n = client
                .execute(
                    "DELETE FROM ozon_webhook_events WHERE id IN (
                        SELECT id FROM ozon_webhook_events
                         WHERE created_at < now() - make_interval(days => $1) LIMIT $2)",
                    &[&crate::ozon::webhook::RETENTION_DAYS, &BATCH],
                )
                .await?;
            pushes += n;
            if n < BATCH as u64 || ctx.is_cancelled() {
                break;
            }
        }
        out.insert("ozon_webhook_events_deleted".into(), json!(pushes));
        let beats = client
            .execute(
                "DELETE FROM service_heartbeats WHERE last_seen_at < now() - interval '1 day'",
                &[],
            )
            .await?;
        out.insert("heartbeats_deleted".into(), json!(beats));
        out.insert(
            "audit_logs_archived".into(),
            archive_audit_logs(&ctx).await?,
        );
        out.insert(
            "login_sessions_deleted".into(),
            delete_sessions(&ctx, days).await?,
        );
        let processed: u64 = out.values().filter_map(|v| v.as_u64()).sum();
        out.insert("records_processed".into(), json!(processed));
        Ok(serde_json::Value::Object(out))
    }
}

/// The columns of `table` in this schema.
async fn columns(client: &tokio_postgres::Client, table: &str) -> Result<Vec<String>, JobError> {
    let rows = client
        .query(
            "SELECT column_name::text FROM information_schema.columns
              WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Move audit rows older than 180 days into `audit_logs_archive`, when both tables exist (the
/// identity work creates them); the columns both tables share are copied.
async fn archive_audit_logs(ctx: &JobContext) -> Result<serde_json::Value, JobError> {
    let pooled = ctx.db().get().await?;
    let client: &tokio_postgres::Client = &pooled;
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('audit_logs') IS NOT NULL AND to_regclass('audit_logs_archive') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(json!("skipped: no audit_logs / audit_logs_archive tables"));
    }
    let source = columns(client, "audit_logs").await?;
    let target = columns(client, "audit_logs_archive").await?;
    if !source.iter().any(|c| c == "id") || !source.iter().any(|c| c == "created_at") {
        return Ok(json!(
            "skipped: audit_logs has no id and created_at columns"
        ));
    }
    let shared: Vec<String> = target
        .iter()
        .filter(|c| source.contains(c))
        .map(|c| quote_ident(c))
        .collect();
    let list = shared.join(", ");
    let sql = format!(
        "WITH moved AS (
            DELETE FROM audit_logs WHERE id IN (
                SELECT id FROM audit_logs WHERE created_at < now() - make_interval(days => $1)
                 ORDER BY id LIMIT $2)
            RETURNING {list})
         INSERT INTO audit_logs_archive ({list}) OVERRIDING SYSTEM VALUE SELECT {list} FROM moved"
    );
    let mut total = 0u64;
    loop {
        if ctx.is_cancelled() {
            break;
        }
        let n = client.execute(&sql, &[&AUDIT_ARCHIVE_DAYS, &BATCH]).await?;
        total += n;
        if n < BATCH as u64 {
            break;
        }
    }
    Ok(json!(total))
}

/// Delete login sessions that ended (inactive) longer than the retention ago, when the identity
/// work's `user_login_sessions` table exists.
async fn delete_sessions(ctx: &JobContext, days: i32) -> Result<serde_json::Value, JobError> {
    let pooled = ctx.db().get().await?;
    let client: &tokio_postgres::Client = &pooled;
    let exists: bool = client
        .query_one("SELECT to_regclass('user_login_sessions') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        return Ok(json!("skipped: no user_login_sessions table"));
    }
    let cols = columns(client, "user_login_sessions").await?;
    if !cols.iter().any(|c| c == "is_active") || !cols.iter().any(|c| c == "last_activity_at") {
        return Ok(json!(
            "skipped: user_login_sessions lacks is_active / last_activity_at"
        ));
    }
    let n = client
        .execute(
            "DELETE FROM user_login_sessions
              WHERE NOT is_active AND last_activity_at < now() - make_interval(days => $1)",
            &[&days],
        )
        .await?;
    Ok(json!(n))
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DatabaseBackup {}

/// The timer and the scheduled job both back up at 05:00 and 17:00; the second one within this
/// window skips.
pub const SCHEDULED_BACKUP_WINDOW: Duration = Duration::from_secs(3600);

impl Job for DatabaseBackup {
    const NAME: &'static str = "ef.system.database_backup";
    const QUEUE: Queue = Queue::Core;
    const DESCRIPTION: &'static str =
        "数据库备份：pg_dump（custom 格式）到 EF__BACKUP_DIR，保留 EF__BACKUP_RETENTION_DAYS 天";
    const SCHEDULE: Option<&'static str> = Some("0 5,17 * * *");

    fn limits() -> TimeLimits {
        TimeLimits {
            soft: Duration::from_secs(3600),
            hard: Duration::from_secs(3900),
        }
    }

    fn retry() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_secs(300),
            cap: Duration::from_secs(1800),
        }
    }

    async fn run(self, ctx: JobContext) -> JobResult {
        let cfg = ctx.config();
        let stop = ctx.stop_token();
        let Some(report) = crate::ops::backup::backup_unless_recent(
            &cfg.db,
            &cfg.worker.backup_dir,
            cfg.worker.backup_retention_days,
            SCHEDULED_BACKUP_WINDOW,
            Some(&stop),
        )
        .await?
        else {
            return Ok(
                json!({"skipped": "a backup less than an hour old exists (euraflow-backup.timer)"}),
            );
        };
        Ok(json!({
            "file": report.path.display().to_string(),
            "bytes": report.bytes,
            "duration_ms": report.duration_ms,
            "pruned": report.pruned.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "removed_partials": report
                .removed_partials
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>(),
        }))
    }
}
