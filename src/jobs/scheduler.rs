//! The scheduler: enqueues the jobs of `sync_services` schedules when they are due. It runs inside
//! `euraflow worker`, and any number of schedulers may run at once:
//!
//! - each pass locks the enabled schedules with `FOR UPDATE SKIP LOCKED`, enqueues what is due in
//!   the same transaction, and advances `last_scheduled_at`; the job's unique key
//!   (`schedule:<service_key>:<tick>`) makes a second enqueue of the same tick impossible even so;
//! - after downtime a schedule that missed ticks runs once, for the latest one;
//! - the schedule is read from the table on every pass (every second), so an edit is used at the
//!   next tick without a restart. Changing a schedule or enabling it resets its anchor: ticks
//!   before the change are not caught up.
//!
//! The clock is injectable (`Clock`) so tests can drive whole hours of ticks in seconds; the cron
//! arithmetic is the same either way.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::cron::Timing;
use super::queue::{self, Enqueued, NewJob, QueueError};
use super::registry::Registry;
use crate::db::Database;

/// Where the scheduler reads the time.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock (UTC).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// One enqueue made by a pass.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScheduledRun {
    pub service_key: String,
    pub job_type: String,
    pub tick: DateTime<Utc>,
    pub job_id: i64,
    /// False when the tick's job already existed (another scheduler enqueued it).
    pub new: bool,
}

pub struct Scheduler {
    db: Arc<Database>,
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
    /// Problems already logged (schedule text, unknown job type), so each is logged once.
    warned: Mutex<HashSet<String>>,
}

