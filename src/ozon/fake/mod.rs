//! A fake Ozon Seller API (issue 12 item 4): the endpoints of contract §5.2 over real HTTP, with
//! deterministic generated shops, Ozon's paging rules and batch limits, and knobs to make it
//! misbehave. Tests start it in-process on `127.0.0.1:0` ([`FakeOzon::start`]); developers run
//! it by hand with `euraflow-dev fake-ozon`.
//!
//! What Ozon does that the fake does too: `Client-Id` + `Api-Key` authentication (401 JSON
//! otherwise), errors as `{code, message, details}`, 400 for a `limit` outside 1..=1000 or an
//! oversized batch, `last_id`/`cursor` paging with an opaque cursor, `offset` paging with
//! `has_next`, filters by visibility, `last_changed_since`, processing time and status-change
//! time. What it does not: writes, other endpoints, exact Ozon error codes beyond the common ones.
//!
//! Data is generated per (shop, index) when asked for (`catalog`, `orders`), so 100 000
//! products per shop are cheap. Changes made through [`FakeHandle`] (status changes, new
//! postings and products, archiving) are dated "now", so incremental syncs see them.

mod catalog;
mod knobs;
mod orders;
pub mod push;
mod routes;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{SubsecRound, Utc};
use tokio_util::sync::CancellationToken;

pub use knobs::{CallRecord, Fault, FaultKind};

use crate::ozon::client::{Credentials, Endpoint, Visibility};
use catalog::Catalog;
use knobs::{CallLog, Knobs};
use orders::Orders;

/// Products per shop above which generated ids of neighbouring shops would collide.
pub const MAX_PRODUCTS_PER_SHOP: usize = 5_000_000;

#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub shops: usize,
    pub products: usize,
    pub postings: usize,
    /// Calls kept in full by the call log (counts are always kept); 0 keeps none.
    pub call_log_capacity: usize,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            shops: 2,
            products: 250,
            postings: 400,
            call_log_capacity: 10_000,
        }
    }
}

/// The credentials the fake accepts for one shop.
#[derive(Debug, Clone)]
pub struct FakeShop {
    pub index: usize,
    pub client_id: String,
    pub api_key: String,
}

impl FakeShop {
    pub fn credentials(&self) -> Credentials {
        Credentials::new(self.client_id.clone(), self.api_key.clone())
    }
}

pub(crate) struct Shop {
    pub(crate) id: FakeShop,
    pub(crate) knobs: Mutex<Knobs>,
    pub(crate) catalog: RwLock<Catalog>,
    pub(crate) orders: RwLock<Orders>,
}

pub(crate) struct FakeState {
    pub(crate) shops: Vec<Shop>,
    pub(crate) log: Mutex<CallLog>,
    pub(crate) stop: CancellationToken,
}

