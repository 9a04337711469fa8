//! Roles and the original's access rules, in one place.
//!
//! - `admin` manages everything but itself; only the user named `admin` may reset another admin's
//!   password (the original's rule).
//! - `main_account` manages its own children (`parent_user_id`), within its level's quota.
//! - `sub_account` and `shipper` manage only themselves.
//! - A sub-account inherits its parent's account state (disabled, suspended, expired); a shipper
//!   does not. Admins are never blocked by account state.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    MainAccount,
    SubAccount,
    Shipper,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "main_account" => Some(Role::MainAccount),
            "sub_account" => Some(Role::SubAccount),
            "shipper" => Some(Role::Shipper),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::MainAccount => "main_account",
            Role::SubAccount => "sub_account",
            Role::Shipper => "shipper",
        }
    }

    /// The original's `require_role(required)`: admin passes everything; `sub_account` level
    /// admits sub_account, main_account, admin and shipper; `main_account` admits main_account and
    /// admin; `shipper` admits shipper and admin.
    pub fn admits(required: Role, actual: Role) -> bool {
        match required {
            Role::Admin => actual == Role::Admin,
            Role::MainAccount => matches!(actual, Role::MainAccount | Role::Admin),
            Role::SubAccount => true,
            Role::Shipper => matches!(actual, Role::Shipper | Role::Admin),
        }
    }
}

/// `users.account_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Suspended,
    Disabled,
}

impl AccountStatus {
    pub fn parse(s: &str) -> Option<AccountStatus> {
        match s {
            "active" => Some(AccountStatus::Active),
            "suspended" => Some(AccountStatus::Suspended),
            "disabled" => Some(AccountStatus::Disabled),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Disabled => "disabled",
        }
    }
}

/// What decides whether a user may log in and write: their own state and, for sub-accounts, the
/// parent's. Cached per user so that checking it costs no database query per request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    pub user_id: i64,
    pub username: String,
    pub role: Role,
    pub is_active: bool,
    pub status: AccountStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub parent_user_id: Option<i64>,
    /// The parent's (is_active, status, expires_at), when the role inherits it.
    pub inherited: Option<(bool, AccountStatus, Option<DateTime<Utc>>)>,
}

/// Why an account may not do something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    Inactive,
    Disabled,
    Suspended,
    Expired,
}

impl Blocked {
    pub fn message(self) -> &'static str {
        match self {
            Blocked::Inactive => "This account is deactivated",
            Blocked::Disabled => "This account is disabled",
            Blocked::Suspended => "This account is suspended: it can read but not change anything",
            Blocked::Expired => "This account has expired",
        }
    }
}

impl AccountState {
    fn effective(&self) -> (bool, AccountStatus, Option<DateTime<Utc>>) {
        let own = (self.is_active, self.status, self.expires_at);
        match (self.role, self.inherited) {
            (Role::SubAccount, Some(parent)) => {
                // The stricter of the two.
                let status = match (own.1, parent.1) {
                    (AccountStatus::Disabled, _) | (_, AccountStatus::Disabled) => {
                        AccountStatus::Disabled
                    }
                    (AccountStatus::Suspended, _) | (_, AccountStatus::Suspended) => {
                        AccountStatus::Suspended
                    }
                    _ => AccountStatus::Active,
                };
                let expires = match (own.2, parent.2) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                (own.0 && parent.0, status, expires)
            }
            _ => own,
        }
    }

    /// Login is refused when inactive, disabled or expired (suspended users may log in to read).
    pub fn login_blocked(&self, now: DateTime<Utc>) -> Option<Blocked> {
        if self.role == Role::Admin {
            return (!self.is_active).then_some(Blocked::Inactive);
        }
        let (active, status, expires) = self.effective();
        if !active {
            Some(Blocked::Inactive)
        } else if status == AccountStatus::Disabled {
            Some(Blocked::Disabled)
        } else if expires.is_some_and(|e| e <= now) {
            Some(Blocked::Expired)
        } else {
            None
        }
    }

    /// Writes additionally need an active (not suspended) account.
    pub fn write_blocked(&self, now: DateTime<Utc>) -> Option<Blocked> {
        if let Some(b) = self.login_blocked(now) {
            return Some(b);
        }
        if self.role == Role::Admin {
            return None;
        }
        (self.effective().1 == AccountStatus::Suspended).then_some(Blocked::Suspended)
    }
}

/// The parts of a user the management rules look at.
#[derive(Debug, Clone, Copy)]
pub struct Party<'a> {
    pub id: i64,
    pub username: &'a str,
    pub role: Role,
    pub parent_user_id: Option<i64>,
}

/// Rule violations, with the original's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    InsufficientPermissions,
    InvalidRole,
    CannotResetAdminPassword,
    NotSelf,
}

impl Denied {
    pub fn code(self) -> &'static str {
        match self {
            Denied::InsufficientPermissions | Denied::NotSelf => "INSUFFICIENT_PERMISSIONS",
            Denied::InvalidRole => "INVALID_ROLE",
            Denied::CannotResetAdminPassword => "CANNOT_RESET_ADMIN_PASSWORD",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Denied::InsufficientPermissions => "You may not manage this user",
            Denied::InvalidRole => "You may not create or assign this role",
            Denied::CannotResetAdminPassword => {
                "Only the user named admin may reset another admin's password"
            }
            Denied::NotSelf => "Use the /auth/me routes to change your own account",
        }
    }
}

