//! The product mirror end to end: the real server and real workers against real PostgreSQL and
//! Redis and the fake Ozon over real HTTP — full sync of 250 products with the statuses of the
//! contract, 429s retried and failures failing the task without wiping a field, one task per
//! shop however often it is asked for, the hourly pull once per shop across two workers, task
//! status across a worker restart, the product page's list/statistics/sync errors, and every
//! shop-bearing products route refusing another tenant.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::jobs::{Harness, RunningWorker};
use crate::common::{TestDb, TestServer, as_refs, call, hash, insert_user, tokens};
use euraflow::jobs::scheduler::{Scheduler, SystemClock};
use euraflow::ozon::client::{Endpoint, Visibility};
use euraflow::ozon::fake::{FakeConfig, FakeOzon, Fault};
use reqwest::Method;
use serde_json::{Value, json};

const PW: &str = "product-test-password";

struct World {
    db: TestDb,
    srv: TestServer,
    fake: FakeOzon,
    harness: Harness,
    /// m1 owns shop 0 of the fake, m2 (another tenant) shop 1; root is an admin.
    m1: String,
    m2: String,
    shop0: i64,
    shop1: i64,
}

async fn world(products: usize) -> World {
    let db = TestDb::migrated().await;
    let fake = FakeOzon::start(FakeConfig {
        shops: 2,
        products,
        postings: 0,
        call_log_capacity: 10_000,
    })
    .await
    .unwrap();
    insert_user(&db, "root", "admin", None, &hash(PW)).await;
    insert_user(&db, "m1", "main_account", None, &hash(PW)).await;
    insert_user(&db, "m2", "main_account", None, &hash(PW)).await;
    let key = euraflow::secrets::generate_key();
    let shared = vec![
        ("EF__OZON_API_BASE_URL".to_owned(), fake.base_url()),
        ("EF__DATA_KEY".to_owned(), key),
    ];
    let mut env = db.env();
    env.extend(shared.iter().cloned());
    let srv = TestServer::start(&as_refs(&env)).await;
    let harness = Harness::new(&db, &as_refs(&shared));
    let m1 = tokens(&srv, "m1", PW).await.0;
    let m2 = tokens(&srv, "m2", PW).await.0;
    let mut w = World {
        db,
        srv,
        fake,
        harness,
        m1,
        m2,
        shop0: 0,
        shop1: 0,
    };
    w.shop0 = add_shop(&w, &w.m1.clone(), 0).await;
    w.shop1 = add_shop(&w, &w.m2.clone(), 1).await;
    w
}

