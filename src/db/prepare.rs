//! Bringing the database to the schema this binary expects, for every process that needs it
//! (`serve`, `worker`, `migrate`): create it first when asked (`--dev`), then apply the pending
//! migrations unless `EF__DB_AUTO_MIGRATE=false`.
//!
//! A failing migration is returned (a process must not run on a half-known schema). A database
//! that cannot be reached is not fatal: the process starts, health says so, and the migrations
//! are applied by a background task as soon as PostgreSQL answers. `after` runs once the schema
//! is current, at start or in that task (`--dev` creates the first admin there).

use std::future::Future;
use std::time::Duration;

use super::migrate::{self, MigrateError};
use crate::config::{Config, DbConfig};
use crate::lifecycle::{Lifecycle, TaskName};
use crate::systemd;

/// Apply the embedded migrations over a dedicated connection; returns the names applied.
pub async fn run_migrations(config: &DbConfig) -> Result<Vec<String>, MigrateError> {
    let mut client = super::connect_one(config, &config.name)
        .await
        .map_err(|e| MigrateError::Unavailable(e.to_string()))?;
    let applied = migrate::apply(&mut client, migrate::EMBEDDED).await?;
    if applied.is_empty() {
        tracing::info!(database = %config.name, "database schema is up to date");
    } else {
        tracing::info!(database = %config.name, applied = applied.len(), "applied migrations");
    }
    Ok(applied)
}

/// See the module's documentation. `create` creates the database when it is missing.
pub async fn prepare<F, Fut>(
    config: &Config,
    lifecycle: &Lifecycle,
    create: bool,
    after: F,
) -> Result<(), MigrateError>
where
    F: Fn(Config) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    if create && let Err(e) = super::create_database_if_missing(&config.db).await {
        tracing::warn!(
            error = format!("{e:#}"),
            "could not create the development database"
        );
    }
    if !config.db.auto_migrate {
        tracing::info!(
            "EF__DB_AUTO_MIGRATE=false: not applying migrations; run `euraflow migrate`"
        );
        return Ok(());
    }
    let first_attempt =
        systemd::extending_startup("applying database migrations", run_migrations(&config.db));
    match first_attempt.await {
        Ok(_) => {
            after(config.clone()).await;
            Ok(())
        }
        Err(e) if e.is_unavailable() => {
            tracing::warn!(error = %e, "cannot apply migrations yet; will retry in the background");
            let config = config.clone();
            let stop = lifecycle.shutdown_token();
            lifecycle.spawn(TaskName::Migrations, async move {
                let mut wait = Duration::from_secs(1);
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.cancelled() => return,
                    }
                    if create
                        && let Err(e) = super::create_database_if_missing(&config.db).await
                    {
                        tracing::debug!(error = format!("{e:#}"), "database not created yet");
                    }
                    match run_migrations(&config.db).await {
                        Ok(_) => {
                            after(config.clone()).await;
                            return;
                        }
                        Err(e) if e.is_unavailable() => wait = (wait * 2).min(Duration::from_secs(30)),
                        Err(e) => {
                            tracing::error!(error = %e, "migrations failed; health stays unhealthy until this is fixed");
                            // Nothing more to do until an operator acts; idle until shutdown.
                            stop.cancelled().await;
                            return;
                        }
                    }
                }
            });
            Ok(())
        }
        Err(e) => Err(e),
    }
}
