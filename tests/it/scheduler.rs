//! The scheduler against the real PostgreSQL: two schedulers racing through an hour of ticks
//! enqueue each tick once; a missed schedule runs once; an edit through the admin functions is
//! used at the next tick without a restart; failures are recorded as failures.
//!
//! Time is driven through the scheduler's injectable clock, so an hour of per-minute ticks takes
//! seconds; the cron arithmetic and the database work are the real ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::common::TestDb;
use crate::common::jobs::*;
use chrono::{DateTime, TimeZone, Utc};
use euraflow::jobs::admin::{self, ServiceUpdate};
use euraflow::jobs::scheduler::{Clock, Scheduler};
use tokio_util::sync::CancellationToken;

/// A clock the test moves.
#[derive(Default)]
struct ManualClock(AtomicI64);

impl ManualClock {
    fn at(t: DateTime<Utc>) -> Arc<Self> {
        Arc::new(ManualClock(AtomicI64::new(t.timestamp_millis())))
    }
    fn set(&self, t: DateTime<Utc>) {
        self.0.store(t.timestamp_millis(), Ordering::SeqCst);
    }
    fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0.load(Ordering::SeqCst))
            .single()
            .unwrap()
    }
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn add_service(
    h: &Harness,
    key: &str,
    task: &str,
    schedule: &str,
    config: serde_json::Value,
) -> i32 {
    h.client()
        .await
        .query_one(
            "INSERT INTO sync_services (service_key, service_name, celery_task_name, service_type, schedule_config, config_json)
             VALUES ($1, $1, $2, 'cron', $3, $4) RETURNING id",
            &[&key, &task, &schedule, &config],
        )
        .await
        .unwrap()
        .get(0)
}

