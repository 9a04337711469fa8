//! `euraflow backup`, `euraflow restore FILE` and the `ef.system.database_backup` job: one code
//! path around `pg_dump --format=custom` and `pg_restore`, taken from PATH.
//!
//! Backups are written as `<dir>/euraflow_backup_<UTC time>_<database>.dump` (first to a
//! `.partial` file, renamed when complete, so a half-written dump is never mistaken for a backup)
//! with mode 0600; after a successful backup, backups older than `EF__BACKUP_RETENTION_DAYS` are
//! deleted. A restore refuses a database that already has tables unless `--force` is given.
//!
//! A backup that dies leaves nothing behind. Stopped (`SIGTERM`/`SIGINT` to `euraflow backup`,
//! the job's time limit or the worker's shutdown) or dropped, it kills its `pg_dump` and removes
//! the `.partial` file. Killed outright (`SIGKILL`, a crash), it cannot clean up itself, so: the
//! kernel kills `pg_dump` when the process that started it dies (`PR_SET_PDEATHSIG`), and every
//! backup holds a lock on its `.partial` file while writing it, so the next backup removes any
//! partial file nobody holds. Before, a killed worker's `pg_dump` kept running beside the retry
//! and its `.partial` stayed until the retention pruned it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use std::process::ExitCode;

use crate::config::{Config, DbConfig};
use crate::exit;

/// pg_dump's custom format starts with these bytes.
const MAGIC: &[u8] = b"PGDMP";
const PREFIX: &str = "euraflow_backup_";
const SUFFIX: &str = ".dump";
/// Debian's bundle of the system's trusted CAs (the public roots, like the server's default).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Most stderr kept from pg_dump / pg_restore for the error message.
const MAX_STDERR: u64 = 16 * 1024;

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub duration_ms: u64,
    pub pruned: Vec<PathBuf>,
    /// `.partial` files of backups that died before finishing, removed before this one.
    pub removed_partials: Vec<PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreReport {
    pub file: PathBuf,
    pub database: String,
    pub tables: i64,
    pub duration_ms: u64,
}

/// The environment that points libpq tools at the configured database (the password travels in
/// the environment of the child only, never on its command line).
fn libpq_env(cmd: &mut tokio::process::Command, db: &DbConfig) {
    cmd.env("PGHOST", &db.host)
        .env("PGPORT", db.port.to_string())
        .env("PGUSER", &db.user)
        .env("PGDATABASE", &db.name)
        .env("PGAPPNAME", "euraflow-backup")
        .env(
            "PGCONNECT_TIMEOUT",
            db.connect_timeout.as_secs().max(1).to_string(),
        )
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE");
    if !db.password.is_empty() {
        cmd.env("PGPASSWORD", db.password.expose());
    }
    if !db.host.starts_with('/') {
        cmd.env("PGSSLMODE", &db.sslmode);
        // libpq's default CA file is ~/.postgresql/root.crt, which the service user does not
        // have; verify against what the server verifies against.
        match &db.sslrootcert {
            Some(path) => {
                cmd.env("PGSSLROOTCERT", path);
            }
            None if Path::new(SYSTEM_CA_BUNDLE).exists() => {
                cmd.env("PGSSLROOTCERT", SYSTEM_CA_BUNDLE);
            }
            None => {}
        }
    }
}

fn spawn_error(program: &str, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "{program} was not found on PATH; install the PostgreSQL client tools of the server's major version (Debian 12: apt install postgresql-client-15) and try again"
        )
    } else {
        anyhow::anyhow!("cannot start {program}: {e}")
    }
}

/// The child is killed by the kernel when the thread that started it dies, so a `SIGKILL`ed
/// backup or worker leaves no `pg_dump` running beside the retry. (The thread: `euraflow backup`
/// starts it on its only thread; the worker on a runtime worker thread, which lives as long as
/// the process. Never start a tool from `spawn_blocking`, whose threads come and go.)
fn die_with_parent(cmd: &mut tokio::process::Command) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the child between fork and exec and only makes two system
    // calls (prctl, getppid); it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)?;
            // The parent may have died before the prctl: then nobody would kill us later.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::Error::other("the backup process is gone"));
            }
            Ok(())
        });
    }
}

