//! `euraflow user ...`: account administration from the machine itself — creating the first
//! admins, resetting a forgotten password, disabling an account — without the web app.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::auth::password::{hash_blocking, policy_violation};
use crate::auth::roles::Role;
use crate::auth::sessions::{self, AuthStore};
use crate::auth::users;
use crate::config::Config;
use crate::db::{self, Database};
use crate::redis::Redis;

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is asked for (or read from standard input)
    Create {
        #[arg(long, default_value = "main_account", value_parser = ["admin", "main_account", "sub_account", "shipper"])]
        role: String,
        name: String,
    },
    /// Set a user's password (asked for, or read from standard input); their sessions end
    Passwd { name: String },
    /// List users
    List,
    /// Disable a user (admins too): they cannot log in, and their sessions end now
    Disable { name: String },
}

pub async fn run(config: &Config, cmd: UserCommand) -> ExitCode {
    match execute(config, cmd).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ask twice without echo on a terminal; read one line otherwise (for scripts: `echo pw | ...`).
fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    let ask = |prompt: &str| -> anyhow::Result<String> {
        eprint!("{prompt}");
        std::io::stderr().flush().ok();
        let fd = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&fd).context("reading terminal settings")?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &quiet)
            .context("turning echo off")?;
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line);
        let _ = rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &saved);
        eprintln!();
        read.context("reading the password")?;
        Ok(line.trim_end_matches(['\n', '\r']).to_owned())
    };
    let first = ask("New password: ")?;
    let second = ask("Repeat it: ")?;
    if first != second {
        bail!("the two passwords differ");
    }
    Ok(first)
}

async fn execute(config: &Config, cmd: UserCommand) -> anyhow::Result<()> {
    let mut client = db::connect_one(&config.db, &config.db.name)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match cmd {
        UserCommand::List => {
            let rows = client
                .query(
                    "SELECT id, username, role, account_status, is_active, last_login_at FROM users ORDER BY id",
                    &[],
                )
                .await
                .context("listing users")?;
            println!(
                "{:>6}  {:<30} {:<13} {:<10} {:<7} last login",
                "id", "username", "role", "status", "active"
            );
            for r in rows {
                let last: Option<chrono::DateTime<chrono::Utc>> = r.get(5);
                println!(
                    "{:>6}  {:<30} {:<13} {:<10} {:<7} {}",
                    r.get::<_, i64>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    r.get::<_, String>(3),
                    r.get::<_, bool>(4),
                    last.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                        .unwrap_or_else(|| "never".into())
                );
            }
            Ok(())
        }
        UserCommand::Create { role, name } => {
            if let Some(p) = crate::api::validate::username_problem(&name) {
                bail!("the user name {p}");
            }
            let role = Role::parse(&role).context("unknown role")?;
            let password = read_password()?;
            if let Some(why) = policy_violation(&password) {
                bail!("{why}");
            }
            let scheme = config.security.password_hash;
            let hash =
                tokio::task::spawn_blocking(move || hash_blocking(&password, scheme)).await??;
            let permissions = if role == Role::Admin {
                serde_json::json!(["*"])
            } else {
                serde_json::json!([])
            };
            let row = client
                .query_one(
                    "INSERT INTO users (username, password_hash, role, permissions, account_level_id)
                     VALUES ($1, $2, $3, $4, CASE WHEN $3::varchar = 'main_account'
                                                  THEN (SELECT id FROM account_levels WHERE is_default) END)
                     RETURNING id",
                    &[&name, &hash, &role.as_str(), &permissions],
                )
                .await
                .map_err(|e| {
                    if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                        anyhow::anyhow!("a user named {name} exists already")
                    } else {
                        anyhow::anyhow!("creating the user: {e}")
                    }
                })?;
            audit_cli(
                &client,
                "create",
                row.get(0),
                &format!("created by `euraflow user create` as {}", role.as_str()),
            )
            .await?;
            println!(
                "created user {name} (id {}, role {})",
                row.get::<_, i64>(0),
                role.as_str()
            );
            Ok(())
        }
        UserCommand::Passwd { name } => {
            let user = users::by_username(&client, &name)
                .await?
                .with_context(|| format!("no user named {name}"))?;
            let password = read_password()?;
            if let Some(why) = policy_violation(&password) {
                bail!("{why}");
            }
            let scheme = config.security.password_hash;
            let hash =
                tokio::task::spawn_blocking(move || hash_blocking(&password, scheme)).await??;
            let tx = client.transaction().await?;
            tx.execute(
                "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
                &[&user.id, &hash],
            )
            .await?;
            let ended = sessions::end_all(&tx, user.id, "password_reset").await?;
            tx.commit().await?;
            forget(config, user.id, &ended).await;
            audit_cli(
                &client,
                "reset_password",
                user.id,
                "password set by `euraflow user passwd`",
            )
            .await?;
            println!(
                "password of {name} changed; {} session(s) ended",
                ended.len()
            );
            Ok(())
        }
        UserCommand::Disable { name } => {
            let user = users::by_username(&client, &name)
                .await?
                .with_context(|| format!("no user named {name}"))?;
            let tx = client.transaction().await?;
            tx.execute(
                "UPDATE users SET account_status = 'disabled', is_active = false, updated_at = now() WHERE id = $1",
                &[&user.id],
            )
            .await?;
            let ended = sessions::end_all(&tx, user.id, "account_disabled").await?;
            tx.commit().await?;
            forget(config, user.id, &ended).await;
            audit_cli(
                &client,
                "update",
                user.id,
                "disabled by `euraflow user disable`",
            )
            .await?;
            println!("{name} is disabled; {} session(s) ended", ended.len());
            Ok(())
        }
    }
}

/// Tell the running servers' cache (Redis) what changed; PostgreSQL already knows.
async fn forget(config: &Config, user_id: i64, ended: &[String]) {
    let (Ok(db), Ok(redis)) = (Database::new(&config.db), Redis::new(&config.redis)) else {
        return;
    };
    let store = AuthStore::new(
        db,
        Arc::clone(&redis),
        config.security.redis_fail_open,
        config.security.refresh_token_ttl.as_secs(),
    );
    for t in ended {
        store.mark_session(t, false).await;
    }
    store.invalidate_states(&[user_id]).await;
}

async fn audit_cli(
    client: &tokio_postgres::Client,
    action: &str,
    user_id: i64,
    note: &str,
) -> anyhow::Result<()> {
    let actor = crate::auth::audit::Actor {
        username: Some(format!("cli:{}", crate::config::current_username())),
        ..Default::default()
    };
    crate::auth::audit::write(
        client,
        &actor,
        crate::auth::audit::Entry::new("user", action, "命令行")
            .record("users", user_id)
            .notes(note),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))
}
