//! Operator commands that look at a running installation: `status` (and, as they land, `check`,
//! `backup`).

pub mod check;
pub mod status;
pub mod users;
