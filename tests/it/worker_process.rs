//! `euraflow worker`, `backup` and `restore` as real processes: SIGKILL mid-job (the job runs
//! again after its lease, never twice at once), systemd notifications and SIGTERM drain, the
//! heartbeat and `euraflow status`, and a backup restored into a fresh database.
//!
//! Where a slow job is needed in another process, the tests run `examples/custom_job_worker`
//! (the library's worker with one extra job type, `example.sleep`); the shipped binary's
//! registry has only the built-in jobs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{BIN, NotifySocket, Process, TestDb, as_refs, production_env};

/// The example worker, built by `cargo test` with the other targets (or built here if not).
fn example_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("examples");
    let bin = dir.join("custom_job_worker");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--example", "custom_job_worker"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo build --example");
        assert!(status.success());
    }
    bin
}

fn worker_env(db: &TestDb, dir: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = production_env(dir);
    env.extend(db.env());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

async fn enqueue_sleep(client: &tokio_postgres::Client, ms: u64) -> i64 {
    client
        .query_one(
            "INSERT INTO jobs (job_type, queue, max_attempts, payload) VALUES ('example.sleep', 'default', 5, $1) RETURNING id",
            &[&serde_json::json!({ "ms": ms })],
        )
        .await
        .unwrap()
        .get(0)
}

async fn wait_state(client: &tokio_postgres::Client, id: i64, state: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let s: String = client
            .query_one("SELECT state FROM jobs WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        if s == state {
            return;
        }
        assert!(Instant::now() < deadline, "job {id} is {s}, not {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_its_job_runs_again_after_the_lease_never_twice_at_once() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE example_runs (job_id bigint, attempt int, pid int, started_at timestamptz, finished_at timestamptz)",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = worker_env(
        &db,
        dir.path(),
        &[
            ("EF__JOB_LEASE_TIMEOUT", "3s"),
            ("EF__WORKER_POLL_INTERVAL", "100ms"),
        ],
    );
    let bin = example_bin();
    let a = Process::spawn_until(&bin, dir.path(), &[], &as_refs(&env), "worker ready");
    let b = Process::spawn_until(&bin, dir.path(), &[], &as_refs(&env), "worker ready");
    let id = enqueue_sleep(&client, 4_000).await;

    // Wait for the first run, then SIGKILL whichever process runs it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let runner_pid: i32 = loop {
        if let Some(r) = client
            .query_opt("SELECT pid FROM example_runs WHERE job_id = $1", &[&id])
            .await
            .unwrap()
        {
            break r.get(0);
        }
        assert!(Instant::now() < deadline, "the job did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (mut killed, survivor) = if runner_pid == a.child.id() as i32 {
        (a, b)
    } else {
        (b, a)
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    killed.signal(rustix::process::Signal::KILL);
    killed.wait_exit(Duration::from_secs(5));
    let killed_at: chrono::DateTime<chrono::Utc> =
        client.query_one("SELECT now()", &[]).await.unwrap().get(0);
    let (state, lease_left): (String, f64) = {
        let r = client
            .query_one(
                "SELECT state, extract(epoch FROM lease_expires_at - now())::float8 FROM jobs WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        state, "running",
        "the dead worker's job still holds its lease"
    );
    assert!(lease_left > 0.0);

    wait_state(&client, id, "succeeded", Duration::from_secs(30)).await;
    let runs = client
        .query(
            "SELECT attempt, pid, started_at, finished_at FROM example_runs WHERE job_id = $1 ORDER BY started_at",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(runs.len(), 2, "one killed run, one complete run");
    let first_finished: Option<chrono::DateTime<chrono::Utc>> = runs[0].get(3);
    assert_eq!(runs[0].get::<_, i32>(1), runner_pid);
    assert!(first_finished.is_none(), "the killed run never finished");
    let second_started: chrono::DateTime<chrono::Utc> = runs[1].get(2);
    assert_eq!(runs[1].get::<_, i32>(0), 2);
    assert_eq!(runs[1].get::<_, i32>(1), survivor.child.id() as i32);
    assert!(
        runs[1]
            .get::<_, Option<chrono::DateTime<chrono::Utc>>>(3)
            .is_some()
    );
    // Not before the lease expired: never two runs at once.
    let gap = (second_started - killed_at).num_milliseconds() as f64 / 1000.0;
    assert!(
        gap >= lease_left - 0.2,
        "the second run started {gap}s after the kill, before the lease ({lease_left}s left) expired"
    );
    let (attempts, error): (i32, Option<String>) = {
        let r = client
            .query_one(
                "SELECT attempts, last_error FROM jobs WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(attempts, 2);
    assert!(error.unwrap().contains("expired before the job finished"));
    survivor.wait_for_log("a job's lease expired", Duration::from_secs(1));
    drop(survivor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn euraflow_worker_notifies_systemd_beats_runs_builtin_jobs_and_stops_on_sigterm() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let socket = notify.path.display().to_string();
    let env = worker_env(
        &db,
        dir.path(),
        &[
            ("NOTIFY_SOCKET", &socket),
            ("WATCHDOG_USEC", "1000000"),
            ("EF__WORKER_POLL_INTERVAL", "200ms"),
        ],
    );
    let mut w = Process::spawn_until(
        Path::new(BIN),
        dir.path(),
        &["worker"],
        &as_refs(&env),
        "worker ready",
    );
    let ready = notify.wait_for_text("READY=1", Duration::from_secs(10));
    assert!(ready.contains("STATUS=worker: 12 slots"), "{ready}");
    notify.wait_for_text("WATCHDOG=1", Duration::from_secs(5));
    // Then the queue's state, refreshed every 10 s.
    let status = notify.wait_for(
        |m| m.starts_with("STATUS=") && m.contains("running here;"),
        Duration::from_secs(5),
    );
    assert!(
        status.contains("queued") && status.contains("dead"),
        "{status}"
    );

    // The heartbeat feeds health, and the built-in schedules are seeded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let beats: i64 = client
            .query_one(
                "SELECT count(*) FROM service_heartbeats WHERE kind = 'worker' AND pid = $1",
                &[&(w.child.id() as i32)],
            )
            .await
            .unwrap()
            .get(0);
        let services: i64 = client
            .query_one(
                "SELECT count(*) FROM sync_services WHERE next_run_at IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if beats == 1 && services == 6 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no heartbeat or schedules: {beats} {services}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Trigger the health check as the API will, and watch the worker run it.
    let health_id: i32 = client
        .query_one(
            "SELECT id FROM sync_services WHERE celery_task_name = 'ef.core.system_health_check'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let triggered = euraflow::jobs::admin::trigger_service(
        &client,
        &euraflow::jobs::builtin_registry(),
        health_id,
    )
    .await
    .unwrap();
    wait_state(
        &client,
        triggered.job_id,
        "succeeded",
        Duration::from_secs(15),
    )
    .await;
    let status: String = client
        .query_one(
            "SELECT status FROM system_health_checks WHERE job_id = $1",
            &[&triggered.job_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        status, "healthy",
        "database, Redis, migrations and this worker are up"
    );
    let line = w.wait_for_log("\"job succeeded\"", Duration::from_secs(5));
    for field in ["job_id", "job_type", "attempt", "duration_ms"] {
        assert!(line.contains(field), "{line}");
    }
    let svc: (String, i32) = {
        let r = client
            .query_one(
                "SELECT last_run_status, success_count FROM sync_services WHERE id = $1",
                &[&health_id],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(svc, ("success".to_owned(), 1));

    // `euraflow status` (the server is not running: it reads PostgreSQL directly).
    let out = Command::new(BIN)
        .args(["status", "--json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs = &view["jobs"];
    assert_eq!(jobs["queues"].as_array().unwrap().len(), 6, "{view}");
    assert!(
        jobs["workers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["pid"] == w.child.id())
    );
    assert_eq!(
        jobs["next_runs"].as_array().unwrap().len(),
        6,
        "the seeded schedules, the hourly product and order pulls and the exchange-rate refresh included"
    );
    let text = Command::new(BIN)
        .args(["status"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("next run") && text.contains("ef.system.database_backup (0 5,17 * * *)"),
        "{text}"
    );

    w.signal(rustix::process::Signal::TERM);
    notify.wait_for_text("STOPPING=1", Duration::from_secs(5));
    let status = w.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_running_jobs_finish_within_the_bound_and_releases_the_rest() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE example_runs (job_id bigint, attempt int, pid int, started_at timestamptz, finished_at timestamptz)",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = worker_env(
        &db,
        dir.path(),
        &[
            ("EF__WORKER_SHUTDOWN_TIMEOUT", "3s"),
            ("EF__WORKER_POLL_INTERVAL", "100ms"),
        ],
    );
    let mut w = Process::spawn_until(
        &example_bin(),
        dir.path(),
        &[],
        &as_refs(&env),
        "worker ready",
    );
    let short = enqueue_sleep(&client, 1_500).await;
    let long = enqueue_sleep(&client, 60_000).await;
    wait_state(&client, long, "running", Duration::from_secs(10)).await;
    wait_state(&client, short, "running", Duration::from_secs(10)).await;
    let started = Instant::now();
    w.signal(rustix::process::Signal::TERM);
    let status = w.wait_exit(Duration::from_secs(20));
    let took = started.elapsed();
    assert!(status.success(), "{status}:\n{}", w.log_text());
    assert!(took < Duration::from_secs(8), "stopping took {took:?}");
    wait_state(&client, short, "succeeded", Duration::from_secs(1)).await;
    let r = client
        .query_one(
            "SELECT state, attempts, lease_owner FROM jobs WHERE id = $1",
            &[&long],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "queued");
    assert_eq!(r.get::<_, i32>(1), 0);
    assert!(r.get::<_, Option<String>>(2).is_none());
}

fn run(args: &[&str], env: &[(String, String)], path: Option<&str>) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .env(
            "PATH",
            path.map(str::to_owned)
                .unwrap_or_else(|| std::env::var("PATH").unwrap_or_default()),
        )
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn snapshot(client: &tokio_postgres::Client) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        "SELECT id::text || job_type || state || payload::text FROM jobs ORDER BY id",
        "SELECT service_key || coalesce(schedule_config, '') || run_count::text FROM sync_services ORDER BY id",
        "SELECT id::text || name || coalesce(note, '') FROM shop_notes ORDER BY id",
        "SELECT version::text || name FROM schema_migrations ORDER BY version",
    ] {
        for r in client.query(sql, &[]).await.unwrap() {
            out.push(r.get(0));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_then_restore_into_a_fresh_database_round_trips_the_data() {
    let db = TestDb::migrated().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE shop_notes (id serial PRIMARY KEY, name text NOT NULL, note text);
             INSERT INTO shop_notes (name, note) VALUES ('Ozon 1', 'первый'), ('Ozon 2', NULL);
             INSERT INTO jobs (job_type, queue, max_attempts, payload, state)
             VALUES ('ef.core.cleanup', 'ef_core', 3, '{\"a\": 1}', 'succeeded'),
                    ('test.noop', 'default', 1, '{}', 'dead');
             INSERT INTO sync_services (service_key, celery_task_name, schedule_config, run_count)
             VALUES ('ef.core.cleanup', 'ef.core.cleanup', '0 3 * * *', 4);",
        )
        .await
        .unwrap();
    let before = snapshot(&client).await;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    // An old backup past retention, and a foreign file that must be left alone.
    let old = backups.join("euraflow_backup_20200101_000000_x.dump");
    std::fs::write(&old, b"PGDMP old").unwrap();
    let ten_days = std::time::SystemTime::now() - Duration::from_secs(10 * 86400);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(ten_days)
        .unwrap();
    std::fs::write(backups.join("notes.txt"), b"keep").unwrap();

    let mut env = worker_env(&db, dir.path(), &[]);
    env.push(("EF__BACKUP_DIR".into(), backups.display().to_string()));
    let (code, out, err) = run(&["backup"], &env, None);
    assert_eq!(code, 0, "{out}{err}");
    let file = out
        .split_whitespace()
        .find(|w| w.ends_with(".dump"))
        .map(PathBuf::from)
        .expect("the backup's path");
    assert!(file.starts_with(&backups));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!old.exists() && out.contains("deleted"), "{out}");
    assert!(backups.join("notes.txt").exists());

    // Restore into a fresh, empty database.
    let fresh = TestDb::create().await;
    let mut fresh_env = env.clone();
    fresh_env.extend(fresh.env());
    let (code, out, err) = run(&["restore", file.to_str().unwrap()], &fresh_env, None);
    assert_eq!(code, 0, "{out}{err}");
    let fresh_client = fresh.client().await;
    assert_eq!(snapshot(&fresh_client).await, before);

    // A second restore is refused: the database is no longer empty.
    let (code, _, err) = run(&["restore", file.to_str().unwrap()], &fresh_env, None);
    assert_eq!(code, 1);
    assert!(
        err.contains("is not empty") && err.contains("--force"),
        "{err}"
    );
    // With --force the objects are replaced, not duplicated.
    let (code, out, err) = run(
        &["restore", "--force", file.to_str().unwrap()],
        &fresh_env,
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(snapshot(&fresh_client).await, before);

    // Not an archive, and no pg_dump on PATH: clear errors.
    let (code, _, err) = run(
        &["restore", backups.join("notes.txt").to_str().unwrap()],
        &fresh_env,
        None,
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("is not a pg_dump custom-format archive"),
        "{err}"
    );
    let (code, _, err) = run(&["backup"], &env, Some("/nonexistent"));
    assert_eq!(code, 1);
    assert!(
        err.contains("pg_dump was not found on PATH") && err.contains("postgresql-client"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_from_the_timer_and_the_job_do_not_run_twice() {
    let db = TestDb::migrated().await;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let mut env = worker_env(&db, dir.path(), &[]);
    env.push(("EF__BACKUP_DIR".into(), backups.display().to_string()));
    let count = || {
        std::fs::read_dir(&backups)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".dump"))
                    .count()
            })
            .unwrap_or(0)
    };
    // The timer's run makes a backup; a second scheduled run in the same slot skips.
    let (code, out, err) = run(&["backup", "--unless-recent", "1h"], &env, None);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(count(), 1);
    let (code, out, _) = run(&["backup", "--unless-recent", "1h"], &env, None);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to do"), "{out}");
    assert_eq!(count(), 1);
    // An operator's explicit backup always runs.
    std::thread::sleep(Duration::from_millis(1100));
    let (code, _, _) = run(&["backup"], &env, None);
    assert_eq!(code, 0);
    assert_eq!(count(), 2);
}
