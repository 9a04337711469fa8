//! The runners of the commands. [`run`] is the one runner of the long-running commands,
//! `euraflow serve` and `euraflow worker`: load the configuration (a refused one exits with
//! `EX_CONFIG`, 78), set up logging, build the runtime, run the command, and turn how it ended
//! into the exit code (65 for a migration that failed, 1 for anything else). [`one_shot`] does
//! the same for commands that talk to a person (`migrate`, `user`, `backup`, `status`, ...): a
//! small runtime, and warnings and errors only in the log.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, LoadOptions, Loaded};
use crate::db::migrate::MigrateError;
use crate::{exit, telemetry};

/// Why a long-running command stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{0}")]
    Migration(MigrateError),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl ProcessError {
    fn exit_code(&self) -> ExitCode {
        match self {
            ProcessError::Migration(m) if !m.is_unavailable() => exit::code(exit::MIGRATION),
            _ => exit::code(exit::FAILURE),
        }
    }
}

/// Run `body` as the process `what` ("server", "worker") on a multi-threaded runtime whose
/// threads are named `thread_name`.
pub fn run<F, Fut>(
    what: &str,
    thread_name: &str,
    dev: bool,
    file: Option<PathBuf>,
    body: F,
) -> ExitCode
where
    F: FnOnce(Loaded) -> Fut,
    Fut: Future<Output = Result<(), ProcessError>>,
{
    let loaded = match config::load(&LoadOptions::from_process(dev, file)) {
        Ok(l) => l,
        Err(errors) => {
            eprint!("{errors}");
            eprintln!("the {what} was not started; `euraflow config check` repeats this check");
            return exit::code(exit::CONFIG);
        }
    };
    telemetry::init(&loaded.config.log);
    loaded.log_diagnostics();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(thread_name)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return exit::code(exit::FAILURE);
        }
    };
    let code = match runtime.block_on(body(loaded)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "the {what} stopped with an error");
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    telemetry::flush();
    code
}

/// Load the configuration, set up logging, and run `f` on a small runtime (one-shot commands).
pub fn one_shot<F, Fut>(dev: bool, file: Option<PathBuf>, f: F) -> ExitCode
where
    F: FnOnce(Loaded) -> Fut,
    Fut: Future<Output = ExitCode>,
{
    let loaded = match config::load(&LoadOptions::from_process(dev, file)) {
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
    block_on_small(f(loaded))
}

/// A current-thread runtime for one command.
pub fn block_on_small<Fut: Future<Output = ExitCode>>(fut: Fut) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            exit::code(exit::FAILURE)
        }
    }
}
