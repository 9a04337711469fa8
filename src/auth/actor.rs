//! Who is acting, as every domain service sees it: a logged-in user (or an API key's owner), the
//! operator at the machine (`euraflow user ...`), or nobody yet (a login attempt) — and from where
//! (client IP, user agent, request id). The rules look at `who`; the audit log records both.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::roles::{Party, Role};
use crate::domain::DomainError;

/// Where a request came from.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl Origin {
    /// The client IP as text, for rate-limit keys and session rows.
    pub fn ip_text(&self) -> String {
        self.ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "unknown".into())
    }
}

/// A user acting through the API.
#[derive(Debug, Clone)]
pub struct UserActor {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub parent_user_id: Option<i64>,
    /// The user's own expiry: a main account may not give a child a later one.
    pub expires_at: Option<DateTime<Utc>>,
    /// Acting with an API key rather than a login session.
    pub via_api_key: bool,
    /// The shops the user works with; `None` for admins (every shop).
    pub shop_ids: Option<Vec<i64>>,
    /// The admin (id, username) acting as this user through a clone (`auth::clone`): audit rows
    /// record both.
    pub cloned_by: Option<(i64, String)>,
}

#[derive(Debug, Clone)]
pub enum Who {
    User(UserActor),
    /// The operator on the machine, through the CLI: the role rules do not apply (they already
    /// own the server), but every change is audited under `cli:<os user>`.
    Operator {
        os_user: String,
    },
    /// Nobody authenticated yet (login, refresh).
    Anonymous,
    /// An authenticated user named only by id (refresh-token reuse, where the token says who).
    Claimed {
        user_id: i64,
    },
    /// The appliance itself (the first-admin bootstrap, jobs): like the operator, no role rules.
    System {
        what: &'static str,
    },
}

#[derive(Debug, Clone)]
pub struct Actor {
    pub who: Who,
    pub origin: Origin,
}

impl Actor {
    pub fn operator(os_user: impl Into<String>) -> Self {
        Actor {
            who: Who::Operator {
                os_user: os_user.into(),
            },
            origin: Origin::default(),
        }
    }

    pub fn anonymous(origin: Origin) -> Self {
        Actor {
            who: Who::Anonymous,
            origin,
        }
    }

    pub fn system(what: &'static str) -> Self {
        Actor {
            who: Who::System { what },
            origin: Origin::default(),
        }
    }

    /// The operator or the appliance itself: trusted with every change, audited all the same.
    pub fn is_operator(&self) -> bool {
        matches!(self.who, Who::Operator { .. } | Who::System { .. })
    }

    pub fn user(&self) -> Option<&UserActor> {
        match &self.who {
            Who::User(u) => Some(u),
            _ => None,
        }
    }

    /// The acting user, for rules that need one; the operator and the anonymous get `None`.
    pub fn party(&self) -> Option<Party<'_>> {
        self.user().map(|u| Party {
            id: u.id,
            username: &u.username,
            role: u.role,
            parent_user_id: u.parent_user_id,
        })
    }

    pub fn role(&self) -> Option<Role> {
        self.user().map(|u| u.role)
    }

    pub fn is_admin(&self) -> bool {
        self.role() == Some(Role::Admin)
    }

    /// Account management needs a logged-in person (or the operator), not an API key.
    pub fn require_session(&self) -> Result<(), DomainError> {
        match &self.who {
            Who::User(u) if u.via_api_key => Err(DomainError::denied(
                "API_KEY_NOT_ALLOWED",
                "API keys cannot manage accounts, keys or settings; log in instead",
            )),
            _ => Ok(()),
        }
    }

    /// The original's `require_role(required)`; the operator passes every role.
    pub fn require_role(&self, required: Role) -> Result<(), DomainError> {
        match &self.who {
            Who::Operator { .. } | Who::System { .. } => Ok(()),
            Who::User(u) if Role::admits(required, u.role) => Ok(()),
            _ => Err(DomainError::denied(
                "INSUFFICIENT_PERMISSIONS",
                "Your role may not do this",
            )),
        }
    }

    /// The original's `require_shops()`: at least one shop (admins see all; the operator passes).
    pub fn require_shops(&self) -> Result<(), DomainError> {
        match &self.who {
            Who::User(u) => match &u.shop_ids {
                Some(ids) if ids.is_empty() => Err(DomainError::denied(
                    "NO_SHOPS",
                    "No shop is associated with this account yet",
                )),
                _ => Ok(()),
            },
            Who::Operator { .. } | Who::System { .. } => Ok(()),
            _ => Err(DomainError::denied(
                "INSUFFICIENT_PERMISSIONS",
                "Log in first",
            )),
        }
    }

    /// The admin behind a clone, for the audit log's `original_user_id` and `original_username`.
    pub fn cloned_by(&self) -> Option<&(i64, String)> {
        self.user().and_then(|u| u.cloned_by.as_ref())
    }

    /// `audit_logs.user_id` and `username` for this actor.
    pub fn audit_identity(&self) -> (Option<i64>, Option<String>) {
        match &self.who {
            Who::User(u) => (Some(u.id), Some(u.username.clone())),
            Who::Operator { os_user } => (None, Some(format!("cli:{os_user}"))),
            Who::Anonymous => (None, None),
            Who::Claimed { user_id } => (Some(*user_id), None),
            Who::System { what } => (None, Some(format!("system:{what}"))),
        }
    }
}
