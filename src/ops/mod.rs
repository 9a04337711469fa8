//! The bodies of the operator commands: `check` (the go-live checklist), `status`, `backup` and
//! `restore`, `migrate`, `config`, and `user` (an adapter over `auth::accounts`). `cli` only
//! dispatches to them.

pub mod backup;
pub mod check;
pub mod config;
pub mod migrate;
pub mod status;
pub mod users;
