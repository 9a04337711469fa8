//! Exit codes, distinct per kind of failure so systemd units and scripts can tell them apart.

use std::process::ExitCode;

/// Anything else that stopped the command.
pub const FAILURE: u8 = 1;
/// `EX_DATAERR`: a migration failed, or an applied one was edited. Never a connection problem.
pub const MIGRATION: u8 = 65;
/// `EX_UNAVAILABLE`: the database could not be reached.
pub const UNAVAILABLE: u8 = 69;
/// `EX_CONFIG` (sysexits.h): the configuration is invalid; restarting will not help. The unit
/// lists it in `RestartPreventExitStatus=`.
pub const CONFIG: u8 = 78;

pub fn code(c: u8) -> ExitCode {
    ExitCode::from(c)
}
