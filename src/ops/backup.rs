//! `euraflow backup`, `euraflow restore FILE` and the `ef.system.database_backup` job: one code
//! path around `pg_dump --format=custom` and `pg_restore`, taken from PATH.
//!
//! Backups are written as `<dir>/euraflow_backup_<UTC time>_<database>.dump` (first to a
//! `.partial` file, renamed when complete, so a half-written dump is never mistaken for a backup)
//! with mode 0600; after a successful backup, backups older than `EF__BACKUP_RETENTION_DAYS` are
//! deleted. A restore refuses a database that already has tables unless `--force` is given.

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
        .kill_on_drop(true);
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
    client
        .execute("SELECT pg_advisory_lock($1)", &[&BACKUP_LOCK])
        .await
        .context("waiting for another backup to finish")?;
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
    let partial = path.with_extension("dump.partial");
    {
        // Create it 0600 before pg_dump writes into it.
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .with_context(|| format!("cannot write {}", partial.display()))?;
    }
    let file_arg = {
        let mut s = std::ffi::OsString::from("--file=");
        s.push(partial.as_os_str());
        s
    };
    let args: [&std::ffi::OsStr; 4] = [
        "--format=custom".as_ref(),
        "--no-password".as_ref(),
        file_arg.as_os_str(),
        db.name.as_ref(),
    ];
    if let Err(e) = run_tool("pg_dump", &args, db, stop).await {
        let _ = std::fs::remove_file(&partial);
        return Err(e.context(format!("backing up database {}", db.name)));
    }
    check_archive(&partial).inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })?;
    std::fs::rename(&partial, &path)
        .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let pruned = prune(dir, retention_days, &path);
    Ok(BackupReport {
        path,
        bytes,
        duration_ms: started.elapsed().as_millis() as u64,
        pruned,
    })
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

/// `euraflow backup [--unless-recent DURATION]`, printing what it did.
pub async fn run_backup(config: &Config, unless_recent: Option<std::time::Duration>) -> ExitCode {
    let result = match unless_recent {
        Some(window) => {
            backup_unless_recent(
                &config.db,
                &config.worker.backup_dir,
                config.worker.backup_retention_days,
                window,
                None,
            )
            .await
        }
        None => backup(
            &config.db,
            &config.worker.backup_dir,
            config.worker.backup_retention_days,
            None,
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
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::code(exit::FAILURE)
        }
    }
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
