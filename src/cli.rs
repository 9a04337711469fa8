//! The command line: `euraflow <command>`. Each command is a small function here or in its own
//! module; `main` only parses and dispatches.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, LoadOptions, Loaded};
use crate::{exit, systemd, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "euraflow",
    version,
    about = "EuraFlow production server (HTTPS, web app, API, jobs)"
)]
pub struct Cli {
    /// Configuration file [default: /etc/euraflow/euraflow.env; with --dev: ./euraflow.env]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Development defaults: loopback ports 8443/8000, state in ./.euraflow-dev, generated secret
    #[arg(long, global = true)]
    pub dev: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS server (socket-activated under systemd, or binding the configured addresses)
    Serve,
    /// Show or check the configuration
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print a new random secret for EF__SECRET_KEY (86 URL-safe characters)
    GenSecret,
    /// Apply pending database migrations (or list them)
    Migrate {
        /// List applied and pending migrations without changing anything
        #[arg(long)]
        status: bool,
        /// Create the database first when it is missing (the role needs CREATEDB)
        #[arg(long)]
        create_database: bool,
    },
    /// The go-live checklist: config, secret, TLS, PostgreSQL, Redis, worker, backups, ports, firewall
    Check {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Manage users from this machine (create admins, reset passwords, disable accounts)
    User {
        #[command(subcommand)]
        command: crate::ops::users::UserCommand,
    },
    /// Run background jobs and the scheduler (the euraflow-worker unit)
    Worker,
    /// Back up the database with pg_dump (custom format) into EF__BACKUP_DIR
    Backup {
        /// Skip when a backup younger than this exists (scheduled runs: the timer and the
        /// worker's job share the 05:00/17:00 slot), e.g. 1h
        #[arg(long, value_name = "DURATION", value_parser = parse_age)]
        unless_recent: Option<std::time::Duration>,
    },
    /// Restore a backup made by `euraflow backup` into the configured database
    Restore {
        /// The .dump file
        file: PathBuf,
        /// Restore into a database that already has tables (objects in the backup are dropped
        /// and recreated)
        #[arg(long)]
        force: bool,
    },
    /// Health, database and Redis connections of this installation; non-zero when unhealthy
    Status {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Every effective value with its source; secrets redacted
    Show,
    /// Validate without starting: exit 0 when the server would start, 1 otherwise
    Check,
    /// The documented configuration file with every key and its default
    Template {
        /// As Markdown tables (the README's reference)
        #[arg(long)]
        markdown: bool,
    },
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve => serve(cli.dev, cli.config),
        Command::Config { action } => match action {
            ConfigAction::Show => config_show(cli.dev, cli.config),
            ConfigAction::Check => config_check(cli.dev, cli.config),
            ConfigAction::Template { markdown } => {
                if markdown {
                    print!("{}", config::render_markdown_reference());
                } else {
                    print!("{}", config::render_template());
                }
                ExitCode::SUCCESS
            }
        },
        Command::GenSecret => {
            println!("{}", config::generate_secret());
            ExitCode::SUCCESS
        }
        Command::Migrate {
            status,
            create_database,
        } => with_runtime(cli.dev, cli.config, |loaded| async move {
            migrate(&loaded.config, status, create_database).await
        }),
        Command::Check { json } => check(cli.dev, cli.config, json),
        Command::User { command } => with_runtime(cli.dev, cli.config, |loaded| async move {
            crate::ops::users::run(&loaded.config, command).await
        }),
        Command::Worker => worker(cli.dev, cli.config),
        Command::Backup { unless_recent } => {
            with_runtime(cli.dev, cli.config, |loaded| async move {
                backup(&loaded.config, unless_recent).await
            })
        }
        Command::Restore { file, force } => {
            with_runtime(cli.dev, cli.config, |loaded| async move {
                restore(&loaded.config, &file, force).await
            })
        }
        Command::Status { json } => with_runtime(cli.dev, cli.config, |loaded| async move {
            crate::ops::status::run(&loaded.config, json).await
        }),
    }
}

/// Load the configuration, set up logging, and run `f` on a small runtime (one-shot commands).
fn with_runtime<F, Fut>(dev: bool, file: Option<PathBuf>, f: F) -> ExitCode
where
    F: FnOnce(Loaded) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let loaded = match load(dev, file) {
        Ok(l) => l,
        Err(errors) => {
            eprint!("{errors}");
            return exit::code(exit::CONFIG);
        }
    };
    let mut log = loaded.config.log.clone();
    // One-shot commands talk to a person: warnings and errors only, unless asked for more.
    if log.level == config::LogLevel::Info {
        log.level = config::LogLevel::Warn;
    }
    telemetry::init(&log);
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f(loaded)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            exit::code(exit::FAILURE)
        }
    }
}