/// Run a libpq tool to completion (or until `stop`), returning its stderr on failure.
async fn run_tool(
    program: &str,
    args: &[&std::ffi::OsStr],
    db: &DbConfig,
    stop: Option<&CancellationToken>,
) -> anyhow::Result<()> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Dropped (a cancelled job) or stopped: the child goes too.
        .kill_on_drop(true);
    die_with_parent(&mut cmd);
    libpq_env(&mut cmd, db);
    let mut child = cmd.spawn().map_err(|e| spawn_error(program, e))?;
    let mut stderr = child.stderr.take().context("capturing stderr")?;
    let read_err = async move {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(MAX_STDERR).read_to_end(&mut buf).await;
        // Drain the rest so the child never blocks on a full pipe.
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        String::from_utf8_lossy(&buf).trim().to_owned()
    };
    let cancelled = async {
        match stop {
            Some(t) => t.cancelled().await,
            None => std::future::pending().await,
        }
    };
    let (status, text) = tokio::select! {
        r = async { tokio::join!(child.wait(), read_err) } => r,
        _ = cancelled => {
            let _ = child.kill().await;
            bail!("{program} was stopped before it finished (time limit or shutdown)");
        }
    };
    let status = status.with_context(|| format!("waiting for {program}"))?;
    if !status.success() {
        bail!(
            "{program} failed ({status}): {}",
            if text.is_empty() { "no message" } else { &text }
        );
    }
    Ok(())
}

/// Key of the advisory lock that makes scheduled backups take turns.
const BACKUP_LOCK: i64 = 0x6566_6261_636b_7570; // "efbackup"

/// The age of the newest complete backup in `dir`, if any.
pub fn newest_backup_age(dir: &Path) -> Option<Duration> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(PREFIX) && n.ends_with(SUFFIX)
        })
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .filter_map(|t| SystemTime::now().duration_since(t).ok())
        .min()
}

/// A scheduled backup: the packaged `euraflow-backup.timer` and the worker's
/// `ef.system.database_backup` job both make one at 05:00 and 17:00, so whichever comes second
/// finds a backup younger than `recent` and skips (`Ok(None)`). An advisory lock makes them take
/// turns, so they never both dump at once. A missing timer or a stopped worker still leaves one
/// of them to do it.
pub async fn backup_unless_recent(
    db: &DbConfig,
    dir: &Path,
    retention_days: u32,
    recent: Duration,
    stop: Option<&CancellationToken>,
) -> anyhow::Result<Option<BackupReport>> {
    let client = crate::db::connect_one(db, &db.name)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let stopped = async {
        match stop {
            Some(t) => t.cancelled().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = client.execute("SELECT pg_advisory_lock($1)", &[&BACKUP_LOCK]) => {
            r.context("waiting for another backup to finish")?;
        }
        () = stopped => bail!("the backup was stopped while waiting for another backup to finish"),
    }
    let result = match newest_backup_age(dir) {
        Some(age) if age < recent => {
            tracing::info!(
                age_s = age.as_secs(),
                "a recent backup exists; skipping this scheduled one"
            );
            Ok(None)
        }
        _ => backup(db, dir, retention_days, stop).await.map(Some),
    };
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&BACKUP_LOCK])
        .await;
    result
}

