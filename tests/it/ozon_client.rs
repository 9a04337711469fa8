//! The Ozon Seller API client against the fake Ozon over real HTTP, with the real Redis for the
//! shared rate budget: authentication, retries and their caps, timeouts, malformed answers, other
//! 4xx, the budget across two "processes" and without Redis, metrics, logging without the key.

use crate::common;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::ozon::{client, settings, shop0, start, statuses};
use euraflow::ozon::client::{
    Credentials, Endpoint, OzonClient, OzonError, OzonMetrics, PostingFilter, PostingWith,
    ProductInfoRequest, ProductListFilter, ProductListRequest, ShopClient, SortDir, Visibility,
};
use euraflow::ozon::fake::{FakeHandle, Fault};
use euraflow::redis::Redis;

#[tokio::test]
async fn a_wrong_api_key_is_auth_failed_and_the_right_one_counts_products() {
    let (fake, handle) = start(250, 10).await;
    let good = handle.credentials(0);
    let wrong = client(settings(&fake), None).shop(Credentials::new(good.client_id, "nope"));
    match wrong.test_connection().await {
        Err(e @ OzonError::AuthFailed { status: 401, .. }) => {
            assert!(
                e.user_message().contains("Client-Id/Api-Key"),
                "{}",
                e.user_message()
            );
            assert!(!e.is_transient());
        }
        other => panic!("expected AuthFailed, got {other:?}"),
    }
    assert_eq!(
        handle.call_count(0, Endpoint::ProductList),
        1,
        "401 is not retried"
    );

    let shop = shop0(&fake, settings(&fake));
    let total = shop.test_connection().await.unwrap();
    assert_eq!(total as usize, handle.offer_ids(0, Visibility::All).len());
    assert!(total > 0);

    handle.set_auth_failure(0, Some(403));
    assert!(matches!(
        shop.test_connection().await,
        Err(OzonError::AuthFailed { status: 403, .. })
    ));
    handle.set_auth_failure(0, None);
    assert_eq!(shop.test_connection().await.unwrap(), total);
}

#[tokio::test]
async fn a_429_mid_paging_is_retried_after_retry_after_and_every_item_arrives_once() {
    let (fake, handle) = start(250, 10).await;
    // The second and third list calls are refused with Retry-After: 1.
    handle.inject(
        0,
        Fault::rate_limited(2, Some(1))
            .on(Endpoint::ProductList)
            .after(1),
    );
    let shop = shop0(&fake, settings(&fake));
    let filter = ProductListFilter {
        visibility: Visibility::Visible,
        ..Default::default()
    };
    let mut pager = shop.product_pages(filter, 50);
    let mut seen = Vec::new();
    while let Some(page) = pager.next_page().await.unwrap() {
        seen.extend(page.items.into_iter().map(|p| p.offer_id));
    }
    let expected = handle.offer_ids(0, Visibility::Visible);
    assert_eq!(seen, expected, "every visible product, once, in order");

    let list: Vec<_> = handle
        .calls()
        .into_iter()
        .filter(|c| c.path == Endpoint::ProductList.path())
        .collect();
    let refused: Vec<usize> = (0..list.len()).filter(|&i| list[i].status == 429).collect();
    assert_eq!(
        refused,
        vec![1, 2],
        "{:?}",
        statuses(&handle, Endpoint::ProductList)
    );
    for &i in &refused {
        let waited = list[i + 1].at - list[i].at;
        assert!(
            waited >= Duration::from_millis(950),
            "Retry-After honoured: {waited:?}"
        );
    }
    // The retried calls asked for the same page again (same cursor).
    assert_eq!(list[1].body, list[3].body);
}

