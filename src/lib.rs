//! euraflow: the EuraFlow production server as one systemd appliance.
//! `DESIGN.md` is the map; each module's header says what it owns.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod exit;
pub mod health;
pub mod http;
pub mod jobs;
pub mod lifecycle;
pub mod metrics;
pub mod ops;
pub mod outage;
pub mod ozon;
pub mod process;
pub mod queues;
pub mod redis;
pub mod secrets;
pub mod serve;
pub mod settings;
pub mod startup;
pub mod state;
pub mod systemd;
pub mod telemetry;
pub mod tls_provider;
pub mod worker;
