//! Shared by the Ozon client and fake-Ozon tests: a fake with two shops on an ephemeral port and
//! client settings that retry fast.

use std::sync::Arc;
use std::time::Duration;

use euraflow::ozon::client::{ClientSettings, Endpoint, OzonClient, OzonMetrics, ShopClient};
use euraflow::ozon::fake::{FakeConfig, FakeHandle, FakeOzon};
use euraflow::redis::Redis;

/// Retries fast enough for tests; a budget high enough not to matter unless a test sets one.
pub fn settings(fake: &FakeOzon) -> ClientSettings {
    ClientSettings {
        base_url: fake.base_url(),
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        max_retries: 3,
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
        rate_per_shop: 10_000,
        rate_burst: 1000,
        ..ClientSettings::default()
    }
}

pub fn client(settings: ClientSettings, redis: Option<Arc<Redis>>) -> OzonClient {
    OzonClient::new(settings, redis, OzonMetrics::new().unwrap()).unwrap()
}

pub async fn start(products: usize, postings: usize) -> (FakeOzon, FakeHandle) {
    let fake = FakeOzon::start(FakeConfig {
        shops: 2,
        products,
        postings,
        call_log_capacity: 10_000,
    })
    .await
    .unwrap();
    let handle = fake.handle();
    (fake, handle)
}

pub fn shop0(fake: &FakeOzon, settings: ClientSettings) -> ShopClient {
    client(settings, None).shop(fake.handle().credentials(0))
}

pub fn statuses(handle: &FakeHandle, endpoint: Endpoint) -> Vec<u16> {
    handle
        .calls()
        .iter()
        .filter(|c| c.path == endpoint.path())
        .map(|c| c.status)
        .collect()
}
