//! `euraflow --dev serve --demo` (`scripts/dev-server --demo`): the real binary starts its fake
//! Ozon, creates the seller `demo` with a generated password, connects two shops, syncs their
//! products and orders through the job worker, and the seller's pages answer with that data.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, Process, TestDb, as_refs};

async fn get(client: &reqwest::Client, base: &str, token: &str, path: &str) -> (u16, Value) {
    let r = client
        .get(format!("{base}/api/ef/v1{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_gives_a_seller_two_synced_shops() {
    let db = TestDb::migrated().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = common::isolated_env();
    env.extend(db.env());
    env.push(("EF__HTTPS_LISTEN".into(), "127.0.0.1:0".into()));
    env.push(("EF__API_PORT".into(), "0".into()));
    let p = Process::spawn(dir.path(), &["--dev", "serve", "--demo"], &as_refs(&env));
    p.wait_for_log("demo: created the seller", Duration::from_secs(20));
    let password_file = dir.path().join(".euraflow-dev/demo-password");
    let password = std::fs::read_to_string(&password_file).expect("the demo password file");
    let mode = std::fs::metadata(&password_file).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o077,
        0,
        "the password file is private"
    );
    assert!(
        !p.log_text().contains(password.trim()),
        "the password is never logged"
    );

    let base = format!("http://{}", p.http.expect("http listener"));
    let client = reqwest::Client::new();
    let login: Value = client
        .post(format!("{base}/api/ef/v1/auth/login"))
        .json(&serde_json::json!({"username": "demo", "password": password.trim()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("login as demo: {login}"))
        .to_owned();

    // The seller starts with points, so the balance after login is not zero.
    let (status, balance) = get(&client, &base, &token, "/credit/balance").await;
    assert_eq!(status, 200, "{balance}");
    assert_eq!(
        balance["balance"]
            .as_str()
            .and_then(|b| b.parse::<f64>().ok()),
        Some(1000.0),
        "{balance}"
    );
    assert_eq!(balance["is_low_balance"], false, "{balance}");

    let (status, shops) = get(&client, &base, &token, "/ozon/shops").await;
    assert_eq!(status, 200, "{shops}");
    let shops = shops["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(shops.len(), 2, "{shops:?}");
    let (_, managed) = get(&client, &base, &token, "/ozon/shops/management").await;
    let managed = managed["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(managed.len(), 2, "{managed:?}");
    assert!(
        managed
            .iter()
            .all(|s| s["api_credentials"]["api_key"] == "******"),
        "the fake's keys are stored like real ones, masked: {managed:?}"
    );

    // The first syncs run in the server's own worker: wait for both shops' products and orders.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut done = true;
        for shop in &shops {
            let id = shop["id"].as_i64().unwrap();
            let (_, products) = get(
                &client,
                &base,
                &token,
                &format!("/ozon/products?shop_id={id}"),
            )
            .await;
            let (_, orders) = get(
                &client,
                &base,
                &token,
                &format!("/ozon/orders?shop_id={id}"),
            )
            .await;
            done &= products["total"].as_i64().unwrap_or(0) == 300;
            done &= orders["total"].as_i64().unwrap_or(0) > 0;
        }
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo shops were not synced in 60 s:\n{}",
            p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (status, daily) = get(&client, &base, &token, "/ozon/daily-stats").await;
    assert_eq!(status, 200, "{daily}");
    assert_eq!(
        daily["shops"],
        serde_json::json!(["Demo shop 1", "Demo shop 2"]),
        "{daily}"
    );
    let orders_in_chart: i64 = daily["counts"]
        .as_object()
        .map(|days| {
            days.values()
                .flat_map(|d| d.as_object().into_iter().flat_map(|m| m.values()))
                .filter_map(Value::as_i64)
                .sum()
        })
        .unwrap_or(0);
    assert!(
        orders_in_chart > 0,
        "the overview chart has orders: {daily}"
    );
    // The demo's fake exchange-rate provider gives the pages a CNY↔RUB rate.
    let (status, settings) = get(&client, &base, &token, "/ozon/global-settings").await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(
        settings["exchange_rate"]["cny_to_rub"], "12.500000",
        "{settings}"
    );
    assert_eq!(settings["exchange_rate"]["stale"], false, "{settings}");
}

#[test]
fn demo_mode_is_for_development_only() {
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--demo"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--dev serve --demo"), "{err}");
}
