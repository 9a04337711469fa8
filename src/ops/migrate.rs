//! `euraflow migrate [--status] [--create-database]`: apply pending migrations (or list applied
//! and pending ones), then create the first admin of a fresh installation.

use std::process::ExitCode;

use crate::config::Config;
use crate::exit;

pub async fn run(config: &Config, status: bool, create_database: bool) -> ExitCode {
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
    match crate::db::prepare::run_migrations(&config.db).await {
        Ok(applied) if applied.is_empty() => println!("database {} is up to date", config.db.name),
        Ok(applied) => {
            for name in &applied {
                println!("applied  {name}");
            }
        }
        Err(e) => return fail(e),
    }
    // No admin yet (a fresh installation): create one with a random password in a file.
    match crate::auth::bootstrap::ensure_admin_with(config).await {
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
