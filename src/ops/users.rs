//! `euraflow user ...`: account administration from the machine itself — creating the first
//! admins, resetting a forgotten password, disabling an account — without the web app. An
//! adapter over `auth::accounts`, acting as the operator (audited as `cli:<os user>`).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::auth::accounts::{self, NewAccount};
use crate::auth::password::Passwords;
use crate::auth::roles::Role;
use crate::auth::sessions::AuthStore;
use crate::auth::values::{NewPassword, Username};
use crate::auth::{Actor, users};
use crate::config::Config;
use crate::db::Database;
use crate::db::sql::Sql;
use crate::domain::{DomainError, Effects, Work};
use crate::redis::Redis;

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is asked for (or read from standard input)
    Create {
        #[arg(long, default_value = "main_account", value_parser = ["admin", "main_account", "sub_account", "shipper"])]
        role: String,
        /// The main account a sub-account or shipper belongs to (required for a sub-account)
        #[arg(long, value_name = "MAIN_ACCOUNT")]
        parent: Option<String>,
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
    let db = Database::new(&config.db)?;
    let redis = Redis::new(&config.redis)?;
    let mut client = db.get().await?;
    let actor = Actor::operator(crate::config::current_username());
    match cmd {
        UserCommand::List => {
            let rows = client
                .rows(
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
        UserCommand::Create { role, parent, name } => {
            let username =
                Username::parse(&name).map_err(|p| anyhow::anyhow!("the user name {p}"))?;
            let role = Role::parse(&role).context("unknown role")?;
            if role == Role::SubAccount && parent.is_none() {
                anyhow::bail!(
                    "a sub-account belongs to a main account: add --parent <main account name>"
                );
            }
            let parent_user_id = match &parent {
                None => None,
                Some(p) => Some(
                    users::by_username(&client, p)
                        .await?
                        .with_context(|| format!("no user named {p} (--parent)"))?
                        .user
                        .id,
                ),
            };
            let password = NewPassword::parse(&read_password()?).map_err(anyhow::Error::msg)?;
            let passwords = Passwords::new(config.security.password_hash)?;
            let mut work = Work::begin(&mut client).await?;
            let id = accounts::create(
                &mut work,
                &actor,
                &passwords,
                NewAccount {
                    parent_user_id,
                    ..NewAccount::basic(username, password, role)
                },
            )
            .await
            .map_err(|e| match e {
                DomainError::Conflict {
                    code: "USERNAME_EXISTS",
                    ..
                } => {
                    anyhow::anyhow!("a user named {name} exists already")
                }
                DomainError::Rejected { message, .. } => {
                    anyhow::anyhow!("cannot create the user: {message}")
                }
                e => anyhow::anyhow!("creating the user: {e}"),
            })?;
            let _ = work.commit().await?;
            println!("created user {name} (id {id}, role {})", role.as_str());
            Ok(())
        }
        UserCommand::Passwd { name } => {
            let user = users::by_username(&client, &name)
                .await?
                .with_context(|| format!("no user named {name}"))?;
            let password = NewPassword::parse(&read_password()?).map_err(anyhow::Error::msg)?;
            let passwords = Passwords::new(config.security.password_hash)?;
            let mut work = Work::begin(&mut client).await?;
            let ended =
                accounts::reset_password(&mut work, &actor, &passwords, user.user.id, &password)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            let effects = work.commit().await?;
            publish(config, db.clone(), redis, &effects).await;
            println!("password of {name} changed; {ended} session(s) ended");
            Ok(())
        }
        UserCommand::Disable { name } => {
            let user = users::by_username(&client, &name)
                .await?
                .with_context(|| format!("no user named {name}"))?;
            let mut work = Work::begin(&mut client).await?;
            let ended = accounts::disable(&mut work, &actor, user.user.id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let effects = work.commit().await?;
            publish(config, db.clone(), redis, &effects).await;
            println!("{name} is disabled; {ended} session(s) ended");
            Ok(())
        }
    }
}

/// Tell the running servers' cache (Redis) what changed; PostgreSQL already knows.
async fn publish(config: &Config, db: Arc<Database>, redis: Arc<Redis>, effects: &Effects) {
    let redis_for_realtime = redis.clone();
    let store = AuthStore::new(
        db,
        redis,
        config.security.redis_fail_open,
        config.security.refresh_token_ttl.as_secs(),
    );
    store.apply(effects).await;
    // The running servers' websockets of the ended sessions learn it too.
    match crate::realtime::Realtime::publisher(config, redis_for_realtime) {
        Ok(rt) => rt.end_sessions(&effects.ended_sessions).await,
        Err(e) => tracing::warn!(error = %e, "cannot tell the websockets"),
    }
}