/// Locks here guard plain data; a panic elsewhere while holding one leaves it usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// The running fake. Dropping it stops the server too.
pub struct FakeOzon {
    addr: SocketAddr,
    handle: FakeHandle,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeOzon {
    /// Start on an ephemeral loopback port.
    pub async fn start(config: FakeConfig) -> std::io::Result<FakeOzon> {
        FakeOzon::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    pub async fn start_on(listen: SocketAddr, config: FakeConfig) -> std::io::Result<FakeOzon> {
        if config.products > MAX_PRODUCTS_PER_SHOP || config.postings > MAX_PRODUCTS_PER_SHOP {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("at most {MAX_PRODUCTS_PER_SHOP} products and postings per shop"),
            ));
        }
        let anchor = Utc::now().trunc_subsecs(0);
        let shops = (0..config.shops)
            .map(|i| Shop {
                id: FakeShop {
                    index: i,
                    client_id: (200_001 + i).to_string(),
                    api_key: api_key(i),
                },
                knobs: Mutex::new(Knobs::default()),
                catalog: RwLock::new(Catalog::new(i, anchor, config.products)),
                orders: RwLock::new(Orders::new(i, anchor, config.postings, config.products)),
            })
            .collect();
        let state = Arc::new(FakeState {
            shops,
            log: Mutex::new(CallLog::new(config.call_log_capacity)),
            stop: CancellationToken::new(),
        });
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let app = routes::router(state.clone());
        let stop = state.stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "the fake Ozon server stopped");
            }
        });
        Ok(FakeOzon {
            addr,
            handle: FakeHandle { state },
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What to configure as the client's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn handle(&self) -> FakeHandle {
        self.handle.clone()
    }

    /// Stop accepting, cut delayed answers short, wait for the server task.
    pub async fn shutdown(mut self) {
        self.handle.state.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeOzon {
    fn drop(&mut self) {
        self.handle.state.stop.cancel();
    }
}

/// A stable, random-looking key per shop index, so a developer's config survives restarts.
fn api_key(shop: usize) -> String {
    let a = catalog::mix(shop, 0, 0xA11);
    let b = catalog::mix(shop, 1, 0xA11);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

/// Change knobs and data, read the call log, at run time. Shop arguments are indices; an index
/// out of range changes nothing (and the methods returning `bool` say `false`).
#[derive(Clone)]
pub struct FakeHandle {
    state: Arc<FakeState>,
}

impl std::fmt::Debug for FakeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHandle")
            .field("shops", &self.state.shops.len())
            .finish()
    }
}

impl FakeHandle {
    pub fn shops(&self) -> Vec<FakeShop> {
        self.state.shops.iter().map(|s| s.id.clone()).collect()
    }

    /// Credentials of shop `shop` (empty ones, which the fake refuses, when out of range).
    pub fn credentials(&self, shop: usize) -> Credentials {
        self.shop(shop)
            .map(|s| s.id.credentials())
            .unwrap_or_else(|| Credentials::new("", ""))
    }

    fn shop(&self, shop: usize) -> Option<&Shop> {
        self.state.shops.get(shop)
    }

    fn knobs(&self, shop: usize, f: impl FnOnce(&mut Knobs)) -> bool {
        self.shop(shop).map(|s| f(&mut lock(&s.knobs))).is_some()
    }

    /// Queue a fault for the shop's next calls.
    pub fn inject(&self, shop: usize, fault: Fault) -> bool {
        self.knobs(shop, |k| k.faults.push(fault))
    }

    pub fn clear_faults(&self, shop: usize) -> bool {
        self.knobs(shop, |k| k.faults.clear())
    }

    /// Answer every call of the shop with 401 or 403 (`None` restores normal service).
    pub fn set_auth_failure(&self, shop: usize, status: Option<u16>) -> bool {
        self.knobs(shop, |k| k.auth_failure = status)
    }

    /// Wait this long before each answer to the shop.
    pub fn set_delay(&self, shop: usize, delay: Duration) -> bool {
        self.knobs(shop, |k| k.delay = delay)
    }

    /// The most recent calls (up to the configured capacity), oldest first.
    pub fn calls(&self) -> Vec<CallRecord> {
        lock(&self.state.log).recent()
    }

    /// Calls of the shop to `endpoint` since the start (or the last `clear_calls`), exact.
    pub fn call_count(&self, shop: usize, endpoint: Endpoint) -> u64 {
        self.shop(shop).map_or(0, |s| {
            lock(&self.state.log).count(&s.id.client_id, endpoint.path())
        })
    }

    pub fn clear_calls(&self) {
        lock(&self.state.log).clear();
    }

    pub fn product_count(&self, shop: usize) -> usize {
        self.shop(shop).map_or(0, |s| read(&s.catalog).count())
    }

    pub fn posting_count(&self, shop: usize) -> usize {
        self.shop(shop).map_or(0, |s| read(&s.orders).count())
    }

    /// Every offer id of the shop that a listing with `visibility` returns, in order.
    pub fn offer_ids(&self, shop: usize, visibility: Visibility) -> Vec<String> {
        let Some(s) = self.shop(shop) else {
            return Vec::new();
        };
        let c = read(&s.catalog);
        c.page(None, visibility, None, None, usize::MAX)
            .into_iter()
            .map(|i| catalog::offer_id(shop, i))
            .collect()
    }

    /// Offer ids of the shop's products that have validation errors.
    pub fn offer_ids_with_errors(&self, shop: usize) -> Vec<String> {
        let Some(s) = self.shop(shop) else {
            return Vec::new();
        };
        let c = read(&s.catalog);
        (0..c.count())
            .filter(|&i| c.has_errors(i))
            .map(|i| catalog::offer_id(shop, i))
            .collect()
    }

    /// Every posting number of the shop, oldest first.
    pub fn posting_numbers(&self, shop: usize) -> Vec<String> {
        self.shop(shop).map_or_else(Vec::new, |s| {
            let o = read(&s.orders);
            (0..o.count()).map(|i| o.posting_number(i)).collect()
        })
    }

    pub fn posting_status(&self, shop: usize, posting_number: &str) -> Option<String> {
        let s = self.shop(shop)?;
        let o = read(&s.orders);
        o.by_posting_number(posting_number)
            .map(|i| o.status(i).to_owned())
    }

    /// Change a posting's status (dated now: `last_changed_status_date` sees it).
    pub fn set_posting_status(&self, shop: usize, posting_number: &str, status: &str) -> bool {
        let Some(s) = self.shop(shop) else {
            return false;
        };
        let mut o = write(&s.orders);
        match o.by_posting_number(posting_number) {
            Some(i) => {
                o.set_status(i, status, Utc::now());
                true
            }
            None => false,
        }
    }

    /// The posting as `/v3/posting/fbs/get` returns it (without analytics and financial data).
    pub fn posting_json(&self, shop: usize, posting_number: &str) -> Option<serde_json::Value> {
        let s = self.shop(shop)?;
        let o = read(&s.orders);
        o.by_posting_number(posting_number)
            .map(|i| o.posting(i, false, false))
    }

    /// New postings processed now (status `awaiting_packaging`); their numbers.
    pub fn add_postings(&self, shop: usize, n: usize) -> Vec<String> {
        self.shop(shop)
            .map_or_else(Vec::new, |s| write(&s.orders).add(n, Utc::now()))
    }

    /// New visible products changed now; their offer ids.
    pub fn add_products(&self, shop: usize, n: usize) -> Vec<String> {
        self.shop(shop)
            .map_or_else(Vec::new, |s| write(&s.catalog).add(n, Utc::now()))
    }

    /// Archive a product (dated now: `last_changed_since` sees it).
    pub fn archive_product(&self, shop: usize, offer_id: &str) -> bool {
        let Some(s) = self.shop(shop) else {
            return false;
        };
        let mut c = write(&s.catalog);
        match c.by_offer_id(offer_id) {
            Some(i) => {
                c.archive(i, Utc::now());
                true
            }
            None => false,
        }
    }
}
