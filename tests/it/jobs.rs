//! The job queue and worker against the real PostgreSQL, each test with its own database: commit
//! and rollback, unique keys, retries with backoff until dead and back, time limits, fairness
//! under a flood, leases, shutdown, Redis down, and the admin functions.

use std::time::{Duration, Instant};

use crate::common::jobs::*;
use crate::common::{self, TestDb};
use euraflow::jobs::admin::{self, JobFilter};
use euraflow::jobs::queue::{self, Enqueued, NewJob};
use euraflow::jobs::registry::JobEnv;
use euraflow::jobs::{Job, JobContext, Queue};

fn key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_enqueued_in_a_rolled_back_transaction_never_runs() {
    let db = TestDb::migrated().await;
    // A long poll interval: a committed job must be picked up by its NOTIFY, not by polling.
    let h = Harness::new(&db, &[("EF__WORKER_POLL_INTERVAL", "30s")]);
    let w = h.start(test_registry(), h.options());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut client = h.client().await;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute("CREATE TABLE orders_demo (id int)")
        .await
        .unwrap();
    let rolled = queue::enqueue(&*tx, &NewJob::of(&Noop {}).unwrap())
        .await
        .unwrap()
        .id();
    tx.rollback().await.unwrap();

    let tx = client.transaction().await.unwrap();
    tx.batch_execute("CREATE TABLE orders_demo (id int); INSERT INTO orders_demo VALUES (1)")
        .await
        .unwrap();
    let committed = queue::enqueue(&*tx, &NewJob::of(&Noop {}).unwrap())
        .await
        .unwrap()
        .id();
    let enqueued_at = Instant::now();
    tx.commit().await.unwrap();
    h.wait_state(committed, "succeeded", Duration::from_secs(5))
        .await;
    let woke_after = enqueued_at.elapsed();
    assert!(
        woke_after < Duration::from_secs(3),
        "the NOTIFY on commit should wake the worker, not the 30 s poll: {woke_after:?}"
    );
    let n: i64 = client
        .query_one("SELECT count(*) FROM jobs WHERE id = $1", &[&rolled])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the rolled-back job does not exist");
    let total: i64 = client
        .query_one("SELECT count(*) FROM jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_key_admits_one_job_and_limits_are_enforced() {
    let db = TestDb::migrated().await;
    let h = Harness::new(&db, &[]);
    let client = h.client().await;
    let job = NewJob::of(&Noop {})
        .unwrap()
        .unique_key("shop-7:2025-01-01");
    let first = queue::enqueue(&**client, &job).await.unwrap();
    let second = queue::enqueue(&**client, &job).await.unwrap();
    assert!(matches!(first, Enqueued::New(_)));
    assert_eq!(second, Enqueued::Existing(first.id()));

    let big = NewJob::from_spec(
        test_registry().get("test.noop").unwrap(),
        serde_json::json!({"blob": "x".repeat(300 * 1024)}),
    );
    let err = queue::enqueue(&**client, &big)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than the 262144 accepted"), "{err}");

    let many: Vec<NewJob> = (0..1000).map(|_| NewJob::of(&Noop {}).unwrap()).collect();
    assert_eq!(
        queue::enqueue_many(&**client, &many).await.unwrap().len(),
        1000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_follow_the_backoff_end_dead_and_retry_brings_the_job_back() {
    let db = TestDb::migrated().await;
    let h = Harness::new(&db, &[("EF__WORKER_POLL_INTERVAL", "50ms")]);
    let w = h.start(test_registry(), h.options());
    let k = key();
    let client = h.client().await;
    // Fails 3 times, with max_attempts 3: dead after the third run; the fourth run succeeds.
    let id = queue::enqueue(
        &**client,
        &NewJob::of(&FailTimes {
            key: k.clone(),
            times: 3,
        })
        .unwrap(),
    )
    .await
    .unwrap()
    .id();

    // Observe each failure: the delay until run_after must lie in [backoff/2, backoff].
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen < 2 {
        assert!(Instant::now() < deadline, "retries did not happen");
        let r = client
            .query_one(
                "SELECT state, attempts, extract(epoch FROM run_after - updated_at)::float8
                   FROM jobs WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
        let (state, attempts, delay): (String, i32, f64) = (r.get(0), r.get(1), r.get(2));
        if state == "failed_retrying" && attempts as u32 > seen {
            let full = FAIL_POLICY.backoff(attempts as u32).as_secs_f64();
            assert!(
                delay >= full / 2.0 - 0.01 && delay <= full + 0.01,
                "attempt {attempts}: retry after {delay}s, expected between {} and {full}",
                full / 2.0
            );
            seen = attempts as u32;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, attempts, error) = h.wait_state(id, "dead", Duration::from_secs(10)).await;
    assert_eq!(attempts, 3);
    assert!(error.unwrap().contains("planned failure 3 of 3"));
    assert_eq!(count(&k), 3);

    // Retrying a job that is not dead is refused; retrying the dead one brings it back.
    let noop = queue::enqueue(&**client, &NewJob::of(&Noop {}).unwrap())
        .await
        .unwrap()
        .id();
    h.wait_state(noop, "succeeded", Duration::from_secs(5))
        .await;
    let err = admin::retry_job(&**client, noop).await.unwrap_err();
    assert!(matches!(err, admin::AdminError::Conflict(_)), "{err}");
    let row = admin::retry_job(&**client, id).await.unwrap();
    assert_eq!((row.state.as_str(), row.attempts), ("queued", 0));
    h.wait_state(id, "succeeded", Duration::from_secs(5)).await;
    assert_eq!(count(&k), 4);

    // Failures and deaths are counted for metrics.
    let r = client
        .query_one(
            "SELECT sum(failed)::int8, sum(dead)::int8, sum(succeeded)::int8 FROM job_metrics WHERE job_type = 'test.fail_times'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)),
        (3, 1, 1)
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hard_time_limit_aborts_a_job_that_ignores_the_soft_one() {
    let db = TestDb::migrated().await;
    let h = Harness::new(&db, &[("EF__WORKER_POLL_INTERVAL", "50ms")]);
    let w = h.start(test_registry(), h.options());
    let k = key();
    let client = h.client().await;
    let stubborn = queue::enqueue(
        &**client,
        &NewJob::of(&Stubborn { key: k.clone() }).unwrap(),
    )
    .await
    .unwrap()
    .id();
    let polite = queue::enqueue(&**client, &NewJob::of(&Polite {}).unwrap())
        .await
        .unwrap()
        .id();
    let (_, _, error) = h
        .wait_state(stubborn, "dead", Duration::from_secs(10))
        .await;
    assert!(error.unwrap().contains("hard time limit of 0.9s exceeded"));
    let r = client
        .query_one(
            "SELECT extract(epoch FROM finished_at - started_at)::float8 FROM jobs WHERE id = $1",
            &[&stubborn],
        )
        .await
        .unwrap();
    let ran: f64 = r.get(0);
    assert!((0.85..2.0).contains(&ran), "ran {ran}s");
    // Aborted means stopped: its loop does not go on.
    let after = count(&k);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&k), after, "the aborted job kept running");

    let (_, _, error) = h.wait_state(polite, "dead", Duration::from_secs(5)).await;
    assert!(
        error
            .unwrap()
            .contains("stopped at the soft limit as asked")
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_in_one_queue_does_not_delay_another_queue_beyond_one_job() {
    let db = TestDb::migrated().await;
    // 4 slots; the flooded queue has no cap of its own, so it occupies every slot: fairness alone
    // must let the other queue in when the next slot frees.
    let h = Harness::new(
        &db,
        &[
            ("EF__WORKER_CONCURRENCY", "4"),
            ("EF__WORKER_QUEUES", ""),
            ("EF__WORKER_POLL_INTERVAL", "50ms"),
        ],
    );
    let k = key();
    let client = h.client().await;
    let flood: Vec<NewJob> = (0..10_000)
        .map(|_| {
            NewJob::of(&Sleep {
                ms: 500,
                key: k.clone(),
            })
            .unwrap()
        })
        .collect();
    queue::enqueue_many(&**client, &flood).await.unwrap();
    let w = h.start(test_registry(), h.options());
    wait_until(
        "the flood fills every slot",
        Duration::from_secs(10),
        || async { count(&format!("{k}:active")) == 4 },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let probe = queue::enqueue(&**client, &NewJob::of(&CoreProbe {}).unwrap())
        .await
        .unwrap()
        .id();
    h.wait_state(probe, "succeeded", Duration::from_secs(5))
        .await;
    let waited: f64 = client
        .query_one(
            "SELECT extract(epoch FROM started_at - created_at)::float8 FROM jobs WHERE id = $1",
            &[&probe],
        )
        .await
        .unwrap()
        .get(0);
    // One flood job runs 0.5 s; allow scheduling slack on a busy 2-core machine.
    assert!(
        waited < 0.5 + 0.35,
        "the core job waited {waited}s behind the flood"
    );
    let left: i64 = client
        .query_one("SELECT count(*) FROM jobs WHERE state = 'queued'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(left > 9_900, "the flood was still queued ({left})");
    w.stop().await;

    // With a cap on the flooded queue, the other queue does not wait at all.
    let h2 = Harness::new(
        &db,
        &[
            ("EF__WORKER_CONCURRENCY", "4"),
            ("EF__WORKER_QUEUES", "default=3"),
            ("EF__WORKER_POLL_INTERVAL", "50ms"),
            ("EF__WORKER_SHUTDOWN_TIMEOUT", "1s"),
        ],
    );
    let w = h2.start(test_registry(), h2.options());
    wait_until("the capped flood runs", Duration::from_secs(10), || async {
        count(&format!("{k}:active")) == 3
    })
    .await;
    let probe = queue::enqueue(&**client, &NewJob::of(&CoreProbe {}).unwrap())
        .await
        .unwrap()
        .id();
    h2.wait_state(probe, "succeeded", Duration::from_secs(5))
        .await;
    let waited: f64 = client
        .query_one(
            "SELECT extract(epoch FROM started_at - created_at)::float8 FROM jobs WHERE id = $1",
            &[&probe],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        waited < 0.3,
        "the core job waited {waited}s with a free slot"
    );
    assert!(count(&format!("{k}:max")) <= 4);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_longer_than_its_lease_runs_once_and_never_twice_at_once() {
    let db = TestDb::migrated().await;
    let extra = [
        ("EF__JOB_LEASE_TIMEOUT", "2s"),
        ("EF__WORKER_POLL_INTERVAL", "50ms"),
    ];
    let h = Harness::new(&db, &extra);
    let a = h.start(test_registry(), h.options());
    let b = h.start(test_registry(), h.options());
    let k = key();
    let client = h.client().await;
    let id = queue::enqueue(
        &**client,
        &NewJob::of(&Sleep {
            ms: 5_000,
            key: k.clone(),
        })
        .unwrap(),
    )
    .await
    .unwrap()
    .id();
    h.wait_state(id, "succeeded", Duration::from_secs(15)).await;
    assert_eq!(count(&format!("{k}:runs")), 1, "renewed leases: one run");
    assert_eq!(count(&format!("{k}:max")), 1);
    let (_, attempts, _) = h.job(id).await;
    assert_eq!(attempts, 1);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_lets_short_jobs_finish_and_releases_the_rest() {
    let db = TestDb::migrated().await;
    let h = Harness::new(
        &db,
        &[
            ("EF__WORKER_SHUTDOWN_TIMEOUT", "1s"),
            ("EF__WORKER_POLL_INTERVAL", "50ms"),
        ],
    );
    let w = h.start(test_registry(), h.options());
    let (short_k, long_k) = (key(), key());
    let client = h.client().await;
    let short = queue::enqueue(
        &**client,
        &NewJob::of(&Sleep {
            ms: 500,
            key: short_k.clone(),
        })
        .unwrap(),
    )
    .await
    .unwrap()
    .id();
    let long = queue::enqueue(
        &**client,
        &NewJob::of(&Sleep {
            ms: 30_000,
            key: long_k.clone(),
        })
        .unwrap(),
    )
    .await
    .unwrap()
    .id();
    wait_until("both run", Duration::from_secs(5), || async {
        count(&format!("{short_k}:active")) == 1 && count(&format!("{long_k}:active")) == 1
    })
    .await;
    let started = Instant::now();
    w.stop().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    assert_eq!(h.job(short).await.0, "succeeded");
    let (state, attempts, error) = h.job(long).await;
    assert_eq!((state.as_str(), attempts), ("queued", 0));
    assert!(error.unwrap().contains("released back to the queue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_does_not_stop_jobs() {
    let db = TestDb::migrated().await;
    let h = Harness::new(
        &db,
        &[
            ("EF__REDIS_PORT", "1"),
            ("EF__REDIS_TIMEOUT", "500ms"),
            ("EF__WORKER_POLL_INTERVAL", "50ms"),
        ],
    );
    let w = h.start(test_registry(), h.options());
    let client = h.client().await;
    let ids = queue::enqueue_many(
        &**client,
        &(0..20)
            .map(|_| NewJob::of(&Noop {}).unwrap())
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    for id in ids {
        h.wait_state(id, "succeeded", Duration::from_secs(10)).await;
    }
    // The health check job runs too, and records Redis as down.
    let check = queue::enqueue(
        &**client,
        &NewJob::of(&euraflow::jobs::core_jobs::SystemHealthCheck {}).unwrap(),
    )
    .await
    .unwrap()
    .id();
    h.wait_state(check, "succeeded", Duration::from_secs(10))
        .await;
    let r = client
        .query_one(
            "SELECT status, checks FROM system_health_checks WHERE job_id = $1",
            &[&check],
        )
        .await
        .unwrap();
    let (status, checks): (String, serde_json::Value) = (r.get(0), r.get(1));
    assert_eq!(status, "degraded");
    assert_eq!(checks["redis"]["status"], "down");
    assert_eq!(checks["database"]["status"], "ok");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_paging_cancel_and_get_for_the_jobs_api() {
    let db = TestDb::migrated().await;
    let h = Harness::new(&db, &[]);
    let client = h.client().await;
    let mut jobs: Vec<NewJob> = (0..25).map(|_| NewJob::of(&Noop {}).unwrap()).collect();
    jobs.extend((0..5).map(|_| NewJob::of(&CoreProbe {}).unwrap()));
    let ids = queue::enqueue_many(&**client, &jobs).await.unwrap();

    let mut seen = Vec::new();
    let mut filter = JobFilter {
        job_type: Some("test.noop".into()),
        limit: Some(10),
        ..JobFilter::default()
    };
    loop {
        let page = admin::list_jobs(&**client, &filter).await.unwrap();
        seen.extend(page.jobs.iter().map(|j| j.id));
        match page.next_cursor {
            Some(c) => filter.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );

    let core = admin::list_jobs(
        &**client,
        &JobFilter {
            queue: Some("ef_core".into()),
            state: Some("queued".into()),
            ..JobFilter::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(core.jobs.len(), 5);
    assert!(core.next_cursor.is_none());

    for bad in [
        JobFilter {
            state: Some("sleeping".into()),
            ..JobFilter::default()
        },
        JobFilter {
            queue: Some("celery".into()),
            ..JobFilter::default()
        },
        JobFilter {
            cursor: Some("abc".into()),
            ..JobFilter::default()
        },
    ] {
        assert!(matches!(
            admin::list_jobs(&**client, &bad).await,
            Err(admin::AdminError::Invalid(_))
        ));
    }

    let cancelled = admin::cancel_job(&**client, ids[0]).await.unwrap();
    assert_eq!(cancelled.state, "cancelled");
    assert!(matches!(
        admin::cancel_job(&**client, ids[0]).await,
        Err(admin::AdminError::Conflict(_))
    ));
    assert!(matches!(
        admin::get_job(&**client, 999_999).await,
        Err(admin::AdminError::NotFound(_))
    ));
    let one = admin::get_job(&**client, ids[1]).await.unwrap();
    assert_eq!(
        (one.job_type.as_str(), one.queue.as_str()),
        ("test.noop", "default")
    );

    // A cancelled job is never run.
    let w = h.start(test_registry(), h.options());
    h.wait_state(ids[29], "succeeded", Duration::from_secs(10))
        .await;
    assert_eq!(h.job(ids[0]).await.0, "cancelled");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_old_rows_and_archives_audit_logs_when_the_tables_exist() {
    let db = TestDb::migrated().await;
    let h = Harness::new(&db, &[("EF__JOB_RETENTION_DAYS", "7")]);
    let client = h.client().await;
    client
        .batch_execute(
            "INSERT INTO jobs (job_type, queue, max_attempts, state, finished_at)
             SELECT 'test.noop', 'default', 1, 'succeeded', now() - interval '8 days' FROM generate_series(1, 12);
             INSERT INTO jobs (job_type, queue, max_attempts, state, finished_at)
             VALUES ('test.noop', 'default', 1, 'succeeded', now() - interval '6 days'),
                    ('test.noop', 'default', 1, 'queued', NULL);
             INSERT INTO sync_service_logs (service_key, started_at, status)
             VALUES ('x', now() - interval '30 days', 'success'), ('x', now(), 'success');",
        )
        .await
        .unwrap();
    // The identity tables (migrations/0002): old audit rows and ended sessions.
    client
        .batch_execute(
            "INSERT INTO users (id, username, password_hash, role) VALUES (1, 'admin', 'x', 'admin');
             INSERT INTO audit_logs (user_id, username, module, action, created_at)
             SELECT 1, 'admin', 'auth', 'login', now() - interval '200 days' FROM generate_series(1, 7);
             INSERT INTO audit_logs (user_id, username, module, action) VALUES (1, 'admin', 'auth', 'login');
             INSERT INTO user_login_sessions (user_id, session_token, is_active, last_activity_at)
             VALUES (1, 'a', false, now() - interval '30 days'), (1, 'b', true, now() - interval '30 days'),
                    (1, 'c', false, now());",
        )
        .await
        .unwrap();
    let ctx = |id| JobContext::new(id, 1, 1, Default::default(), h.env.clone());
    use euraflow::jobs::core_jobs::Cleanup;
    let out = Cleanup {}.run(ctx(1)).await.unwrap();
    assert_eq!(out["jobs_deleted"], 12);
    assert_eq!(out["sync_service_logs_deleted"], 1);
    assert_eq!(out["audit_logs_archived"], 7);
    assert_eq!(out["login_sessions_deleted"], 1);
    let left: i64 = client
        .query_one("SELECT count(*) FROM jobs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 2);
    let counts = client
        .query_one(
            "SELECT (SELECT count(*) FROM audit_logs), (SELECT count(*) FROM audit_logs_archive),
                    (SELECT count(*) FROM audit_logs_archive WHERE username = 'admin' AND action = 'login')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            counts.get::<_, i64>(0),
            counts.get::<_, i64>(1),
            counts.get::<_, i64>(2)
        ),
        (1, 7, 7)
    );

    // A database without the archive table (a partial import): the audit step is skipped, not
    // an error, and the rest still runs.
    client
        .batch_execute("DROP TABLE audit_logs_archive")
        .await
        .unwrap();
    let out = Cleanup {}.run(ctx(2)).await.unwrap();
    assert!(
        out["audit_logs_archived"]
            .as_str()
            .unwrap()
            .starts_with("skipped"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_env_health_check_works_before_any_worker() {
    // The health job reuses the server's probe logic without the HTTP layer.
    let db = TestDb::migrated().await;
    let h = Harness::new(&db, &[]);
    let env: &JobEnv = &h.env;
    let report = env.health.report().await;
    assert_eq!(report.database.status, euraflow::health::CheckStatus::Ok);
    assert_eq!(Queue::parse("ef_low"), Some(Queue::Low));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_metrics_report_every_workers_jobs_from_postgresql() {
    let db = TestDb::migrated().await;
    let h = Harness::new(&db, &[("EF__WORKER_POLL_INTERVAL", "50ms")]);
    let client = h.client().await;
    let k = key();
    let ok = queue::enqueue(&**client, &NewJob::of(&Noop {}).unwrap())
        .await
        .unwrap()
        .id();
    let fails = queue::enqueue(
        &**client,
        &NewJob::of(&FailTimes {
            key: k.clone(),
            times: 10,
        })
        .unwrap(),
    )
    .await
    .unwrap()
    .id();
    let w = h.start(test_registry(), h.options());
    h.wait_state(ok, "succeeded", Duration::from_secs(5)).await;
    h.wait_state(fails, "dead", Duration::from_secs(10)).await;
    w.stop().await;
    queue::enqueue_many(
        &**client,
        &(0..7)
            .map(|_| NewJob::of(&Noop {}).unwrap())
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    client
        .batch_execute(
            "INSERT INTO sync_services (service_key, celery_task_name, schedule_config, next_run_at)
             VALUES ('late', 'test.noop', '* * * * *', now() - interval '90 seconds')",
        )
        .await
        .unwrap();

    let srv = common::TestServer::start(&common::as_refs(&db.env())).await;
    let text = reqwest::get(srv.http_url("/api/ef/v1/system/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
    };
    assert_eq!(value("ef_job_queue_depth{queue=\"default\"}"), 7.0);
    assert_eq!(value("ef_job_queue_depth{queue=\"ef_core\"}"), 0.0);
    assert!(value("ef_job_oldest_queued_seconds{queue=\"default\"}") >= 0.0);
    assert_eq!(value("ef_job_failures_total{job=\"test.fail_times\"}"), 3.0);
    assert_eq!(value("ef_job_succeeded_total{job=\"test.noop\"}"), 1.0);
    assert_eq!(value("ef_job_dead_total"), 1.0);
    assert_eq!(
        value("ef_job_duration_seconds_count{job=\"test.noop\"}"),
        1.0
    );
    assert_eq!(
        value("ef_job_duration_seconds_bucket{job=\"test.noop\",le=\"+Inf\"}"),
        1.0
    );
    let lag = value("ef_scheduler_lag_seconds");
    assert!((89.0..200.0).contains(&lag), "{lag}");
    assert!(text.contains("# TYPE ef_job_duration_seconds histogram"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_cap_limits_that_queue_and_leaves_the_other_slots_free() {
    let db = TestDb::migrated().await;
    let h = Harness::new(
        &db,
        &[
            ("EF__WORKER_CONCURRENCY", "6"),
            ("EF__WORKER_QUEUES", "default=2"),
            ("EF__WORKER_POLL_INTERVAL", "50ms"),
        ],
    );
    let k = key();
    let client = h.client().await;
    let ids = queue::enqueue_many(
        &**client,
        &(0..8)
            .map(|_| {
                NewJob::of(&Sleep {
                    ms: 300,
                    key: k.clone(),
                })
                .unwrap()
            })
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    let w = h.start(test_registry(), h.options());
    assert_eq!(w.worker.options().limit(Queue::Default), 2);
    for id in ids {
        h.wait_state(id, "succeeded", Duration::from_secs(15)).await;
    }
    assert_eq!(
        count(&format!("{k}:max")),
        2,
        "never more than the cap at once"
    );
    assert_eq!(count(&format!("{k}:runs")), 8);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_run_whose_worker_died_is_closed_as_failed_when_its_lease_expires() {
    let db = TestDb::migrated().await;
    let h = Harness::new(&db, &[("EF__WORKER_POLL_INTERVAL", "50ms")]);
    let client = h.client().await;
    // A run of service `probe` whose worker vanished: its job still `running` under an expired
    // lease, its log row still `running`.
    let id: i64 = client
        .query_one(
            "WITH s AS (
                INSERT INTO sync_services (service_key, celery_task_name) VALUES ('probe', 'test.noop'))
             INSERT INTO jobs (job_type, queue, max_attempts, attempts, state, lease_owner,
                               lease_expires_at, started_at, service_key)
             VALUES ('test.noop', 'default', 1, 1, 'running', 'gone:1:x', now() - interval '1 second',
                     now() - interval '1 minute', 'probe')
             RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    client
        .execute(
            "INSERT INTO sync_service_logs (service_key, run_id, status) VALUES ('probe', $1, 'running')",
            &[&id.to_string()],
        )
        .await
        .unwrap();
    let w = h.start(test_registry(), h.options());
    let (_, _, error) = h.wait_state(id, "dead", Duration::from_secs(10)).await;
    assert!(error.unwrap().contains("gone:1:x"));
    let log = client
        .query_one(
            "SELECT status, finished_at IS NOT NULL, error_message FROM sync_service_logs
              WHERE run_id = $1",
            &[&id.to_string()],
        )
        .await
        .unwrap();
    assert_eq!(log.get::<_, String>(0), "failed");
    assert!(log.get::<_, bool>(1));
    assert_eq!(
        log.get::<_, Option<String>>(2).as_deref(),
        Some("the worker running it died before it finished")
    );
    w.stop().await;
}
