//! Queries through the connection's statement cache.
//!
//! `tokio_postgres::Client::query("SELECT ...")` prepares the statement on every call: a Parse
//! round trip, then the Bind/Execute round trip. Domain services run the same few dozen
//! statements over and over, so they go through [`Sql`], which prepares each text once per pooled
//! connection (deadpool's cache) and then costs one round trip per statement. Errors come back as
//! [`DbError`], so `?` works in services.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::DbError;

pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Cached-statement queries on a pooled client or one of its transactions.
#[allow(async_fn_in_trait)]
pub trait Sql: GenericClient {
    async fn rows(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, DbError> {
        let statement = self.prepare_cached(sql).await?;
        Ok(self.query(&statement, params).await?)
    }

    async fn row(&self, sql: &str, params: Params<'_>) -> Result<Row, DbError> {
        let statement = self.prepare_cached(sql).await?;
        Ok(self.query_one(&statement, params).await?)
    }

    async fn maybe_row(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, DbError> {
        let statement = self.prepare_cached(sql).await?;
        Ok(self.query_opt(&statement, params).await?)
    }

    /// Rows affected.
    async fn exec(&self, sql: &str, params: Params<'_>) -> Result<u64, DbError> {
        let statement = self.prepare_cached(sql).await?;
        Ok(self.execute(&statement, params).await?)
    }
}

impl<T: GenericClient> Sql for T {}

/// Whether `e` is a violation of the constraint (index) named `name`.
pub fn violates(e: &DbError, name: &str) -> bool {
    match e {
        DbError::Query(q) => q.as_db_error().and_then(|d| d.constraint()) == Some(name),
        _ => false,
    }
}

/// Whether `e` is a unique-constraint violation (any constraint).
pub fn is_unique_violation(e: &DbError) -> bool {
    matches!(e, DbError::Query(q) if q.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION))
}

/// Whether `e` is a foreign-key violation.
pub fn is_foreign_key_violation(e: &DbError) -> bool {
    matches!(e, DbError::Query(q) if q.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION))
}
