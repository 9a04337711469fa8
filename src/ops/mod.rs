//! The bodies of the operator commands: `check` (the go-live checklist), `status`, `backup` and
//! `restore`, `migrate`, `config`, `secrets` (rotating the data key), and `user` (an adapter over `auth::accounts`). `cli` only
//! dispatches to them.

pub mod backup;
pub mod check;
pub mod config;
pub mod migrate;
pub mod secrets;
pub mod status;
pub mod users;