/// `euraflow check` runs even on a configuration that `serve` would refuse: its problems are
/// failed lines of the checklist (the first thing an operator needs to see), not an early exit.
fn check(dev: bool, file: Option<PathBuf>, json: bool) -> ExitCode {
    let (loaded, problems) = config::load_with_problems(&LoadOptions::from_process(dev, file));
    let mut log = loaded.config.log.clone();
    log.level = config::LogLevel::Warn;
    telemetry::init(&log);
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(crate::ops::check::run(&loaded, &problems, json)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            exit::code(exit::FAILURE)
        }
    }
}

async fn migrate(config: &config::Config, status: bool, create_database: bool) -> ExitCode {
    use crate::db::migrate::{self as m, MigrateError};
    if create_database {
        match crate::db::create_database_if_missing(&config.db).await {
            Ok(true) => println!("created database {}", config.db.name),
            Ok(false) => {}
            Err(e) => {
                eprintln!("error: {e:#}");
                return exit::code(exit::FAILURE);
            }
        }
    }
    let fail = |e: MigrateError| {
        eprintln!("error: {e}");
        if e.is_unavailable() {
            exit::code(exit::UNAVAILABLE)
        } else {
            exit::code(exit::MIGRATION)
        }
    };
    if status {
        let client = match crate::db::connect_one(&config.db, &config.db.name).await {
            Ok(c) => c,
            Err(e) => return fail(MigrateError::Unavailable(e.to_string())),
        };
        return match m::status(&client, m::EMBEDDED).await {
            Ok(s) => {
                for a in &s.applied {
                    println!(
                        "applied  {}  {}  ({} ms)",
                        a.name,
                        a.applied_at.format("%Y-%m-%d %H:%M:%S UTC"),
                        a.execution_ms
                    );
                }
                for p in &s.pending {
                    println!("pending  {p}");
                }
                println!("{} applied, {} pending", s.applied.len(), s.pending.len());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        };
    }
    match crate::startup::run_migrations(&config.db).await {
        Ok(applied) if applied.is_empty() => println!("database {} is up to date", config.db.name),
        Ok(applied) => {
            for name in &applied {
                println!("applied  {name}");
            }
        }
        Err(e) => return fail(e),
    }
    // No admin yet (a fresh installation): create one with a random password in a file.
    match crate::startup::bootstrap_admin(config).await {
        Ok(Some(path)) => {
            println!(
                "created the first admin user 'admin'; its password is in {} (mode 0600; read it, log in, change the password, delete the file)",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::code(exit::FAILURE)
        }
    }
}

fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    config::value::parse_duration(s)
        .ok_or_else(|| format!("'{s}' is not a duration such as 1h or 30m"))
}

async fn backup(config: &config::Config, unless_recent: Option<std::time::Duration>) -> ExitCode {
    let result = match unless_recent {
        Some(window) => {
            crate::ops::backup::backup_unless_recent(
                &config.db,
                &config.worker.backup_dir,
                config.worker.backup_retention_days,
                window,
                None,
            )
            .await
        }
        None => crate::ops::backup::backup(
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

async fn restore(config: &config::Config, file: &std::path::Path, force: bool) -> ExitCode {
    match crate::ops::backup::restore(&config.db, file, force).await {
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

fn worker(dev: bool, file: Option<PathBuf>) -> ExitCode {
    run_worker(dev, file, crate::jobs::builtin_registry())
}

/// `euraflow worker` with a given registry: the shipped binary uses the built-in job types; a
/// program linking the library may add its own.
pub fn run_worker(dev: bool, file: Option<PathBuf>, registry: crate::jobs::Registry) -> ExitCode {
    let loaded = match load(dev, file) {
        Ok(l) => l,
        Err(errors) => {
            eprint!("{errors}");
            eprintln!("the worker was not started; `euraflow config check` repeats this check");
            return exit::code(exit::CONFIG);
        }
    };
    telemetry::init(&loaded.config.log);
    loaded.log_diagnostics();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("euraflow-worker")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return exit::code(exit::FAILURE);
        }
    };
    match runtime.block_on(crate::worker::run(loaded, registry, dev)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the worker stopped with an error");
            eprintln!("error: {e}");
            match e {
                crate::worker::WorkerError::Migration(m) if !m.is_unavailable() => {
                    exit::code(exit::MIGRATION)
                }
                _ => exit::code(exit::FAILURE),
            }
        }
    }
}

fn load(dev: bool, file: Option<PathBuf>) -> Result<Loaded, config::ConfigErrors> {
    config::load(&LoadOptions::from_process(dev, file))
}

fn print_diagnostics(loaded: &Loaded) {
    for d in &loaded.diagnostics {
        let label = match d.severity {
            config::Severity::Notice => "notice",
            config::Severity::Warning => "warning",
        };
        eprintln!("{label}: {}", d.message);
    }
}

fn config_show(dev: bool, file: Option<PathBuf>) -> ExitCode {
    match load(dev, file) {
        Ok(loaded) => {
            print_diagnostics(&loaded);
            print!("{}", config::render_show(&loaded));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            exit::code(exit::FAILURE)
        }
    }
}

fn config_check(dev: bool, file: Option<PathBuf>) -> ExitCode {
    let loaded = match load(dev, file) {
        Ok(l) => l,
        Err(errors) => {
            eprint!("{errors}");
            return exit::code(exit::FAILURE);
        }
    };
    print_diagnostics(&loaded);
    // A configured certificate must load and match its key, or the server would not start.
    if let config::TlsConfig::Files { .. } = &loaded.config.tls
        && !matches!(loaded.config.http.https_listen, config::ListenAddr::Off)
        && let Err(e) = crate::http::tls::CertificateStore::open(
            loaded.config.tls.clone(),
            &loaded.config.server_name,
        )
    {
        eprintln!("the configuration has 1 problem:\n  - TLS: {e:#}");
        return exit::code(exit::FAILURE);
    }
    let mode = if loaded.config.is_production() {
        "production"
    } else {
        "development"
    };
    let file = loaded
        .config_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "none".into());
    println!("configuration OK ({mode}; file: {file})");
    ExitCode::SUCCESS
}

fn serve(dev: bool, file: Option<PathBuf>) -> ExitCode {
    // SAFETY: no thread has been started yet; the runtime is built below.
    let inherited = match unsafe { systemd::take_listen_fds() } {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::code(exit::FAILURE);
        }
    };
    let loaded = match load(dev, file) {
        Ok(l) => l,
        Err(errors) => {
            eprint!("{errors}");
            eprintln!("the server was not started; `euraflow config check` repeats this check");
            return exit::code(exit::CONFIG);
        }
    };
    telemetry::init(&loaded.config.log);
    loaded.log_diagnostics();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("euraflow")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return exit::code(exit::FAILURE);
        }
    };
    match runtime.block_on(crate::serve::run(loaded, inherited, dev)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the server stopped with an error");
            eprintln!("error: {e}");
            match e {
                crate::serve::ServeError::Migration(m) if !m.is_unavailable() => {
                    exit::code(exit::MIGRATION)
                }
                _ => exit::code(exit::FAILURE),
            }
        }
    }
}
