//! `euraflow migrate` and migrations at `serve` start, with the real binary and real PostgreSQL:
//! concurrent runs, a failing migration, an edited applied one, an unreachable database.

use std::process::{Command, Output};
use std::time::Duration;

use crate::common::{BIN, NotifySocket, Process, TestDb, as_refs, production_env};

fn migrate_cmd(db_env: &[(String, String)], args: &[&str]) -> Command {
    let dir = std::env::temp_dir();
    let mut env = production_env(&dir);
    env.retain(|(k, _)| k != "EF__CONFIG_FILE");
    env.extend(db_env.iter().cloned());
    let mut cmd = Command::new(BIN);
    cmd.arg("migrate")
        .args(args)
        .env_clear()
        .envs(env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn applied_versions(db: &TestDb) -> Vec<(i64, i64)> {
    db.client()
        .await
        .query(
            "SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_migrating_at_once_apply_each_migration_once() {
    let db = TestDb::create().await;
    let env = db.env();
    // Make them overlap for sure: both start while the migration lock is held, and it is released
    // only once both wait for it.
    let holder = db.client().await;
    let key = euraflow::db::migrate::LOCK_KEY;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
    let (a, b) = (
        migrate_cmd(&env, &[]).spawn().unwrap(),
        migrate_cmd(&env, &[]).spawn().unwrap(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = holder
            .query_one(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                 WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{waiting} of 2 processes wait for the migration lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
    let (a, b) = tokio::task::spawn_blocking(move || {
        (a.wait_with_output().unwrap(), b.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b));
    let versions = applied_versions(&db).await;
    assert_eq!(versions.len(), euraflow::db::migrate::EMBEDDED.len());
    assert!(versions.iter().all(|(_, n)| *n == 1), "{versions:?}");
    // One of them did the work, the other found the schema current.
    let outs = [
        String::from_utf8_lossy(&a.stdout).into_owned(),
        String::from_utf8_lossy(&b.stdout).into_owned(),
    ];
    assert_eq!(
        outs.iter().filter(|o| o.contains("applied  0001_")).count(),
        1,
        "{outs:?}"
    );
    assert_eq!(
        outs.iter().filter(|o| o.contains("is up to date")).count(),
        1,
        "{outs:?}"
    );
    // The objects exist.
    db.client()
        .await
        .query("SELECT * FROM service_heartbeats", &[])
        .await
        .unwrap();

    let status = migrate_cmd(&env, &["--status"]).output().unwrap();
    assert_eq!(status.status.code(), Some(0));
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        out.contains("applied  0001_service_heartbeats.sql"),
        "{out}"
    );
    assert!(out.contains("0 pending"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_pending_migrations_before_they_run() {
    let db = TestDb::create().await;
    let out = migrate_cmd(&db.env(), &["--status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("pending  0001_service_heartbeats.sql"),
        "{stdout}"
    );
    assert!(stdout.contains("0 applied"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_migration_names_itself_and_exits_with_the_migration_code() {
    let db = TestDb::create().await;
    // Something in the way of migration 0001: it cannot create its table.
    db.client()
        .await
        .batch_execute("CREATE VIEW service_heartbeats AS SELECT 1 AS x")
        .await
        .unwrap();
    let out = migrate_cmd(&db.env(), &[]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(euraflow::exit::MIGRATION as i32),
        "{}",
        text(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("migration 0001_service_heartbeats.sql failed"),
        "{err}"
    );
    assert!(err.contains("already exists"), "{err}");
    assert!(err.contains("SQLSTATE 42P07"), "{err}");
    assert!(
        !err.contains("cannot reach"),
        "reported as a connection problem: {err}"
    );
    // Nothing of the run stayed: not even the bookkeeping table.
    let has_table: bool = db
        .client()
        .await
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!has_table);

    // `serve` refuses to start on it with the same exit code, once, without retrying.
    let dir = tempfile::tempdir().unwrap();
    let mut env = production_env(dir.path());
    env.extend(db.env());
    let out = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(euraflow::exit::MIGRATION as i32),
        "{}",
        text(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0001_service_heartbeats.sql"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_applied_migration_is_refused() {
    let db = TestDb::migrated().await;
    // Same effect as editing the file after it ran: the recorded checksum no longer matches.
    db.client()
        .await
        .execute(
            "UPDATE schema_migrations SET checksum = 'c0ffee' WHERE version = 1",
            &[],
        )
        .await
        .unwrap();
    let out = migrate_cmd(&db.env(), &[]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(euraflow::exit::MIGRATION as i32),
        "{}",
        text(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0001_service_heartbeats.sql was changed after it was applied"),
        "{err}"
    );
    assert!(err.contains("c0ffee"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_is_a_connection_error_not_a_migration_error() {
    let env = vec![
        ("EF__DB_HOST".to_owned(), "127.0.0.1".to_owned()),
        ("EF__DB_PORT".to_owned(), "1".to_owned()),
        ("EF__DB_SSLMODE".to_owned(), "disable".to_owned()),
        ("EF__DB_CONNECT_TIMEOUT".to_owned(), "2s".to_owned()),
    ];
    let out = migrate_cmd(&env, &[]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(euraflow::exit::UNAVAILABLE as i32),
        "{}",
        text(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the database") && err.contains("127.0.0.1:1"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_database_then_migrate() {
    let name = format!("ef_test_{}", uuid::Uuid::new_v4().simple());
    let db = TestDb { name: name.clone() }; // dropped (and the database with it) at the end
    let out = migrate_cmd(&db.env(), &["--create-database"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("created database {name}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("applied  0001_service_heartbeats.sql"),
        "{stdout}"
    );
    assert_eq!(
        applied_versions(&db).await.len(),
        euraflow::db::migrate::EMBEDDED.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_applies_pending_migrations_at_start_unless_disabled() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = production_env(dir.path());
    env.extend(db.env());
    env.push(("EF__DB_AUTO_MIGRATE".into(), "false".into()));
    let mut p = Process::spawn(dir.path(), &["serve"], &as_refs(&env));
    assert!(p.log_text().contains("EF__DB_AUTO_MIGRATE=false"));
    p.signal(rustix::process::Signal::TERM);
    p.wait_exit(Duration::from_secs(10));
    let has_table: bool = db
        .client()
        .await
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!has_table);

    env.retain(|(k, _)| k != "EF__DB_AUTO_MIGRATE");
    let mut p = Process::spawn(dir.path(), &["serve"], &as_refs(&env));
    p.wait_for_log("applied migration", Duration::from_secs(5));
    p.signal(rustix::process::Signal::TERM);
    assert_eq!(p.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert_eq!(
        applied_versions(&db).await.len(),
        euraflow::db::migrate::EMBEDDED.len()
    );
}

/// A start that waits on a migration (here: another process holding the migration lock, as when
/// the server and the worker start together on a large upgrade) keeps extending systemd's start
/// timeout instead of being killed by `TimeoutStartSec=` halfway, then becomes ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_migration_extends_the_systemd_start_timeout() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let notify = NotifySocket::bind(dir.path());
    let mut env = production_env(dir.path());
    env.extend(db.env());
    env.push(("NOTIFY_SOCKET".into(), notify.path.display().to_string()));

    let holder = db.client().await;
    holder
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&euraflow::db::migrate::LOCK_KEY],
        )
        .await
        .unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(4)).await;
        holder
            .execute(
                "SELECT pg_advisory_unlock($1)",
                &[&euraflow::db::migrate::LOCK_KEY],
            )
            .await
            .unwrap();
        holder
    });

    // The closure gets a copy of the path: moving `dir` into it would delete the directory, and
    // the notify socket in it, as soon as the server said "listening", racing its READY=1.
    let mut p = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || Process::spawn(&dir, &["serve"], &as_refs(&env))
    })
    .await
    .unwrap();
    let _holder = release.await.unwrap();

    let all = notify.all();
    let extend = all
        .iter()
        .position(|m| m.contains("EXTEND_TIMEOUT_USEC=30000000"))
        .unwrap_or_else(|| panic!("no EXTEND_TIMEOUT_USEC before READY: {all:?}"));
    assert!(
        all[extend].contains("STATUS=applying database migrations ("),
        "the extension says why: {:?}",
        all[extend]
    );
    let ready = notify.wait_for_text("READY=1", Duration::from_secs(5));
    let ready_at = notify.all().iter().position(|m| *m == ready).unwrap();
    assert!(extend < ready_at, "{:?}", notify.all());
    assert_eq!(
        applied_versions(&db).await.len(),
        euraflow::db::migrate::EMBEDDED.len()
    );
    p.signal(rustix::process::Signal::TERM);
    assert_eq!(p.wait_exit(Duration::from_secs(10)).code(), Some(0));
}
