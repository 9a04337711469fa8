//! euraflow: the EuraFlow production server as one systemd appliance.
//! `DESIGN.md` is the map; each module's header says what it owns.
//!
//! Visibility: modules are `pub(crate)` unless the binaries (`src/main.rs`, `src/bin/`) or the
//! integration tests (`tests/it`) need them; the public surface is what those use: building and
//! starting the server (`startup`, `state`, `lifecycle`, `cli`, `exit`), configuration (`config`),
//! the data layer (`db`, `redis`), the job system (`jobs`), the TLS and token primitives the tests
//! forge inputs with (`http::tls`, `auth::{tokens,password,rate_limit}`), the backup command
//! (`ops::backup`), `health`, `systemd`, `realtime` (tests and other processes notify
//! websockets), `ozon` (the client and the fake Ozon that tests and `euraflow-dev fake-ozon`
//! run), and `credit` with `domain` (the ledger's `consume` and `refund`,
//! which features call inside their own transaction and the tests drive concurrently).
//! Everything else is private, so rustc reports dead code.

pub(crate) mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod credit;
pub mod db;
pub mod domain;
pub mod exchange_rates;
pub mod exit;
pub mod health;
pub mod http;
pub mod jobs;
pub mod lifecycle;
pub(crate) mod metrics;
pub mod ops;
pub(crate) mod outage;
pub mod ozon;
pub(crate) mod process;
pub(crate) mod queues;
pub mod realtime;
pub mod redis;
pub mod secrets;
pub(crate) mod serve;
pub(crate) mod settings;
pub mod startup;
pub mod state;
pub mod systemd;
pub(crate) mod telemetry;
pub mod tls_provider;
pub(crate) mod worker;
