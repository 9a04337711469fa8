//! The current user of a request: who the presented credentials ([`Presented`]) belong to, and
//! whether their account may act now.
//!
//! A bearer token costs one Redis round trip (session, revocation and cached account state in one
//! `MGET`, see `sessions`); an API key one database statement (`api_keys::resolve`). Account
//! state is enforced here, once: a deactivated, disabled or expired account is refused, and a
//! suspended one (or a sub-account of a suspended parent) may read but not write (403
//! `ACCOUNT_WRITE_FORBIDDEN`, as the original's middleware). The HTTP extractor lives in
//! `api::extract`.

use super::actor::{Actor, Origin, UserActor, Who};
use super::credentials::Presented;
use super::roles::{AccountState, Blocked, Party, Role};
use super::sessions::{CheckError, Rejection};
use super::tokens::AccessClaims;
use super::users::permission_list;
use super::{Auth, api_keys};
use crate::domain::DomainError;

#[derive(Debug, Clone)]
pub enum Via {
    Session {
        session_token: Option<String>,
        jti: String,
        exp: u64,
    },
    ApiKey {
        key_id: i64,
    },
}

#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub permissions: Vec<String>,
    pub shop_id: Option<i64>,
    /// `None` for admins: every shop.
    pub shop_ids: Option<Vec<i64>>,
    pub state: AccountState,
    pub via: Via,
    /// Set when an admin acts as this user (`auth::clone`).
    pub clone: Option<CloneOf>,
}

/// The admin behind a clone token, and the clone's deadline.
#[derive(Debug, Clone)]
pub struct CloneOf {
    pub session_id: String,
    pub admin_id: i64,
    pub admin_username: String,
    /// Unix seconds.
    pub expires_at: u64,
}

/// The clone a token speaks for: `None` for ordinary tokens; an error for a clone token whose
/// deadline has passed (however long its `exp` is) or whose clone claims are incomplete.
fn clone_of(claims: &AccessClaims) -> Result<Option<CloneOf>, DomainError> {
    if claims.is_cloned != Some(true) {
        return Ok(None);
    }
    let (Some(session_id), Some(admin_id), Some(admin_username), Some(expires_at)) = (
        claims.clone_session_id.clone(),
        claims.original_user_id,
        claims.original_username.clone(),
        claims.clone_expires_at,
    ) else {
        return Err(unauthenticated(
            "INVALID_TOKEN",
            "The clone token is incomplete",
        ));
    };
    if super::tokens::now_s() >= expires_at {
        return Err(unauthenticated(
            "CLONE_EXPIRED",
            "The clone session has ended (30 minutes); log in again as yourself",
        ));
    }
    Ok(Some(CloneOf {
        session_id,
        admin_id,
        admin_username,
        expires_at,
    }))
}

fn unauthenticated(
    code: &'static str,
    message: impl Into<std::borrow::Cow<'static, str>>,
) -> DomainError {
    DomainError::unauthenticated(code, message)
}

impl CurrentUser {
    pub fn party(&self) -> Party<'_> {
        Party {
            id: self.id,
            username: &self.username,
            role: self.role,
            parent_user_id: self.state.parent_user_id,
        }
    }

    /// This user as the actor of a domain service.
    pub fn actor(&self, origin: &Origin) -> Actor {
        Actor {
            who: Who::User(UserActor {
                id: self.id,
                username: self.username.clone(),
                role: self.role,
                parent_user_id: self.state.parent_user_id,
                expires_at: self.state.expires_at,
                via_api_key: matches!(self.via, Via::ApiKey { .. }),
                shop_ids: self.shop_ids.clone(),
                cloned_by: self
                    .clone
                    .as_ref()
                    .map(|c| (c.admin_id, c.admin_username.clone())),
            }),
            origin: origin.clone(),
        }
    }

    pub fn require_role(&self, required: Role) -> Result<(), DomainError> {
        if Role::admits(required, self.role) {
            Ok(())
        } else {
            Err(DomainError::denied(
                "INSUFFICIENT_PERMISSIONS",
                "Your role may not do this",
            ))
        }
    }

    /// Refuse an account that may not act now: deactivated, disabled or expired always; a
    /// suspended one (or a sub-account of a suspended parent) when the request `writes`.
    pub fn admit(&self, writes: bool) -> Result<(), DomainError> {
        let now = chrono::Utc::now();
        if let Some(b) = self.state.login_blocked(now) {
            return Err(match b {
                Blocked::Inactive => unauthenticated("USER_INACTIVE", b.message()),
                Blocked::Suspended => DomainError::denied("ACCOUNT_WRITE_FORBIDDEN", b.message()),
                Blocked::Disabled | Blocked::Expired => {
                    DomainError::denied("ACCOUNT_DISABLED", b.message())
                }
            });
        }
        if writes && let Some(b) = self.state.write_blocked(now) {
            return Err(DomainError::denied("ACCOUNT_WRITE_FORBIDDEN", b.message()));
        }
        Ok(())
    }
}

