//! Schema migrations: `migrations/NNNN_name.sql`, embedded at build time, applied in order inside
//! one transaction under an advisory lock, and recorded with a checksum.
//!
//! - Any number of processes may migrate at once: the lock makes them take turns, and the later
//!   ones find nothing left to do.
//! - A migration that fails rolls back the whole run, and the error names the file and the
//!   database's message. It is never retried or reported as a connection problem.
//! - An applied migration whose file changed since is refused: the schema would silently differ
//!   from what the code expects.

use std::fmt;
use std::time::Instant;

use sha2::{Digest, Sha256};

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// Key of the advisory lock serialising migration runs (any constant unique to this purpose).
pub const LOCK_KEY: i64 = 0x6566_6d69_6772_6174; // "efmigrat"

impl Migration {
    pub fn checksum(&self) -> String {
        Sha256::digest(self.sql.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[derive(Debug)]
pub enum MigrateError {
    /// The database could not be reached: a connection problem, not a migration problem.
    Unavailable(String),
    /// A migration's SQL failed; nothing of this run was applied.
    Failed { file: String, error: String },
    /// An applied migration's file was edited afterwards.
    Changed {
        file: String,
        recorded: String,
        now: String,
    },
    /// The database has a migration this binary does not know (a newer release ran here).
    Unknown { version: i64, name: String },
    /// Reading or writing the bookkeeping table failed.
    Other(String),
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::Unavailable(e) => write!(f, "cannot reach the database: {e}"),
            MigrateError::Failed { file, error } => write!(
                f,
                "migration {file} failed: {error}; nothing of this run was applied (fix the database or the migration, then run `euraflow migrate` again)"
            ),
            MigrateError::Changed {
                file,
                recorded,
                now,
            } => write!(
                f,
                "migration {file} was changed after it was applied (recorded checksum {recorded}, the file now has {now}); applied migrations must not be edited — add a new migration instead"
            ),
            MigrateError::Unknown { version, name } => write!(
                f,
                "the database has migration {version:04} ({name}), which this euraflow does not know; a newer release ran against it — install that release or newer"
            ),
            MigrateError::Other(e) => write!(f, "migration bookkeeping failed: {e}"),
        }
    }
}

impl std::error::Error for MigrateError {}

impl MigrateError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, MigrateError::Unavailable(_))
    }
}

/// A recorded migration.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    pub version: i64,
    pub name: String,
    pub checksum: String,
    pub applied_at: chrono::DateTime<chrono::Utc>,
    pub execution_ms: i32,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrationStatus {
    pub applied: Vec<Applied>,
    pub pending: Vec<String>,
}

fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!("; detail: {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            if let Some(tokio_postgres::error::ErrorPosition::Original(p)) = db.position() {
                s.push_str(&format!("; at character {p}"));
            }
            s
        }
        None => e.to_string(),
    }
}

fn classify(e: tokio_postgres::Error) -> MigrateError {
    if e.is_closed() || e.as_db_error().is_none() {
        MigrateError::Unavailable(e.to_string())
    } else {
        MigrateError::Other(db_message(&e))
    }
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version      bigint PRIMARY KEY,
    name         text NOT NULL,
    checksum     text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    execution_ms integer NOT NULL
)";

async fn read_applied(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Vec<Applied>, MigrateError> {
    let rows = client
        .query(
            "SELECT version, name, checksum, applied_at, execution_ms FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(classify)?;
    Ok(rows
        .iter()
        .map(|r| Applied {
            version: r.get(0),
            name: r.get(1),
            checksum: r.get(2),
            applied_at: r.get(3),
            execution_ms: r.get(4),
        })
        .collect())
}

/// Compare what the database recorded with what this binary carries.
fn verify<'m>(
    applied: &[Applied],
    migrations: &'m [Migration],
) -> Result<Vec<&'m Migration>, MigrateError> {
    for a in applied {
        match migrations.iter().find(|m| m.version == a.version) {
            None => {
                return Err(MigrateError::Unknown {
                    version: a.version,
                    name: a.name.clone(),
                });
            }
            Some(m) => {
                let now = m.checksum();
                if now != a.checksum {
                    return Err(MigrateError::Changed {
                        file: m.name.to_owned(),
                        recorded: a.checksum.clone(),
                        now,
                    });
                }
            }
        }
    }
    Ok(migrations
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .collect())
}

/// Apply every pending migration in one transaction. Returns the names applied by this call
/// (empty when another process already did the work).
pub async fn apply(
    client: &mut tokio_postgres::Client,
    migrations: &[Migration],
) -> Result<Vec<String>, MigrateError> {
    let tx = client.transaction().await.map_err(classify)?;
    // Wait for any other migrating process, then work on the state it left.
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = '60s'; SELECT pg_advisory_xact_lock({LOCK_KEY}); {CREATE_TABLE}"
    ))
    .await
    .map_err(classify)?;
    let applied = read_applied(&tx).await?;
    let pending = verify(&applied, migrations)?;
    let mut done = Vec::new();
    for m in pending {
        let started = Instant::now();
        if let Err(e) = tx.batch_execute(m.sql).await {
            let error = db_message(&e);
            // The transaction is rolled back when dropped.
            return Err(if e.is_closed() || e.as_db_error().is_none() {
                MigrateError::Unavailable(error)
            } else {
                MigrateError::Failed {
                    file: m.name.to_owned(),
                    error,
                }
            });
        }
        let ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, execution_ms) VALUES ($1, $2, $3, $4)",
            &[&m.version, &m.name, &m.checksum(), &ms],
        )
        .await
        .map_err(classify)?;
        tracing::info!(migration = m.name, execution_ms = ms, "applied migration");
        done.push(m.name.to_owned());
    }
    tx.commit().await.map_err(classify)?;
    Ok(done)
}

/// What is applied and what is pending, without changing anything.
pub async fn status(
    client: &tokio_postgres::Client,
    migrations: &[Migration],
) -> Result<MigrationStatus, MigrateError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(classify)?
        .get(0);
    let applied = if exists {
        read_applied(client).await?
    } else {
        Vec::new()
    };
    let pending = verify(&applied, migrations)?
        .into_iter()
        .map(|m| m.name.to_owned())
        .collect();
    Ok(MigrationStatus { applied, pending })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_migrations_are_ordered_and_named() {
        assert!(!EMBEDDED.is_empty());
        for pair in EMBEDDED.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        for m in EMBEDDED {
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{}",
                m.name
            );
            assert!(!m.sql.trim().is_empty(), "{} is empty", m.name);
        }
    }

    #[test]
    fn verify_detects_edits_and_unknown_versions() {
        let ms = [
            Migration {
                version: 1,
                name: "0001_a.sql",
                sql: "select 1",
            },
            Migration {
                version: 2,
                name: "0002_b.sql",
                sql: "select 2",
            },
        ];
        let rec = |v: i64, name: &str, sum: String| Applied {
            version: v,
            name: name.into(),
            checksum: sum,
            applied_at: chrono::Utc::now(),
            execution_ms: 1,
        };
        let pending = verify(&[rec(1, "0001_a.sql", ms[0].checksum())], &ms).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].version, 2);
        let err = verify(&[rec(1, "0001_a.sql", "deadbeef".into())], &ms).unwrap_err();
        assert!(err.to_string().contains("0001_a.sql was changed"), "{err}");
        let err = verify(&[rec(3, "0003_c.sql", "x".into())], &ms).unwrap_err();
        assert!(matches!(err, MigrateError::Unknown { version: 3, .. }));
    }
}
