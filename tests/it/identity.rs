//! Identity and access against real PostgreSQL and Redis over real TLS: the original's bcrypt
//! hashes, tokens, sessions, refresh reuse, logout, rate limits, trusted proxies, the role matrix,
//! validation, API keys and the audit log.

use std::time::Duration;

use crate::common::{
    self, TestDb, TestServer, as_refs, call, code, hash, insert_user, login, tokens,
};
use base64::Engine;
use reqwest::Method;
use serde_json::json;

/// Made with Python's bcrypt 4.0.1 exactly as the original did (see src/auth/password.rs).
const PY_ASCII: (&str, &str) = (
    "EuraFlow-pass-2025",
    "$2b$12$wogTz4VFiwKv4AlnYzBwzehangBN0j7GguuEJdYNwb1lG8DmCJSxu",
);
const PY_CJK: (&str, &str) = (
    "跨境电商平台密码测试跨境电商平台密码测试跨境电商平台密码测试跨境电商平台密码测试尾巴",
    "$2b$12$d54UTmW0ENxSreV.JCdAAOJeFLJ2zGM2iGTrNLCFgCRAH7fxFH5W2",
);

async fn server(db: &TestDb, extra: &[(&str, &str)]) -> TestServer {
    let mut env = db.env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    TestServer::start(&as_refs(&env)).await
}

