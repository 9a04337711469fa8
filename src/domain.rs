//! The error every domain service returns, and the input checks that feed it.
//!
//! A domain service (`auth::accounts`, `auth::api_keys`, `auth::levels`, `settings`, and the
//! Ozon services after them) takes a transaction or a client and an [`Actor`](crate::auth::Actor),
//! enforces its rules, writes its audit row in the same transaction, and returns
//! `Result<T, DomainError>`. The variants say what kind of refusal it is; `code` is the stable
//! machine-readable name the web app reads (`error.detail.code`), `message` the sentence a person
//! reads. Adapters only translate: the API maps the kind to an HTTP status
//! (`api::error`), the CLI prints the message.
//!
//! ```ignore
//! pub async fn delete(work: &mut Work<'_>, actor: &Actor, id: i64) -> Result<(), DomainError> {
//!     let target = records::by_id(work.tx(), id).await?.ok_or_else(not_found)?;
//!     roles::may_manage(actor.party()?, target.party())?;     // Denied -> DomainError
//!     work.tx().exec("DELETE FROM users WHERE id = $1", &[&id]).await?;
//!     audit::write(work.tx(), actor, Entry::new("user", "delete", "删除用户")).await?;
//!     Ok(())
//! }
//! ```

use std::borrow::Cow;

use crate::db::DbError;

/// One invalid input field: where (`loc`, a path inside the request body such as
/// `["display", "currency"]`), what kind of problem, and how to fix it. The submitted value is
/// never repeated: it could be a password.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub loc: Vec<String>,
    pub msg: String,
}

/// Why a domain service refused, or failed.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// The input is malformed; every problem is listed (422).
    #[error("invalid input: {}", describe(.0))]
    Invalid(Vec<Problem>),
    /// The input is well formed but breaks a rule (400): a quota, a parent that is no main
    /// account, a date after the parent's.
    #[error("{message}")]
    Rejected {
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// The caller is not known or no longer valid (401).
    #[error("{message}")]
    Unauthenticated {
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// The caller is known but may not do this (403).
    #[error("{message}")]
    Denied {
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// The object does not exist — or the caller may not know that it does (404).
    #[error("{message}")]
    NotFound {
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// The change collides with existing data (409): a taken name, a state that forbids it.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: Cow<'static, str>,
    },
    /// Too many attempts; `retry_after_s` says when to try again (429).
    #[error("{message}")]
    Throttled {
        code: &'static str,
        message: Cow<'static, str>,
        retry_after_s: u64,
    },
    /// A dependency the service needs cannot answer now (503).
    #[error("{message}")]
    Unavailable {
        code: &'static str,
        message: Cow<'static, str>,
        retry_after_s: u64,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    /// A failure that is nobody's input: logged with its context, answered as a 500.
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

fn describe(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{} {}", p.loc.join("."), p.msg))
        .collect::<Vec<_>>()
        .join("; ")
}

impl DomainError {
    pub fn rejected(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        DomainError::Rejected {
            code,
            message: message.into(),
        }
    }

    pub fn unauthenticated(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        DomainError::Unauthenticated {
            code,
            message: message.into(),
        }
    }

    pub fn denied(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        DomainError::Denied {
            code,
            message: message.into(),
        }
    }

    pub fn not_found(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        DomainError::NotFound {
            code,
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        DomainError::Conflict {
            code,
            message: message.into(),
        }
    }

    /// One invalid field, when a service finds it after parsing (most are found by [`Checks`]).
    pub fn invalid(loc: &str, kind: &str, msg: impl Into<String>) -> Self {
        let mut checks = Checks::new();
        checks.check(false, loc, kind, msg);
        DomainError::Invalid(checks.problems)
    }

    /// The stable code, for logs and the CLI.
    pub fn code(&self) -> &str {
        match self {
            DomainError::Invalid(_) => "VALIDATION_ERROR",
            DomainError::Rejected { code, .. }
            | DomainError::Unauthenticated { code, .. }
            | DomainError::Denied { code, .. }
            | DomainError::NotFound { code, .. }
            | DomainError::Conflict { code, .. }
            | DomainError::Throttled { code, .. }
            | DomainError::Unavailable { code, .. } => code,
            DomainError::Db(_) | DomainError::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }
}

impl From<tokio_postgres::Error> for DomainError {
    fn from(e: tokio_postgres::Error) -> Self {
        DomainError::Db(DbError::from(e))
    }
}

/// Collects every problem of an input before answering, so a form shows all its errors at once.
#[derive(Debug, Default)]
pub struct Checks {
    problems: Vec<Problem>,
}

impl Checks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record `msg` for field `loc` (dotted: `display.currency`) unless `ok`.
    pub fn check(&mut self, ok: bool, loc: &str, kind: &str, msg: impl Into<String>) -> &mut Self {
        if !ok {
            self.problems.push(Problem {
                kind: kind.to_owned(),
                loc: loc.split('.').map(str::to_owned).collect(),
                msg: msg.into(),
            });
        }
        self
    }

    /// Record the problem of a parse, keeping the parsed value when there is none.
    pub fn parsed<T>(&mut self, loc: &str, r: Result<T, &'static str>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(why) => {
                self.check(false, loc, "value_error", why);
                None
            }
        }
    }

    pub fn len_between(&mut self, value: &str, loc: &str, min: usize, max: usize) -> &mut Self {
        let n = value.chars().count();
        self.check(
            n >= min && n <= max,
            loc,
            "string_length",
            format!("must have {min} to {max} characters"),
        )
    }

    pub fn finish(&mut self) -> Result<(), DomainError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Invalid(std::mem::take(&mut self.problems)))
        }
    }
}