async fn jobs_of(h: &Harness, service: &str) -> Vec<(String, String)> {
    h.client()
        .await
        .query(
            "SELECT unique_key, job_type FROM jobs WHERE service_key = $1 ORDER BY unique_key",
            &[&service],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, Option<String>>(0).unwrap_or_default(), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_racing_through_an_hour_enqueue_each_tick_once() {
    let db = TestDb::migrated().await;
    let (h1, h2) = (Harness::new(&db, &[]), Harness::new(&db, &[]));
    add_service(
        &h1,
        "every-minute",
        "test.noop",
        "* * * * *",
        serde_json::json!({}),
    )
    .await;
    add_service(
        &h1,
        "every-five",
        "test.core_probe",
        "*/5 * * * *",
        serde_json::json!({}),
    )
    .await;
    let start = t("2030-01-01T00:00:30Z");
    let end = t("2030-01-01T01:00:30Z");
    let clock = ManualClock::at(start);
    let reg = Arc::new(test_registry());
    let schedulers = [
        Scheduler::new(h1.db.clone(), reg.clone(), clock.clone()),
        Scheduler::new(h2.db.clone(), reg.clone(), clock.clone()),
    ];
    let passes: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let reported = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    for (i, s) in schedulers.into_iter().enumerate() {
        let (clock, passes, reported, stop) = (
            clock.clone(),
            passes.clone(),
            reported.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                let runs = s.tick(clock.now()).await.expect("scheduler pass");
                reported.fetch_add(
                    runs.iter().filter(|r| r.new).count() as u64,
                    Ordering::SeqCst,
                );
                assert!(
                    runs.iter().all(|r| r.new),
                    "a tick was enqueued twice: {runs:?}"
                );
                passes[i].fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    // Move the clock 10 s at a time, once both schedulers have looked at the current time.
    while clock.now() < end {
        let seen = [
            passes[0].load(Ordering::SeqCst),
            passes[1].load(Ordering::SeqCst),
        ];
        wait_until("both schedulers pass", Duration::from_secs(10), || {
            let passes = passes.clone();
            async move {
                passes[0].load(Ordering::SeqCst) > seen[0] + 1
                    && passes[1].load(Ordering::SeqCst) > seen[1] + 1
            }
        })
        .await;
        clock.advance(Duration::from_secs(10));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.cancel();
    for task in tasks {
        task.await.unwrap();
    }
    let minute = jobs_of(&h1, "every-minute").await;
    assert_eq!(minute.len(), 60, "one job per minute tick 00:01..01:00");
    for m in 1..=60 {
        let tick = start + chrono::Duration::seconds(30) + chrono::Duration::minutes(m - 1);
        let key = format!("schedule:every-minute:{}", tick.to_rfc3339());
        assert!(minute.iter().any(|(k, _)| *k == key), "missing {key}");
    }
    assert_eq!(jobs_of(&h1, "every-five").await.len(), 12);
    assert_eq!(
        reported.load(Ordering::SeqCst),
        72,
        "each enqueue reported once"
    );
    let next: DateTime<Utc> = h1
        .client()
        .await
        .query_one(
            "SELECT next_run_at FROM sync_services WHERE service_key = 'every-five'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, t("2030-01-01T01:05:00Z"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_downtime_a_missed_schedule_runs_once_for_its_latest_tick() {
    let db = TestDb::migrated().await;
    let h = Harness::new(&db, &[]);
    add_service(
        &h,
        "five",
        "test.noop",
        "*/5 * * * *",
        serde_json::json!({}),
    )
    .await;
    let clock = ManualClock::at(t("2030-01-01T00:00:30Z"));
    let s = Scheduler::new(h.db.clone(), Arc::new(test_registry()), clock.clone());
    assert!(
        s.tick(clock.now()).await.unwrap().is_empty(),
        "first sight anchors, runs nothing"
    );
    // Three hours down.
    clock.set(t("2030-01-01T03:02:00Z"));
    let runs = s.tick(clock.now()).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].tick, t("2030-01-01T03:00:00Z"));
    assert!(s.tick(clock.now()).await.unwrap().is_empty());
    clock.set(t("2030-01-01T03:05:00Z"));
    assert_eq!(s.tick(clock.now()).await.unwrap().len(), 1);
    assert_eq!(jobs_of(&h, "five").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_edited_through_the_admin_functions_is_used_at_the_next_tick() {
    let db = TestDb::migrated().await;
    let h = Harness::new(&db, &[]);
    let id = add_service(
        &h,
        "edited",
        "test.noop",
        "0 * * * *",
        serde_json::json!({}),
    )
    .await;
    let clock = ManualClock::at(t("2030-01-01T00:00:30Z"));
    let s = Scheduler::new(h.db.clone(), Arc::new(test_registry()), clock.clone());
    let stop = CancellationToken::new();
    // The running scheduler, as in `euraflow worker` (every 20 ms here instead of every second).
    let running = tokio::spawn(s.clone().run(Duration::from_millis(20), stop.clone()));
    let client = h.client().await;
    wait_until(
        "the schedule is anchored",
        Duration::from_secs(5),
        || async {
            admin::get_service(&**client, id).await.unwrap().next_run_at
                == Some(t("2030-01-01T01:00:00Z"))
        },
    )
    .await;

    // Invalid schedules are refused with the reason, and nothing changes.
    let err = admin::update_service(
        &**client,
        id,
        &ServiceUpdate {
            schedule_config: Some("*/0 * * * *".into()),
            ..ServiceUpdate::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, admin::AdminError::Invalid(_)));
    assert!(err.to_string().contains("step 0"), "{err}");

    let updated = admin::update_service(
        &**client,
        id,
        &ServiceUpdate {
            schedule_config: Some("*/2 * * * *".into()),
            ..ServiceUpdate::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(updated.schedule_config.as_deref(), Some("*/2 * * * *"));
    wait_until(
        "the new schedule is planned",
        Duration::from_secs(5),
        || async {
            admin::get_service(&**client, id).await.unwrap().next_run_at
                == Some(t("2030-01-01T00:02:00Z"))
        },
    )
    .await;
    clock.set(t("2030-01-01T00:02:10Z"));
    wait_until(
        "the edited schedule's tick is enqueued",
        Duration::from_secs(5),
        || async { jobs_of(&h, "edited").await.len() == 1 },
    )
    .await;
    assert_eq!(
        jobs_of(&h, "edited").await[0].0,
        format!("schedule:edited:{}", t("2030-01-01T00:02:00Z").to_rfc3339())
    );

    // Disabled: no runs; enabled again: from then on, without catching up.
    admin::update_service(
        &**client,
        id,
        &ServiceUpdate {
            is_enabled: Some(false),
            ..ServiceUpdate::default()
        },
    )
    .await
    .unwrap();
    clock.set(t("2030-01-01T00:10:10Z"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(jobs_of(&h, "edited").await.len(), 1);
    admin::update_service(
        &**client,
        id,
        &ServiceUpdate {
            is_enabled: Some(true),
            ..ServiceUpdate::default()
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        jobs_of(&h, "edited").await.len(),
        1,
        "no catch-up after re-enabling"
    );
    clock.set(t("2030-01-01T00:12:01Z"));
    wait_until(
        "the next tick after re-enabling",
        Duration::from_secs(5),
        || async { jobs_of(&h, "edited").await.len() == 2 },
    )
    .await;
    stop.cancel();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_recorded_as_failures_with_logs_and_stats() {
    let db = TestDb::migrated().await;
    let h = Harness::new(&db, &[("EF__WORKER_POLL_INTERVAL", "50ms")]);
    let k = uuid::Uuid::new_v4().simple().to_string();
    let id = add_service(
        &h,
        "flaky",
        "test.fail_times",
        "0 0 1 1 *",
        serde_json::json!({"key": k, "times": 1}),
    )
    .await;
    let reg = test_registry();
    let client = h.client().await;
    let triggered = admin::trigger_service(&**client, &reg, id).await.unwrap();
    assert_eq!(triggered.task_name, "test.fail_times");
    let w = h.start(reg, h.options());
    h.wait_state(triggered.job_id, "succeeded", Duration::from_secs(10))
        .await;
    w.stop().await;

    let s = admin::get_service(&**client, id).await.unwrap();
    assert_eq!((s.run_count, s.success_count, s.error_count), (2, 1, 1));
    assert_eq!(s.last_run_status.as_deref(), Some("success"));
    let logs = admin::service_logs(&**client, id, None).await.unwrap();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].status, "success");
    assert_eq!(logs[0].records_processed, Some(3));
    assert_eq!(logs[1].status, "failed");
    assert!(
        logs[1]
            .error_message
            .as_deref()
            .unwrap()
            .contains("planned failure 1 of 1")
    );
    let stats = admin::service_stats(&**client, id).await.unwrap();
    assert_eq!(stats.total_runs, 2);
    assert!((stats.success_rate - 0.5).abs() < 1e-9);
    assert_eq!(stats.recent_errors.len(), 1);

    assert_eq!(
        admin::delete_service_logs(&**client, id, None)
            .await
            .unwrap(),
        2
    );
    let reset = admin::reset_service_stats(&**client, id).await.unwrap();
    assert_eq!(
        (reset.run_count, reset.success_count, reset.error_count),
        (0, 0, 0)
    );
    assert!(matches!(
        admin::trigger_service(&**client, &test_registry(), 9999).await,
        Err(admin::AdminError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_schedules_are_seeded_once_and_operator_edits_are_kept() {
    let db = TestDb::migrated().await;
    let h = Harness::new(&db, &[]);
    let reg = Arc::new(euraflow::jobs::builtin_registry());
    let s = Scheduler::new(
        h.db.clone(),
        reg.clone(),
        Arc::new(euraflow::jobs::scheduler::SystemClock),
    );
    // The core jobs, the hourly Ozon product and order pulls and the exchange-rate refresh.
    assert_eq!(s.seed().await.unwrap(), 6);
    let client = h.client().await;
    let services = admin::list_services(&**client, None, false).await.unwrap();
    // The operators read Chinese: 后台服务 shows every built-in job's description in Chinese.
    for service in &services {
        let text = service.service_description.as_deref().unwrap_or_default();
        assert!(
            text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
            "{:?}: {text}",
            service.service_key
        );
    }
    let backup = services
        .iter()
        .find(|s| s.celery_task_name.as_deref() == Some("ef.system.database_backup"))
        .unwrap();
    assert_eq!(backup.schedule_config.as_deref(), Some("0 5,17 * * *"));
    admin::update_service(
        &**client,
        backup.id,
        &ServiceUpdate {
            is_enabled: Some(false),
            ..ServiceUpdate::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(s.seed().await.unwrap(), 0);
    assert_eq!(
        admin::list_services(&**client, Some(true), false)
            .await
            .unwrap()
            .len(),
        5
    );
    let handlers = admin::handlers(&reg);
    assert!(
        handlers
            .iter()
            .any(|h| h.service_key == "ef.core.system_health_check"
                && h.default_schedule.as_deref() == Some("*/5 * * * *"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_schedule_that_cannot_enqueue_does_not_hold_up_the_others() {
    let db = TestDb::migrated().await;
    let h = Harness::new(&db, &[]);
    // As an imported row could be: a payload larger than a job accepts.
    let big = serde_json::json!({ "blob": "x".repeat(300 * 1024) });
    add_service(&h, "too-big", "test.noop", "*/5 * * * *", big).await;
    add_service(
        &h,
        "fine",
        "test.noop",
        "*/5 * * * *",
        serde_json::json!({}),
    )
    .await;
    add_service(
        &h,
        "bad-cron",
        "test.noop",
        "61 * * * *",
        serde_json::json!({}),
    )
    .await;
    add_service(
        &h,
        "unknown-type",
        "ef.ozon.chat.pull_not_in_this_release",
        "*/5 * * * *",
        serde_json::json!({}),
    )
    .await;
    let clock = ManualClock::at(t("2030-01-01T00:00:30Z"));
    let s = Scheduler::new(h.db.clone(), Arc::new(test_registry()), clock.clone());
    s.tick(clock.now()).await.unwrap();
    clock.set(t("2030-01-01T00:05:01Z"));
    let runs = s.tick(clock.now()).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].service_key, "fine");
    assert!(jobs_of(&h, "too-big").await.is_empty());
    // The skipped tick is not retried every pass.
    let next: Option<DateTime<Utc>> = h
        .client()
        .await
        .query_one(
            "SELECT next_run_at FROM sync_services WHERE service_key = 'too-big'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, Some(t("2030-01-01T00:10:00Z")));
}
