//! The first admin. There is no default password: when no admin exists, `serve --dev`, `migrate`
//! and the package's install step create `admin` with a random password, written to
//! `<state dir>/initial-admin-password` (mode 0600). The path is logged, never the password.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::password::{self, hash_blocking};
use super::users;
use crate::config::{Config, write_private_file};
use crate::db::DbError;

pub const FILE_NAME: &str = "initial-admin-password";

/// A password of 24 URL-safe random characters.
pub fn random_password() -> String {
    use base64::Engine;
    let mut b = [0u8; 18];
    rand::fill(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Create `admin` when no admin exists. Returns the password file's path when one was created.
pub async fn ensure_admin(
    client: &mut tokio_postgres::Client,
    config: &Config,
) -> anyhow::Result<Option<PathBuf>> {
    if users::admin_exists(client).await.map_err(db_err)? {
        return Ok(None);
    }
    let password = random_password();
    let scheme = config.security.password_hash;
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || hash_blocking(&pw, scheme))
        .await
        .context("hashing the initial admin password")??;
    let tx = client
        .transaction()
        .await
        .map_err(DbError::from)
        .map_err(db_err)?;
    // Serialise concurrent bootstraps (two processes starting at once).
    tx.batch_execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
        .await
        .map_err(DbError::from)
        .map_err(db_err)?;
    if users::admin_exists(&tx).await.map_err(db_err)? {
        return Ok(None);
    }
    if users::by_username(&tx, "admin")
        .await
        .map_err(db_err)?
        .is_some()
    {
        anyhow::bail!(
            "no user has the admin role, but a user named 'admin' exists; give it the role with `euraflow user create --role admin <name>` under another name, or fix its role in the database"
        );
    }
    tx.execute(
        "INSERT INTO users (username, password_hash, role, permissions, account_level_id)
         VALUES ('admin', $1, 'admin', '[\"*\"]'::jsonb, (SELECT id FROM account_levels WHERE is_default LIMIT 1))",
        &[&hash],
    )
    .await
    .map_err(DbError::from)
    .map_err(db_err)?;
    let path = config.state_dir.join(FILE_NAME);
    write_password_file(&path, &password)?;
    tx.commit().await.map_err(DbError::from).map_err(db_err)?;
    tracing::warn!(path = %path.display(), "created the first admin user 'admin'; its password is in this file (read it, log in, change the password, delete the file)");
    Ok(Some(path))
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

fn db_err(e: DbError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Length check shared with the CLI.
pub fn check_password(p: &str) -> anyhow::Result<()> {
    match password::policy_violation(p) {
        Some(why) => anyhow::bail!("{why}"),
        None => Ok(()),
    }
}