/// Dump the configured database into `dir` and delete backups older than `retention_days`.
pub async fn backup(
    db: &DbConfig,
    dir: &Path,
    retention_days: u32,
    stop: Option<&CancellationToken>,
) -> anyhow::Result<BackupReport> {
    let started = Instant::now();
    if stop.is_some_and(CancellationToken::is_cancelled) {
        bail!("the backup was stopped before it began");
    }
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create the backup directory {}; check EF__BACKUP_DIR and that the service user may write there",
            dir.display()
        )
    })?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let stamp = chrono::Utc::now().format("%Y%m%d_%H%M%S").to_string();
    let safe_name: String = db
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut path = dir.join(format!("{PREFIX}{stamp}_{safe_name}{SUFFIX}"));
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{PREFIX}{stamp}_{safe_name}_{n}{SUFFIX}"));
        n += 1;
    }
    let removed_partials = remove_dead_partials(dir);
    let partial = Partial::create(path.with_extension("dump.partial"))?;
    let file_arg = {
        let mut s = std::ffi::OsString::from("--file=");
        s.push(partial.path.as_os_str());
        s
    };
    let args: [&std::ffi::OsStr; 4] = [
        "--format=custom".as_ref(),
        "--no-password".as_ref(),
        file_arg.as_os_str(),
        db.name.as_ref(),
    ];
    // On every early return (and if this future is dropped) `partial` removes its file.
    run_tool("pg_dump", &args, db, stop)
        .await
        .with_context(|| format!("backing up database {}", db.name))?;
    check_archive(&partial.path)?;
    partial.finish(&path)?;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let pruned = prune(dir, retention_days, &path);
    Ok(BackupReport {
        path,
        bytes,
        duration_ms: started.elapsed().as_millis() as u64,
        pruned,
        removed_partials,
    })
}

/// The `.partial` file of a backup in progress: created 0600, locked (`flock`) for as long as
/// this backup lives so another backup can tell it from a dead one's, and removed on drop unless
/// [`Partial::finish`] renamed it into the backup.
struct Partial {
    path: PathBuf,
    /// Holds the lock; closed (unlocked) on drop.
    _lock: std::fs::File,
    done: bool,
}

impl Partial {
    fn create(path: PathBuf) -> anyhow::Result<Partial> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let partial = Partial {
            path,
            _lock: file,
            done: false,
        };
        rustix::fs::flock(&partial._lock, rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {}", partial.path.display()))?;
        Ok(partial)
    }

    fn finish(mut self, to: &Path) -> anyhow::Result<()> {
        std::fs::rename(&self.path, to)
            .with_context(|| format!("renaming {} to {}", self.path.display(), to.display()))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done
            && let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot remove an unfinished backup; delete it by hand");
        }
    }
}

/// Remove the `.partial` files in `dir` that no running backup holds: left by one that was
/// killed before it could clean up.
fn remove_dead_partials(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(PREFIX) && name.ends_with(".partial")) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        // Held: a backup is writing it right now.
        if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(file = %path.display(), "removed the partial file of a backup that did not finish");
                removed.push(path);
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove the partial file of a backup that did not finish; delete it by hand")
            }
        }
    }
    removed
}

fn check_archive(path: &Path) -> anyhow::Result<()> {
    let mut head = [0u8; 5];
    let ok = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && head == MAGIC;
    if !ok {
        bail!(
            "{} is not a pg_dump custom-format archive (as written by euraflow backup)",
            path.display()
        );
    }
    Ok(())
}

/// Delete our backups (by name) older than `retention_days`, never `keep`.
fn prune(dir: &Path, retention_days: u32, keep: &Path) -> Vec<PathBuf> {
    let limit = Duration::from_secs(u64::from(retention_days) * 86400);
    let now = SystemTime::now();
    let mut pruned = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return pruned;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours =
            name.starts_with(PREFIX) && (name.ends_with(SUFFIX) || name.ends_with(".partial"));
        if !ours || path == keep {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > limit);
        if old {
            match std::fs::remove_file(&path) {
                Ok(()) => pruned.push(path),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "cannot delete an old backup")
                }
            }
        }
    }
    pruned
}