#[tokio::test]
async fn retry_after_is_capped_and_a_429_that_never_ends_is_rate_limited() {
    let (fake, handle) = start(20, 10).await;
    let mut s = settings(&fake);
    s.max_retry_after = Duration::from_millis(200);
    s.max_retries = 2;
    let shop = shop0(&fake, s);
    handle.inject(0, Fault::rate_limited(1, Some(3600)));
    let started = Instant::now();
    shop.warehouses().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "an hour's Retry-After is capped"
    );

    handle.inject(0, Fault::rate_limited(100, None));
    match shop.warehouses().await {
        Err(e @ OzonError::RateLimited { .. }) => {
            assert!(e.is_transient());
            assert!(
                e.user_message().contains("limiting"),
                "{}",
                e.user_message()
            );
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    // 2 calls for the first, then 1 + max_retries for the second.
    assert_eq!(handle.call_count(0, Endpoint::WarehouseList), 2 + 3);
}

#[tokio::test]
async fn server_errors_are_retried_then_ozon_unavailable_after_the_cap() {
    let (fake, handle) = start(50, 10).await;
    let shop = shop0(&fake, settings(&fake));
    let ids = handle.offer_ids(0, Visibility::All);
    let request = ProductInfoRequest {
        offer_id: ids[..10].to_vec(),
        ..Default::default()
    };
    handle.inject(0, Fault::status(500, 2).on(Endpoint::ProductInfoList));
    let items = shop.product_info(&request).await.unwrap();
    assert_eq!(items.len(), 10);
    assert_eq!(
        statuses(&handle, Endpoint::ProductInfoList),
        vec![500, 500, 200]
    );

    handle.clear_calls();
    handle.inject(0, Fault::status(503, 100).on(Endpoint::ProductInfoList));
    match shop.product_info(&request).await {
        Err(e @ OzonError::OzonUnavailable { attempts: 4, .. }) => {
            assert!(e.is_transient());
            assert!(e.user_message().contains("did not answer"));
        }
        other => panic!("expected OzonUnavailable after 4 attempts, got {other:?}"),
    }
    assert_eq!(handle.call_count(0, Endpoint::ProductInfoList), 4);
    // Other endpoints of the shop are not affected by that fault.
    shop.warehouses().await.unwrap();
}

#[tokio::test]
async fn a_slow_ozon_times_out_as_unavailable() {
    let (fake, handle) = start(10, 10).await;
    let mut s = settings(&fake);
    s.timeout = Duration::from_millis(300);
    s.max_retries = 1;
    let c = client(s, None);
    let shop = c.shop(handle.credentials(0));
    handle.set_delay(0, Duration::from_secs(3));
    match shop.warehouses().await {
        Err(OzonError::OzonUnavailable {
            attempts: 2,
            reason,
            ..
        }) => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(c.metrics().requests(Endpoint::WarehouseList, "timeout"), 2);
    handle.set_delay(0, Duration::ZERO);
    shop.warehouses().await.unwrap();
}

#[tokio::test]
async fn a_malformed_page_is_bad_response_and_paging_resumes_at_that_page() {
    let (fake, handle) = start(50, 400).await;
    handle.inject(0, Fault::malformed(1).on(Endpoint::PostingFbsList).after(1));
    let shop = shop0(&fake, settings(&fake));
    let mut pager = shop.posting_pages(
        PostingFilter::default(),
        SortDir::Asc,
        100,
        PostingWith::default(),
    );
    let mut seen = Vec::new();
    let first = pager.next_page().await.unwrap().unwrap();
    seen.extend(first.items.into_iter().map(|p| p.data.posting_number));
    match pager.next_page().await {
        Err(e @ OzonError::BadResponse { .. }) => {
            assert!(e.user_message().contains("could not be read"));
        }
        other => panic!("expected BadResponse, got {other:?}"),
    }
    assert_eq!(
        handle.call_count(0, Endpoint::PostingFbsList),
        2,
        "a malformed body is not retried"
    );
    // The process is fine and the pager still stands at the failed page.
    while let Some(page) = pager.next_page().await.unwrap() {
        seen.extend(page.items.into_iter().map(|p| p.data.posting_number));
    }
    assert_eq!(seen, handle.posting_numbers(0));
}

#[tokio::test]
async fn other_4xx_are_bad_requests_or_not_found_and_not_retried() {
    let (fake, handle) = start(50, 10).await;
    let shop = shop0(&fake, settings(&fake));
    let too_many = ProductInfoRequest {
        offer_id: (0..1001).map(|i| format!("X{i}")).collect(),
        ..Default::default()
    };
    match shop.product_info(&too_many).await {
        Err(OzonError::BadRequest {
            status: 400,
            code: 3,
            message,
            ..
        }) => assert!(message.contains("at most 1000"), "{message}"),
        other => panic!("expected BadRequest, got {other:?}"),
    }
    assert_eq!(handle.call_count(0, Endpoint::ProductInfoList), 1);
    let skus: Vec<i64> = (0..501).collect();
    assert!(matches!(
        shop.fbs_stocks(&skus).await,
        Err(OzonError::BadRequest { status: 400, .. })
    ));
    let zero = ProductListRequest {
        filter: ProductListFilter::default(),
        last_id: String::new(),
        limit: 0,
    };
    assert!(matches!(
        shop.product_list(&zero).await,
        Err(OzonError::BadRequest { status: 400, .. })
    ));
    assert!(matches!(
        shop.posting_get("99999999-0001-1", PostingWith::default())
            .await,
        Err(OzonError::NotFound { .. })
    ));
    assert_eq!(handle.call_count(0, Endpoint::PostingFbsGet), 1);
}

async fn hammer(
    handle: &FakeHandle,
    shops: Vec<ShopClient>,
    tasks: usize,
    window: Duration,
) -> usize {
    handle.clear_calls();
    let started = Instant::now();
    let deadline = started + window;
    let mut joins = Vec::new();
    for shop in shops {
        for _ in 0..tasks {
            let shop = shop.clone();
            joins.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    shop.warehouses().await.unwrap();
                }
            }));
        }
    }
    for j in joins {
        j.await.unwrap();
    }
    handle
        .calls()
        .iter()
        .filter(|c| c.at >= started && c.at < deadline)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_rate_budget_through_redis() {
    let (fake, handle) = start(10, 10).await;
    let redis_config = common::dev_config(common::isolated_env()).redis;
    let mut s = settings(&fake);
    s.rate_per_shop = 20;
    s.rate_burst = 2;
    // Two "processes": their own Redis pools and HTTP clients, the same installation prefix.
    let a = client(s.clone(), Some(Redis::new(&redis_config).unwrap()));
    let b = client(s, Some(Redis::new(&redis_config).unwrap()));
    let creds = handle.credentials(0);
    let shops = vec![a.shop(creds.clone()), b.shop(creds)];
    let window = Duration::from_secs(3);
    let n = hammer(&handle, shops, 4, window).await;
    // At most burst + rate × window = 2 + 60 together (not 2 × that); a little slack for
    // requests in flight at the window's edges.
    assert!(n <= 66, "{n} calls in 3 s for a shared budget of 20/s");
    assert!(n >= 30, "{n} calls: the budget is not starving the callers");
    let per_client: Vec<u64> = [&a, &b]
        .iter()
        .map(|c| c.metrics().requests(Endpoint::WarehouseList, "200"))
        .collect();
    assert!(
        per_client.iter().all(|&k| k >= 5),
        "both processes called: {per_client:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_each_process_still_limits_itself() {
    let (fake, handle) = start(10, 10).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let mut env = common::isolated_env();
    env.push(("EF__REDIS_PORT".into(), port));
    env.push(("EF__REDIS_TIMEOUT".into(), "1s".into()));
    let redis = Redis::new(&common::dev_config(env).redis).unwrap();
    let mut s = settings(&fake);
    s.rate_per_shop = 20;
    s.rate_burst = 2;
    let c = client(s, Some(redis.clone()));
    let n = hammer(
        &handle,
        vec![c.shop(handle.credentials(0))],
        6,
        Duration::from_secs(3),
    )
    .await;
    assert!(redis.is_down());
    assert!(
        n <= 66,
        "{n} calls in 3 s with a per-process fallback of 20/s"
    );
    assert!(n >= 30, "{n} calls: calls continue while Redis is down");
}

#[tokio::test]
async fn metrics_count_every_attempt_by_endpoint_and_status() {
    let (fake, handle) = start(10, 10).await;
    let registry = prometheus::Registry::new();
    let metrics = OzonMetrics::new().unwrap();
    metrics.register(&registry).unwrap();
    let c = OzonClient::new(settings(&fake), None, metrics.clone()).unwrap();
    let shop = c.shop(handle.credentials(0));
    handle.inject(0, Fault::status(502, 1).on(Endpoint::WarehouseList));
    shop.warehouses().await.unwrap();
    shop.test_connection().await.unwrap();
    let _ = c
        .shop(Credentials::new(handle.credentials(1).client_id, "wrong"))
        .test_connection()
        .await;
    assert_eq!(metrics.requests(Endpoint::WarehouseList, "502"), 1);
    assert_eq!(metrics.requests(Endpoint::WarehouseList, "200"), 1);
    assert_eq!(metrics.requests(Endpoint::ProductList, "200"), 1);
    assert_eq!(metrics.requests(Endpoint::ProductList, "401"), 1);
    assert_eq!(metrics.observed(Endpoint::WarehouseList), 2);
    let mut out = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &registry.gather(),
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(r#"ef_ozon_requests_total{endpoint="/v1/warehouse/list",status="502"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"ef_ozon_request_duration_seconds_count{endpoint="/v3/product/list"} 2"#)
    );
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn calls_carry_a_fresh_request_id_and_the_key_never_reaches_the_log() {
    let buf = Buffer::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    // The current-thread test runtime polls everything on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);
    let (fake, handle) = start(10, 10).await;
    let creds = handle.credentials(0);
    let key = creds.api_key.expose().to_owned();
    let shop = shop0(&fake, settings(&fake));
    handle.inject(0, Fault::status(500, 1));
    shop.warehouses().await.unwrap();
    shop.test_connection().await.unwrap();

    let calls = handle.calls();
    assert_eq!(calls.len(), 3);
    let ids: HashSet<&str> = calls.iter().map(|c| c.request_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "one X-Request-Id per attempt");
    for c in &calls {
        let id = uuid::Uuid::parse_str(&c.request_id).unwrap();
        assert_eq!(id.get_version_num(), 4);
        assert_eq!(c.client_id, creds.client_id);
    }
    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("Ozon call"), "{log}");
    for c in &calls {
        assert!(
            log.contains(&c.request_id),
            "request id {} logged",
            c.request_id
        );
    }
    assert!(!log.contains(&key), "the Api-Key leaked into the log");
    assert!(!format!("{shop:?} {creds:?}").contains(&key));
}