/// Who the credentials belong to (account state not yet judged: see [`CurrentUser::admit`]).
pub async fn resolve(auth: &Auth, presented: &Presented) -> Result<CurrentUser, DomainError> {
    match presented {
        Presented::Nothing => Err(unauthenticated(
            "MISSING_AUTH_HEADER",
            "Log in first: send Authorization: Bearer <access token>",
        )),
        Presented::MalformedAuthorization => Err(unauthenticated(
            "INVALID_AUTH_FORMAT",
            "Use Authorization: Bearer <token>",
        )),
        Presented::Bearer(Err(e)) => Err(unauthenticated("INVALID_TOKEN", e.to_string())),
        Presented::Bearer(Ok(claims)) => from_claims(auth, claims).await,
        Presented::ApiKey(None) => Err(invalid_key()),
        Presented::ApiKey(Some(hash)) => from_api_key(auth, hash).await,
    }
}

fn invalid_key() -> DomainError {
    unauthenticated("INVALID_API_KEY", "The API key is not valid")
}

async fn from_claims(auth: &Auth, claims: &AccessClaims) -> Result<CurrentUser, DomainError> {
    let clone = clone_of(claims)?;
    let account = match auth.store.check(claims).await {
        Ok(s) => s,
        Err(CheckError::Rejected(Rejection::SessionEnded)) => {
            return Err(unauthenticated(
                "SESSION_EXPIRED",
                "This session has ended: you logged in elsewhere or logged out",
            ));
        }
        Err(CheckError::Rejected(Rejection::Revoked)) => {
            return Err(unauthenticated(
                "INVALID_TOKEN",
                "The token has been revoked",
            ));
        }
        Err(CheckError::Rejected(Rejection::NoSession)) => {
            return Err(unauthenticated(
                "INVALID_TOKEN",
                "The token belongs to no session; log in again",
            ));
        }
        Err(CheckError::Rejected(Rejection::UnknownUser)) => {
            return Err(unauthenticated(
                "INVALID_TOKEN",
                "The token's user no longer exists",
            ));
        }
        Err(CheckError::Db(e)) => return Err(e.into()),
    };
    Ok(CurrentUser {
        id: account.user_id,
        username: account.username.clone(),
        role: account.role,
        permissions: claims.permissions.clone(),
        shop_id: claims.shop_id,
        shop_ids: if account.role == Role::Admin {
            None
        } else {
            Some(claims.shop_ids.clone().unwrap_or_default())
        },
        state: account,
        via: Via::Session {
            session_token: claims.session_token.clone(),
            jti: claims.jti.clone(),
            exp: claims.exp,
        },
        clone,
    })
}

async fn from_api_key(auth: &Auth, hash: &str) -> Result<CurrentUser, DomainError> {
    let client = auth.db.get().await?;
    let owner = api_keys::resolve(&client, hash)
        .await?
        .ok_or_else(invalid_key)?;
    Ok(CurrentUser {
        id: owner.state.user_id,
        username: owner.state.username.clone(),
        role: owner.state.role,
        permissions: permission_list(&owner.permissions),
        shop_id: owner.shop_ids.as_ref().and_then(|s| s.first().copied()),
        shop_ids: owner.shop_ids,
        state: owner.state,
        via: Via::ApiKey {
            key_id: owner.key_id,
        },
        clone: None,
    })
}