/// Restore `file` into the configured database. Refuses a database that has tables unless
/// `force` (then objects in the archive are dropped and recreated: `pg_restore --clean`).
pub async fn restore(db: &DbConfig, file: &Path, force: bool) -> anyhow::Result<RestoreReport> {
    let started = Instant::now();
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", file.display());
    }
    check_archive(file)?;
    let client = crate::db::connect_one(db, &db.name)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let row = client
        .query_one(
            "SELECT count(*), coalesce(string_agg(tablename, ', ' ORDER BY tablename) FILTER (WHERE rn <= 5), '')
               FROM (SELECT tablename, row_number() OVER (ORDER BY tablename) AS rn
                       FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')) t",
            &[],
        )
        .await
        .context("looking at the target database")?;
    let (tables, some): (i64, String) = (row.get(0), row.get(1));
    drop(client);
    if tables > 0 && !force {
        bail!(
            "database {} is not empty: it has {tables} tables ({some}{}); restoring into it would mix two databases. Stop euraflow and euraflow-worker, then restore into an empty database (dropdb {}; createdb -O {} {}), or pass --force to drop and recreate every object the backup contains",
            db.name,
            if tables > 5 { ", ..." } else { "" },
            db.name,
            db.user,
            db.name
        );
    }
    let db_arg = {
        let mut s = std::ffi::OsString::from("--dbname=");
        s.push(&db.name);
        s
    };
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--no-owner".as_ref(),
        "--no-privileges".as_ref(),
        "--no-password".as_ref(),
        "--exit-on-error".as_ref(),
        "--single-transaction".as_ref(),
        db_arg.as_os_str(),
    ];
    if force {
        args.push("--clean".as_ref());
        args.push("--if-exists".as_ref());
    }
    args.push(file.as_os_str());
    run_tool("pg_restore", &args, db, None)
        .await
        .with_context(|| {
            format!(
                "restoring {} into database {} (nothing was changed: the restore runs in one transaction)",
                file.display(),
                db.name
            )
        })?;
    Ok(RestoreReport {
        file: file.to_path_buf(),
        database: db.name.clone(),
        tables,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

// ---- the commands ----------------------------------------------------------------------------

/// `euraflow backup [--unless-recent DURATION]`, printing what it did. `SIGTERM` (systemd
/// stopping `euraflow-backup.service`) or `SIGINT` (Ctrl-C) stops it cleanly: `pg_dump` is
/// killed and the partial file removed before it exits.
pub async fn run_backup(config: &Config, unless_recent: Option<std::time::Duration>) -> ExitCode {
    let stop = CancellationToken::new();
    let _signals = stop_on_signal(stop.clone());
    let result = match unless_recent {
        Some(window) => {
            backup_unless_recent(
                &config.db,
                &config.worker.backup_dir,
                config.worker.backup_retention_days,
                window,
                Some(&stop),
            )
            .await
        }
        None => backup(
            &config.db,
            &config.worker.backup_dir,
            config.worker.backup_retention_days,
            Some(&stop),
        )
        .await
        .map(Some),
    };
    match result {
        Ok(None) => {
            println!("a backup younger than the window exists; nothing to do");
            ExitCode::SUCCESS
        }
        Ok(Some(r)) => {
            println!(
                "backed up database {} to {} ({} bytes, {:.1}s)",
                config.db.name,
                r.path.display(),
                r.bytes,
                r.duration_ms as f64 / 1000.0
            );
            for p in &r.pruned {
                println!(
                    "deleted {} (older than {} days)",
                    p.display(),
                    config.worker.backup_retention_days
                );
            }
            for p in &r.removed_partials {
                println!(
                    "removed {}, left by a backup that did not finish",
                    p.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::code(exit::FAILURE)
        }
    }
}

/// Cancel `stop` on the first `SIGTERM` or `SIGINT`; the returned task ends with the command.
fn stop_on_signal(stop: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            // Without the handlers the signals keep their default action (the process ends);
            // PR_SET_PDEATHSIG still ends pg_dump and the next backup removes the partial file.
            tracing::warn!(error = %e, "cannot handle SIGTERM/SIGINT; a stopped backup leaves its partial file to the next one");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("stopping: killing pg_dump and removing the partial backup");
        stop.cancel();
    }))
}

/// `euraflow restore FILE [--force]`, printing what it did.
pub async fn run_restore(config: &Config, file: &std::path::Path, force: bool) -> ExitCode {
    match restore(&config.db, file, force).await {
        Ok(r) => {
            println!(
                "restored {} into database {} ({:.1}s); run `euraflow migrate` if this backup is from an older release",
                r.file.display(),
                r.database,
                r.duration_ms as f64 / 1000.0
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::code(exit::FAILURE)
        }
    }
}
