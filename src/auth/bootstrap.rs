//! The first admin. There is no default password: when no admin exists, `serve --dev`, `migrate`
//! and the package's install step create `admin` with a random password, written to
//! `<state dir>/initial-admin-password` (mode 0600). The path is logged, never the password.
//! The account is made by `accounts::create`, like every other.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::accounts::{self, NewAccount};
use super::actor::Actor;
use super::password::Passwords;
use super::roles::Role;
use super::users;
use super::values::{NewPassword, Username};
use crate::config::{Config, write_private_file};
use crate::db::Database;
use crate::domain::Work;

pub const FILE_NAME: &str = "initial-admin-password";

/// A password of 24 URL-safe random characters.
pub fn random_password() -> String {
    use base64::Engine;
    let mut b = [0u8; 18];
    rand::fill(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Create `admin` when no admin exists. Returns the password file's path when one was created.
pub async fn ensure_admin(db: &Database, config: &Config) -> anyhow::Result<Option<PathBuf>> {
    let mut client = db.get().await?;
    if users::admin_exists(&client).await? {
        return Ok(None);
    }
    let passwords = Passwords::new(config.security.password_hash)?;
    let password = random_password();
    let mut work = Work::begin(&mut client).await?;
    // Serialise concurrent bootstraps (two processes starting at once).
    work.tx()
        .batch_execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
        .await
        .context("locking the users table for the first admin")?;
    if users::admin_exists(work.tx()).await? {
        return Ok(None);
    }
    if users::by_username(work.tx(), "admin").await?.is_some() {
        anyhow::bail!(
            "no user has the admin role, but a user named 'admin' exists; give it the role with `euraflow user create --role admin <name>` under another name, or fix its role in the database"
        );
    }
    let new = NewAccount::basic(
        Username::parse("admin").map_err(anyhow::Error::msg)?,
        NewPassword::parse(&password).map_err(anyhow::Error::msg)?,
        Role::Admin,
    );
    accounts::create(&mut work, &Actor::system("bootstrap"), &passwords, new)
        .await
        .map_err(|e| anyhow::anyhow!("creating the first admin: {e}"))?;
    let path = config.state_dir.join(FILE_NAME);
    write_password_file(&path, &password)?;
    // Nothing to tell the caches about a brand-new user.
    let _ = work.commit().await?;
    // The caller tells the operator, once (`migrate` prints it; the dev server logs it).
    Ok(Some(path))
}

/// [`ensure_admin`] over a connection of its own (for `migrate` and start-up, which have no pool
/// yet).
pub async fn ensure_admin_with(config: &Config) -> anyhow::Result<Option<PathBuf>> {
    let db = Database::new(&config.db)?;
    let created = ensure_admin(&db, config).await;
    db.close();
    created
}

/// For `serve --dev` and `worker --dev` once the schema is current: the first admin, or a
/// warning why not.
pub async fn ensure_admin_in_dev(config: Config) {
    match ensure_admin_with(&config).await {
        Ok(Some(path)) => tracing::warn!(
            path = %path.display(),
            "created the first admin user 'admin'; its password is in {} (read it, log in, change the password, delete the file)",
            path.display()
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = format!("{e:#}"), "could not create the first admin"),
    }
}

fn write_password_file(path: &Path, password: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| {
            format!("creating {} for the initial admin password", dir.display())
        })?;
    }
    write_private_file(path, format!("{password}\n").as_bytes()).with_context(|| {
        format!(
            "writing {}; make EF__STATE_DIR writable, or create the admin with `euraflow user create --role admin NAME`",
            path.display()
        )
    })
}
