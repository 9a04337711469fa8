//! A fake exchangerate-api.com v6 over real HTTP, for tests and the demo mode: `GET
//! /v6/<key>/latest/<FROM>` answers the provider's JSON shape for the one key it accepts
//! (`{"result":"error","error-type":"invalid-key"}` with 403 otherwise), and a [`FakeMode`] makes
//! it misbehave (HTTP errors, provider errors, garbage, absurd rates, slowness).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// How the fake answers.
#[derive(Debug, Clone, PartialEq)]
pub enum FakeMode {
    /// The configured rates.
    Normal,
    /// This HTTP status with an empty body.
    Status(u16),
    /// 200 with `{"result":"error","error-type":<this>}`.
    ProviderError(String),
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with every rate replaced by this JSON value (e.g. `-1`, `0`, `"12"`).
    Rate(serde_json::Value),
    /// The normal answer, after this delay.
    Slow(Duration),
}

struct Inner {
    api_key: String,
    /// base → (currency → rate)
    rates: BTreeMap<String, BTreeMap<String, f64>>,
    mode: FakeMode,
    calls: u64,
}

/// Change the fake while it runs.
#[derive(Clone)]
pub struct FakeRatesHandle {
    inner: Arc<Mutex<Inner>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for FakeRatesHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRatesHandle").finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeRatesHandle {
    /// Set the rate from `from` to `to` (and, unless set separately, nothing else changes).
    pub fn set_rate(&self, from: &str, to: &str, rate: f64) {
        let mut inner = lock(&self.inner);
        inner
            .rates
            .entry(from.to_owned())
            .or_default()
            .insert(to.to_owned(), rate);
    }

    /// Set CNY→RUB to `rate` and RUB→CNY to its inverse.
    pub fn set_cny_rub(&self, rate: f64) {
        self.set_rate("CNY", "RUB", rate);
        self.set_rate("RUB", "CNY", 1.0 / rate);
    }

    pub fn set_mode(&self, mode: FakeMode) {
        lock(&self.inner).mode = mode;
    }

    /// How many rate requests arrived (any key, any answer).
    pub fn calls(&self) -> u64 {
        lock(&self.inner).calls
    }
}

/// The running fake; dropping it stops it.
pub struct FakeRates {
    addr: SocketAddr,
    handle: FakeRatesHandle,
}

impl FakeRates {
    /// Start on an ephemeral loopback port, accepting `api_key`, with CNY→RUB 12.5 (and back).
    pub async fn start(api_key: &str) -> std::io::Result<FakeRates> {
        let handle = FakeRatesHandle {
            inner: Arc::new(Mutex::new(Inner {
                api_key: api_key.to_owned(),
                rates: BTreeMap::new(),
                mode: FakeMode::Normal,
                calls: 0,
            })),
            stop: CancellationToken::new(),
        };
        handle.set_cny_rub(12.5);
        handle.set_rate("CNY", "USD", 0.14);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/v6/{key}/latest/{from}", get(latest))
            .with_state(handle.clone());
        let stop = handle.stop.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::warn!(error = %e, "the fake exchange-rate provider stopped");
            }
        });
        Ok(FakeRates { addr, handle })
    }

    /// What to configure as `EF__EXCHANGE_RATE_API_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn handle(&self) -> FakeRatesHandle {
        self.handle.clone()
    }
}

impl Drop for FakeRates {
    fn drop(&mut self) {
        self.handle.stop.cancel();
    }
}

async fn latest(
    State(h): State<FakeRatesHandle>,
    Path((key, from)): Path<(String, String)>,
) -> Response {
    let (mode, known_key, rates) = {
        let mut inner = lock(&h.inner);
        inner.calls += 1;
        let known: bool =
            subtle::ConstantTimeEq::ct_eq(key.as_bytes(), inner.api_key.as_bytes()).into();
        (inner.mode.clone(), known, inner.rates.get(&from).cloned())
    };
    if !known_key {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"result": "error", "error-type": "invalid-key"})),
        )
            .into_response();
    }
    let rates = match mode {
        FakeMode::Normal => rates,
        FakeMode::Slow(d) => {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = h.stop.cancelled() => {}
            }
            rates
        }
        FakeMode::Status(s) => {
            return StatusCode::from_u16(s)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response();
        }
        FakeMode::ProviderError(e) => {
            return axum::Json(json!({"result": "error", "error-type": e})).into_response();
        }
        FakeMode::Garbage => return "<html>maintenance</html>".into_response(),
        FakeMode::Rate(v) => {
            let mut out = serde_json::Map::new();
            for to in rates.unwrap_or_default().keys() {
                out.insert(to.clone(), v.clone());
            }
            return axum::Json(json!({"result": "success", "base_code": from,
                                     "conversion_rates": out}))
            .into_response();
        }
    };
    let Some(rates) = rates else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"result": "error", "error-type": "unsupported-code"})),
        )
            .into_response();
    };
    let mut out = serde_json::Map::new();
    out.insert(from.clone(), json!(1));
    for (to, r) in rates {
        out.insert(to, json!(r));
    }
    axum::Json(json!({
        "result": "success",
        "base_code": from,
        "time_last_update_unix": chrono::Utc::now().timestamp(),
        "conversion_rates": out,
    }))
    .into_response()
}
