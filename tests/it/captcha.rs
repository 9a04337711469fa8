//! The login page's slider captcha: challenge images, verification with limited attempts,
//! single-use tokens, and login requiring them when configured.

use crate::common::{TestDb, TestServer, as_refs, code, hash, insert_user};
use base64::Engine;
use serde_json::json;

async fn stored_x(prefix: &str, id: &str) -> Option<i64> {
    let mut c = redis::Client::open("redis://127.0.0.1:6379/0")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("GET")
        .arg(format!("{prefix}captcha:{id}"))
        .query_async(&mut c)
        .await
        .unwrap()
}

async fn challenge(srv: &TestServer) -> serde_json::Value {
    let r = srv
        .client()
        .get(srv.https_url("/api/ef/v1/auth/captcha"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn verify(srv: &TestServer, id: &str, x: i64, duration: i64) -> serde_json::Value {
    srv.client()
        .post(srv.https_url("/api/ef/v1/auth/captcha/verify"))
        .json(&json!({"captcha_id": id, "x": x, "duration": duration, "trail": [[0, 0], [x, 1]]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solving_the_captcha_yields_one_single_use_token_for_login() {
    let db = TestDb::migrated().await;
    insert_user(&db, "gina", "main_account", None, &hash("gina-password")).await;
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let mut env = db.env();
    env.push(("EF__REDIS_PREFIX".into(), prefix.clone()));
    env.push(("EF__LOGIN_CAPTCHA".into(), "true".into()));
    let srv = TestServer::start(&as_refs(&env)).await;

    let c = challenge(&srv).await;
    let id = c["captcha_id"].as_str().unwrap().to_owned();
    let bg = c["bg_url"].as_str().unwrap();
    let png = base64::engine::general_purpose::STANDARD
        .decode(bg.strip_prefix("data:image/png;base64,").unwrap())
        .unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(
        c["puzzle_url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
    assert!(c["y"].as_u64().unwrap() < 160);

    let x = stored_x(&prefix, &id).await.unwrap();
    let miss = verify(&srv, &id, x + 40, 800).await;
    assert_eq!(miss["success"], false);
    let too_fast = verify(&srv, &id, x, 50).await;
    assert_eq!(too_fast["success"], false, "a bot-fast slide is refused");
    let ok = verify(&srv, &id, x + 7, 800).await;
    assert_eq!(ok["success"], true, "{ok}");
    let token = ok["token"].as_str().unwrap().to_owned();
    assert_eq!(
        verify(&srv, &id, x, 800).await["success"],
        false,
        "a solved captcha is gone"
    );

    let login = |body: serde_json::Value| {
        let srv = &srv;
        async move {
            let r = srv
                .client()
                .post(srv.https_url("/api/ef/v1/auth/login"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (status, body) = login(json!({"username": "gina", "password": "gina-password"})).await;
    assert_eq!((status, code(&body).as_str()), (400, "CAPTCHA_REQUIRED"));
    let (status, body) =
        login(json!({"username": "gina", "password": "gina-password", "captcha_token": "forged"}))
            .await;
    assert_eq!((status, code(&body).as_str()), (400, "CAPTCHA_INVALID"));
    let (status, body) =
        login(json!({"username": "gina", "password": "gina-password", "captcha_token": token}))
            .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        login(json!({"username": "gina", "password": "gina-password", "captcha_token": token}))
            .await;
    assert_eq!(
        (status, code(&body).as_str()),
        (400, "CAPTCHA_INVALID"),
        "tokens are single-use"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_wrong_attempts_use_up_a_captcha() {
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let srv = TestServer::start(&[("EF__REDIS_PREFIX", prefix.as_str())]).await;
    let c = challenge(&srv).await;
    let id = c["captcha_id"].as_str().unwrap().to_owned();
    let x = stored_x(&prefix, &id).await.unwrap();
    for _ in 0..3 {
        assert_eq!(verify(&srv, &id, x + 50, 800).await["success"], false);
    }
    assert_eq!(stored_x(&prefix, &id).await, None);
    let late = verify(&srv, &id, x, 800).await;
    assert_eq!(
        late["success"], false,
        "the right answer after three misses is too late"
    );
    srv.stop().await;
}

/// With the captcha required and Redis refusing connections, the captcha fails closed: issuing
/// and checking answer 503 `CAPTCHA_UNAVAILABLE` in the API's error shape, and a login with a
/// made-up token (and the right password) is refused the same way — before, any token was
/// accepted while Redis was down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_captcha_fails_closed() {
    let db = TestDb::migrated().await;
    insert_user(&db, "hank", "main_account", None, &hash("hank-password")).await;
    let mut env = db.env();
    env.extend(
        [
            ("EF__LOGIN_CAPTCHA", "true"),
            // Nothing listens on port 1: every connection is refused at once.
            ("EF__REDIS_PORT", "1"),
            ("EF__REDIS_TIMEOUT", "300ms"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let srv = TestServer::start(&as_refs(&env)).await;
    let client = srv.client();
    let unavailable = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let retry = r.headers().contains_key("retry-after");
        let body: serde_json::Value = r.json().await.unwrap();
        (status, retry, code(&body))
    };

    let r = client
        .get(srv.https_url("/api/ef/v1/auth/captcha"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        unavailable(r).await,
        (503, true, "CAPTCHA_UNAVAILABLE".into())
    );
    let r = client
        .post(srv.https_url("/api/ef/v1/auth/captcha/verify"))
        .json(
            &json!({"captcha_id": "0123456789abcdef", "x": 120, "duration": 900,
                      "trail": [[0, 0], [60, 2], [120, 3]]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        unavailable(r).await,
        (503, true, "CAPTCHA_UNAVAILABLE".into())
    );
    for token in ["made-up", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        let r = client
            .post(srv.https_url("/api/ef/v1/auth/login"))
            .json(&json!({"username": "hank", "password": "hank-password", "captcha_token": token}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            unavailable(r).await,
            (503, true, "CAPTCHA_UNAVAILABLE".into()),
            "a made-up captcha token must not log in while Redis is down"
        );
    }
    srv.stop().await;
}
