//! The posting mirror end to end: the real server and workers against real PostgreSQL and Redis
//! and the fake Ozon over real HTTP — full and incremental posting sync with `has_next` paging
//! (status changes of old postings included), cancellation only when real, sales counted once
//! per new posting, a failing Ozon writing and wiping nothing; the order list's tabs, counters,
//! keywords, date ranges in the global time zone and stable paging; detail and one-posting sync;
//! the overview scoped to the caller's shops and zero-filled; global settings; and every
//! shop-bearing order route refusing another tenant.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::jobs::{Harness, RunningWorker};
use crate::common::{TestDb, TestServer, as_refs, call, hash, insert_user, tokens};
use euraflow::jobs::scheduler::{Scheduler, SystemClock};
use euraflow::ozon::client::Endpoint;
use euraflow::ozon::fake::{FakeConfig, FakeOzon, Fault};
use reqwest::Method;
use serde_json::{Value, json};

const PW: &str = "posting-test-password";

struct World {
    db: TestDb,
    srv: TestServer,
    fake: FakeOzon,
    harness: Harness,
    /// m1 owns shop 0 of the fake, m2 (another tenant) shop 1; root is an admin.
    m1: String,
    m2: String,
    root: String,
    shop0: i64,
    shop1: i64,
}

async fn world(products: usize, postings: usize) -> World {
    let db = TestDb::migrated().await;
    let fake = FakeOzon::start(FakeConfig {
        shops: 2,
        products,
        postings,
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
    let root = tokens(&srv, "root", PW).await.0;
    let mut w = World {
        db,
        srv,
        fake,
        harness,
        m1,
        m2,
        root,
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

async fn get(w: &World, token: &str, path: &str) -> (u16, Value) {
    call(&w.srv, Method::GET, path, token, None).await
}

/// Poll like the web app until the task is terminal.
async fn wait_task(w: &World, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = get(w, token, &format!("/ozon/sync/status/{id}")).await;
        assert_eq!(status, 200, "{body}");
        let t = body["data"].clone();
        if t["status"] == "completed" || t["status"] == "failed" {
            return t;
        }
        assert!(Instant::now() < deadline, "task {id} still {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sync_products(w: &World, token: &str, shop: i64) {
    let (status, body) = call(
        &w.srv,
        Method::POST,
        &format!("/ozon/shops/{shop}/sync?sync_type=products&products_mode=full"),
        token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let t = wait_task(w, token, body["task_id"].as_str().unwrap()).await;
    assert_eq!(t["status"], "completed", "{t}");
}

async fn sync_orders(w: &World, token: &str, shop: i64, mode: &str) -> Value {
    let (status, body) = call(
        &w.srv,
        Method::POST,
        "/ozon/orders/sync",
        token,
        Some(json!({"shop_id": shop, "mode": mode})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["sync_mode"], mode);
    wait_task(w, token, body["task_id"].as_str().unwrap()).await
}

async fn scalar(
    w: &World,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> i64 {
    w.db.client()
        .await
        .query_one(sql, params)
        .await
        .unwrap()
        .get(0)
}

/// posting_number → stored status.
async fn stored(w: &World, shop: i64) -> HashMap<String, (String, bool, String)> {
    w.db.client()
        .await
        .query(
            "SELECT posting_number, status, is_cancelled, operation_status FROM ozon_postings
              WHERE shop_id = $1",
            &[&shop],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect()
}

/// Σ sales_count of the shop's products, and what the mirror's postings say it must be.
async fn sales(w: &World, shop: i64) -> (i64, i64) {
    let counted = scalar(
        w,
        "SELECT coalesce(sum(sales_count), 0)::bigint FROM ozon_products WHERE shop_id = $1",
        &[&shop],
    )
    .await;
    let expected = scalar(
        w,
        "SELECT coalesce(sum(x.quantity), 0)::bigint
           FROM ozon_posting_products x JOIN ozon_postings p ON p.id = x.posting_id
          WHERE p.shop_id = $1 AND NOT p.is_cancelled
            AND EXISTS (SELECT 1 FROM ozon_products o WHERE o.shop_id = $1 AND o.ozon_sku = x.sku)",
        &[&shop],
    )
    .await;
    (counted, expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_and_incremental_posting_sync_page_refresh_old_postings_and_count_sales_once() {
    let w = world(30, 1200).await;
    let h = w.fake.handle();
    let wk = worker(&w);
    sync_products(&w, &w.m1, w.shop0).await;

    // Full: every posting of the fake, in pages of 500 (`has_next`).
    h.clear_calls();
    let done = sync_orders(&w, &w.m1, w.shop0, "full").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["type"], "orders");
    assert_eq!(done["result"]["total_synced"], 1200, "{done}");
    assert!(
        done["message"]
            .as_str()
            .unwrap()
            .contains("共同步1200个订单"),
        "{done}"
    );
    assert_eq!(h.call_count(0, Endpoint::PostingFbsList), 3);
    assert_eq!(
        h.call_count(0, Endpoint::PostingFbsGet),
        0,
        "no per-posting detail calls (§7 C7)"
    );
    let rows = stored(&w, w.shop0).await;
    assert_eq!(rows.len(), 1200);
    // Cancelled only when Ozon says so (every posting carries a zero `cancellation`).
    let mut by_status: HashMap<String, i64> = HashMap::new();
    for (number, (status, cancelled, operation)) in &rows {
        assert_eq!(
            Some(status.clone()),
            h.posting_status(0, number),
            "{number}"
        );
        assert_eq!(*cancelled, status == "cancelled", "{number} {status}");
        let expected = match status.as_str() {
            "awaiting_packaging" => Some("awaiting_stock"),
            "awaiting_deliver" => Some("allocated"),
            "delivering" => Some("shipping"),
            "delivered" => Some("delivered"),
            "cancelled" => Some("cancelled"),
            _ => None,
        };
        if let Some(e) = expected {
            assert_eq!(operation, e, "{number} {status}");
        }
        *by_status.entry(status.clone()).or_default() += 1;
    }
    assert!(
        by_status["cancelled"] > 0 && by_status["cancelled"] < 400,
        "{by_status:?}"
    );
    assert_eq!(
        scalar(
            &w,
            "SELECT count(*) FROM ozon_postings WHERE NOT is_cancelled AND cancel_reason IS NOT NULL",
            &[]
        )
        .await,
        0
    );
    // Totals and SKUs from Ozon's products, exactly.
    assert_eq!(
        scalar(
            &w,
            "SELECT count(*) FROM ozon_postings p WHERE p.order_total_price IS DISTINCT FROM
                (SELECT sum((x->>'price')::numeric * (x->>'quantity')::numeric)
                   FROM jsonb_array_elements(p.raw_payload->'products') x)::numeric(18,2)
                OR p.product_skus IS NULL OR cardinality(p.product_skus) = 0
                OR p.currency_code IS NULL",
            &[]
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &w,
            "SELECT count(*) FROM ozon_postings p WHERE (p.raw_payload->>'tracking_number') <> ''
                AND NOT EXISTS (SELECT 1 FROM ozon_shipment_packages k WHERE k.posting_id = p.id
                                AND k.tracking_number = p.raw_payload->>'tracking_number')",
            &[]
        )
        .await,
        0,
        "every tracking number is searchable as a package"
    );
    let (counted, expected) = sales(&w, w.shop0).await;
    assert!(expected > 0);
    assert_eq!(
        counted, expected,
        "sales counted once per posting not cancelled"
    );

    // Incremental: an old posting delivered, another cancelled, three new ones.
    let old = rows
        .iter()
        .filter(|(n, (s, _, _))| {
            s == "awaiting_deliver" && h.posting_numbers(0).iter().position(|x| x == *n) < Some(600)
        })
        .map(|(n, _)| n.clone())
        .next()
        .unwrap();
    let to_cancel = rows
        .iter()
        .filter(|(n, (s, _, _))| s == "delivering" && **n != old)
        .map(|(n, _)| n.clone())
        .next()
        .unwrap();
    let quantity_cancelled = scalar(
        &w,
        "SELECT coalesce(sum(x.quantity), 0)::bigint FROM ozon_posting_products x
           JOIN ozon_postings p ON p.id = x.posting_id
          WHERE p.posting_number = $1
            AND EXISTS (SELECT 1 FROM ozon_products o WHERE o.shop_id = p.shop_id AND o.ozon_sku = x.sku)",
        &[&to_cancel],
    )
    .await;
    assert!(h.set_posting_status(0, &old, "delivered"));
    assert!(h.set_posting_status(0, &to_cancel, "cancelled"));
    let added = h.add_postings(0, 3);
    h.clear_calls();
    let done = sync_orders(&w, &w.m1, w.shop0, "incremental").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["mode"], "incremental");
    let changed = done["result"]["total_synced"].as_i64().unwrap();
    assert!(
        (5..600).contains(&changed),
        "an incremental run reads what changed, not the shop: {done}"
    );
    let rows = stored(&w, w.shop0).await;
    assert_eq!(rows.len(), 1203);
    assert_eq!(
        rows[&old].0, "delivered",
        "an old posting's status is refreshed"
    );
    assert_eq!(rows[&old].2, "delivered");
    assert_eq!(rows[&to_cancel].0, "cancelled");
    assert!(rows[&to_cancel].1);
    assert_eq!(rows[&to_cancel].2, "cancelled");
    for n in &added {
        assert_eq!(rows[n].0, "awaiting_packaging");
    }
    let (counted_after, expected_after) = sales(&w, w.shop0).await;
    assert_eq!(counted_after, expected_after);
    assert!(
        counted_after > counted - quantity_cancelled,
        "the new postings were counted"
    );
    // Again: nothing new, nothing counted twice.
    let done = sync_orders(&w, &w.m1, w.shop0, "incremental").await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(sales(&w, w.shop0).await.0, counted_after);

    // Ozon fails mid-run: the task fails, nothing is wiped, the next run asks from the same point.
    let mark = || async {
        w.db.client()
            .await
            .query_one(
                "SELECT high_water_mark FROM ozon_sync_state WHERE shop_id = $1 AND kind = 'postings'",
                &[&w.shop0],
            )
            .await
            .unwrap()
            .get::<_, chrono::DateTime<chrono::Utc>>(0)
    };
    let before = mark().await;
    h.inject(
        0,
        Fault::status(400, 1).on(Endpoint::PostingFbsList).after(1),
    );
    let failed = sync_orders(&w, &w.m1, w.shop0, "incremental").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(stored(&w, w.shop0).await.len(), 1203);
    assert_eq!(mark().await, before);
    assert_eq!(sales(&w, w.shop0).await.0, counted_after);

    // The kept tab counts agree with the postings after inserts, updates and upserts.
    assert_eq!(
        scalar(
            &w,
            "SELECT count(*) FROM (
                SELECT shop_id, status, operation_status, count(*) AS n FROM ozon_postings
                 GROUP BY 1, 2, 3) a
              FULL JOIN (SELECT * FROM ozon_posting_counts WHERE n <> 0) k
                USING (shop_id, status, operation_status)
             WHERE a.n IS DISTINCT FROM k.n",
            &[]
        )
        .await,
        0
    );
    let (_, page) = get(&w, &w.m1, &format!("/ozon/orders?shop_id={}", w.shop0)).await;
    assert_eq!(page["stats"]["total"], 1203, "{}", page["stats"]);
    assert_eq!(page["stats"]["cancelled"], by_status["cancelled"] + 1);

    // The shop list counts the orders.
    let (_, shops) = get(&w, &w.m1, "/ozon/shops?include_stats=true").await;
    let mine = shops["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == w.shop0)
        .unwrap();
    assert_eq!(mine["stats"]["total_orders"], 1203, "{mine}");
    wk.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_list_tabs_counters_keywords_dates_paging_detail_and_tenancy() {
    let w = world(20, 600).await;
    let h = w.fake.handle();
    let wk = worker(&w);
    sync_products(&w, &w.m1, w.shop0).await;
    assert_eq!(
        sync_orders(&w, &w.m1, w.shop0, "full").await["status"],
        "completed"
    );
    let s = w.shop0;

    // Counters: per status over the shop, discarded = operation_status cancelled.
    let (status, page) = get(&w, &w.m1, &format!("/ozon/orders?shop_id={s}&limit=20")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 600);
    assert_eq!(page["stats"]["total"], 600);
    assert_eq!(page["page_size"], 20);
    assert_eq!(page["total_pages"], 30);
    assert_eq!(page["next_cursor"], 2);
    assert_eq!(page["data"].as_array().unwrap().len(), 20);
    let db_counts: HashMap<String, i64> =
        w.db.client()
            .await
            .query(
                "SELECT status, count(*) FROM ozon_postings WHERE shop_id = $1 GROUP BY status",
                &[&s],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    for tab in [
        "awaiting_packaging",
        "awaiting_deliver",
        "delivering",
        "delivered",
        "cancelled",
    ] {
        assert_eq!(
            page["stats"][tab].as_i64().unwrap(),
            db_counts.get(tab).copied().unwrap_or(0),
            "{tab}"
        );
        let (_, t) = get(
            &w,
            &w.m1,
            &format!("/ozon/orders?shop_id={s}&status={tab}&limit=5"),
        )
        .await;
        assert_eq!(t["total"], page["stats"][tab], "{tab}");
        for row in t["data"].as_array().unwrap() {
            assert_eq!(row["status"], tab);
        }
    }
    let (_, discarded) = get(
        &w,
        &w.m1,
        &format!("/ozon/orders?shop_id={s}&operation_status=cancelled"),
    )
    .await;
    assert_eq!(discarded["total"], page["stats"]["discarded"]);
    assert_eq!(discarded["stats"], page["stats"], "counters ignore the tab");
    // A row in the page's shape.
    let row = &page["data"][0];
    for key in [
        "id",
        "shop_id",
        "posting_number",
        "status",
        "operation_status",
        "in_process_at",
        "ordered_at",
        "shipment_date",
        "total_amount",
        "currency_code",
        "products",
        "packages",
        "domestic_tracking_numbers",
        "tracking_number",
        "delivery_method_name",
    ] {
        assert!(row.get(key).is_some(), "{key} missing: {row}");
    }
    assert_eq!(row["ordered_at"], row["in_process_at"]);
    assert!(row["total_amount"].is_string());
    assert!(row["products"][0]["sku"].is_string(), "{row}");
    assert!(row["products"][0]["price"].is_string(), "{row}");
    assert!(
        page["offer_id_images"]
            .as_object()
            .unwrap()
            .contains_key(row["products"][0]["offer_id"].as_str().unwrap()),
        "{}",
        page["offer_id_images"]
    );

    // Stable paging: every delivered posting exactly once, newest first.
    let total = page["stats"]["delivered"].as_i64().unwrap();
    let mut seen = Vec::new();
    let mut last: Option<String> = None;
    for p in 1..=(total + 49) / 50 {
        let (_, t) = get(
            &w,
            &w.m1,
            &format!("/ozon/orders?shop_id={s}&status=delivered&limit=50&page={p}"),
        )
        .await;
        for r in t["data"].as_array().unwrap() {
            let at = r["in_process_at"].as_str().unwrap().to_owned();
            if let Some(l) = &last {
                assert!(*l >= at, "{l} before {at}");
            }
            last = Some(at);
            seen.push(r["id"].as_i64().unwrap());
        }
    }
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(seen.len() as i64, total);
    assert_eq!(unique.len() as i64, total);

    // Keywords: posting prefix, Ozon tracking, SKU digits, domestic numbers.
    let numbers = h.posting_numbers(0);
    let number = &numbers[123];
    let prefix = number.rsplit_once('-').unwrap().0;
    let (_, k) = get(
        &w,
        &w.m1,
        &format!("/ozon/orders?shop_id={s}&keyword={prefix}"),
    )
    .await;
    assert_eq!(k["total"], 1, "{k}");
    assert_eq!(k["data"][0]["posting_number"], number.as_str());
    let (_, k) = get(&w, &w.m1, &format!("/ozon/orders?keyword={number}")).await;
    assert_eq!(k["total"], 1);
    let tracked: (String, String) = {
        let r =
            w.db.client()
                .await
                .query_one(
                    "SELECT posting_number, raw_payload->>'tracking_number' FROM ozon_postings
                  WHERE shop_id = $1 AND raw_payload->>'tracking_number' <> '' ORDER BY id LIMIT 1",
                    &[&s],
                )
                .await
                .unwrap();
        (r.get(0), r.get(1))
    };
    let (_, k) = get(
        &w,
        &w.m1,
        &format!(
            "/ozon/orders?shop_id={s}&keyword={}",
            tracked.1.to_lowercase()
        ),
    )
    .await;
    assert_eq!(k["total"], 1, "{k}");
    assert_eq!(k["data"][0]["posting_number"], tracked.0.as_str());
    assert_eq!(k["data"][0]["tracking_number"], tracked.1.as_str());
    let sku = row["products"][0]["sku"].as_str().unwrap().to_owned();
    let with_sku = scalar(
        &w,
        "SELECT count(DISTINCT posting_id) FROM ozon_posting_products x
           JOIN ozon_postings p ON p.id = x.posting_id WHERE p.shop_id = $1 AND x.sku = $2::text::bigint",
        &[&s, &sku],
    )
    .await;
    let (_, k) = get(
        &w,
        &w.m1,
        &format!("/ozon/orders?shop_id={s}&keyword={sku}&limit=1000"),
    )
    .await;
    assert_eq!(k["total"].as_i64().unwrap(), with_sku, "{sku}");
    for r in k["data"].as_array().unwrap() {
        assert!(
            r["products"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["sku"] == sku.as_str())
        );
    }
    {
        let c = w.db.client().await;
        c.execute(
            "INSERT INTO ozon_domestic_tracking_numbers (posting_id, tracking_number)
             SELECT id, unnest(ARRAY['7700123', 'SF1234X9']) FROM ozon_postings WHERE posting_number = $1",
            &[number],
        )
        .await
        .unwrap();
    }
    for kw in ["7700123", "sf1234x9"] {
        let (_, k) = get(&w, &w.m1, &format!("/ozon/orders?shop_id={s}&keyword={kw}")).await;
        assert_eq!(k["total"], 1, "{kw}: {k}");
        assert_eq!(k["data"][0]["posting_number"], number.as_str());
        assert_eq!(
            k["data"][0]["domestic_tracking_numbers"],
            json!(["7700123", "SF1234X9"])
        );
    }
    let (_, k) = get(
        &w,
        &w.m1,
        &format!("/ozon/orders?shop_id={s}&keyword=%20%20"),
    )
    .await;
    assert_eq!(k["total"], 600, "a blank keyword is no keyword");

    // Date ranges are days of the global time zone (seeded: the web app's Asia/Shanghai).
    let day: String = w
        .db
        .client()
        .await
        .query_one(
            "SELECT ((in_process_at AT TIME ZONE 'Asia/Shanghai')::date)::text FROM ozon_postings
              WHERE posting_number = $1",
            &[number],
        )
        .await
        .unwrap()
        .get(0);
    for tz in ["Asia/Shanghai", "America/New_York"] {
        if tz != "Asia/Shanghai" {
            let (status, body) = call(
                &w.srv,
                Method::PUT,
                "/ozon/global-settings/default_timezone",
                &w.root,
                Some(json!({"setting_value": {"value": tz}})),
            )
            .await;
            assert_eq!(status, 200, "{body}");
        }
        let expected = scalar(
            &w,
            "SELECT count(*) FROM ozon_postings WHERE shop_id = $1
                AND (in_process_at AT TIME ZONE $2)::date = $3::text::date",
            &[&s, &tz, &day],
        )
        .await;
        assert!(expected > 0);
        let (_, d) = get(
            &w,
            &w.m1,
            &format!("/ozon/orders?shop_id={s}&date_from={day}&date_to={day}"),
        )
        .await;
        assert_eq!(d["total"].as_i64().unwrap(), expected, "{tz}");
        assert_eq!(d["stats"]["total"].as_i64().unwrap(), expected, "{tz}");
    }
    let (status, _) = get(
        &w,
        &w.m1,
        &format!("/ozon/orders?shop_id={s}&date_from=13.12.2025"),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = get(&w, &w.m1, &format!("/ozon/orders?shop_id={s}&limit=1001")).await;
    assert_eq!(status, 422);

    // Detail, and one posting from Ozon now.
    let (status, d) = get(&w, &w.m1, &format!("/ozon/orders/{number}")).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["success"], true);
    assert_eq!(d["data"]["posting_number"], number.as_str());
    assert_eq!(
        d["summary"]["total_items"].as_u64().unwrap() as usize,
        d["data"]["products"].as_array().unwrap().len()
    );
    assert!(d["data"]["products"][0].get("image").is_some());
    assert!(h.set_posting_status(0, number, "delivered"));
    let (status, one) = call(
        &w.srv,
        Method::POST,
        &format!("/ozon/orders/{number}/sync?shop_id={s}"),
        &w.m1,
        None,
    )
    .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["data"]["status"], "delivered", "{one}");
    let (status, _) = call(
        &w.srv,
        Method::POST,
        &format!("/ozon/orders/99999999-0001-1/sync?shop_id={s}"),
        &w.m1,
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Another tenant: every shop-bearing order route is a 404, its own list is empty.
    for (method, path, body) in [
        (Method::GET, format!("/ozon/orders?shop_id={s}"), None),
        (Method::GET, format!("/ozon/orders/{number}"), None),
        (
            Method::GET,
            format!("/ozon/orders/{number}?shop_id={s}"),
            None,
        ),
        (
            Method::POST,
            format!("/ozon/orders/{number}/sync?shop_id={s}"),
            None,
        ),
        (
            Method::POST,
            "/ozon/orders/sync".to_owned(),
            Some(json!({"shop_id": s, "mode": "full"})),
        ),
        (
            Method::POST,
            format!("/ozon/shops/{s}/sync?sync_type=orders"),
            None,
        ),
        (Method::GET, format!("/ozon/daily-stats?shop_id={s}"), None),
        (Method::GET, format!("/ozon/statistics?shop_id={s}"), None),
    ] {
        let (status, body) = call(&w.srv, method.clone(), &path, &w.m2, body).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
    let (_, theirs) = get(&w, &w.m2, "/ozon/orders").await;
    assert_eq!(theirs["total"], 0, "{theirs}");
    assert_eq!(theirs["stats"]["total"], 0);
    let (_, bad) = call(
        &w.srv,
        Method::POST,
        "/ozon/orders/sync",
        &w.m1,
        Some(json!({"shop_id": s, "mode": "sometimes"})),
    )
    .await;
    assert_eq!(bad, json!({"ok": false, "error": "无效的同步模式"}));
    wk.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_is_scoped_to_the_callers_shops_and_zero_filled_and_settings_are_admin_only() {
    let w = world(10, 300).await;
    let wk = worker(&w);
    assert_eq!(
        sync_orders(&w, &w.m1, w.shop0, "full").await["status"],
        "completed"
    );
    assert_eq!(
        sync_orders(&w, &w.m2, w.shop1, "full").await["status"],
        "completed"
    );
    let not_cancelled = |shop: Option<i64>| {
        let w = &w;
        async move {
            scalar(
                w,
                "SELECT count(*) FROM ozon_postings
                  WHERE status <> 'cancelled' AND ($1::bigint IS NULL OR shop_id = $1)",
                &[&shop],
            )
            .await
        }
    };

    // "All" is the caller's shops, not every tenant's.
    let (status, st) = get(&w, &w.m1, "/ozon/statistics").await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(
        st["orders"]["total"].as_i64().unwrap(),
        not_cancelled(Some(w.shop0)).await
    );
    let (_, all) = get(&w, &w.root, "/ozon/statistics").await;
    assert_eq!(
        all["orders"]["total"].as_i64().unwrap(),
        not_cancelled(None).await
    );
    assert!(all["orders"]["total"].as_i64() > st["orders"]["total"].as_i64());
    let month: String =
        w.db.client()
            .await
            .query_one(
                "SELECT coalesce(sum(order_total_price), 0)::text FROM ozon_postings
              WHERE shop_id = $1 AND status <> 'cancelled'
                AND in_process_at >= (date_trunc('month', now() AT TIME ZONE 'Asia/Shanghai')
                                      AT TIME ZONE 'Asia/Shanghai')",
                &[&w.shop0],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(st["revenue"]["month"], month.as_str(), "{st}");
    assert!(st["revenue"]["yesterday"].is_string());
    assert_eq!(
        st["orders"]["pending"].as_i64().unwrap(),
        scalar(
            &w,
            "SELECT count(*) FROM ozon_postings WHERE shop_id = $1 AND status = 'awaiting_packaging'",
            &[&w.shop0]
        )
        .await
    );

    // Daily series: every day of the window, every shop with postings, zeros filled.
    let (status, d) = get(&w, &w.m1, "/ozon/daily-stats?range_type=14days").await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["dates"].as_array().unwrap().len(), 14);
    assert_eq!(d["total_days"], 14);
    assert_eq!(
        d["shops"],
        json!(["shop 0"]),
        "only the caller's shops: {d}"
    );
    let anchor_days: Vec<String> = {
        let c = w.db.client().await;
        let r = c
            .query_one(
                "SELECT ((min(in_process_at) AT TIME ZONE 'Asia/Shanghai')::date - 3)::text,
                        ((min(in_process_at) AT TIME ZONE 'Asia/Shanghai')::date + 3)::text
                   FROM ozon_postings WHERE shop_id = $1",
                &[&w.shop0],
            )
            .await
            .unwrap();
        vec![r.get(0), r.get(1)]
    };
    let (status, d) = get(
        &w,
        &w.m1,
        &format!(
            "/ozon/daily-stats?range_type=custom&start_date={}&end_date={}",
            anchor_days[0], anchor_days[1]
        ),
    )
    .await;
    assert_eq!(status, 200, "{d}");
    let dates = d["dates"].as_array().unwrap();
    assert_eq!(dates.len(), 7);
    assert_eq!(dates[0], anchor_days[0].as_str());
    let mut sum = 0;
    for day in dates {
        let day = day.as_str().unwrap();
        let n = d["counts"][day]["shop 0"].as_i64();
        assert!(n.is_some(), "{day} not filled: {d}");
        assert!(d["revenue"][day]["shop 0"].is_string());
        sum += n.unwrap();
    }
    assert_eq!(
        d["counts"][dates[0].as_str().unwrap()]["shop 0"],
        0,
        "before the first posting"
    );
    assert_eq!(d["revenue"][dates[0].as_str().unwrap()]["shop 0"], "0");
    let expected = scalar(
        &w,
        "SELECT count(*) FROM ozon_postings WHERE shop_id = $1 AND status <> 'cancelled'
            AND (in_process_at AT TIME ZONE 'Asia/Shanghai')::date
                BETWEEN $2::text::date AND $3::text::date",
        &[&w.shop0, &anchor_days[0], &anchor_days[1]],
    )
    .await;
    assert!(expected > 0);
    assert_eq!(sum, expected);
    let (status, _) = get(
        &w,
        &w.m1,
        "/ozon/daily-stats?range_type=custom&start_date=2025-01-01",
    )
    .await;
    assert_eq!(status, 422);

    // Global settings: everyone reads, only admins write, the time zone must exist.
    let (status, g) = get(&w, &w.m1, "/ozon/global-settings").await;
    assert_eq!(status, 200, "{g}");
    assert_eq!(
        g["settings"]["default_timezone"]["setting_value"]["value"],
        "Asia/Shanghai"
    );
    assert_eq!(
        g["settings"]["system_name"]["setting_value"]["value"],
        "EuraFlow"
    );
    let cdn = json!({"setting_value": {"cdn_list": ["https://cdn.example"], "selected_cdn": "https://cdn.example"}});
    let (status, body) = call(
        &w.srv,
        Method::PUT,
        "/ozon/global-settings/ozon_image_cdn",
        &w.m1,
        Some(cdn.clone()),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        &w.srv,
        Method::PUT,
        "/ozon/global-settings/ozon_image_cdn",
        &w.root,
        Some(cdn),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["setting_value"]["selected_cdn"], "https://cdn.example");
    let (status, one) = get(&w, &w.m2, "/ozon/global-settings/ozon_image_cdn").await;
    assert_eq!(status, 200);
    assert_eq!(one["description"], "Auto-created setting: ozon_image_cdn");
    let (status, _) = call(
        &w.srv,
        Method::PUT,
        "/ozon/global-settings/default_timezone",
        &w.root,
        Some(json!({"setting_value": {"value": "Mars/Olympus"}})),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = get(&w, &w.m1, "/ozon/global-settings/nope").await;
    assert_eq!(status, 404);
    assert_eq!(
        scalar(
            &w,
            "SELECT count(*) FROM audit_logs WHERE table_name = 'ozon_global_settings'",
            &[]
        )
        .await,
        1
    );
    wk.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hourly_order_pull_syncs_every_active_shop_once() {
    let w = world(5, 150).await;
    let h = w.fake.handle();
    let registry = Arc::new(euraflow::jobs::builtin_registry());
    let scheduler = Scheduler::new(w.harness.db.clone(), registry, Arc::new(SystemClock));
    scheduler.seed().await.unwrap();
    let c = w.db.client().await;
    let schedule: String = c
        .query_one(
            "SELECT schedule_config FROM sync_services WHERE celery_task_name = 'ef.ozon.orders.pull'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(schedule, "15 * * * *");
    let now = chrono::Utc::now();
    scheduler.tick(now).await.unwrap();
    let wk = worker(&w);
    let runs = scheduler
        .tick(now + chrono::Duration::minutes(61))
        .await
        .unwrap();
    assert_eq!(
        runs.iter()
            .filter(|r| r.job_type == "ef.ozon.orders.pull" && r.new)
            .count(),
        1,
        "{runs:?}"
    );
    crate::common::jobs::wait_until("both shops synced", Duration::from_secs(60), || async {
        let c = w.db.client().await;
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM jobs WHERE job_type = 'ef.ozon.orders.sync' AND state = 'succeeded'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        n >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let per_shop: HashMap<i64, i64> = c
        .query(
            "SELECT (payload->>'shop_id')::bigint, count(*) FROM jobs
              WHERE job_type = 'ef.ozon.orders.sync' GROUP BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(per_shop, HashMap::from([(w.shop0, 1), (w.shop1, 1)]));
    for (index, shop) in [(0, w.shop0), (1, w.shop1)] {
        assert_eq!(stored(&w, shop).await.len(), 150);
        // The first run of a shop is full: one pass, one page.
        assert_eq!(h.call_count(index, Endpoint::PostingFbsList), 1);
    }
    wk.stop().await;
}

/// The figure of the issue: a filtered page of `GET /ozon/orders` for a shop with 1 000 000
/// postings (and a neighbour with 100 000), with the plans PostgreSQL chooses. Run by hand:
/// `cargo nextest run -E 'test(/order_list_for_1m/)' --run-ignored only --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand"]
async fn order_list_for_1m_postings_prints_latency_and_plans() {
    let w = world(1, 0).await;
    let c = w.db.client().await;
    let started = Instant::now();
    for (shop, n, base) in [
        (w.shop0, 1_000_000i64, 50_000_000i64),
        (w.shop1, 100_000, 60_000_000),
    ] {
        c.execute(
            "INSERT INTO ozon_postings (shop_id, posting_number, ozon_posting_number, status,
                    operation_status, in_process_at, shipment_date, order_total_price,
                    currency_code, product_skus, raw_payload, has_tracking_number,
                    delivery_method_name, warehouse_name, last_synced_at)
             SELECT $1::bigint, ($3::bigint + g)::text || '-0001-1', ($3::bigint + g)::text || '-0001-1',
                    s.status,
                    CASE s.status WHEN 'awaiting_packaging' THEN 'awaiting_stock'
                         WHEN 'awaiting_deliver' THEN 'allocated' WHEN 'delivering' THEN 'shipping'
                         WHEN 'delivered' THEN 'delivered' ELSE 'cancelled' END,
                    now() - make_interval(secs => g * 31), now() - make_interval(secs => g * 31) + interval '2 days',
                    (g % 1000) + 0.5, 'CNY', ARRAY[(1500000000 + g % 5000)::text],
                    jsonb_build_object('posting_number', ($3::bigint + g)::text || '-0001-1'),
                    s.status NOT IN ('awaiting_packaging', 'cancelled'),
                    'Ozon Логистика самостоятельно', 'Склад Москва FBS', now()
               FROM generate_series(1, $2::bigint) g,
                    LATERAL (SELECT (ARRAY['awaiting_packaging','awaiting_deliver','delivering',
                        'delivered','delivered','delivered','cancelled'])[1 + g % 7] AS status) s",
            &[&shop, &n, &base],
        )
        .await
        .unwrap();
    }
    c.batch_execute(
        "INSERT INTO ozon_posting_products (posting_id, position, sku, offer_id, name, quantity, price, currency_code)
         SELECT id, 0, product_skus[1]::bigint, 'OF-' || product_skus[1], 'Товар', 1, order_total_price, 'CNY'
           FROM ozon_postings;
         INSERT INTO ozon_shipment_packages (posting_id, package_number, tracking_number)
         SELECT id, posting_number, 'UNIM' || lpad(id::text, 10, '0') || 'CN'
           FROM ozon_postings WHERE has_tracking_number;",
    )
    .await
    .unwrap();
    // One statement each: a multi-statement batch is one transaction, which VACUUM refuses.
    for t in [
        "ozon_postings",
        "ozon_posting_products",
        "ozon_shipment_packages",
    ] {
        c.batch_execute(&format!("VACUUM ANALYZE {t}"))
            .await
            .unwrap();
    }
    println!("generated 1 100 000 postings in {:.1?}", started.elapsed());
    let s = w.shop0;
    let day: String = c
        .query_one(
            "SELECT ((now() - interval '100 days') AT TIME ZONE 'Asia/Shanghai')::date::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let week_end: String = c
        .query_one(
            "SELECT ((now() - interval '94 days') AT TIME ZONE 'Asia/Shanghai')::date::text",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let variants = [
        format!("/ozon/orders?page=1&limit=50&shop_id={s}&status=awaiting_packaging"),
        format!("/ozon/orders?page=1&limit=50&shop_id={s}"),
        format!(
            "/ozon/orders?page=1&limit=50&shop_id={s}&status=delivered&date_from={day}&date_to={week_end}"
        ),
        format!("/ozon/orders?page=20&limit=100&shop_id={s}&status=delivered"),
        format!("/ozon/orders?page=1&limit=50&shop_id={s}&operation_status=cancelled"),
        format!("/ozon/orders?page=1&limit=50&shop_id={s}&keyword=50004242-0001"),
        format!("/ozon/orders?page=1&limit=50&shop_id={s}&keyword=UNIM0000004242CN"),
        format!("/ozon/orders?page=1&limit=50&shop_id={s}&keyword=1500004242"),
        "/ozon/orders?page=1&limit=50".to_owned(),
        format!("/ozon/statistics?shop_id={s}"),
        format!("/ozon/daily-stats?shop_id={s}&range_type=14days"),
    ];
    for path in &variants {
        let mut times = Vec::new();
        let mut total = Value::Null;
        for _ in 0..11 {
            let started = Instant::now();
            let (status, body) = get(&w, &w.m1, path).await;
            times.push(started.elapsed());
            assert_eq!(status, 200, "{body}");
            total = body["total"].clone();
        }
        times.sort();
        println!(
            "{:>10.2?} median of 11 (HTTPS round trip, total {total})  {path}",
            times[times.len() / 2]
        );
    }
    let page = |cond: &str| {
        format!(
            "SELECT p.id FROM ozon_postings p WHERE p.shop_id = {s} {cond}
              ORDER BY p.in_process_at DESC NULLS LAST, p.id DESC LIMIT 50 OFFSET 0"
        )
    };
    let plans = [
        page("AND p.status = 'awaiting_packaging'"),
        page(""),
        format!(
            "SELECT p.status, count(*), count(*) FILTER (WHERE p.operation_status = 'cancelled')
               FROM ozon_postings p WHERE p.shop_id = {s} GROUP BY p.status"
        ),
        format!(
            "SELECT count(*) FROM ozon_postings p WHERE p.shop_id = {s} AND p.status = 'awaiting_packaging'"
        ),
        page(
            "AND EXISTS (SELECT 1 FROM ozon_shipment_packages k WHERE k.posting_id = p.id AND k.tracking_number = 'UNIM0000004242CN')",
        ),
        page("AND p.posting_number LIKE '50004242-0001-%'"),
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
}

/// The other figure: an incremental sync of a busy shop — 5 000 postings changed since the last
/// run — against the fake. Run by hand:
/// `cargo nextest run -E 'test(/incremental_sync_of_5000/)' --run-ignored only --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand"]
async fn incremental_sync_of_5000_changed_postings_prints_its_time() {
    let w = world(100, 20_000).await;
    let h = w.fake.handle();
    let wk = worker(&w);
    sync_products(&w, &w.m1, w.shop0).await;
    let started = Instant::now();
    let full = sync_orders(&w, &w.m1, w.shop0, "full").await;
    assert_eq!(full["status"], "completed", "{full}");
    println!("full sync of 20 000 postings: {:.1?}", started.elapsed());
    let numbers = h.posting_numbers(0);
    let mut changed = 0;
    for n in numbers.iter().take(15_000) {
        let next = match h.posting_status(0, n).as_deref() {
            Some("awaiting_deliver") => "delivering",
            Some("delivering") => "delivered",
            Some("awaiting_packaging") => "awaiting_deliver",
            _ => continue,
        };
        h.set_posting_status(0, n, next);
        changed += 1;
        if changed == 4_000 {
            break;
        }
    }
    let added = h.add_postings(0, 1_000).len();
    h.clear_calls();
    let started = Instant::now();
    let inc = sync_orders(&w, &w.m1, w.shop0, "incremental").await;
    let took = started.elapsed();
    assert_eq!(inc["status"], "completed", "{inc}");
    println!(
        "incremental sync, {changed} status changes + {added} new postings: {took:.1?} \
         ({} postings read, {} list calls)",
        inc["result"]["total_synced"],
        h.call_count(0, Endpoint::PostingFbsList)
    );
    wk.stop().await;
}
