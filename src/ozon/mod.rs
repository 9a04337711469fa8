//! The sellers' business on Ozon (DESIGN.md §3 `src/ozon/`): domain services in the shape of
//! `auth::accounts` (a `Work` or a client, an `Actor`, rules, audit, `DomainError`), their HTTP
//! adapters in `api::ozon`, their jobs registered with `jobs`.
//!
//! - `client`: the Ozon Seller API client every Ozon job and route goes through — typed requests
//!   and answers, typed errors, retries, one shared rate budget per shop.
//! - `fake`: a fake Ozon Seller API over real HTTP, for tests, the demo mode and by hand
//!   (`euraflow-dev fake-ozon`). It lives in the library so integration tests start it in-process.
//! - `tenancy`: which shops an actor may see and change — read from the database on every
//!   request, never from a token's claims.
//! - `shops`: connecting a shop (its Client-Id and encrypted Api-Key), editing, deleting, testing
//!   the connection.
//! - `product_sync`: the product mirror's sync jobs (full, incremental, the hourly pull).
//! - `products`: the product page's reads (list, statistics, sync errors) and sync requests.
//! - `posting_mirror`: Ozon posting objects into `ozon_postings` (products, packages,
//!   `operation_status`, sales counters), shared by every writer of postings.
//! - `posting_sync`: the posting mirror's sync jobs (incremental, full, the hourly pull, one posting).
//! - `webhook`: Ozon's push notifications — per-shop secret URLs, the receiver, the push job
//!   that re-reads the posting, the admin push log.
//! - `posting_events`: the realtime messages of new and changed postings.
//! - `postings`: the order page's reads (list with tabs and counters, detail) and sync requests.
//! - `overview`: the overview page's statistics and daily series.
//! - `global_settings`: the Ozon pages' global settings (time zone, image CDN, ...).
//! - `tasks`: the sync task protocol of the web app (`task_id`, progress) over the job queue.

pub mod client;
pub(crate) mod demo;
pub mod fake;
pub(crate) mod global_settings;
pub(crate) mod overview;
pub(crate) mod posting_events;
pub(crate) mod posting_mirror;
pub(crate) mod posting_sync;
pub(crate) mod postings;
pub(crate) mod product_sync;
pub(crate) mod products;
pub(crate) mod shops;
pub(crate) mod tasks;
pub(crate) mod tenancy;
pub(crate) mod webhook;
pub(crate) mod webhook_log;

use std::sync::Arc;

use client::{ClientSettings, Credentials, OzonClient, OzonMetrics, ShopClient};

use crate::config::Config;
use crate::domain::DomainError;
use crate::redis::Redis;
use crate::secrets::{KeyRing, SecretsError};

/// What the Ozon services need, built once per process: the API client and the data key ring.
pub struct Ozon {
    client: OzonClient,
    keys: Result<KeyRing, SecretsError>,
}

impl std::fmt::Debug for Ozon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ozon")
            .field("base_url", &self.client.settings().base_url)
            .field("keys", &self.keys)
            .finish()
    }
}

impl Ozon {
    pub fn new(config: &Config, redis: Arc<Redis>, metrics: OzonMetrics) -> anyhow::Result<Self> {
        let b = &config.business;
        let settings = ClientSettings {
            base_url: b.ozon_api_base_url.clone(),
            timeout: b.ozon_timeout,
            rate_per_shop: b.ozon_rate_limit,
            ..ClientSettings::default()
        };
        let client = OzonClient::new(settings, Some(redis), metrics)?;
        let keys = KeyRing::from_config(&config.security.data_key)
            .and_then(|k| k.ok_or(SecretsError::NoKey));
        Ok(Ozon { client, keys })
    }

    pub fn client(&self) -> &OzonClient {
        &self.client
    }

    /// The data key ring, or why stored credentials cannot be used.
    pub fn keys(&self) -> Result<&KeyRing, DomainError> {
        self.keys.as_ref().map_err(secrets_error)
    }

    /// The API for a shop whose Api-Key is stored as `api_key_enc`.
    pub fn shop_client(
        &self,
        client_id: &str,
        api_key_enc: &str,
    ) -> Result<ShopClient, DomainError> {
        let key = self
            .keys()?
            .open(
                &crate::secrets::ozon_api_key_context(client_id),
                api_key_enc,
            )
            .map_err(|e| secrets_error(&e))?;
        Ok(self.client.shop(Credentials::new(client_id, key.as_str())))
    }
}

/// A data-key problem as a domain error: the installation cannot use stored credentials now.
pub fn secrets_error(e: &SecretsError) -> DomainError {
    tracing::error!(error = %e, "stored credentials cannot be used");
    DomainError::Unavailable {
        code: "DATA_KEY_UNAVAILABLE",
        // The seller cannot fix this; the operator finds the reason in the journal and in
        // `euraflow check`.
        message: "服务器暂时无法使用已保存的店铺API密钥，请联系管理员（运维：运行 euraflow check 查看原因）"
            .into(),
        retry_after_s: 60,
    }
}
