//! Exchange rates end to end (issue 13 item 6): the real server and worker against real
//! PostgreSQL and Redis and the fake exchangerate-api.com over real HTTP — a refresh stores both
//! pairs with their history and the global settings show them; the hourly job is seeded at
//! `18 * * * *`; a failing provider keeps the last good rate, marked stale, and the job's run is
//! recorded as failed; bad answers are refused; configuration is admins' only, the key masked,
//! never returned, encrypted at rest, and re-encrypted by the data-key rotation; convert.

use std::sync::Arc;
use std::time::Duration;

use crate::common::jobs::Harness;
use crate::common::{self, TestDb, TestServer, as_refs, call, code, hash, insert_user, tokens};
use euraflow::exchange_rates::fake::{FakeMode, FakeRates};
use reqwest::Method;
use serde_json::{Value, json};

const PW: &str = "rates-test-password";
const KEY: &str = "fake-rates-key-0123456789";

struct World {
    db: TestDb,
    srv: TestServer,
    fake: FakeRates,
    /// An admin and a seller (main account).
    root: String,
    seller: String,
    /// The data key given to the server and the worker (`None`: the dev key in the server's dir).
    data_key: Option<String>,
}

async fn world(with_data_key: bool) -> World {
    let db = TestDb::migrated().await;
    let fake = FakeRates::start(KEY).await.unwrap();
    insert_user(&db, "root", "admin", None, &hash(PW)).await;
    insert_user(&db, "seller", "main_account", None, &hash(PW)).await;
    let data_key = with_data_key.then(euraflow::secrets::generate_key);
    let mut env = db.env();
    env.extend(shared_env(&fake, data_key.as_deref()));
    let srv = TestServer::start(&as_refs(&env)).await;
    let root = tokens(&srv, "root", PW).await.0;
    let seller = tokens(&srv, "seller", PW).await.0;
    World {
        db,
        srv,
        fake,
        root,
        seller,
        data_key,
    }
}

fn shared_env(fake: &FakeRates, data_key: Option<&str>) -> Vec<(String, String)> {
    let mut env = vec![
        ("EF__EXCHANGE_RATE_API_BASE_URL".to_owned(), fake.base_url()),
        ("EF__EXCHANGE_RATE_TIMEOUT".to_owned(), "1s".to_owned()),
    ];
    if let Some(k) = data_key {
        env.push(("EF__DATA_KEY".to_owned(), k.to_owned()));
    }
    env
}

async fn get(w: &World, token: &str, path: &str) -> (u16, Value) {
    call(&w.srv, Method::GET, path, token, None).await
}

async fn post(w: &World, token: &str, path: &str, body: Value) -> (u16, Value) {
    call(&w.srv, Method::POST, path, token, Some(body)).await
}