impl Scheduler {
    pub fn new(db: Arc<Database>, registry: Arc<Registry>, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Scheduler {
            db,
            registry,
            clock,
            warned: Mutex::new(HashSet::new()),
        })
    }

    fn warn_once(&self, key: String, message: &str) {
        let first = self
            .warned
            .lock()
            .map(|mut w| w.insert(key))
            .unwrap_or(false);
        if first {
            tracing::warn!("{message}");
        }
    }

    /// Add a `sync_services` row for every registered job type with a default schedule that has
    /// none yet (matched by service key or job type). Operators' edits are never overwritten.
    pub async fn seed(&self) -> Result<usize, QueueError> {
        let client = self.db.get().await?;
        let mut added = 0;
        for spec in self.registry.iter() {
            let Some(schedule) = spec.schedule else {
                continue;
            };
            let plugin = spec
                .name
                .rsplit_once('.')
                .map(|(p, _)| p)
                .unwrap_or(spec.name);
            let n = client
                .execute(
                    "INSERT INTO sync_services (service_key, service_name, service_description,
                                                celery_task_name, plugin_name, source, service_type,
                                                schedule_config, is_enabled, config_json)
                     SELECT $1::text, $1::text, $2::text, $1::text, $3::text, 'code', 'cron', $4::text,
                            true, '{}'::jsonb
                      WHERE NOT EXISTS (SELECT 1 FROM sync_services
                                         WHERE service_key = $1::text OR celery_task_name = $1::text)
                     ON CONFLICT (service_key) DO NOTHING",
                    &[&spec.name, &spec.description, &plugin, &schedule],
                )
                .await?;
            added += n as usize;
        }
        Ok(added)
    }

    /// One pass at time `now`: enqueue every due tick, advance the schedules.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<Vec<ScheduledRun>, QueueError> {
        let mut client = self.db.get().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "SELECT id, service_key, celery_task_name, service_type, schedule_config,
                        last_scheduled_at, next_run_at, config_json
                   FROM sync_services
                  WHERE is_enabled AND NOT is_deleted
                    AND celery_task_name IS NOT NULL AND schedule_config IS NOT NULL
                  ORDER BY id
                    FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await?;
        let mut runs = Vec::new();
        for row in rows {
            let id: i32 = row.get(0);
            let service_key: String = row.get(1);
            let job_type: String = row.get(2);
            let service_type: String = row.get(3);
            let schedule: String = row.get(4);
            let anchor: Option<DateTime<Utc>> = row.get(5);
            let next_shown: Option<DateTime<Utc>> = row.get(6);
            let payload: Option<serde_json::Value> = row.get(7);
            let timing = match Timing::parse(&service_type, &schedule) {
                Ok(t) => t,
                Err(e) => {
                    self.warn_once(
                        format!("schedule:{service_key}:{schedule}"),
                        &format!("schedule of {service_key} ('{schedule}') is not valid and is skipped: {e}; fix it through the sync-services API"),
                    );
                    continue;
                }
            };
            let Some(spec) = self.registry.get(&job_type) else {
                self.warn_once(
                    format!("type:{service_key}:{job_type}"),
                    &format!("schedule {service_key} names job type {job_type}, which this euraflow does not have; it is skipped"),
                );
                continue;
            };
            let mut last = match anchor {
                Some(a) => a,
                None => {
                    // First sight (new row, or its schedule was just changed): start from now.
                    let next = timing.next_after(now);
                    tx.execute(
                        "UPDATE sync_services SET last_scheduled_at = $2, next_run_at = $3 WHERE id = $1",
                        &[&id, &now, &next],
                    )
                    .await?;
                    continue;
                }
            };
            if let Some(due) = timing.latest_due(last, now) {
                let payload = match payload {
                    Some(p @ serde_json::Value::Object(_)) => p,
                    _ => serde_json::json!({}),
                };
                let job = NewJob::from_spec(spec, payload)
                    .unique_key(format!("schedule:{service_key}:{}", due.to_rfc3339()))
                    .service_key(service_key.clone());
                let enq = match queue::enqueue(&*tx, &job).await {
                    Ok(enq) => enq,
                    Err(QueueError::Invalid(why)) => {
                        // One bad row (e.g. an imported config_json too large for a payload)
                        // must not hold up every other schedule: skip this tick, say why.
                        self.warn_once(
                            format!("invalid:{service_key}"),
                            &format!("schedule {service_key} could not enqueue its job and the tick {due} is skipped: {why}"),
                        );
                        last = due;
                        let next = timing.next_after(last);
                        tx.execute(
                            "UPDATE sync_services SET last_scheduled_at = $2, next_run_at = $3 WHERE id = $1",
                            &[&id, &last, &next],
                        )
                        .await?;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let lag = (now - due).num_milliseconds() as f64 / 1000.0;
                if lag > 60.0 {
                    tracing::warn!(service_key = %service_key, tick = %due, lag_s = lag, "a schedule was missed (downtime?); it runs once now for its latest tick");
                }
                tracing::info!(service_key = %service_key, job_type = %job_type, tick = %due, job_id = enq.id(), "scheduled job enqueued");
                runs.push(ScheduledRun {
                    service_key: service_key.clone(),
                    job_type: job_type.clone(),
                    tick: due,
                    job_id: enq.id(),
                    new: matches!(enq, Enqueued::New(_)),
                });
                last = due;
            }
            let next = timing.next_after(last);
            if Some(last) != anchor || next != next_shown {
                tx.execute(
                    "UPDATE sync_services SET last_scheduled_at = $2, next_run_at = $3 WHERE id = $1",
                    &[&id, &last, &next],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(runs)
    }

    /// Seed, then run a pass every `every` until `stop`.
    pub async fn run(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut seeded = false;
        let mut backoff = Duration::from_secs(1);
        loop {
            let pass = async {
                if !seeded {
                    let added = self.seed().await?;
                    if added > 0 {
                        tracing::info!(added, "added the built-in schedules to sync_services");
                    }
                    seeded = true;
                }
                self.tick(self.clock.now()).await
            };
            let wait = match pass.await {
                Ok(_) => {
                    backoff = Duration::from_secs(1);
                    every
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_s = backoff.as_secs_f64(), "scheduler pass failed");
                    let w = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    w
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}
