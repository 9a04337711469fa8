//! Exchange rates (issue 13 item 6, contract §2.8, §3.6, §6): CNY↔RUB from exchangerate-api.com
//! v6, stored with their history, refreshed by the hourly job `ef.finance.rates.refresh`
//! (`18 * * * *`; the original registered it and never scheduled it), read by the pages through
//! `GET /ozon/global-settings` and `/exchange-rates/*`.
//!
//! - `provider`: the provider's HTTP client (base URL `EF__EXCHANGE_RATE_API_BASE_URL`, timeout
//!   `EF__EXCHANGE_RATE_TIMEOUT`), checking every answer.
//! - `service`: configuration (admins only, the key sealed with the data key), refresh, reads,
//!   conversion, history, connection test.
//! - `fake`: a fake provider over real HTTP for tests and the demo mode.
//!
//! When the provider fails, nothing is deleted or overwritten: the last good rate stays
//! readable, marked `stale` with its age, the configuration records the failure, and the job's
//! run is recorded as failed in the sync-service log.

pub mod fake;
pub mod provider;
pub mod service;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::Actor;
use crate::config::Config;
use crate::domain::DomainError;
use crate::jobs::{Job, JobContext, JobError, JobResult, Queue, Registry, RetryPolicy, TimeLimits};
use crate::secrets::{KeyRing, SecretsError};
use provider::Provider;
use service::Refreshed;

/// The provider's name, as stored in `api_provider` and `source`.
pub const PROVIDER: &str = "exchangerate-api";
/// The pairs a refresh fetches (each with its own base, as the original did).
pub const PAIRS: [(&str, &str); 2] = [("CNY", "RUB"), ("RUB", "CNY")];
/// A stored rate's `expires_at` (the original's 24 h; reads keep using it after that, stale).
pub const VALID_FOR: Duration = Duration::from_secs(24 * 3600);
/// A rate older than this is stale: the job runs hourly, so two missed runs.
pub const STALE_AFTER: Duration = Duration::from_secs(2 * 3600);
/// A new rate more than this factor away from the last good one is refused as implausible
/// (a provider answering in the wrong unit), keeping the last good one.
pub const MAX_JUMP: f64 = 10.0;

/// What the service needs, built from the configuration: the provider client and the data key.
pub struct ExchangeRates {
    provider: Provider,
    keys: Result<KeyRing, SecretsError>,
}

impl std::fmt::Debug for ExchangeRates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeRates")
            .field("base_url", &self.provider.base_url())
            .field("keys", &self.keys)
            .finish()
    }
}

impl ExchangeRates {
    pub fn from_config(config: &Config) -> anyhow::Result<ExchangeRates> {
        let b = &config.business;
        let provider = Provider::new(&b.exchange_rate_api_base_url, b.exchange_rate_timeout)?;
        let keys = KeyRing::from_config(&config.security.data_key)
            .and_then(|k| k.ok_or(SecretsError::NoKey));
        Ok(ExchangeRates { provider, keys })
    }

    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    pub fn keys(&self) -> Result<&KeyRing, DomainError> {
        self.keys.as_ref().map_err(secrets_error)
    }
}

/// A data-key problem: the stored provider key cannot be used now.
pub fn secrets_error(e: &SecretsError) -> DomainError {
    tracing::error!(error = %e, "the stored exchange-rate API key cannot be used");
    DomainError::Unavailable {
        code: "DATA_KEY_UNAVAILABLE",
        message: "服务器暂时无法使用已保存的汇率API密钥，请联系管理员（运维：运行 euraflow check 查看原因）"
            .into(),
        retry_after_s: 60,
    }
}

pub fn register(r: &mut Registry) {
    r.register::<RatesRefresh>();
}

/// The hourly refresh of the CNY↔RUB rates.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RatesRefresh {}

impl Job for RatesRefresh {
    const NAME: &'static str = "ef.finance.rates.refresh";
    const QUEUE: Queue = Queue::Pull;
    const DESCRIPTION: &'static str = "汇率刷新（人民币↔卢布）";
    const SCHEDULE: Option<&'static str> = Some("18 * * * *");

    fn limits() -> TimeLimits {
        TimeLimits {
            soft: Duration::from_secs(120),
            hard: Duration::from_secs(150),
        }
    }

    fn retry() -> RetryPolicy {
        // Provider failures are final for the run (the next hour asks again); further attempts
        // are for a database that failed mid-run.
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_secs(30),
            cap: Duration::from_secs(120),
        }
    }

    async fn run(self, ctx: JobContext) -> JobResult {
        let rates = ExchangeRates::from_config(ctx.config()).map_err(JobError::permanent)?;
        let mut client = ctx.db().get().await?;
        let outcome =
            service::refresh(&mut client, &rates, &Actor::system("exchange-rate refresh"))
                .await
                .map_err(|e| match e {
                    DomainError::Db(_) | DomainError::Internal(_) => JobError::failed(e),
                    other => JobError::permanent(other),
                })?;
        match outcome {
            Refreshed::Failed(why) => Err(JobError::Permanent(format!(
                "汇率刷新失败 (the last good rates are kept): {why}"
            ))),
            other => Ok(other.to_json()),
        }
    }
}
