//! The bodies of the operator commands: `check` (the go-live checklist), `status`, `backup` and
//! `restore`, `migrate`, `config`, `secrets` (rotating the data key), and `user` (an adapter over `auth::accounts`). `cli` only
//! dispatches to them.

pub mod backup;
pub(crate) mod check;
pub(crate) mod config;
pub(crate) mod manual;
pub(crate) mod migrate;
pub(crate) mod secrets;
pub(crate) mod status;
pub(crate) mod users;
