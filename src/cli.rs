//! The command line: `euraflow <command>`. This file only defines the commands and dispatches
//! them: long-running ones to `process::run` (`serve`, `worker`), one-shot ones to their body in
//! `ops/` through `process::one_shot`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config;
use crate::process::{self, one_shot};
use crate::{exit, ops, systemd};

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
    Serve {
        /// With --dev, the job worker and scheduler run in the same process (as `euraflow worker`
        /// does in production); this leaves them out
        #[arg(long)]
        no_worker: bool,
        /// With --dev: a fake Ozon Seller API in the process, and a seller `demo` whose two
        /// shops are synced from it, so the seller's pages have data (password in the state
        /// directory's demo-password)
        #[arg(long)]
        demo: bool,
    },
    /// Show or check the configuration
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print a new random secret for EF__SECRET_KEY (86 URL-safe characters)
    GenSecret,
    /// Print a new random data key for EF__DATA_KEY (encrypts stored Ozon Api-Keys)
    GenDataKey,
    /// Manage the data key that encrypts stored third-party credentials
    Secrets {
        #[command(subcommand)]
        command: crate::ops::secrets::SecretsCommand,
    },
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
    /// Print shell completions to standard output (the package installs bash and zsh ones)
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (euraflow(8) and one per command, roff) into DIR; the package
    /// build installs them
    #[command(hide = true)]
    Manpage {
        /// Where to write euraflow.8 and euraflow-<command>.8
        dir: PathBuf,
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
        /// As Markdown tables (the operator guides' reference)
        #[arg(long, conflicts_with = "short")]
        markdown: bool,
        /// Only the keys an operator usually sets: what the package writes once as
        /// /etc/euraflow/euraflow.env
        #[arg(long)]
        short: bool,
    },
}

pub fn run(cli: Cli) -> ExitCode {
    let (dev, file) = (cli.dev, cli.config);
    match cli.command {
        Command::Serve { demo: true, .. } if !dev => {
            eprintln!(
                "error: --demo runs a fake Ozon and a demo seller, for development only: use `euraflow --dev serve --demo` (or scripts/dev-server --demo)"
            );
            exit::code(exit::CONFIG)
        }
        Command::Serve { no_worker, demo } => serve(dev, file, dev && !no_worker, demo),
        Command::Config { action } => match action {
            ConfigAction::Show => ops::config::show(dev, file),
            ConfigAction::Check => ops::config::check(dev, file),
            ConfigAction::Template { markdown, short } => ops::config::template(markdown, short),
        },
        Command::GenSecret => {
            println!("{}", config::generate_secret());
            ExitCode::SUCCESS
        }
        Command::GenDataKey => {
            println!("{}", crate::secrets::generate_key());
            ExitCode::SUCCESS
        }
        Command::Secrets { command } => one_shot(dev, file, |loaded| async move {
            ops::secrets::run(&loaded.config, dev, command).await
        }),
        Command::Migrate {
            status,
            create_database,
        } => one_shot(dev, file, |loaded| async move {
            ops::migrate::run(&loaded.config, status, create_database).await
        }),
        Command::Check { json } => ops::check::run_command(dev, file, json),
        Command::User { command } => one_shot(dev, file, |loaded| async move {
            ops::users::run(&loaded.config, command).await
        }),
        Command::Worker => run_worker(dev, file, crate::jobs::builtin_registry()),
        Command::Backup { unless_recent } => one_shot(dev, file, |loaded| async move {
            ops::backup::run_backup(&loaded.config, unless_recent).await
        }),
        Command::Restore { file: dump, force } => one_shot(dev, file, |loaded| async move {
            ops::backup::run_restore(&loaded.config, &dump, force).await
        }),
        Command::Completions { shell } => ops::manual::completions(shell),
        Command::Manpage { dir } => ops::manual::manpages(&dir),
        Command::Status { json } => one_shot(dev, file, |loaded| async move {
            ops::status::run(&loaded.config, json).await
        }),
    }
}

fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    config::value::parse_duration(s)
        .ok_or_else(|| format!("'{s}' is not a duration such as 1h or 30m"))
}

/// `euraflow worker` with a given registry: the shipped binary uses the built-in job types; a
/// program linking the library may add its own.
pub fn run_worker(dev: bool, file: Option<PathBuf>, registry: crate::jobs::Registry) -> ExitCode {
    process::run("worker", "euraflow-worker", dev, file, move |loaded| {
        crate::worker::run(loaded, registry, dev)
    })
}

fn serve(dev: bool, file: Option<PathBuf>, with_jobs: bool, demo: bool) -> ExitCode {
    // SAFETY: no thread has been started yet; the runtime is built after this.
    let inherited = match unsafe { systemd::take_listen_fds() } {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::code(exit::FAILURE);
        }
    };
    process::run("server", "euraflow", dev, file, move |loaded| {
        crate::serve::run(loaded, inherited, dev, with_jobs, demo)
    })
}
