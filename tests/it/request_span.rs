//! One request, one span: a warning a handler logs carries the request's id (`X-Trace-Id`), so
//! `journalctl REQUEST_ID=...` (or grepping the JSON log) shows everything one request did.

use std::time::Duration;

use crate::common::{Process, TestDb, as_refs, hash, insert_user, production_env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_inside_a_handler_carries_the_request_id() {
    let db = TestDb::migrated().await;
    insert_user(
        &db,
        "spanned",
        "main_account",
        None,
        &hash("spanned-password"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = production_env(dir.path());
    env.extend(db.env());
    let env2 = env.clone();
    let p = tokio::task::spawn_blocking(move || {
        Process::spawn(dir.path(), &["serve"], &as_refs(&env2))
    })
    .await
    .unwrap();
    let http = p.http.expect("http listener");
    let client = reqwest::Client::new();
    let base = format!("http://{http}/api/ef/v1");
    let login: serde_json::Value = client
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({"username": "spanned", "password": "spanned-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    // The first refresh rotates the token; presenting it again is a replay, which the handler
    // logs as a warning.
    let first = client
        .post(format!("{base}/auth/refresh"))
        .json(&serde_json::json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let replay = client
        .post(format!("{base}/auth/refresh"))
        .json(&serde_json::json!({"refresh_token": refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);
    let trace = replay.headers()["x-trace-id"].to_str().unwrap().to_owned();
    let line = p.wait_for_log("refresh token reuse", Duration::from_secs(5));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["span"]["request_id"], trace.as_str(), "{line}");
    assert_eq!(v["level"], "WARN");
    // The access line names the same request, once. It is written when the response has been
    // sent, so it may reach the log just after the client has the answer: wait for it.
    let access_lines = || -> Vec<serde_json::Value> {
        p.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|v: &serde_json::Value| v["request_id"] == trace.as_str())
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while access_lines().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give a (wrong) second line the same chance to appear before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let access = access_lines();
    assert_eq!(access.len(), 1, "{access:?}");
    assert!(access[0].get("span").is_none(), "{:?}", access[0]);
}