/// A domain transaction: the changes of one request (or CLI command) commit together, and what
/// the caches and connected clients must learn about them is collected on the way and handed
/// back by [`Work::commit`] — only once the change is durable, never for a rolled-back one.
/// Dropping a `Work` without committing rolls back.
pub struct Work<'c> {
    tx: deadpool_postgres::Transaction<'c>,
    effects: Effects,
}

impl<'c> Work<'c> {
    pub async fn begin(client: &'c mut deadpool_postgres::Client) -> Result<Work<'c>, DbError> {
        Ok(Work {
            tx: client.transaction().await?,
            effects: Effects::default(),
        })
    }

    pub fn tx(&self) -> &deadpool_postgres::Transaction<'c> {
        &self.tx
    }

    pub fn effects(&mut self) -> &mut Effects {
        &mut self.effects
    }

    /// Commit; returns what must now be told to caches and clients (`Auth::apply`).
    #[must_use = "the caches must learn about the committed change: pass the effects to Auth::apply"]
    pub async fn commit(self) -> Result<Effects, DbError> {
        self.tx.commit().await?;
        Ok(self.effects)
    }
}

/// What a committed change means for the caches and the connected clients.
#[derive(Debug, Default)]
#[must_use = "pass the effects to Auth::apply"]
pub struct Effects {
    /// Login sessions that ended: their tokens stop working at once, and their clients are told.
    pub ended_sessions: Vec<EndedSession>,
    /// Users whose cached account state (or whose children's) is stale.
    pub stale_users: Vec<i64>,
    /// Sessions that started (cached as active so the first request needs no database).
    pub started_sessions: Vec<String>,
    /// Every user's cached profile (`GET /auth/me`) is stale: a change that touches many users
    /// at once (an account level, the users bound to a shop).
    pub everyone_stale: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedSession {
    pub token: String,
    pub user_id: i64,
    /// `replaced`, `logout`, `password_reset`, `account_disabled`, ...
    pub reason: &'static str,
}

impl Effects {
    pub fn end_sessions(&mut self, user_id: i64, tokens: Vec<String>, reason: &'static str) {
        self.ended_sessions
            .extend(tokens.into_iter().map(|token| EndedSession {
                token,
                user_id,
                reason,
            }));
    }

    pub fn stale(&mut self, users: impl IntoIterator<Item = i64>) {
        self.stale_users.extend(users);
    }

    /// Every user's profile is stale (see [`Effects::everyone_stale`]).
    pub fn stale_everyone(&mut self) {
        self.everyone_stale = true;
    }

    pub fn is_empty(&self) -> bool {
        self.ended_sessions.is_empty()
            && self.stale_users.is_empty()
            && self.started_sessions.is_empty()
            && !self.everyone_stale
    }
}

/// One field's parse as a domain result: `field("username", Username::parse(raw))?`.
pub fn field<T>(loc: &str, parsed: Result<T, &'static str>) -> Result<T, DomainError> {
    parsed.map_err(|why| DomainError::invalid(loc, "value_error", why))
}

/// Free-text lists (permissions): bounded count and length, printable.
pub fn string_list_problem(items: &[String], max_items: usize, max_len: usize) -> Option<String> {
    if items.len() > max_items {
        return Some(format!("at most {max_items} entries"));
    }
    if items
        .iter()
        .any(|s| s.is_empty() || s.chars().count() > max_len || s.chars().any(char::is_control))
    {
        return Some(format!(
            "entries must be 1 to {max_len} printable characters"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_collect_every_problem_with_its_path() {
        let mut c = Checks::new();
        c.check(false, "display.currency", "value_error", "three letters")
            .len_between("ab", "name", 3, 10)
            .check(true, "fine", "x", "never");
        match c.finish() {
            Err(DomainError::Invalid(p)) => {
                assert_eq!(p.len(), 2);
                assert_eq!(p[0].loc, vec!["display", "currency"]);
                assert_eq!(p[1].kind, "string_length");
            }
            other => panic!("{other:?}"),
        }
        assert!(Checks::new().finish().is_ok());
    }
}
