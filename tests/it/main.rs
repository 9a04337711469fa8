//! The integration tests, as one test binary (`it`): each file here is a module, and the harness
//! in `common/` is compiled once for all of them. Sixteen binaries each compiled `common` again and
//! linked the whole crate with its dependencies, which made building the tests take most of a
//! test run on a small machine.
//!
//! A new integration test goes into a module here (`mod <name>;` below), not into a new
//! `tests/<name>.rs`, which would be a binary of its own again. Run one module's tests with
//! `cargo nextest run -E 'test(/^identity::/)'` or `cargo test --test it identity::`.

// Tests may unwrap, expect and panic: a failed assumption is the failure being reported (the
// crate's lint table denies them elsewhere).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod access_log;
mod admin_cli;
mod alerts;
mod auth_cache;
mod browser;
mod captcha;
mod check;
mod clone_identity;
mod credit;
mod data_layer;
mod demo;
mod docs;
mod exchange_rates;
mod fake_ozon;
mod hardening_backup;
mod hardening_config;
mod hardening_csp;
mod hardening_http;
mod hardening_input;
mod hardening_login;
mod hardening_sessions;
mod http_server;
mod identity;
mod jobs;
mod jobs_api;
mod migrations;
mod ozon_client;
mod ozon_postings;
mod ozon_products;
mod ozon_shops;
mod ozon_webhook;
mod permissions;
mod process;
mod realtime;
mod realtime_bench;
mod realtime_h2;
mod request_span;
mod roles;
mod round_trips;
mod scheduler;
mod static_files;
mod worker_process;
