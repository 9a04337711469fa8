//! Configuration: embedded defaults (the production guide's values) < the env file
//! (`/etc/euraflow/euraflow.env`) < the process environment < systemd credentials
//! (`$CREDENTIALS_DIRECTORY/<name>`) < `<KEY>_FILE`.
//!
//! Loading never stops at the first problem: every malformed value is reported at once, each
//! naming the key, where the value came from (file and line) and how to fix it.
//!
//! One file per step, in the order a value travels:
//! - `keys`: the table of every key (default, doc, secret or not), legacy and renamed names.
//! - `env_file`: the env-file syntax (systemd `EnvironmentFile=` compatible).
//! - `loader`: the layers, lowest first, each value kept as text with its `Source`.
//! - `value`: how one key's text parses (`ConfigValue` types: durations, sizes, networks, ...).
//! - `resolve`: every key read into the typed `Config`, collecting every malformed value.
//! - `validate`: the rules between values and those that differ in production.
//! - `sections`: the typed `Config` and its sections, what the rest of the program reads.
//! - `loaded`: what loading returns: sources, diagnostics, errors.
//! - `render`: `config show`, the env-file template and the operator guides' reference.
//! - `secret`: the redacting `Secret` type and owner-only secret files.
//!
//! This module is infrastructure: it imports nothing from `api`, `http` or `jobs` (the job queue
//! names it checks `EF__WORKER_QUEUES` against come from `crate::queues`).

mod env_file;
pub mod keys;
mod loaded;
mod loader;
mod render;
mod resolve;
mod retired;
mod secret;
mod sections;
mod validate;
pub mod value;

pub use loaded::{ConfigError, ConfigErrors, Diagnostic, Loaded, Setting, Severity, Source};
pub use loader::{
    DEFAULT_CONFIG_FILE, DEV_CONFIG_FILE, LoadOptions, PACKAGED_CREDENTIALS, current_username,
    load, load_with_problems, system_hostname,
};
pub use render::{
    OPERATOR_KEYS, display_value, render_markdown_reference, render_short_template, render_show,
    render_template,
};
pub use secret::{MIN_SECRET_LEN, Secret, generate_secret, write_private_file};
pub use sections::{
    BusinessConfig, Config, DbConfig, HttpConfig, LogConfig, PasswordHash, RedisConfig,
    SecurityConfig, TlsConfig, WebConfig, WorkerConfig, WsConfig,
};
pub use value::{
    ByteSize, ConfigValue, Dur, Environment, Hsts, Invalid, List, ListenAddr, LogFormat, LogLevel,
    Networks, QueueLimits, RateLimit, Timeout,
};

#[cfg(test)]
mod tests;