/// Who may create a user of `role`.
pub fn may_create(actor: Party<'_>, role: Role) -> Result<(), Denied> {
    match (actor.role, role) {
        (Role::Admin, Role::MainAccount | Role::SubAccount | Role::Shipper) => Ok(()),
        (Role::MainAccount, Role::SubAccount | Role::Shipper) => Ok(()),
        (Role::Admin | Role::MainAccount, _) => Err(Denied::InvalidRole),
        _ => Err(Denied::InsufficientPermissions),
    }
}

/// Who may edit or delete `target`: an admin (not themself), or the target's parent.
pub fn may_manage(actor: Party<'_>, target: Party<'_>) -> Result<(), Denied> {
    if actor.id == target.id {
        return Err(Denied::NotSelf);
    }
    match actor.role {
        Role::Admin => Ok(()),
        Role::MainAccount if target.parent_user_id == Some(actor.id) => Ok(()),
        _ => Err(Denied::InsufficientPermissions),
    }
}

/// Who may give `target` the role `role` in an update.
pub fn may_assign_role(actor: Party<'_>, target: Party<'_>, role: Role) -> Result<(), Denied> {
    may_manage(actor, target)?;
    match actor.role {
        Role::Admin => Ok(()),
        Role::MainAccount if matches!(role, Role::SubAccount | Role::Shipper) => Ok(()),
        _ => Err(Denied::InvalidRole),
    }
}

/// `PATCH /auth/users/{id}/password`: admins only; the user named `admin` resets anyone, other
/// admins only their children and never another admin.
pub fn may_reset_password(actor: Party<'_>, target: Party<'_>) -> Result<(), Denied> {
    if actor.role != Role::Admin {
        return Err(Denied::InsufficientPermissions);
    }
    if actor.id == target.id {
        return Err(Denied::NotSelf);
    }
    if actor.username == "admin" {
        return Ok(());
    }
    if target.role == Role::Admin {
        return Err(Denied::CannotResetAdminPassword);
    }
    if target.parent_user_id == Some(actor.id) {
        Ok(())
    } else {
        Err(Denied::InsufficientPermissions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn p(id: i64, name: &'static str, role: Role, parent: Option<i64>) -> Party<'static> {
        Party {
            id,
            username: name,
            role,
            parent_user_id: parent,
        }
    }

    #[test]
    fn hierarchy_of_require_role() {
        assert!(Role::admits(Role::SubAccount, Role::Shipper));
        assert!(Role::admits(Role::SubAccount, Role::MainAccount));
        assert!(!Role::admits(Role::MainAccount, Role::SubAccount));
        assert!(Role::admits(Role::Shipper, Role::Admin));
        assert!(!Role::admits(Role::Admin, Role::MainAccount));
    }

    #[test]
    fn creation_rules() {
        let admin = p(1, "admin", Role::Admin, None);
        let main = p(2, "m", Role::MainAccount, None);
        let sub = p(3, "s", Role::SubAccount, Some(2));
        assert!(may_create(admin, Role::MainAccount).is_ok());
        assert_eq!(may_create(admin, Role::Admin), Err(Denied::InvalidRole));
        assert!(may_create(main, Role::Shipper).is_ok());
        assert_eq!(
            may_create(main, Role::MainAccount),
            Err(Denied::InvalidRole)
        );
        assert_eq!(
            may_create(sub, Role::SubAccount),
            Err(Denied::InsufficientPermissions)
        );
    }

    #[test]
    fn management_and_password_rules() {
        let root = p(1, "admin", Role::Admin, None);
        let admin2 = p(9, "ops", Role::Admin, None);
        let main = p(2, "m", Role::MainAccount, None);
        let child = p(3, "c", Role::SubAccount, Some(2));
        let other_child = p(4, "o", Role::SubAccount, Some(7));
        assert!(may_manage(main, child).is_ok());
        assert!(may_manage(main, other_child).is_err());
        assert_eq!(may_manage(root, root), Err(Denied::NotSelf));
        assert!(may_reset_password(root, admin2).is_ok());
        assert_eq!(
            may_reset_password(admin2, root),
            Err(Denied::CannotResetAdminPassword)
        );
        assert_eq!(
            may_reset_password(admin2, child),
            Err(Denied::InsufficientPermissions)
        );
        assert_eq!(
            may_reset_password(main, child),
            Err(Denied::InsufficientPermissions)
        );
        assert_eq!(
            may_assign_role(main, child, Role::MainAccount),
            Err(Denied::InvalidRole)
        );
        assert!(may_assign_role(root, child, Role::Admin).is_ok());
    }

    #[test]
    fn sub_accounts_inherit_the_parents_state() {
        let now = Utc::now();
        let mut s = AccountState {
            user_id: 3,
            username: "c".into(),
            role: Role::SubAccount,
            is_active: true,
            status: AccountStatus::Active,
            expires_at: None,
            parent_user_id: Some(2),
            inherited: Some((true, AccountStatus::Suspended, None)),
        };
        assert_eq!(s.login_blocked(now), None);
        assert_eq!(s.write_blocked(now), Some(Blocked::Suspended));
        s.inherited = Some((true, AccountStatus::Active, Some(now - Duration::hours(1))));
        assert_eq!(s.login_blocked(now), Some(Blocked::Expired));
        s.role = Role::Shipper; // shippers do not inherit
        assert_eq!(s.login_blocked(now), None);
        s.role = Role::Admin;
        s.status = AccountStatus::Disabled;
        assert_eq!(s.write_blocked(now), None);
    }
}