async fn stored_hash(db: &TestDb, name: &str) -> String {
    db.client()
        .await
        .query_one(
            "SELECT password_hash FROM users WHERE username = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_bcrypt_hashes_log_in_and_are_upgraded_to_argon2id() {
    let db = TestDb::migrated().await;
    insert_user(&db, "legacy", "main_account", None, PY_ASCII.1).await;
    insert_user(&db, "汉字用户", "main_account", None, PY_CJK.1).await;
    let srv = server(&db, &[]).await;

    let (status, body) = login(&srv, "legacy", PY_ASCII.0).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["user"]["username"], "legacy");
    assert_eq!(body["user"]["role"], "main_account");
    assert!(body["user"]["shop_ids"].is_array());
    // The access token's payload has the original's claims.
    let access = body["access_token"].as_str().unwrap();
    let payload: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(access.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    for c in [
        "sub",
        "username",
        "role",
        "permissions",
        "shop_id",
        "shop_ids",
        "session_token",
        "type",
        "jti",
        "exp",
        "iat",
    ] {
        assert!(payload.get(c).is_some(), "claim {c} missing: {payload}");
    }
    assert_eq!(payload["type"], "access");
    assert_eq!(
        payload["exp"].as_u64().unwrap() - payload["iat"].as_u64().unwrap(),
        480 * 60
    );
    assert!(
        stored_hash(&db, "legacy").await.starts_with("$argon2id$"),
        "not upgraded"
    );
    // The upgraded hash works, the wrong password still does not.
    assert_eq!(login(&srv, "legacy", PY_ASCII.0).await.0, 200);
    assert_eq!(login(&srv, "legacy", "EuraFlow-pass-2026").await.0, 401);

    // Non-ASCII over 72 bytes: the original's rule (first 72 bytes count).
    assert_eq!(login(&srv, "汉字用户", PY_CJK.0).await.0, 200);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcrypt_mode_keeps_bcrypt_hashes_for_running_beside_the_old_system() {
    let db = TestDb::migrated().await;
    insert_user(&db, "legacy", "main_account", None, PY_ASCII.1).await;
    let srv = server(&db, &[("EF__PASSWORD_HASH", "bcrypt")]).await;
    assert_eq!(login(&srv, "legacy", PY_ASCII.0).await.0, 200);
    assert_eq!(stored_hash(&db, "legacy").await, PY_ASCII.1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused() {
    let db = TestDb::migrated().await;
    insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    let secret = euraflow::config::generate_secret();
    let srv = server(&db, &[("EF__SECRET_KEY", &secret)]).await;
    let (access, refresh) = tokens(&srv, "alice", "alice-password").await;
    assert_eq!(
        call(&srv, Method::GET, "/auth/me", &access, None).await.0,
        200
    );

    let keys = euraflow::auth::tokens::TokenKeys::new(
        &euraflow::config::Secret::new(secret.clone()),
        Duration::from_secs(60),
        Duration::from_secs(60),
    );
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let parts: Vec<&str> = access.split('.').collect();
    let mut claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    let mut tampered_claims = claims.clone();
    tampered_claims["role"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64(&tampered_claims), parts[2]);
    claims["exp"] = json!(euraflow::auth::tokens::now_s() - 3600);
    let expired = keys.sign(&claims).unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        parts[1]
    );
    let other_key = euraflow::auth::tokens::TokenKeys::new(
        &euraflow::config::Secret::new("x".repeat(86)),
        Duration::from_secs(60),
        Duration::from_secs(60),
    )
    .sign(&tampered_claims)
    .unwrap();
    for (what, token) in [
        ("tampered", tampered.as_str()),
        ("expired", expired.as_str()),
        ("alg none", alg_none.as_str()),
        ("wrong key", other_key.as_str()),
        ("refresh token as access", refresh.as_str()),
        ("garbage", "not.a.token"),
    ] {
        let (status, body) = call(&srv, Method::GET, "/auth/me", token, None).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(code(&body), "INVALID_TOKEN", "{what}: {body}");
    }
    let r = srv
        .client()
        .get(srv.https_url("/api/ef/v1/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(code(&r.json().await.unwrap()), "MISSING_AUTH_HEADER");
    let r = srv
        .client()
        .get(srv.https_url("/api/ef/v1/auth/me"))
        .header("authorization", format!("Token {access}"))
        .send()
        .await
        .unwrap();
    assert_eq!(code(&r.json().await.unwrap()), "INVALID_AUTH_FORMAT");
    // An access token is not a refresh token either.
    let r = srv
        .client()
        .post(srv.https_url("/api/ef/v1/auth/refresh"))
        .json(&json!({"refresh_token": access}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(code(&r.json().await.unwrap()), "INVALID_TOKEN_TYPE");
    srv.stop().await;
}

async fn refresh(srv: &TestServer, token: &str) -> (u16, serde_json::Value) {
    let r = srv
        .client()
        .post(srv.https_url("/api/ef/v1/auth/refresh"))
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_and_reuse_ends_the_session() {
    let db = TestDb::migrated().await;
    insert_user(&db, "bob", "main_account", None, &hash("bob-password")).await;
    let srv = server(&db, &[]).await;
    let (_a1, r1) = tokens(&srv, "bob", "bob-password").await;
    let (status, body) = refresh(&srv, &r1).await;
    assert_eq!(status, 200, "{body}");
    let a2 = body["access_token"].as_str().unwrap().to_owned();
    let r2 = body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    assert_eq!(call(&srv, Method::GET, "/auth/me", &a2, None).await.0, 200);

    // The old refresh token again: a replay. The whole session ends.
    let (status, body) = refresh(&srv, &r1).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        matches!(code(&body).as_str(), "SESSION_EXPIRED" | "TOKEN_REVOKED"),
        "{body}"
    );
    let (status, body) = refresh(&srv, &r2).await;
    assert_eq!(
        status, 401,
        "the rotated token must die with the session: {body}"
    );
    let (status, body) = call(&srv, Method::GET, "/auth/me", &a2, None).await;
    assert_eq!(status, 401);
    assert_eq!(code(&body), "SESSION_EXPIRED");
    let reason: String = db
        .client()
        .await
        .query_one(
            "SELECT end_reason FROM user_login_sessions ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reason, "refresh_reuse");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_login_expires_the_first_and_logout_ends_the_session() {
    let db = TestDb::migrated().await;
    insert_user(&db, "carol", "main_account", None, &hash("carol-password")).await;
    let srv = server(&db, &[]).await;
    let (first, _) = tokens(&srv, "carol", "carol-password").await;
    let (second, second_refresh) = tokens(&srv, "carol", "carol-password").await;
    let (status, body) = call(&srv, Method::GET, "/auth/me", &first, None).await;
    assert_eq!(status, 401);
    assert_eq!(code(&body), "SESSION_EXPIRED");
    assert_eq!(
        body["error"]["detail"]["code"], "SESSION_EXPIRED",
        "the web app reads error.detail.code"
    );
    assert_eq!(
        call(&srv, Method::GET, "/auth/me", &second, None).await.0,
        200
    );

    let (status, _) = call(
        &srv,
        Method::POST,
        "/auth/logout",
        &second,
        Some(json!({"refresh_token": second_refresh})),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        call(&srv, Method::GET, "/auth/me", &second, None).await.0,
        401
    );
    assert_eq!(refresh(&srv, &second_refresh).await.0, 401);
    let active: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM user_login_sessions WHERE is_active",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(active, 0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_redis_restart_and_work_while_redis_is_down() {
    let db = TestDb::migrated().await;
    insert_user(&db, "dave", "main_account", None, &hash("dave-password")).await;
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let srv = server(&db, &[("EF__REDIS_PREFIX", &prefix)]).await;
    let (access, _) = tokens(&srv, "dave", "dave-password").await;
    // Redis restarted empty: every cached key of ours is gone.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(
            &mut redis::Client::open("redis://127.0.0.1:6379/0")
                .unwrap()
                .get_connection()
                .unwrap(),
        )
        .unwrap();
    assert!(!keys.is_empty());
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query(
            &mut redis::Client::open("redis://127.0.0.1:6379/0")
                .unwrap()
                .get_connection()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(
        call(&srv, Method::GET, "/auth/me", &access, None).await.0,
        200
    );
    srv.stop().await;

    // Redis down: checks go to PostgreSQL (fail closed = correct), logins still work.
    let srv = server(
        &db,
        &[("EF__REDIS_PORT", "1"), ("EF__REDIS_TIMEOUT", "500ms")],
    )
    .await;
    let (access, _) = tokens(&srv, "dave", "dave-password").await;
    assert_eq!(
        call(&srv, Method::GET, "/auth/me", &access, None).await.0,
        200
    );
    let (second, _) = tokens(&srv, "dave", "dave-password").await;
    assert_eq!(
        call(&srv, Method::GET, "/auth/me", &access, None).await.0,
        401,
        "single session holds without Redis"
    );
    assert_eq!(
        call(&srv, Method::GET, "/auth/me", &second, None).await.0,
        200
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_allows_exactly_n_per_window_across_processes() {
    let db = TestDb::migrated().await;
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let env = [
        ("EF__RATE_LIMIT_DEFAULT", "4/minute"),
        ("EF__REDIS_PREFIX", prefix.as_str()),
    ];
    let a = server(&db, &env).await;
    let b = server(&db, &env).await;
    let mut outcomes = Vec::new();
    for i in 0..8 {
        let srv = if i % 2 == 0 { &a } else { &b };
        let r = srv
            .client()
            .get(srv.https_url("/api/ef/v1/system/info"))
            .send()
            .await
            .unwrap();
        outcomes.push(r.status().as_u16());
        if r.status() == 200 {
            assert_eq!(r.headers()["x-ratelimit-limit"], "4");
        } else {
            assert_eq!(r.status(), 429);
            assert!(
                r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
                    >= 1
            );
            assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(code(&v), "RATE_LIMIT_EXCEEDED");
        }
    }
    // Alternating between the two servers, the shared window admits exactly 4, then refuses.
    assert_eq!(outcomes, [200, 200, 200, 200, 429, 429, 429, 429]);
    let mut ok = 0;
    for srv in [&a, &b] {
        let text = reqwest::get(srv.http_url("/api/ef/v1/system/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for l in text.lines().filter(|l| {
            l.starts_with("ef_http_requests_total{endpoint=\"/api/ef/v1/system/info\"")
                && l.contains("status_code=\"200\"")
        }) {
            ok += l.rsplit(' ').next().unwrap().parse::<u32>().unwrap();
        }
    }
    assert_eq!(
        ok, 4,
        "exactly the configured number of successes across both servers"
    );
    // Health is exempt.
    for _ in 0..10 {
        assert_eq!(
            a.client()
                .get(a.https_url("/api/ef/v1/health"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_lock_out_and_forwarded_addresses_count_only_from_trusted_proxies() {
    let db = TestDb::migrated().await;
    insert_user(&db, "erin", "main_account", None, &hash("erin-password")).await;
    let srv = server(&db, &[]).await;
    for _ in 0..4 {
        assert_eq!(login(&srv, "erin", "wrong-password").await.0, 401);
    }
    // The fifth failure within a minute locks the identifier (and the IP) out...
    let (status, body) = login(&srv, "erin", "wrong-password").await;
    assert_eq!(status, 429, "{body}");
    // ...so even the right password is refused for now.
    let (status, body) = login(&srv, "erin", "erin-password").await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(code(&body), "RATE_LIMIT_EXCEEDED");
    srv.stop().await;

    // Through the loopback listener (a local nginx), X-Forwarded-For is the client.
    async fn last_ip(db: &TestDb) -> String {
        db.client()
            .await
            .query_one("SELECT host(ip_address) FROM audit_logs WHERE action = 'login_failed' ORDER BY id DESC LIMIT 1", &[])
            .await
            .unwrap()
            .get::<_, String>(0)
    }
    let raw = |srv: &TestServer, xff: &str| {
        let body = r#"{"username":"nobody-here","password":"whatever1"}"#;
        common::raw_http(
            srv.http,
            &format!(
                "POST /api/ef/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Forwarded-For: {xff}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let srv = server(&db, &[]).await;
    assert_eq!(common::status_of(&raw(&srv, "203.0.113.7")), 401);
    assert_eq!(last_ip(&db).await, "203.0.113.7");
    srv.stop().await;
    let srv = server(&db, &[("EF__TRUSTED_PROXIES", "10.0.0.0/8")]).await;
    assert_eq!(common::status_of(&raw(&srv, "203.0.113.8")), 401);
    assert_eq!(
        last_ip(&db).await,
        "127.0.0.1",
        "an untrusted peer cannot choose its address"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_use_the_original_shape_and_never_echo_input() {
    let db = TestDb::migrated().await;
    insert_user(&db, "admin", "admin", None, &hash("admin-password")).await;
    let srv = server(&db, &[]).await;
    let (admin, _) = tokens(&srv, "admin", "admin-password").await;
    for bad in [
        json!({"username": "x' OR '1'='1", "password": "long-enough-1", "role": "main_account"}),
        json!({"username": "robert'); DROP TABLE users;--", "password": "long-enough-1", "role": "main_account"}),
        json!({"username": "a".repeat(31), "password": "long-enough-1", "role": "main_account"}),
        json!({"username": "fine_name", "password": "p".repeat(1025), "role": "main_account"}),
        json!({"username": "fine_name", "password": "short", "role": "main_account"}),
        json!({"username": "fine_name", "password": "long-enough-1", "role": "overlord"}),
        json!({"username": "fine_name", "password": 12345678, "role": "main_account"}),
    ] {
        let (status, body) =
            call(&srv, Method::POST, "/auth/users", &admin, Some(bad.clone())).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(body["error"]["title"], "Validation Error");
        let errs = body["error"]["validation_errors"].as_array().unwrap();
        assert!(!errs.is_empty());
        assert!(
            errs[0]["loc"][0] == "body"
                && errs[0]["msg"].is_string()
                && errs[0]["type"].is_string()
        );
        assert!(
            !body.to_string().contains("DROP TABLE") && !body.to_string().contains("ppppp"),
            "input echoed: {body}"
        );
    }
    // Injection in the login identifier is just a failed login, never a server error.
    let (status, body) = login(&srv, "admin' --", "admin-password").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(code(&body), "INVALID_CREDENTIALS");
    let (status, _) = login(&srv, &"a".repeat(51), "x").await;
    assert_eq!(status, 422);
    // The users table is intact.
    let n: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_authenticate_with_limits_and_are_shown_once() {
    let db = TestDb::migrated().await;
    let uid = insert_user(&db, "frank", "main_account", None, &hash("frank-password")).await;
    common::insert_shop(&db, 1, uid).await;
    db.client()
        .await
        .execute(
            "INSERT INTO user_shops (user_id, shop_id) VALUES ($1, 1)",
            &[&uid],
        )
        .await
        .unwrap();
    let srv = server(&db, &[]).await;
    let (t, _) = tokens(&srv, "frank", "frank-password").await;
    let (status, created) = call(
        &srv,
        Method::POST,
        "/api-keys/",
        &t,
        Some(json!({"name": "extension", "expires_in_days": 30})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("ef_live_") && key.len() == 40, "{key}");
    assert_eq!(created["permissions"], json!(["product_selection:write"]));
    let stored: String = db
        .client()
        .await
        .query_one("SELECT key_hash FROM api_keys", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored.len(), 64);
    assert!(!stored.contains(&key[8..]));

    let with_key = |k: String, path: &'static str, method: Method| {
        let srv = &srv;
        async move {
            let r = srv
                .client()
                .request(method, srv.https_url(path))
                .header("x-api-key", k)
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let (status, me) = with_key(key.clone(), "/api/ef/v1/auth/me", Method::GET).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["username"], "frank");
    // Keys cannot manage accounts or keys.
    let (status, body) = with_key(key.clone(), "/api/ef/v1/api-keys/", Method::GET).await;
    assert_eq!(status, 403);
    assert_eq!(code(&body), "API_KEY_NOT_ALLOWED");
    let used: Option<chrono::DateTime<chrono::Utc>> = db
        .client()
        .await
        .query_one("SELECT last_used_at FROM api_keys", &[])
        .await
        .unwrap()
        .get(0);
    assert!(used.is_some());
    let (_, list) = call(&srv, Method::GET, "/api-keys/", &t, None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&key));

    let id = created["key_id"].as_i64().unwrap();
    let (status, regen) = call(
        &srv,
        Method::PUT,
        &format!("/api-keys/{id}/regenerate"),
        &t,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let key2 = regen["key"].as_str().unwrap().to_owned();
    assert_eq!(
        with_key(key.clone(), "/api/ef/v1/auth/me", Method::GET)
            .await
            .0,
        401
    );
    assert_eq!(
        with_key(key2.clone(), "/api/ef/v1/auth/me", Method::GET)
            .await
            .0,
        200
    );
    db.client()
        .await
        .execute(
            "UPDATE api_keys SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        with_key(key2.clone(), "/api/ef/v1/auth/me", Method::GET)
            .await
            .0,
        401
    );
    assert_eq!(
        call(&srv, Method::DELETE, &format!("/api-keys/{id}"), &t, None)
            .await
            .0,
        204
    );
    assert_eq!(
        call(&srv, Method::DELETE, &format!("/api-keys/{id}"), &t, None)
            .await
            .0,
        404
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_round_trip_with_defaults_and_validation() {
    let db = TestDb::migrated().await;
    insert_user(&db, "admin", "admin", None, &hash("admin-password")).await;
    let srv = server(&db, &[]).await;
    let (t, _) = tokens(&srv, "admin", "admin-password").await;
    let (status, s) = call(&srv, Method::GET, "/settings", &t, None).await;
    assert_eq!(status, 200);
    assert_eq!(s["display"]["language"], "zh-CN");
    assert_eq!(s["display"]["currency"], "RUB");
    let mut changed = s.clone();
    changed["display"]["language"] = json!("ru-RU");
    changed["sync"]["sync_interval"] = json!(15);
    let (status, saved) = call(&srv, Method::PUT, "/settings", &t, Some(changed.clone())).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved, changed);
    let mut bad = changed.clone();
    bad["display"]["shop_name_format"] = json!("klingon");
    assert_eq!(
        call(&srv, Method::PUT, "/settings", &t, Some(bad)).await.0,
        422
    );
    let (_, me) = call(&srv, Method::GET, "/auth/me", &t, None).await;
    assert_eq!(me["settings"]["display"]["language"], "ru-RU");
    assert_eq!(
        call(&srv, Method::DELETE, "/settings", &t, None).await.0,
        204
    );
    assert_eq!(call(&srv, Method::GET, "/settings", &t, None).await.1, s);
    srv.stop().await;
}

/// Operator data (metrics, server status, health details) goes to the local operator and to admins,
/// never to other users, and never to a client that a local proxy forwards to the loopback
/// listener (nginx's CDN-origin role): such a request is a loopback peer but not the operator, and
/// it is rate limited like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_data_is_for_local_operators_and_admins_not_proxied_clients() {
    let db = TestDb::migrated().await;
    insert_user(&db, "ops", "admin", None, &hash("ops-password-1")).await;
    insert_user(
        &db,
        "seller",
        "main_account",
        None,
        &hash("seller-password-1"),
    )
    .await;
    let srv = server(&db, &[("EF__RATE_LIMIT_DEFAULT", "5/minute")]).await;
    let (admin, _) = tokens(&srv, "ops", "ops-password-1").await;
    let (seller, _) = tokens(&srv, "seller", "seller-password-1").await;

    for path in ["/system/metrics", "/system/status"] {
        let (status, _) = call(&srv, Method::GET, path, &admin, None).await;
        assert_eq!(status, 200, "an admin over HTTPS gets {path}");
        let (status, body) = call(&srv, Method::GET, path, &seller, None).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert_eq!(code(&body), "INSUFFICIENT_PERMISSIONS");
        let r = srv
            .client()
            .get(srv.https_url(&format!("/api/ef/v1{path}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "anonymous over HTTPS: {path}");
    }
    let (status, body) = call(&srv, Method::GET, "/health?details=1", &admin, None).await;
    assert_eq!(status, 200);
    assert!(
        body["data"]["version"].is_string(),
        "admin sees details: {body}"
    );
    let (status, body) = call(&srv, Method::GET, "/health?details=1", &seller, None).await;
    assert_eq!(status, 200, "health never fails on credentials: {body}");
    assert!(body["data"].get("version").is_none(), "{body}");

    // Through a local proxy: loopback peer, but a forwarding header says whose request it is.
    let plain = reqwest::Client::new();
    let proxied = |path: &str| {
        plain
            .get(srv.http_url(&format!("/api/ef/v1{path}")))
            .header("X-Forwarded-For", "203.0.113.9")
    };
    for path in ["/system/metrics", "/system/status"] {
        let r = proxied(path).send().await.unwrap();
        assert_eq!(r.status(), 403, "proxied {path}");
    }
    let v: serde_json::Value = proxied("/health?details=1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["data"].get("version").is_none(), "proxied details: {v}");
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(
            proxied("/system/info")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses,
        // 5 per minute, two of them spent on the refused metrics and status above.
        [200, 200, 200, 429, 429, 429, 429],
        "proxied clients are rate limited"
    );

    // The operator on this machine, without a proxy: everything, and no rate limit.
    for _ in 0..7 {
        let r = plain
            .get(srv.http_url("/api/ef/v1/system/info"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = plain
        .get(srv.http_url("/api/ef/v1/system/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    srv.stop().await;
}

/// A session's last activity is recorded from ordinary requests, not only at refresh, and at most
/// once a minute (a marker in Redis), so it never costs a database write per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_activity_is_recorded_at_most_once_a_minute() {
    let db = TestDb::migrated().await;
    insert_user(&db, "fay", "main_account", None, &hash("fay-password-1")).await;
    let srv = server(&db, &[]).await;
    let (token, _) = tokens(&srv, "fay", "fay-password-1").await;
    let pg = db.client().await;
    let age_s = || async {
        let age: f64 = pg
            .query_one(
                "SELECT extract(epoch FROM now() - s.last_activity_at)::float8
                   FROM user_login_sessions s JOIN users u ON u.id = s.user_id
                  WHERE u.username = 'fay' AND s.is_active",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        age
    };
    let backdate = || async {
        pg.execute(
            "UPDATE user_login_sessions SET last_activity_at = now() - interval '1 hour'",
            &[],
        )
        .await
        .unwrap();
    };
    backdate().await;
    let (status, _) = call(&srv, Method::GET, "/auth/me", &token, None).await;
    assert_eq!(status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while age_s().await > 60.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "last_activity_at was not updated by a request"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Within the minute, further requests do not write again.
    backdate().await;
    for _ in 0..5 {
        let (status, _) = call(&srv, Method::GET, "/auth/me", &token, None).await;
        assert_eq!(status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(age_s().await > 3000.0, "written again within the minute");
    srv.stop().await;
}

fn redis_for_test(extra: &[(&str, &str)]) -> std::sync::Arc<euraflow::redis::Redis> {
    let mut env = common::isolated_env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    euraflow::redis::Redis::new(&common::dev_config(env).redis).unwrap()
}

/// The lockout policy (see `auth::rate_limit`): five failures lock the (identifier, address) pair,
/// twenty the address; the identifier alone is limited softly — twenty attempts a minute from
/// all addresses, after which only addresses the account logged in from get through; each
/// repeated lock doubles. The same rules hold in memory while Redis is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_lockouts_lock_the_pair_and_the_address_and_limit_the_identifier_softly() {
    use euraflow::auth::rate_limit::LoginLimiter;
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64().round() as u64);

    for (what, redis) in [
        ("Redis", redis_for_test(&[])),
        (
            "memory (Redis down)",
            redis_for_test(&[
                ("EF__REDIS_PORT", "1"),
                ("EF__REDIS_CONNECT_TIMEOUT", "200ms"),
            ]),
        ),
    ] {
        let limiter = LoginLimiter::new(redis.clone());
        let fail = |ip: &'static str, id: &'static str| {
            let limiter = limiter.clone();
            async move {
                let a = limiter.reserve(ip, id).await.expect("reserved");
                limiter.failed(&a).await
            }
        };
        let free = |ip: &'static str, id: &'static str| {
            let limiter = limiter.clone();
            async move {
                match limiter.reserve(ip, id).await {
                    Ok(a) => {
                        limiter.give_back(&a).await;
                        None
                    }
                    Err(wait) => Some(wait),
                }
            }
        };
        // The user logs in once from home: that address is known for the account.
        let a = limiter.reserve("198.51.100.50", "grace").await.unwrap();
        limiter.succeeded(&a).await;

        for _ in 0..4 {
            assert_eq!(fail("198.51.100.1", "grace").await, None, "{what}");
        }
        assert_eq!(
            secs(fail("198.51.100.1", "grace").await),
            Some(60),
            "{what}"
        );
        assert_eq!(
            secs(free("198.51.100.1", "Grace").await),
            Some(60),
            "{what}"
        );
        assert_eq!(
            free("192.0.2.99", "grace").await,
            None,
            "{what}: another address"
        );
        assert_eq!(
            free("198.51.100.1", "henry").await,
            None,
            "{what}: another account"
        );

        // Twenty failures from one address over many names lock the address.
        const NAMES: [&str; 20] = [
            "u0", "u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9", "u10", "u11", "u12", "u13",
            "u14", "u15", "u16", "u17", "u18", "u19",
        ];
        for (i, name) in NAMES.iter().enumerate() {
            let lock = fail("198.51.100.2", name).await;
            assert_eq!(lock.is_some(), i == 19, "{what}: failure {i}");
        }
        assert!(free("198.51.100.2", "someone").await.is_some(), "{what}");

        // Twenty attempts at one name from many addresses: the soft limit stops unknown
        // addresses for the rest of the minute, never the account's own.
        const IPS: [&str; 15] = [
            "203.0.113.1",
            "203.0.113.2",
            "203.0.113.3",
            "203.0.113.4",
            "203.0.113.5",
            "203.0.113.6",
            "203.0.113.7",
            "203.0.113.8",
            "203.0.113.9",
            "203.0.113.10",
            "203.0.113.11",
            "203.0.113.12",
            "203.0.113.13",
            "203.0.113.14",
            "203.0.113.15",
        ];
        for ip in IPS {
            assert_eq!(fail(ip, "grace").await, None, "{what}");
        }
        let wait = free("192.0.2.100", "grace").await;
        assert!(
            wait.is_some_and(|w| w <= Duration::from_secs(60)),
            "{what}: {wait:?}"
        );
        assert_eq!(
            free("198.51.100.50", "grace").await,
            None,
            "{what}: the user's address"
        );

        if what == "Redis" {
            // The pair's lock ends (expired here by hand); five more failures lock for twice as
            // long.
            let _: () = redis
                .query(redis::cmd("DEL").arg(redis.key("login_lock:pair:grace|198.51.100.1")))
                .await
                .unwrap();
            let _: () = redis
                .query(redis::cmd("DEL").arg(redis.key("login_att:id:grace")))
                .await
                .unwrap();
            for _ in 0..4 {
                assert_eq!(fail("198.51.100.1", "grace").await, None);
            }
            assert_eq!(secs(fail("198.51.100.1", "grace").await), Some(120));
        }
    }
}

/// The session settings an operator may change: several sessions per user, a shorter access
/// token, and trusting tokens while Redis is down (the documented trade-off: a logged-out token
/// keeps working until it expires, where the default checks PostgreSQL and refuses it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_session_token_lifetime_and_fail_open_settings_are_honoured() {
    let db = TestDb::migrated().await;
    insert_user(&db, "gus", "main_account", None, &hash("gus-password-1")).await;

    let srv = server(
        &db,
        &[
            ("EF__SINGLE_SESSION", "false"),
            ("EF__ACCESS_TOKEN_EXPIRE_MINUTES", "5"),
        ],
    )
    .await;
    let (first, _) = tokens(&srv, "gus", "gus-password-1").await;
    let (second, _) = tokens(&srv, "gus", "gus-password-1").await;
    for t in [&first, &second] {
        assert_eq!(call(&srv, Method::GET, "/auth/me", t, None).await.0, 200);
    }
    let payload: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(first.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap(),
        300
    );
    srv.stop().await;

    let redis_down = [("EF__REDIS_PORT", "1"), ("EF__REDIS_TIMEOUT", "500ms")];
    for (fail_open, after_logout) in [("false", 401), ("true", 200)] {
        let mut env = redis_down.to_vec();
        env.push(("EF__AUTH_REDIS_FAIL_OPEN", fail_open));
        let srv = server(&db, &env).await;
        let (access, _) = tokens(&srv, "gus", "gus-password-1").await;
        assert_eq!(
            call(&srv, Method::GET, "/auth/me", &access, None).await.0,
            200
        );
        let (status, _) = call(&srv, Method::POST, "/auth/logout", &access, None).await;
        assert_eq!(status, 204);
        assert_eq!(
            call(&srv, Method::GET, "/auth/me", &access, None).await.0,
            after_logout,
            "EF__AUTH_REDIS_FAIL_OPEN={fail_open}, Redis down, after logout"
        );
        srv.stop().await;
    }
}
