//! Issue 17, item 6 (input): a NUL character in any string field is a 422 (it was a 500 on login
//! and four other routes, the log saying only `db error`); a wrong-type value is never echoed in
//! the error; every rejection — body, path, query, method — answers in the API's JSON shape.

use crate::common::{TestDb, TestServer, as_refs, hash, insert_user, tokens};
use serde_json::Value;

async fn server(db: &TestDb) -> TestServer {
    TestServer::start(&as_refs(&db.env())).await
}

/// Send `body` as raw JSON text (so `\u0000` reaches the server exactly as written).
async fn send(
    srv: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, Value) {
    let mut req = srv
        .client()
        .request(method, srv.https_url(&format!("/api/ef/v1{path}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        ct,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn locs(body: &Value) -> Vec<String> {
    body["error"]["validation_errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    e["loc"]
                        .as_array()
                        .map(|l| {
                            l.iter()
                                .map(|s| s.as_str().unwrap_or("?"))
                                .collect::<Vec<_>>()
                                .join(".")
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every route that takes text gets a NUL somewhere: each answers 422 naming the field, none
/// reaches the database (before: 500 on login, refresh, users, me, settings, ...).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_any_string_is_a_422_naming_the_field() {
    let db = TestDb::migrated().await;
    insert_user(&db, "admin", "admin", None, &hash("admin-password")).await;
    let srv = server(&db).await;
    let (admin, _) = tokens(&srv, "admin", "admin-password").await;
    use reqwest::Method;
    let cases: Vec<(Method, &str, bool, &str, &str)> = vec![
        (
            Method::POST,
            "/auth/login",
            false,
            r#"{"username": "ad\u0000min", "password": "admin-password"}"#,
            "body.username",
        ),
        (
            Method::POST,
            "/auth/login",
            false,
            r#"{"username": "admin", "password": "x\u0000"}"#,
            "body.password",
        ),
        (
            Method::POST,
            "/auth/refresh",
            false,
            r#"{"refresh_token": "\u0000"}"#,
            "body.refresh_token",
        ),
        (
            Method::POST,
            "/auth/logout",
            true,
            r#"{"refresh_token": "abc\u0000"}"#,
            "body.refresh_token",
        ),
        (
            Method::PUT,
            "/auth/me",
            true,
            r#"{"username": "new\u0000name"}"#,
            "body.username",
        ),
        (
            Method::POST,
            "/auth/users",
            true,
            r#"{"username": "fine_name", "password": "long-enough-1", "phone": "+7\u0000", "role": "main_account"}"#,
            "body.phone",
        ),
        (
            Method::POST,
            "/api-keys/",
            true,
            r#"{"name": "key\u0000", "permissions": ["read"]}"#,
            "body.name",
        ),
        (
            Method::POST,
            "/account-levels",
            true,
            r#"{"name": "gold", "alias": "g\u0000", "extra_config": {"note": ["x", "\u0000"]}}"#,
            "body.alias",
        ),
        (
            Method::PUT,
            "/settings",
            true,
            r#"{"notifications": {}, "display": {"language": "zh\u0000"}, "sync": {}, "security": {}}"#,
            "body.display.language",
        ),
        (
            Method::DELETE,
            "/sync-services/1/logs",
            true,
            r#"{"before_date": "2024\u0000"}"#,
            "body.before_date",
        ),
        (
            Method::GET,
            "/audit/logs?module=a%00b",
            true,
            "",
            "query.module",
        ),
        (Method::GET, "/jobs?state=%00", true, "", "query.state"),
        (Method::GET, "/jobs/%00", true, "", "path.id"),
    ];
    for (method, path, auth, body, loc) in cases {
        let (status, ct, v) = send(
            &srv,
            method.clone(),
            path,
            auth.then_some(admin.as_str()),
            (!body.is_empty()).then_some(body),
        )
        .await;
        assert_eq!(status, 422, "{method} {path}: {v}");
        assert!(ct.starts_with("application/json"), "{method} {path}: {ct}");
        assert_eq!(
            v["error"]["code"], "VALIDATION_ERROR",
            "{method} {path}: {v}"
        );
        assert!(
            locs(&v).iter().any(|l| l == loc),
            "{method} {path}: expected {loc} in {:?}",
            locs(&v)
        );
        assert!(!has_nul(&v), "{method} {path}: a NUL came back: {v}");
    }
    // The nested NUL of the account level's free-form JSON is found too.
    let (_, _, v) = send(
        &srv,
        Method::POST,
        "/account-levels",
        Some(&admin),
        Some(r#"{"name": "gold", "extra_config": {"note": ["x", "\u0000"]}}"#),
    )
    .await;
    assert!(
        locs(&v).contains(&"body.extra_config.note.1".to_owned()),
        "{v}"
    );
    // The admin can still log in: nothing was locked or changed by the attempts.
    tokens(&srv, "admin", "admin-password").await;
    srv.stop().await;
}

/// serde's messages quote the value they did not expect; the API's keep the field and the
/// expected type only (before: `invalid type: string "hunter2-secret", expected a boolean`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_type_value_is_never_echoed() {
    let db = TestDb::migrated().await;
    insert_user(&db, "admin", "admin", None, &hash("admin-password")).await;
    let srv = server(&db).await;
    let (admin, _) = tokens(&srv, "admin", "admin-password").await;
    use reqwest::Method;
    for (method, path, body, loc) in [
        (
            Method::POST,
            "/auth/users",
            r#"{"username": "fine_name", "password": "long-enough-1", "role": "main_account", "is_active": "hunter2-secret"}"#,
            "body.is_active",
        ),
        (
            Method::POST,
            "/account-levels",
            r#"{"name": "gold", "max_shops": "hunter2-secret"}"#,
            "body.max_shops",
        ),
        (
            Method::POST,
            "/auth/login",
            r#"{"username": "admin", "password": {"hunter2-secret": 1}}"#,
            "body.password",
        ),
        (
            Method::POST,
            "/api-keys/",
            r#"{"name": "k", "expires_in_days": -99999999999999999999999}"#,
            "body.expires_in_days",
        ),
    ] {
        let (status, _, v) = send(&srv, method.clone(), path, Some(&admin), Some(body)).await;
        assert_eq!(status, 422, "{method} {path}: {v}");
        let text = v.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("99999999"),
            "{method} {path}: the value was echoed: {text}"
        );
        assert!(
            locs(&v).iter().any(|l| l == loc),
            "{method} {path}: {:?}",
            locs(&v)
        );
        let msg = v["error"]["validation_errors"][0]["msg"]
            .as_str()
            .unwrap_or_default();
        assert!(
            msg.contains("expected") || msg.contains("wrong form"),
            "{msg}"
        );
    }
    srv.stop().await;
}

/// Path, query, body, content type, method: every rejection is the API's JSON error, without
/// the submitted value (before: the health route's query rejection was axum's text/plain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_is_a_json_error() {
    let db = TestDb::migrated().await;
    insert_user(&db, "admin", "admin", None, &hash("admin-password")).await;
    let srv = server(&db).await;
    let (admin, _) = tokens(&srv, "admin", "admin-password").await;
    let c = srv.client();
    let url = |p: &str| srv.https_url(&format!("/api/ef/v1{p}"));
    let check = |what: &str, r: reqwest::Response, status: u16| {
        let what = what.to_owned();
        async move {
            assert_eq!(r.status().as_u16(), status, "{what}");
            let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
            assert!(ct.starts_with("application/json"), "{what}: {ct}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["ok"], false, "{what}: {v}");
            assert_eq!(v["error"]["status"], status, "{what}: {v}");
            assert!(!v.to_string().contains("hunter2"), "{what}: echoed: {v}");
        }
    };
    check(
        "path",
        c.get(url("/jobs/hunter2"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    check(
        "query",
        c.get(url("/jobs?limit=hunter2"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    check(
        "health query",
        c.get(url("/health?details=1&details=hunter2"))
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    check(
        "broken JSON",
        c.post(url("/auth/login"))
            .header("content-type", "application/json")
            .body(r#"{"username": "hunter2"#)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    check(
        "no content type",
        c.post(url("/auth/login"))
            .body(r#"{"username": "a", "password": "hunter2"}"#)
            .send()
            .await
            .unwrap(),
        415,
    )
    .await;
    check(
        "optional body too large",
        c.post(url("/auth/logout"))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(vec![b' '; 100 * 1024])
            .send()
            .await
            .unwrap(),
        413,
    )
    .await;
    check(
        "API method",
        c.patch(url("/auth/login")).send().await.unwrap(),
        405,
    )
    .await;
    let r = c.post(srv.https_url("/healthz")).send().await.unwrap();
    assert!(r.headers().contains_key("allow"));
    check("liveness method", r, 405).await;
    srv.stop().await;
}