async fn configure(w: &World) {
    let (status, body) = post(
        w,
        &w.root,
        "/exchange-rates/config",
        json!({"api_key": KEY, "api_provider": "exchangerate-api"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["api_provider"], "exchangerate-api", "{body}");
    assert_eq!(body["is_enabled"], true, "{body}");
    assert_eq!(body["base_currency"], "CNY", "{body}");
    assert!(body["id"].as_i64().is_some(), "{body}");
}

async fn refresh(w: &World) -> Value {
    let (status, body) = post(w, &w.root, "/exchange-rates/refresh", json!({})).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn stored_rows(w: &World) -> i64 {
    w.db.client()
        .await
        .query_one("SELECT count(*) FROM exchange_rates", &[])
        .await
        .unwrap()
        .get(0)
}

async fn stored_key(db: &TestDb) -> String {
    common::admin_client(&db.name)
        .await
        .query_one("SELECT api_key FROM exchange_rate_config", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_stores_both_pairs_with_history_and_the_pages_read_them() {
    let w = world(true).await;

    // Nothing yet: the pages get null, the rate a clear 404 (the original: 500).
    let (_, cfg) = get(&w, &w.seller, "/exchange-rates/config").await;
    assert_eq!(
        cfg,
        json!({"configured": false, "message": "尚未配置汇率API"})
    );
    let (status, gs) = get(&w, &w.seller, "/ozon/global-settings").await;
    assert_eq!(status, 200, "{gs}");
    assert_eq!(gs["exchange_rate"], Value::Null, "{gs}");
    let (status, body) = get(&w, &w.seller, "/exchange-rates/rate").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(code(&body), "EXCHANGE_RATE_NOT_AVAILABLE");
    // A refresh before any configuration is skipped.
    assert_eq!(refresh(&w).await["status"], "skipped");
    // The first configuration needs a key.
    let (status, body) = post(&w, &w.root, "/exchange-rates/config", json!({})).await;
    assert_eq!(status, 422, "{body}");

    configure(&w).await;
    let r = refresh(&w).await;
    assert_eq!(r["status"], "success", "{r}");
    assert_eq!(r["rate"], "12.500000", "{r}");
    assert_eq!(r["records_processed"], 2, "{r}");
    w.fake.handle().set_cny_rub(13.0);
    assert_eq!(refresh(&w).await["rate"], "13.000000");
    assert_eq!(stored_rows(&w).await, 4, "two pairs, two refreshes");

    let (status, rate) = get(
        &w,
        &w.seller,
        "/exchange-rates/rate?from_currency=CNY&to_currency=RUB",
    )
    .await;
    assert_eq!(status, 200, "{rate}");
    assert_eq!(rate["from_currency"], "CNY");
    assert_eq!(rate["to_currency"], "RUB");
    assert_eq!(rate["rate"], "13.000000", "{rate}");
    assert_eq!(rate["cached"], true);
    assert_eq!(rate["stale"], false, "{rate}");
    assert!(rate["age_seconds"].as_i64().unwrap() < 60, "{rate}");
    let (_, back) = get(
        &w,
        &w.seller,
        "/exchange-rates/rate?from_currency=rub&to_currency=cny",
    )
    .await;
    assert_eq!(back["rate"], "0.076923", "{back}");

    // The global settings page reads the stored rates, with their real time.
    let (_, gs) = get(&w, &w.seller, "/ozon/global-settings").await;
    let x = &gs["exchange_rate"];
    assert_eq!(x["cny_to_rub"], "13.000000", "{gs}");
    assert_eq!(x["rub_to_cny"], "0.076923", "{gs}");
    assert_eq!(x["stale"], false, "{gs}");
    let updated: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(x["updated_at"].clone()).unwrap();
    assert!((chrono::Utc::now() - updated).num_seconds() < 60, "{gs}");
    assert!(gs["settings"]["default_timezone"].is_object(), "{gs}");

    // History: ascending, floats.
    let (status, h) = get(
        &w,
        &w.seller,
        "/exchange-rates/history?from_currency=CNY&to_currency=RUB&range=today",
    )
    .await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["time_range"], "today");
    let points: Vec<f64> = h["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rate"].as_f64().unwrap())
        .collect();
    assert_eq!(points, vec![12.5, 13.0], "{h}");
    let (_, week) = get(&w, &w.seller, "/exchange-rates/history?range=week").await;
    assert_eq!(week["data"].as_array().unwrap().len(), 2, "{week}");

    // Convert, rounded to 0.01; bad input is a 422 naming the field.
    let (status, c) = post(
        &w,
        &w.seller,
        "/exchange-rates/convert",
        json!({"amount": "100.55", "from_currency": "CNY", "to_currency": "RUB"}),
    )
    .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["amount"], "100.55");
    assert_eq!(c["rate"], "13.000000");
    assert_eq!(c["converted_amount"], "1307.15", "{c}");
    let (_, c) = post(
        &w,
        &w.seller,
        "/exchange-rates/convert",
        json!({"amount": 1000, "from_currency": "RUB", "to_currency": "CNY"}),
    )
    .await;
    assert_eq!(c["converted_amount"], "76.92", "{c}");
    for (path, bad) in [
        ("/exchange-rates/convert", json!({"amount": "lots"})),
        ("/exchange-rates/convert", json!({"amount": "1e20"})),
        (
            "/exchange-rates/convert",
            json!({"amount": "1", "from_currency": "C/Y"}),
        ),
    ] {
        let (status, body) = post(&w, &w.seller, path, bad.clone()).await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
    let (status, body) = get(&w, &w.seller, "/exchange-rates/history?range=year").await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = get(&w, &w.seller, "/exchange-rates/rate?from_currency=XX").await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = get(
        &w,
        &w.seller,
        "/exchange-rates/rate?from_currency=CNY&to_currency=USD",
    )
    .await;
    assert_eq!(status, 404, "a pair never fetched: {body}");

    // Audited, without the key.
    let audit =
        w.db.client()
            .await
            .query(
                "SELECT action_display, coalesce(changes::text, '') FROM audit_logs
              WHERE action_display IN ('配置汇率API', '刷新汇率') ORDER BY id",
                &[],
            )
            .await
            .unwrap();
    let displays: Vec<String> = audit.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        displays,
        vec!["配置汇率API", "刷新汇率", "刷新汇率"],
        "a skipped refresh is no change"
    );
    assert!(audit.iter().all(|r| !r.get::<_, String>(1).contains(KEY)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_is_for_admins_and_the_key_is_masked_and_encrypted() {
    let w = world(true).await;
    // A seller may not configure, refresh or probe (the original let any sub-account).
    for path in [
        "/exchange-rates/config",
        "/exchange-rates/refresh",
        "/exchange-rates/test-connection",
    ] {
        let (status, body) = post(&w, &w.seller, path, json!({"api_key": KEY})).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(code(&body), "PERMISSION_DENIED", "{path}: {body}");
    }
    // A key that cannot be a URL path segment is refused.
    let (status, body) = post(
        &w,
        &w.root,
        "/exchange-rates/config",
        json!({"api_key": "../x?y=zzzzzz"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");

    configure(&w).await;
    for token in [&w.root, &w.seller] {
        let r = w
            .srv
            .client()
            .get(w.srv.https_url("/api/ef/v1/exchange-rates/config"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!r.contains(KEY), "{r}");
        let v: Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v["configured"], true, "{v}");
        assert_eq!(v["api_key"], "******", "{v}");
    }
    // At rest: sealed with the data key, the plaintext nowhere in the bytes.
    let sealed = stored_key(&w.db).await;
    assert!(sealed.starts_with("ef1:"), "{sealed}");
    assert!(!sealed.contains(KEY));
    let raw: Vec<u8> = common::admin_client(&w.db.name)
        .await
        .query_one(
            "SELECT convert_to(api_key, 'UTF8') FROM exchange_rate_config",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!raw.windows(KEY.len()).any(|win| win == KEY.as_bytes()));

    // The mask sent back keeps the key; other fields change.
    let (status, body) = post(
        &w,
        &w.root,
        "/exchange-rates/config",
        json!({"api_key": "******", "is_enabled": false}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_enabled"], false);
    assert_eq!(stored_key(&w.db).await, sealed, "unchanged");
    assert_eq!(refresh(&w).await["status"], "skipped", "disabled");
    let (_, body) = post(
        &w,
        &w.root,
        "/exchange-rates/config",
        json!({"api_key": "******", "is_enabled": true}),
    )
    .await;
    assert_eq!(body["is_enabled"], true);

    // The connection test uses the stored key for the mask, the given one otherwise.
    let (status, t) = post(
        &w,
        &w.root,
        "/exchange-rates/test-connection",
        json!({"api_key": "******"}),
    )
    .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["success"], true, "{t}");
    assert_eq!(t["rate"], "12.500000", "{t}");
    let (_, t) = post(
        &w,
        &w.root,
        "/exchange-rates/test-connection",
        json!({"api_key": "wrong-key-123456"}),
    )
    .await;
    assert_eq!(t["success"], false, "{t}");
    assert!(
        t["message"].as_str().unwrap().contains("API密钥无效"),
        "{t}"
    );
    assert_eq!(stored_rows(&w).await, 0, "a test stores nothing");

    // A seller's force_refresh does not call the provider; an admin's does.
    let calls = w.fake.handle().calls();
    let (status, _) = get(&w, &w.seller, "/exchange-rates/rate?force_refresh=true").await;
    assert_eq!(status, 404);
    assert_eq!(w.fake.handle().calls(), calls);
    let (status, r) = get(&w, &w.root, "/exchange-rates/rate?force_refresh=true").await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["cached"], false, "{r}");
    assert_eq!(r["rate"], "12.500000");

    // The audit log names the change without the key.
    let changes: Vec<String> =
        w.db.client()
            .await
            .query(
                "SELECT changes::text FROM audit_logs WHERE action_display = '配置汇率API'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(changes.len(), 3);
    assert!(changes.iter().all(|c| !c.contains(KEY)), "{changes:?}");
    assert!(changes[0].contains("******"), "{changes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failures_keep_the_last_good_rate_marked_stale() {
    let w = world(true).await;
    configure(&w).await;
    assert_eq!(refresh(&w).await["status"], "success");
    let fake = w.fake.handle();
    let bad_answers: Vec<(FakeMode, &str)> = vec![
        (FakeMode::Status(500), "HTTP 500"),
        (FakeMode::Status(429), "HTTP 429"),
        (FakeMode::Garbage, "not JSON"),
        (
            FakeMode::ProviderError("quota-reached".into()),
            "quota-reached",
        ),
        (FakeMode::Rate(json!(-1)), "positive"),
        (FakeMode::Rate(json!(0)), "positive"),
        (FakeMode::Rate(json!("12.5")), "not a number"),
        (FakeMode::Rate(json!(1e9)), "outside"),
        (FakeMode::Rate(json!(200.0)), "jumped"),
        (FakeMode::Slow(Duration::from_secs(3)), "超时"),
    ];
    for (mode, why) in bad_answers {
        fake.set_mode(mode.clone());
        let r = refresh(&w).await;
        assert_eq!(r["status"], "failed", "{mode:?}: {r}");
        let message = r["message"].as_str().unwrap();
        assert!(message.contains(why), "{mode:?}: {message}");
        assert!(!message.contains(KEY), "{message}");
        assert!(!message.contains("/v6/"), "no URL in errors: {message}");
    }
    assert_eq!(stored_rows(&w).await, 2, "nothing stored from a bad answer");

    // The last good rate is still read, marked stale; the configuration says why.
    let (status, r) = get(&w, &w.seller, "/exchange-rates/rate").await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["rate"], "12.500000");
    assert_eq!(r["stale"], true, "{r}");
    assert!(r["age_seconds"].as_i64().is_some(), "{r}");
    let (_, gs) = get(&w, &w.seller, "/ozon/global-settings").await;
    assert_eq!(gs["exchange_rate"]["cny_to_rub"], "12.500000", "{gs}");
    assert_eq!(gs["exchange_rate"]["stale"], true, "{gs}");
    let (_, cfg) = get(&w, &w.root, "/exchange-rates/config").await;
    assert_eq!(cfg["last_refresh"]["status"], "failed", "{cfg}");
    assert!(
        cfg["last_refresh"]["error"]
            .as_str()
            .unwrap()
            .contains("超时"),
        "{cfg}"
    );

    // A good answer again: fresh.
    fake.set_mode(FakeMode::Normal);
    assert_eq!(refresh(&w).await["status"], "success");
    let (_, r) = get(&w, &w.seller, "/exchange-rates/rate").await;
    assert_eq!(r["stale"], false, "{r}");
}

/// The hourly job is seeded at `18 * * * *`; run through the worker it refreshes, and when the
/// provider fails its run is recorded as failed while the rate stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cron_job_is_seeded_refreshes_and_records_failures() {
    let w = world(true).await;
    let shared = shared_env(&w.fake, w.data_key.as_deref());
    let harness = Harness::new(&w.db, &as_refs(&shared));
    let scheduler = euraflow::jobs::scheduler::Scheduler::new(
        harness.db.clone(),
        Arc::new(euraflow::jobs::builtin_registry()),
        Arc::new(euraflow::jobs::scheduler::SystemClock),
    );
    scheduler.seed().await.unwrap();
    let (_, services) = get(&w, &w.root, "/sync-services").await;
    let service = services
        .as_array()
        .or_else(|| services["data"].as_array())
        .or_else(|| services["items"].as_array())
        .unwrap_or_else(|| panic!("{services}"))
        .iter()
        .find(|s| s["celery_task_name"] == "ef.finance.rates.refresh")
        .unwrap_or_else(|| panic!("no exchange-rate service in {services}"))
        .clone();
    assert_eq!(service["schedule_config"], "18 * * * *", "{service}");
    assert_eq!(service["is_enabled"], true, "{service}");
    let id = service["id"].as_i64().unwrap();

    configure(&w).await;
    let worker = harness.start(euraflow::jobs::builtin_registry(), harness.options());
    let job = trigger(&w, id).await;
    harness
        .wait_state(job, "succeeded", Duration::from_secs(30))
        .await;
    assert_eq!(stored_rows(&w).await, 2);

    w.fake.handle().set_mode(FakeMode::Status(503));
    let job = trigger(&w, id).await;
    let (_, _, error) = harness
        .wait_state(job, "dead", Duration::from_secs(30))
        .await;
    assert!(
        error.as_deref().unwrap_or("").contains("HTTP 503"),
        "{error:?}"
    );
    assert_eq!(stored_rows(&w).await, 2);
    let client = harness.client().await;
    let log = client
        .query_one(
            "SELECT status, coalesce(error_message, '') FROM sync_service_logs
              WHERE service_key = 'ef.finance.rates.refresh' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(log.get::<_, String>(0), "failed");
    assert!(log.get::<_, String>(1).contains("HTTP 503"));
    let (_, r) = get(&w, &w.seller, "/exchange-rates/rate").await;
    assert_eq!(r["rate"], "12.500000");
    assert_eq!(r["stale"], true, "{r}");
    worker.stop().await;
}

async fn trigger(w: &World, id: i64) -> i64 {
    let path = format!("/sync-services/{id}/trigger");
    let (status, t) = call(&w.srv, Method::POST, &path, &w.root, None).await;
    assert_eq!(status, 200, "{t}");
    t["job_id"].as_i64().unwrap()
}

/// `euraflow secrets rotate-data-key` re-encrypts the provider key too, and a server with only
/// the new key still uses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_data_key_re_encrypts_the_provider_key() {
    let w = world(false).await;
    configure(&w).await;
    let before = stored_key(&w.db).await;
    let mut env = w.db.env();
    env.push(("EF__REDIS_PREFIX".into(), "test:rates-rotate:".into()));
    let out = std::process::Command::new(common::BIN)
        .args(["--dev", "secrets", "rotate-data-key"])
        .current_dir(w.srv.dir.path())
        .env_clear()
        .envs(env.clone())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 stored credential(s) re-encrypted"));
    let after = stored_key(&w.db).await;
    assert_ne!(
        before.split(':').nth(1),
        after.split(':').nth(1),
        "sealed with another key"
    );
    assert!(!after.contains(KEY));
    let new_key = std::fs::read_to_string(w.srv.dir.path().join(".euraflow-dev/data_key")).unwrap();
    let World { srv, fake, db, .. } = w;
    srv.stop().await;

    env.extend(shared_env(&fake, Some(new_key.trim())));
    let srv = TestServer::start(&as_refs(&env)).await;
    let root = tokens(&srv, "root", PW).await.0;
    let (_, t) = call(
        &srv,
        Method::POST,
        "/exchange-rates/test-connection",
        &root,
        Some(json!({})),
    )
    .await;
    assert_eq!(t["success"], true, "{t}");
    srv.stop().await;
    drop(db);
}

/// `euraflow check`'s exchange-rate line: not configured (info), fresh (pass), stale (warn).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checklist_reports_the_rate_and_its_staleness() {
    let w = world(true).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = w.db.env();
    env.extend(shared_env(&w.fake, w.data_key.as_deref()));
    env.push(("EF__REDIS_PREFIX".into(), "test:rates-check:".into()));
    let line = || {
        let out = std::process::Command::new(common::BIN)
            .args(["--dev", "check", "--json"])
            .current_dir(dir.path())
            .env_clear()
            .envs(env.clone())
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "exchange_rate")
            .unwrap_or_else(|| panic!("no exchange_rate line in {v}"))
            .clone()
    };
    let l = line();
    assert_eq!(l["outcome"], "info", "{l}");
    assert!(
        l["found"].as_str().unwrap().contains("not configured"),
        "{l}"
    );

    configure(&w).await;
    let l = line();
    assert_eq!(l["outcome"], "warn", "configured, nothing fetched: {l}");
    assert_eq!(refresh(&w).await["status"], "success");
    let l = line();
    assert_eq!(l["outcome"], "pass", "{l}");
    assert!(l["found"].as_str().unwrap().contains("12.500000"), "{l}");

    w.fake.handle().set_mode(FakeMode::Status(500));
    assert_eq!(refresh(&w).await["status"], "failed");
    let l = line();
    assert_eq!(l["outcome"], "warn", "{l}");
    let found = l["found"].as_str().unwrap();
    assert!(found.contains("stale") && found.contains("HTTP 500"), "{l}");
    assert!(!found.contains(KEY));
}
