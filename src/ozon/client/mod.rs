//! The Ozon Seller API client (issue 12 item 3, contract §5).
//!
//! One [`OzonClient`] per process: it owns the HTTP connection pool, the settings, the shared
//! rate budget and the metrics. [`OzonClient::shop`] binds a shop's credentials and gives a cheap
//! [`ShopClient`] with one typed method per endpoint (`products`, `postings`, `warehouses`) and
//! pagers that hold one page at a time (`paging`).
//!
//! Every call is `POST <base_url><path>` with a JSON body and the headers `Client-Id`, `Api-Key`,
//! `Content-Type: application/json` and a fresh `X-Request-Id`. What happens to the answer
//! (`transport`): 2xx is parsed into the typed answer (else `BadResponse`); 429 waits for
//! `Retry-After` and retries; 5xx, timeouts and network errors retry with exponential backoff and
//! jitter; 401/403, 404 and other 4xx fail at once. Our calls only read, so retrying them is safe.
//!
//! The Api-Key leaves its [`Secret`] only into the request header (marked sensitive) and is never
//! logged; each attempt is logged at debug with endpoint, status, latency and request id.

mod de;
mod endpoint;
mod error;
mod metrics;
mod paging;
mod postings;
mod prices_stocks;
mod products;
mod rate;
mod transport;
mod warehouses;

use std::sync::Arc;
use std::time::Duration;

pub use de::{Money, format_time, parse_time};
pub use endpoint::{
    Endpoint, FBS_STOCKS_MAX_SKUS, FILTER_MAX_IDS, MAX_PAGE_LIMIT, PRODUCT_INFO_MAX_IDS,
};
pub use error::OzonError;
pub use metrics::OzonMetrics;
pub use paging::{CursorEndpoint, CursorPager, Page, PostingPager};
pub use postings::*;
pub use prices_stocks::*;
pub use products::*;
pub use rate::RateBudget;
pub use warehouses::*;

use crate::config::Secret;
use crate::redis::Redis;

/// Ozon's production API.
pub const DEFAULT_BASE_URL: &str = "https://api-seller.ozon.ru";

/// How the client talks to Ozon. Plain values; the configuration layer fills them from keys.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Scheme, host and optional path prefix, without a trailing slash needed
    /// (`https://api-seller.ozon.ru`; a fake's `http://127.0.0.1:PORT` in tests).
    pub base_url: String,
    /// Whole request, from sending to the last byte of the answer.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Retries after the first attempt, for 429, 5xx and network errors together.
    pub max_retries: u32,
    /// Backoff before retry n is `min(cap, base·2ⁿ)`, of which a random half is jitter.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Ozon's `Retry-After` is honoured up to this long (and 60 s is assumed when it is absent).
    pub max_retry_after: Duration,
    /// Requests per second per shop, across every process (Ozon documents 50 per resource class;
    /// one budget for all classes keeps us below each of them).
    pub rate_per_shop: u32,
    /// Calls a shop may make at once above the steady rate.
    pub rate_burst: u32,
    /// Answers larger than this fail as `BadResponse` instead of exhausting memory.
    pub max_response_bytes: usize,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            base_url: DEFAULT_BASE_URL.to_owned(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_retries: 5,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
            rate_per_shop: 50,
            rate_burst: 5,
            max_response_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A shop's Seller API credentials. `Debug` shows the Client-Id and hides the key.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub client_id: String,
    pub api_key: Secret,
}

impl Credentials {
    pub fn new(client_id: impl Into<String>, api_key: impl Into<String>) -> Self {
        Credentials {
            client_id: client_id.into(),
            api_key: Secret::new(api_key),
        }
    }
}

/// The process's Ozon client: clone it freely (one pool, one budget, one set of metrics).
#[derive(Clone, Debug)]
pub struct OzonClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base_url: String,
    settings: ClientSettings,
    budget: RateBudget,
    metrics: OzonMetrics,
}

impl OzonClient {
    /// Build the client. `redis` shares the rate budget between processes (`None`: this
    /// process only). Fails only on settings that can never work (an invalid base URL).
    pub fn new(
        settings: ClientSettings,
        redis: Option<Arc<Redis>>,
        metrics: OzonMetrics,
    ) -> anyhow::Result<Self> {
        let base_url = settings.base_url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base_url)
            .map_err(|e| anyhow::anyhow!("the Ozon API base URL {base_url:?} is invalid: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            anyhow::bail!("the Ozon API base URL {base_url:?} must be http(s)://host[:port]");
        }
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            // See `transport`: a followed redirect would carry the Api-Key to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("euraflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("building the Ozon HTTP client: {e}"))?;
        let budget = RateBudget::new(redis, settings.rate_per_shop, settings.rate_burst);
        Ok(OzonClient {
            inner: Arc::new(Inner {
                http,
                base_url,
                settings,
                budget,
                metrics,
            }),
        })
    }

    /// The API for one shop.
    pub fn shop(&self, credentials: Credentials) -> ShopClient {
        ShopClient {
            client: self.clone(),
            credentials: Arc::new(credentials),
        }
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.inner.settings
    }

    pub fn metrics(&self) -> &OzonMetrics {
        &self.inner.metrics
    }
}

/// One shop's view of the API; cheap to clone, safe to use from many tasks at once.
#[derive(Clone, Debug)]
pub struct ShopClient {
    client: OzonClient,
    credentials: Arc<Credentials>,
}

impl ShopClient {
    pub fn client_id(&self) -> &str {
        &self.credentials.client_id
    }

    /// Check the credentials (contract P0): the shop's product count, or why Ozon refused.
    pub async fn test_connection(&self) -> Result<i64, OzonError> {
        let request = ProductListRequest {
            filter: ProductListFilter::default(),
            last_id: String::new(),
            limit: 1,
        };
        Ok(self.product_list(&request).await?.total)
    }

    /// Any endpoint with caller-chosen request and answer types, through the same transport
    /// (budget, retries, metrics). The typed methods are thin wrappers around this.
    pub async fn call<Req, Resp>(&self, endpoint: Endpoint, body: &Req) -> Result<Resp, OzonError>
    where
        Req: serde::Serialize + ?Sized,
        Resp: serde::de::DeserializeOwned,
    {
        transport::call(self, endpoint, body).await
    }
}
