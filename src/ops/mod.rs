//! Operator commands that look at or act on an installation: `status`, `backup` and `restore`
//! (and, as it lands, `check`).

pub mod backup;
pub mod check;
pub mod status;
pub mod users;