async fn add_shop(w: &World, token: &str, shop: usize) -> i64 {
    let c = w.fake.handle().credentials(shop);
    let (status, body) = call(
        &w.srv,
        Method::POST,
        "/ozon/shops",
        token,
        Some(
            json!({"shop_name": format!("shop {shop}"), "client_id": c.client_id,
            "api_key": c.api_key.expose(), "platform": "ozon"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["id"].as_i64().unwrap()
}

fn worker(w: &World) -> RunningWorker {
    w.harness
        .start(euraflow::jobs::builtin_registry(), w.harness.options())
}

async fn start_sync(w: &World, token: &str, shop: i64, mode: &str) -> String {
    let (status, body) = call(
        &w.srv,
        Method::POST,
        &format!("/ozon/shops/{shop}/sync?sync_type=products&products_mode={mode}"),
        token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "started");
    body["task_id"].as_str().unwrap().to_owned()
}

async fn task(w: &World, token: &str, id: &str) -> Value {
    let (status, body) = call(
        &w.srv,
        Method::GET,
        &format!("/ozon/sync/status/{id}"),
        token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true);
    body["data"].clone()
}

/// Poll like the web app until the task is terminal.
async fn wait_task(w: &World, token: &str, id: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let t = task(w, token, id).await;
        if t["status"] == "completed" || t["status"] == "failed" {
            return t;
        }
        assert!(Instant::now() < deadline, "task {id} still {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every product of the shop: offer_id → the fields a failed call must never blank.
async fn snapshot(w: &World, shop: i64) -> HashMap<String, Value> {
    let c = w.db.client().await;
    c.query(
        "SELECT offer_id, jsonb_build_object('title', title, 'images', images, 'stock', stock,
                'price', price::text, 'status', status, 'sku', ozon_sku, 'primary_image', primary_image,
                'attributes', ozon_attributes, 'weight', weight::text, 'warehouse_stocks', warehouse_stocks)
           FROM ozon_products WHERE shop_id = $1",
        &[&shop],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

async fn status_counts(w: &World, shop: i64) -> HashMap<String, i64> {
    let c = w.db.client().await;
    c.query(
        "SELECT status, count(*) FROM ozon_products WHERE shop_id = $1 GROUP BY status",
        &[&shop],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

async fn get(w: &World, token: &str, path: &str) -> (u16, Value) {
    call(&w.srv, Method::GET, path, token, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_mirrors_250_products_and_the_page_reads_them() {
    let w = world(250).await;
    let h = w.fake.handle();
    // No worker yet: the task waits, and asking again returns the same task.
    let t1 = start_sync(&w, &w.m1, w.shop0, "full").await;
    let t2 = start_sync(&w, &w.m1, w.shop0, "incremental").await;
    assert_eq!(
        t1, t2,
        "a second request while one is queued gets the same task"
    );
    let (_, again) = call(
        &w.srv,
        Method::POST,
        "/ozon/products/sync",
        &w.m1,
        Some(json!({"shop_id": w.shop0, "full_sync": true})),
    )
    .await;
    assert_eq!(again["task_id"], t1, "{again}");
    assert_eq!(again["already_running"], true);
    assert_eq!(task(&w, &w.m1, &t1).await["status"], "pending");

    let wk = worker(&w);
    let done = wait_task(&w, &w.m1, &t1, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"], 100);
    assert_eq!(done["type"], "products");
    assert_eq!(done["result"]["total_synced"], 250, "{done}");
    assert!(
        done["message"]
            .as_str()
            .unwrap()
            .contains("共同步250个商品")
    );

    // 250 rows keyed by (shop, offer_id), statuses per the contract.
    let visible: HashSet<String> = h.offer_ids(0, Visibility::Visible).into_iter().collect();
    let invisible = h.offer_ids(0, Visibility::Invisible);
    let archived = h.offer_ids(0, Visibility::Archived);
    let errors: HashSet<String> = h.offer_ids_with_errors(0).into_iter().collect();
    assert_eq!(visible.len() + invisible.len() + archived.len(), 250);
    assert!(!errors.is_empty());
    let counts = status_counts(&w, w.shop0).await;
    assert_eq!(counts.values().sum::<i64>(), 250);
    assert_eq!(counts["on_sale"], visible.len() as i64);
    assert_eq!(counts["archived"], archived.len() as i64);
    assert_eq!(counts["error"], errors.len() as i64);
    assert_eq!(counts["inactive"], (invisible.len() - errors.len()) as i64);
    let snap = snapshot(&w, w.shop0).await;
    for (offer, v) in &snap {
        assert!(!v["title"].as_str().unwrap().is_empty(), "{offer}: {v}");
        assert!(v["images"]["primary"].is_string(), "{offer}: {v}");
        assert!(v["price"].is_string() && v["sku"].is_i64(), "{offer}: {v}");
        assert!(v["weight"].is_string(), "{offer}: {v}");
        if visible.contains(offer) {
            assert!(v["stock"].as_i64().unwrap() > 0, "{offer}: {v}");
            assert!(!v["warehouse_stocks"].as_array().unwrap().is_empty());
        }
    }
    let c = w.db.client().await;
    let error_rows: i64 = c
        .query_one(
            "SELECT count(*) FROM ozon_product_sync_errors e JOIN ozon_products p ON p.id = e.product_id
              WHERE e.shop_id = $1 AND p.status = 'error'",
            &[&w.shop0],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(error_rows, errors.len() as i64);
    let last_sync: Option<chrono::DateTime<chrono::Utc>> = c
        .query_one(
            "SELECT last_sync_at FROM ozon_shops WHERE id = $1",
            &[&w.shop0],
        )
        .await
        .unwrap()
        .get(0);
    assert!(last_sync.is_some());
    // Each call batches a page (≤500 products): 3 list pages, 3 details, 3 prices, ≤3 stock, 3 attributes.
    assert_eq!(h.call_count(0, Endpoint::ProductList), 3);
    assert_eq!(h.call_count(0, Endpoint::ProductInfoList), 3);
    assert_eq!(h.call_count(0, Endpoint::ProductAttributes), 3);

    // The list: paging, stats, row shape.
    let (status, page) = get(
        &w,
        &w.m1,
        &format!(
            "/ozon/products?page=1&page_size=20&shop_id={}&include_stats=true",
            w.shop0
        ),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 250);
    assert_eq!(page["page"], 1);
    assert_eq!(page["page_size"], 20);
    assert_eq!(page["data"].as_array().unwrap().len(), 20);
    assert_eq!(page["stats"]["on_sale"], visible.len() as i64);
    assert_eq!(page["stats"]["active"], visible.len() as i64);
    assert_eq!(page["stats"]["archived"], archived.len() as i64);
    assert_eq!(
        page["stats"]["out_of_stock"],
        (invisible.len() + archived.len()) as i64
    );
    assert!(
        page.get("search_info").is_none(),
        "no filters, no search_info"
    );
    let row = &page["data"][0];
    for field in [
        "id",
        "shop_id",
        "offer_id",
        "ozon_sku",
        "ozon_product_id",
        "title",
        "images",
        "price",
        "old_price",
        "currency_code",
        "warehouse_stocks",
        "stock",
        "reserved",
        "available",
        "status",
        "visibility",
        "is_archived",
        "ozon_has_fbs_stocks",
        "sync_status",
        "last_sync_at",
        "updated_at",
        "created_at",
        "ozon_created_at",
        "sales_count",
    ] {
        assert!(row.get(field).is_some(), "{field} missing: {row}");
    }
    // numeric(18,4) as a decimal string with its scale.
    let price = row["price"].as_str().unwrap();
    assert_eq!(price.split('.').nth(1).map(str::len), Some(4), "{price}");
    assert!(row["updated_at"].as_str().unwrap().ends_with("+00:00"));

    // Stable paging under a sort with ties: every product exactly once.
    let mut seen = HashSet::new();
    let mut last_price = f64::MIN;
    for p in 1..=3 {
        let (_, page) = get(
            &w,
            &w.m1,
            &format!(
                "/ozon/products?shop_id={}&page={p}&page_size=100&sort_by=price&sort_order=asc",
                w.shop0
            ),
        )
        .await;
        for r in page["data"].as_array().unwrap() {
            assert!(seen.insert(r["id"].as_i64().unwrap()), "repeated {r}");
            let price: f64 = r["price"].as_str().unwrap().parse().unwrap();
            assert!(price >= last_price, "not sorted by price");
            last_price = price;
        }
    }
    assert_eq!(seen.len(), 250);
    // page_size is capped at 100.
    let (_, big) = get(
        &w,
        &w.m1,
        &format!("/ozon/products?shop_id={}&page_size=1000", w.shop0),
    )
    .await;
    assert_eq!(big["page_size"], 100);
    assert_eq!(big["data"].as_array().unwrap().len(), 100);

    // Filters.
    let (_, arch) = get(
        &w,
        &w.m1,
        &format!("/ozon/products?shop_id={}&status=archived", w.shop0),
    )
    .await;
    assert_eq!(arch["total"], archived.len() as i64);
    assert_eq!(arch["search_info"]["filters_applied"]["status"], "archived");
    let (_, arch2) = get(
        &w,
        &w.m1,
        &format!("/ozon/products?shop_id={}&archived=true", w.shop0),
    )
    .await;
    assert_eq!(arch2["total"], archived.len() as i64);
    let one = archived[0].clone();
    let (_, found) = get(
        &w,
        &w.m1,
        &format!("/ozon/products?shop_id={}&search={one}", w.shop0),
    )
    .await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["data"][0]["offer_id"], one.as_str());
    let sku = found["data"][0]["ozon_sku"].as_i64().unwrap();
    let (_, by_sku) = get(
        &w,
        &w.m1,
        &format!("/ozon/products?shop_id={}&sku={sku}", w.shop0),
    )
    .await;
    assert_eq!(by_sku["total"], 1);
    let (_, none) = get(
        &w,
        &w.m1,
        &format!("/ozon/products?shop_id={}&search=%25_%25", w.shop0),
    )
    .await;
    assert_eq!(none["total"], 0, "LIKE characters are literal");
    let (_, stocked) = get(
        &w,
        &w.m1,
        &format!("/ozon/products?shop_id={}&has_stock=true", w.shop0),
    )
    .await;
    assert_eq!(stocked["total"], visible.len() as i64);
    let (_, cheap) = get(
        &w,
        &w.m1,
        &format!(
            "/ozon/products?shop_id={}&price_min=10&price_max=2000.5&sort_by=price&sort_order=desc",
            w.shop0
        ),
    )
    .await;
    for r in cheap["data"].as_array().unwrap() {
        let p: f64 = r["price"].as_str().unwrap().parse().unwrap();
        assert!((10.0..=2000.5).contains(&p), "{p}");
    }
    let (_, recent) = get(
        &w,
        &w.m1,
        &format!(
            "/ozon/products?shop_id={}&created_from=2000-01-01&created_to=2099-12-31",
            w.shop0
        ),
    )
    .await;
    assert_eq!(recent["total"], 250);
    let (status, bad) = get(
        &w,
        &w.m1,
        &format!("/ozon/products?shop_id={}&created_from=13/01/2025", w.shop0),
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    let (status, bad) = get(
        &w,
        &w.m1,
        &format!("/ozon/products?shop_id={}&sort_by=id;DROP", w.shop0),
    )
    .await;
    assert_eq!(status, 422, "sort_by outside the allow-list: {bad}");
    let (status, _) = get(
        &w,
        &w.m1,
        &format!("/ozon/products?shop_id={}&status=deleted", w.shop0),
    )
    .await;
    assert_eq!(status, 422);

    // Statistics for the status tabs.
    let (status, st) = get(&w, &w.m1, &format!("/ozon/statistics?shop_id={}", w.shop0)).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["products"]["total"], 250);
    assert_eq!(st["products"]["error"], errors.len() as i64);
    assert_eq!(st["products"]["synced"], 250);

    // Sync errors of an error product, and of a clean one.
    let bad_offer = errors.iter().next().unwrap();
    let (_, found) = get(
        &w,
        &w.m1,
        &format!("/ozon/products?shop_id={}&search={bad_offer}", w.shop0),
    )
    .await;
    let bad_id = found["data"][0]["id"].as_i64().unwrap();
    assert_eq!(found["data"][0]["status"], "error");
    let (status, e) = get(&w, &w.m1, &format!("/ozon/products/{bad_id}/sync-errors")).await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["has_errors"], true);
    assert_eq!(e["sync_error"]["offer_id"], bad_offer.as_str());
    assert!(e["sync_error"]["errors"][0]["code"].is_string(), "{e}");
    assert!(e["sync_error"]["errors"][0]["texts"]["description"].is_string());
    let good_id = page["data"][0]["id"].as_i64().unwrap();
    let (_, e) = get(&w, &w.m1, &format!("/ozon/products/{good_id}/sync-errors")).await;
    if page["data"][0]["status"] != "error" {
        assert_eq!(e["has_errors"], false);
        assert_eq!(e["message"], "该商品没有错误记录");
    }

    // One product through the same pipeline (Y4).
    let (status, one) = call(
        &w.srv,
        Method::POST,
        &format!("/ozon/products/{good_id}/sync"),
        &w.m1,
        None,
    )
    .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["success"], true, "{one}");

    // A product removed on Ozon is archived by the next full sync, not left on sale.
    let before = h.call_count(0, Endpoint::ProductList);
    let c = w.db.client().await;
    c.execute(
        "INSERT INTO ozon_products (shop_id, offer_id, title, status, last_seen_at)
         VALUES ($1, 'GONE-1', 'removed on Ozon', 'on_sale', now() - interval '1 day')",
        &[&w.shop0],
    )
    .await
    .unwrap();
    let t = start_sync(&w, &w.m1, w.shop0, "full").await;
    assert_ne!(t, t1, "a finished task frees the shop for a new one");
    let done = wait_task(&w, &w.m1, &t, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["removed_count"], 1);
    let gone: String = c
        .query_one(
            "SELECT status FROM ozon_products WHERE shop_id = $1 AND offer_id = 'GONE-1'",
            &[&w.shop0],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(gone, "archived");
    assert_eq!(h.call_count(0, Endpoint::ProductList), before + 3);

    // An incremental run asks Ozon only for what changed since the last run.
    let added = h.add_products(0, 3);
    h.archive_product(0, &errors.iter().next().unwrap().clone());
    let t = start_sync(&w, &w.m1, w.shop0, "incremental").await;
    let done = wait_task(&w, &w.m1, &t, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["mode"], "incremental");
    let changed = done["result"]["total_synced"].as_u64().unwrap();
    assert!(
        (4..30).contains(&changed),
        "only the changed products: {done}"
    );
    let counts = status_counts(&w, w.shop0).await;
    assert_eq!(counts.values().sum::<i64>(), 254);
    assert_eq!(counts["error"], errors.len() as i64 - 1);
    let (_, new) = get(
        &w,
        &w.m1,
        &format!("/ozon/products?shop_id={}&search={}", w.shop0, added[0]),
    )
    .await;
    assert_eq!(new["data"][0]["status"], "on_sale");
    wk.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_mid_sync_is_retried_and_a_failing_ozon_wipes_nothing() {
    let w = world(250).await;
    let h = w.fake.handle();
    let wk = worker(&w);
    let t = start_sync(&w, &w.m1, w.shop0, "full").await;
    assert_eq!(
        wait_task(&w, &w.m1, &t, Duration::from_secs(60)).await["status"],
        "completed"
    );
    let before = snapshot(&w, w.shop0).await;
    assert_eq!(before.len(), 250);

    // 429 on the second details call (the INVISIBLE page): waited out and retried.
    h.clear_calls();
    h.inject(
        0,
        Fault::rate_limited(2, Some(1))
            .on(Endpoint::ProductInfoList)
            .after(1),
    );
    let t = start_sync(&w, &w.m1, w.shop0, "full").await;
    let done = wait_task(&w, &w.m1, &t, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["total_synced"], 250);
    let info = crate::common::ozon::statuses(&h, Endpoint::ProductInfoList);
    assert_eq!(info.iter().filter(|s| **s == 429).count(), 2, "{info:?}");
    assert_eq!(
        snapshot(&w, w.shop0).await,
        before,
        "a rate-limited run changed data"
    );

    // 5xx on every attempt of the INVISIBLE page's details: the run fails in plain words and
    // every stored field stays as it was (the original blanked them and said "completed").
    h.clear_calls();
    h.inject(
        0,
        Fault::status(503, 50)
            .on(Endpoint::ProductInfoList)
            .after(1),
    );
    let t = start_sync(&w, &w.m1, w.shop0, "full").await;
    let failed = wait_task(&w, &w.m1, &t, Duration::from_secs(90)).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let message = failed["message"].as_str().unwrap();
    assert!(message.contains("Ozon did not answer"), "{message}");
    assert!(
        !message.contains("api_key")
            && !message.contains(&h.credentials(0).api_key.expose().to_string())
    );
    assert!(failed["failed_at"].is_string());
    assert_eq!(
        snapshot(&w, w.shop0).await,
        before,
        "a failed run changed data"
    );
    let c = w.db.client().await;
    let last_error: Option<String> = c
        .query_one(
            "SELECT last_error FROM ozon_sync_state WHERE shop_id = $1 AND kind = 'products'",
            &[&w.shop0],
        )
        .await
        .unwrap()
        .get(0);
    assert!(last_error.unwrap().contains("Ozon did not answer"));
    // Ozon refusing the key is final too, with the fix named.
    h.clear_faults(0);
    h.set_auth_failure(0, Some(401));
    let t = start_sync(&w, &w.m1, w.shop0, "incremental").await;
    let failed = wait_task(&w, &w.m1, &t, Duration::from_secs(30)).await;
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("Client-Id/Api-Key"),
        "{failed}"
    );
    assert_eq!(snapshot(&w, w.shop0).await, before);
    wk.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hourly_pull_syncs_every_active_shop_once_across_two_workers() {
    let w = world(120).await;
    let h = w.fake.handle();
    // An inactive shop is not pulled (its key is not even a real ciphertext).
    let root_id: i64 =
        w.db.client()
            .await
            .query_one("SELECT id FROM users WHERE username = 'root'", &[])
            .await
            .unwrap()
            .get(0);
    crate::common::insert_shop(&w.db, 900, root_id).await;
    w.db.client()
        .await
        .execute(
            "UPDATE ozon_shops SET status = 'inactive' WHERE id = 900",
            &[],
        )
        .await
        .unwrap();
    let registry = Arc::new(euraflow::jobs::builtin_registry());
    let second = Harness::new(
        &w.db,
        &[
            ("EF__OZON_API_BASE_URL", &w.fake.base_url()),
            ("EF__DATA_KEY", w.harness.config.security.data_key.expose()),
        ],
    );
    let schedulers = [
        Scheduler::new(
            w.harness.db.clone(),
            registry.clone(),
            Arc::new(SystemClock),
        ),
        Scheduler::new(second.db.clone(), registry.clone(), Arc::new(SystemClock)),
    ];
    schedulers[0].seed().await.unwrap();
    let c = w.db.client().await;
    let schedule: String = c
        .query_one(
            "SELECT schedule_config FROM sync_services WHERE celery_task_name = 'ef.ozon.products.pull'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schedule, "50 * * * *");
    let now = chrono::Utc::now();
    schedulers[0].tick(now).await.unwrap();
    let w1 = worker(&w);
    let w2 = second.start(euraflow::jobs::builtin_registry(), second.options());
    // Both schedulers see the next :50 at once.
    let later = now + chrono::Duration::minutes(61);
    let (a, b) = tokio::join!(schedulers[0].tick(later), schedulers[1].tick(later));
    let runs: Vec<_> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    let pulls: Vec<_> = runs
        .iter()
        .filter(|r| r.job_type == "ef.ozon.products.pull" && r.new)
        .collect();
    assert_eq!(pulls.len(), 1, "{runs:?}");
    crate::common::jobs::wait_until("both shops synced", Duration::from_secs(60), || async {
        let c = w.db.client().await;
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM jobs WHERE job_type = 'ef.ozon.products.sync' AND state = 'succeeded'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        n >= 2
    })
    .await;
    // Give a duplicate the chance to show up, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_shop: HashMap<i64, i64> = c
        .query(
            "SELECT (payload->>'shop_id')::bigint, count(*) FROM jobs
              WHERE job_type = 'ef.ozon.products.sync' GROUP BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(per_shop, HashMap::from([(w.shop0, 1), (w.shop1, 1)]));
    for shop in [0, 1] {
        assert_eq!(
            h.call_count(shop, Endpoint::ProductList),
            3,
            "one run per shop"
        );
    }
    for shop in [w.shop0, w.shop1] {
        assert_eq!(status_counts(&w, shop).await.values().sum::<i64>(), 120);
    }
    w1.stop().await;
    w2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_status_survives_a_worker_restart() {
    let w = world(1200).await;
    let h = w.fake.handle();
    // Slow Ozon: the run is still going when its worker stops.
    h.set_delay(0, Duration::from_millis(400));
    let t = start_sync(&w, &w.m1, w.shop0, "full").await;
    let mut quick = w.harness.options();
    quick.shutdown_timeout = Duration::from_millis(200);
    let first = w.harness.start(euraflow::jobs::builtin_registry(), quick);
    crate::common::jobs::wait_until("the sync runs", Duration::from_secs(30), || async {
        task(&w, &w.m1, &t).await["status"] == "running"
    })
    .await;
    first.stop().await;
    let between = task(&w, &w.m1, &t).await;
    assert!(
        between["status"] == "pending" || between["status"] == "running",
        "a released task is still known: {between}"
    );
    assert_eq!(between["task_id"], t.as_str());
    // Asking again while it waits returns it, not a new run.
    assert_eq!(start_sync(&w, &w.m1, w.shop0, "full").await, t);
    h.set_delay(0, Duration::ZERO);
    let second = worker(&w);
    let done = wait_task(&w, &w.m1, &t, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["total_synced"], 1200);
    // And from another server process (a fresh one on the same database) too.
    let mut env = w.db.env();
    env.push(("EF__OZON_API_BASE_URL".into(), w.fake.base_url()));
    let other = TestServer::start(&as_refs(&env)).await;
    let token = tokens(&other, "m1", PW).await.0;
    let (_, seen) = call(
        &other,
        Method::GET,
        &format!("/ozon/sync/status/{t}"),
        &token,
        None,
    )
    .await;
    assert_eq!(seen["data"]["status"], "completed", "{seen}");
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_products_route_refuses_another_tenants_shop_and_products() {
    let w = world(30).await;
    let wk = worker(&w);
    let t = start_sync(&w, &w.m1, w.shop0, "full").await;
    assert_eq!(
        wait_task(&w, &w.m1, &t, Duration::from_secs(60)).await["status"],
        "completed"
    );
    let (_, page) = get(&w, &w.m1, &format!("/ozon/products?shop_id={}", w.shop0)).await;
    let pid = page["data"][0]["id"].as_i64().unwrap();
    let s = w.shop0;
    for (method, path, body) in [
        (Method::GET, format!("/ozon/products?shop_id={s}"), None),
        (
            Method::GET,
            format!("/ozon/products?shop_id={s}&include_stats=true"),
            None,
        ),
        (Method::GET, format!("/ozon/statistics?shop_id={s}"), None),
        (
            Method::POST,
            format!("/ozon/shops/{s}/sync?sync_type=products"),
            None,
        ),
        (
            Method::POST,
            format!("/ozon/shops/{s}/sync?sync_type=all&products_mode=full"),
            None,
        ),
        (
            Method::POST,
            "/ozon/products/sync".to_owned(),
            Some(json!({"shop_id": s})),
        ),
        (
            Method::GET,
            format!("/ozon/products/{pid}/sync-errors"),
            None,
        ),
        (Method::POST, format!("/ozon/products/{pid}/sync"), None),
    ] {
        let (status, body) = call(&w.srv, method.clone(), &path, &w.m2, body).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    // Without a shop id, another tenant sees only its own (not yet synced) shop.
    let (_, mine) = get(&w, &w.m2, "/ozon/products?include_stats=true").await;
    assert_eq!(mine["total"], 0, "{mine}");
    assert_eq!(mine["stats"]["on_sale"], 0);
    let (_, st) = get(&w, &w.m2, "/ozon/statistics").await;
    assert_eq!(st["products"]["total"], 0, "{st}");
    // m1's task is unknown to m2: a terminal failed, revealing nothing.
    let seen = task(&w, &w.m2, &t).await;
    assert_eq!(seen["status"], "failed");
    assert!(
        seen.get("result").is_none() || seen["result"].is_null(),
        "{seen}"
    );
    // The owner and an admin still see it.
    let root = tokens(&w.srv, "root", PW).await.0;
    let (_, all) = get(&w, &root, "/ozon/products").await;
    assert_eq!(all["total"], 30);
    let (status, _) = get(&w, &root, &format!("/ozon/products?shop_id={s}")).await;
    assert_eq!(status, 200);
    // No shop: the original's answer.
    let (_, none) = call(
        &w.srv,
        Method::POST,
        "/ozon/products/sync",
        &w.m1,
        Some(json!({})),
    )
    .await;
    assert_eq!(none, json!({"ok": false, "error": "请先选择店铺"}));
    wk.stop().await;
}

/// The figure of the issue: a page of `GET /ozon/products` for a shop with 100 000 products
/// (plus a neighbour with 20 000), with the plans PostgreSQL chooses. Run by hand:
/// `cargo nextest run -E 'test(/products_page_for_100k/)' --run-ignored only --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand"]
async fn products_page_for_100k_products_answers_in_under_50ms() {
    let w = world(1).await;
    let c = w.db.client().await;
    for (shop, n) in [(w.shop0, 100_000i64), (w.shop1, 20_000)] {
        c.execute(
            "INSERT INTO ozon_products (shop_id, offer_id, ozon_product_id, ozon_sku, title, barcode,
                    status, visibility, price, old_price, currency_code, stock, reserved, available,
                    images, warehouse_stocks, sync_status, last_sync_at, last_seen_at,
                    ozon_created_at, sales_count, updated_at)
             SELECT $1::bigint, 'OF' || $1::bigint::text || '-' || g, 800000000 + g, 1500000000 + g,
                    'Товар ' || md5(g::text), 'OZN' || (1500000000 + g),
                    (ARRAY['on_sale','on_sale','on_sale','ready_to_sell','error','inactive','archived'])[1 + g % 7],
                    g % 7 < 3, round((random() * 5000)::numeric, 2), round((random() * 6000)::numeric, 2),
                    'CNY', (random() * 200)::int, 0, (random() * 200)::int,
                    jsonb_build_object('primary', 'https://x.invalid/' || g || '.jpg', 'additional', '[]'::jsonb, 'count', 1),
                    '[]'::jsonb, 'success', now(), now(),
                    now() - make_interval(secs => (random() * 3e7)::int), (random() * 50)::int,
                    now() - make_interval(secs => (random() * 3e6)::int)
               FROM generate_series(1, $2::bigint) g",
            &[&shop, &n],
        )
        .await
        .unwrap();
    }
    c.batch_execute("VACUUM ANALYZE ozon_products")
        .await
        .unwrap();
    let s = w.shop0;
    let variants = [
        format!("/ozon/products?page=1&page_size=20&shop_id={s}&include_stats=true"),
        format!("/ozon/products?page=1&page_size=20&shop_id={s}"),
        format!("/ozon/products?page=50&page_size=100&shop_id={s}"),
        format!("/ozon/products?page=1&page_size=20&shop_id={s}&status=on_sale"),
        format!("/ozon/products?page=1&page_size=20&shop_id={s}&sort_by=price&sort_order=asc"),
        format!("/ozon/products?page=1&page_size=20&shop_id={s}&sort_by=stock&sort_order=desc"),
        format!(
            "/ozon/products?page=1&page_size=20&shop_id={s}&sort_by=created_at&sort_order=desc"
        ),
        format!(
            "/ozon/products?page=1&page_size=20&shop_id={s}&sort_by=sales_count&sort_order=desc"
        ),
        format!("/ozon/products?page=1&page_size=20&shop_id={s}&sort_by=title&sort_order=asc"),
        format!("/ozon/products?page=1&page_size=20&shop_id={s}&search=OF{s}-4242"),
        format!("/ozon/statistics?shop_id={s}"),
    ];
    let mut worst = Duration::ZERO;
    for path in &variants {
        let mut times = Vec::new();
        for _ in 0..15 {
            let started = Instant::now();
            let (status, body) = get(&w, &w.m1, path).await;
            times.push(started.elapsed());
            assert_eq!(status, 200, "{body}");
        }
        times.sort();
        let median = times[times.len() / 2];
        println!("{median:>10.2?} median of 15 (HTTPS round trip)  {path}");
        if !path.contains("search=") {
            worst = worst.max(median);
        }
    }
    let sort = |col: &str, dir: &str| {
        format!(
            "SELECT to_jsonb(p) FROM (SELECT p.id FROM ozon_products p WHERE p.shop_id = {s}
               ORDER BY {col} {dir}, p.id {dir} LIMIT 20 OFFSET 0) page
              JOIN ozon_products p ON p.id = page.id ORDER BY {col} {dir}, p.id {dir}"
        )
    };
    let plans = [
        format!("SELECT count(*) FROM ozon_products p WHERE p.shop_id = {s}"),
        sort("p.updated_at", "DESC"),
        sort("p.price", "ASC"),
        sort("p.stock", "DESC"),
        sort("p.sales_count", "DESC"),
        sort("p.title", "ASC"),
        format!(
            "SELECT p.status, count(*), count(*) FILTER (WHERE p.stock = 0),
                    count(*) FILTER (WHERE p.sync_status = 'failed'),
                    count(*) FILTER (WHERE p.sync_status = 'success')
               FROM ozon_products p WHERE p.shop_id = {s} GROUP BY p.status"
        ),
    ];
    for q in plans {
        println!("\n{q}");
        for r in c
            .query(&format!("EXPLAIN (ANALYZE, BUFFERS) {q}"), &[])
            .await
            .unwrap()
        {
            println!("  {}", r.get::<_, String>(0));
        }
    }
    assert!(worst < Duration::from_millis(50), "worst page {worst:?}");
}

/// The peak resident size of this whole test process (`VmHWM`), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

/// Issue 12's figure: a full sync of a shop with 10 000 products against the fake over HTTP —
/// the time, the memory of the whole test process (server, worker and fake Ozon together), and
/// the Ozon calls per endpoint. Run by hand:
/// `cargo nextest run -E 'test(/full_sync_of_10000/)' --run-ignored only --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand"]
async fn full_sync_of_10000_products_prints_time_memory_and_calls() {
    let w = world(10_000).await;
    let h = w.fake.handle();
    h.clear_calls();
    let before = peak_rss_mib();
    let wk = worker(&w);
    let started = Instant::now();
    let id = start_sync(&w, &w.m1, w.shop0, "full").await;
    let done = wait_task(&w, &w.m1, &id, Duration::from_secs(600)).await;
    let took = started.elapsed();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["total_synced"], 10_000, "{done}");
    println!(
        "full sync of 10 000 products: {took:.2?}; peak RSS of the test process {before:.0} MiB before, {:.0} MiB after",
        peak_rss_mib()
    );
    for e in Endpoint::ALL {
        let n = h.call_count(0, e);
        if n > 0 {
            println!("{n:>6} calls  {e:?}");
        }
    }
    wk.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_product_pages_watermark_probe_is_an_empty_list_for_a_logged_in_seller() {
    let w = world(1).await;
    let (status, body) = get(&w, &w.m1, "/ozon/watermark/configs").await;
    assert_eq!((status, body), (200, json!([])));
    let (status, _) = get(&w, "not-a-token", "/ozon/watermark/configs").await;
    assert_eq!(status, 401);
}
