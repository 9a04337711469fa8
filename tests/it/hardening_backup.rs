//! Issue 17, item 6: a backup that dies cleans up. Each test starts a real `pg_dump` that cannot
//! finish (another session holds an exclusive lock on a table, so it waits), then stops or kills
//! what started it: `euraflow backup` by SIGTERM and by SIGKILL, the backup job's future by its
//! stop token and by being dropped, and the worker running the job by SIGKILL. No `pg_dump` may
//! survive, and no `.partial` file may stay (after SIGKILL, the next backup removes it). Before:
//! a killed worker's `pg_dump` kept running beside the retry and its `.partial` stayed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{BIN, Process, TestDb, as_refs, production_env};
use rustix::process::Signal;

/// `pg_dump` processes whose parent is `parent`.
fn pg_dump_children(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u32>().ok());
        if comm == "pg_dump" && ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// Running (not gone, not a zombie waiting to be reaped).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let close = s.rfind(')')?;
            s[close + 1..].split_whitespace().next().map(|st| st != "Z")
        })
        .unwrap_or(false)
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default()
}

/// A session holding `users` exclusively: `pg_dump` waits for it until it is released.
async fn block_pg_dump(db: &TestDb) -> tokio_postgres::Client {
    let c = db.client().await;
    c.batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    c
}

fn backup_env(db: &TestDb, dir: &Path) -> (Vec<(String, String)>, PathBuf) {
    let backups = dir.join("backups");
    let mut env = production_env(dir);
    env.extend(db.env());
    env.push(("EF__BACKUP_DIR".into(), backups.display().to_string()));
    (env, backups)
}

fn spawn_backup(env: &[(String, String)]) -> std::process::Child {
    Command::new(BIN)
        .arg("backup")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(pid: u32, sig: Signal) {
    rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), sig)
        .unwrap();
}

fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    wait_for("the backup to exit", timeout, || child.try_wait().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_stopped_by_sigterm_kills_pg_dump_and_removes_its_partial_file() {
    let db = TestDb::migrated().await;
    let dir = tempfile::tempdir().unwrap();
    let (env, backups) = backup_env(&db, dir.path());
    let _lock = block_pg_dump(&db).await;
    let mut backup = spawn_backup(&env);
    let pid = backup.id();
    let dump = wait_for("pg_dump to start", Duration::from_secs(15), || {
        pg_dump_children(pid).first().copied()
    });
    assert_eq!(files_ending(&backups, ".partial").len(), 1);
    std::thread::sleep(Duration::from_millis(300));
    assert!(running(dump), "pg_dump should be waiting for the lock");

    let t = Instant::now();
    signal(pid, Signal::TERM);
    let status = wait_exit(&mut backup, Duration::from_secs(10));
    let out = backup.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    println!(
        "SIGTERM: euraflow backup exited {status} after {:?}",
        t.elapsed()
    );
    assert!(!status.success(), "a stopped backup is no success: {err}");
    assert!(err.contains("stopped"), "{err}");
    wait_for("pg_dump to end", Duration::from_secs(5), || {
        (!running(dump)).then_some(())
    });
    assert_eq!(files_ending(&backups, ".partial"), Vec::<PathBuf>::new());
    assert_eq!(files_ending(&backups, ".dump"), Vec::<PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_outright_takes_pg_dump_with_it_and_the_next_one_removes_the_partial() {
    let db = TestDb::migrated().await;
    let dir = tempfile::tempdir().unwrap();
    let (env, backups) = backup_env(&db, dir.path());
    let lock = block_pg_dump(&db).await;
    let mut backup = spawn_backup(&env);
    let pid = backup.id();
    let dump = wait_for("pg_dump to start", Duration::from_secs(15), || {
        pg_dump_children(pid).first().copied()
    });
    signal(pid, Signal::KILL);
    wait_exit(&mut backup, Duration::from_secs(5));
    // The kernel kills the child with its parent (PR_SET_PDEATHSIG).
    wait_for(
        "pg_dump to die with its parent",
        Duration::from_secs(5),
        || (!running(dump)).then_some(()),
    );
    let left = files_ending(&backups, ".partial");
    assert_eq!(left.len(), 1, "SIGKILL cannot clean up: {left:?}");

    // The next backup removes it (nobody holds it any more) and succeeds.
    lock.batch_execute("ROLLBACK").await.unwrap();
    let out = Command::new(BIN)
        .arg("backup")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("left by a backup that did not finish"),
        "{stdout}"
    );
    assert_eq!(files_ending(&backups, ".partial"), Vec::<PathBuf>::new());
    assert_eq!(files_ending(&backups, ".dump").len(), 1);
}

/// The job's path, in this process: the stop token (time limit, worker shutdown) and a dropped
/// future (the job aborted) both end `pg_dump` and remove the partial file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_or_dropped_backup_job_leaves_nothing_behind() {
    let db = TestDb::migrated().await;
    let cfg = db.db_config();
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().join("backups");
    let _lock = block_pg_dump(&db).await;
    let me = std::process::id();
    let started = || async {
        tokio::task::spawn_blocking(move || {
            wait_for("pg_dump to start", Duration::from_secs(15), || {
                pg_dump_children(me).first().copied()
            })
        })
        .await
        .unwrap()
    };

    // Stopped.
    let stop = tokio_util::sync::CancellationToken::new();
    let backup = euraflow::ops::backup::backup(&cfg, &backups, 7, Some(&stop));
    let mut backup = std::pin::pin!(backup);
    let dump = tokio::select! {
        r = &mut backup => panic!("the backup ended although pg_dump cannot finish: {r:?}"),
        pid = started() => pid,
    };
    stop.cancel();
    let r = tokio::time::timeout(Duration::from_secs(10), backup)
        .await
        .expect("a stopped backup returns");
    let e = r.expect_err("a stopped backup is an error");
    assert!(format!("{e:#}").contains("stopped"), "{e:#}");
    assert!(!running(dump));
    assert_eq!(files_ending(&backups, ".partial"), Vec::<PathBuf>::new());

    // Dropped.
    let mut backup = Box::pin(euraflow::ops::backup::backup(&cfg, &backups, 7, None));
    let dump = tokio::select! {
        r = &mut backup => panic!("the backup ended although pg_dump cannot finish: {r:?}"),
        pid = started() => pid,
    };
    assert_eq!(files_ending(&backups, ".partial").len(), 1);
    drop(backup);
    tokio::task::spawn_blocking(move || {
        wait_for("pg_dump to be killed", Duration::from_secs(5), || {
            (!running(dump)).then_some(())
        })
    })
    .await
    .unwrap();
    assert_eq!(files_ending(&backups, ".partial"), Vec::<PathBuf>::new());
}

/// The case: the worker running `ef.system.database_backup` is killed outright. Its
/// `pg_dump` does not keep running beside the retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_takes_its_pg_dump_with_it() {
    let db = TestDb::migrated().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut env, backups) = backup_env(&db, dir.path());
    env.push(("EF__SCHEDULER_ENABLED".into(), "false".into()));
    env.push(("EF__WORKER_POLL_INTERVAL".into(), "100ms".into()));
    let lock = block_pg_dump(&db).await;
    let mut worker = Process::spawn_until(
        Path::new(BIN),
        dir.path(),
        &["worker"],
        &as_refs(&env),
        "worker ready",
    );
    db.client()
        .await
        .execute(
            "INSERT INTO jobs (job_type, queue, max_attempts, payload) VALUES ('ef.system.database_backup', 'ef_core', 3, '{}')",
            &[],
        )
        .await
        .unwrap();
    let pid = worker.child.id();
    let dump = wait_for(
        "the job's pg_dump to start",
        Duration::from_secs(20),
        || pg_dump_children(pid).first().copied(),
    );
    worker.signal(Signal::KILL);
    worker.wait_exit(Duration::from_secs(5));
    wait_for(
        "pg_dump to die with the worker",
        Duration::from_secs(5),
        || (!running(dump)).then_some(()),
    );
    // Its partial file is the next backup's to remove.
    assert_eq!(files_ending(&backups, ".partial").len(), 1);
    lock.batch_execute("ROLLBACK").await.unwrap();
    let out = Command::new(BIN)
        .arg("backup")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(files_ending(&backups, ".partial"), Vec::<PathBuf>::new());
}
