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

/// (width, height) of a `data:image/png;base64,` URL's image, from its IHDR chunk.
fn png_size(data_url: &serde_json::Value) -> (u32, u32) {
    let b64 = data_url
        .as_str()
        .and_then(|u| u.strip_prefix("data:image/png;base64,"))
        .unwrap_or_else(|| panic!("not a PNG data URL: {data_url}"));
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes([png[i], png[i + 1], png[i + 2], png[i + 3]]);
    (be(16), be(20))
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

/// A hand-like trail for sliding the piece to `x`: from a press at (500, 300), accelerating then
/// slowing down to aim, with a wobble (what rc-slider-captcha reports as `trail`).
fn human_trail(x: i64) -> serde_json::Value {
    let n = 30;
    let points: Vec<[f64; 2]> = (0..=n)
        .map(|i| {
            let t = f64::from(i) / f64::from(n);
            let eased = t * t * (3.0 - 2.0 * t);
            [
                500.0 + eased * x as f64 / 0.9,
                300.0 + (t * 7.0).sin() * 2.0,
            ]
        })
        .collect();
    json!(points)
}

async fn answer(srv: &TestServer, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = srv
        .client()
        .post(srv.https_url("/api/ef/v1/auth/captcha/verify"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn verify(srv: &TestServer, id: &str, x: i64, duration: i64) -> serde_json::Value {
    let (status, body) = answer(
        srv,
        json!({"captcha_id": id, "x": x, "duration": duration, "trail": human_trail(x)}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A new puzzle: its id and where its piece goes (read from Redis, as only the server knows).
async fn puzzle(srv: &TestServer, prefix: &str) -> (String, i64) {
    let c = challenge(srv).await;
    let id = c["captcha_id"].as_str().unwrap().to_owned();
    let x = stored_x(prefix, &id).await.unwrap();
    (id, x)
}

fn isolated(db: Option<&TestDb>) -> (String, Vec<(String, String)>) {
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let mut env = db.map(TestDb::env).unwrap_or_default();
    env.push(("EF__REDIS_PREFIX".into(), prefix.clone()));
    (prefix, env)
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
    // The sizes the web app draws: background 280×160, piece 66×66 (it was 58×58 and looked
    // larger than its hole), the piece's top inside the background.
    assert_eq!(png_size(&c["bg_url"]), (280, 160));
    assert_eq!(png_size(&c["puzzle_url"]), (66, 66));
    assert!(c["y"].as_u64().unwrap() + 66 <= 160);

    let x = stored_x(&prefix, &id).await.unwrap();
    let miss = verify(&srv, &id, x + 40, 800).await;
    assert_eq!(miss["success"], false);
    assert_eq!(
        verify(&srv, &id, x, 800).await["success"],
        false,
        "a missed puzzle is used up: the right answer after a miss is too late"
    );
    let (id, x) = puzzle(&srv, &prefix).await;
    let ok = verify(&srv, &id, x + 4, 800).await;
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

/// One answer per puzzle, atomically: 20 right answers racing for one puzzle get exactly one
/// token (a GET-then-DEL check let several through), and the puzzle is gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_answers_get_one_token_per_puzzle() {
    let (prefix, env) = isolated(None);
    let srv = TestServer::start(&as_refs(&env)).await;
    let (id, x) = puzzle(&srv, &prefix).await;
    let body = json!({"captcha_id": id, "x": x, "duration": 700, "trail": human_trail(x)});
    let answers = futures_util::future::join_all((0..20).map(|_| answer(&srv, body.clone()))).await;
    let tokens = answers
        .iter()
        .filter(|(status, b)| *status == 200 && b["success"] == true)
        .count();
    assert_eq!(tokens, 1, "{answers:?}");
    assert_eq!(stored_x(&prefix, &id).await, None);
    srv.stop().await;
}

/// The answers a script sends are refused, each on a fresh puzzle with the right `x`: without
/// `duration` (the original then skipped its speed check) or `trail` (422, the puzzle kept), too
/// fast, a two-point trail, a straight evenly spaced line, a trail that never moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_answers_are_refused() {
    let (prefix, env) = isolated(None);
    let srv = TestServer::start(&as_refs(&env)).await;

    let (id, x) = puzzle(&srv, &prefix).await;
    let (status, body) = answer(
        &srv,
        json!({"captcha_id": id, "x": x, "trail": human_trail(x)}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("duration"), "{body}");
    let (status, body) = answer(&srv, json!({"captcha_id": id, "x": x, "duration": 800})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("trail"), "{body}");

    let straight: Vec<[i64; 2]> = (0..=20).map(|i| [500 + i * (x + 10) / 20, 300]).collect();
    let scripted = [
        ("too fast", json!(120), human_trail(x)),
        ("two points", json!(800), json!([[0, 0], [x, 1]])),
        ("a straight even line", json!(800), json!(straight)),
        ("no movement", json!(800), json!(vec![[500, 300]; 25])),
    ];
    for (what, duration, trail) in scripted {
        let (id, x) = puzzle(&srv, &prefix).await;
        let (status, body) = answer(
            &srv,
            json!({"captcha_id": id, "x": x, "duration": duration, "trail": trail}),
        )
        .await;
        assert_eq!(
            (status, &body["success"]),
            (200, &json!(false)),
            "{what}: {body}"
        );
        assert!(body.get("token").is_none(), "{what}: {body}");
        assert_eq!(
            stored_x(&prefix, &id).await,
            None,
            "{what}: the puzzle is used up"
        );
    }
    // The same puzzle answered as a hand does passes (so the refusals above are the script's).
    let (id, x) = puzzle(&srv, &prefix).await;
    assert_eq!(verify(&srv, &id, x, 800).await["success"], true);
    srv.stop().await;
}

/// Blind guessing over HTTP: the same `x` answered on 200 puzzles, as a script would. The
/// original's ±10 px tolerance and three attempts let three fixed guesses solve 40 %; one answer
/// with ±4 px over the wider range solves under 5 % (the exact bound is the `blind_guessing`
/// unit test; this allows for sampling noise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_blind_guess_rarely_solves_a_puzzle() {
    let (_prefix, env) = isolated(None);
    let srv = TestServer::start(&as_refs(&env)).await;
    let rounds = 200;
    let mut solved = 0;
    for round in 0..rounds {
        // Each puzzle from another address (the loopback listener trusts X-Forwarded-For):
        // `GET /auth/captcha` allows 30 a minute per address.
        let c: serde_json::Value = reqwest::Client::new()
            .get(srv.http_url("/api/ef/v1/auth/captcha"))
            .header(
                "X-Forwarded-For",
                format!("198.18.{}.{}", round / 250, round % 250 + 1),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = c["captcha_id"].as_str().unwrap();
        if verify(&srv, id, 120, 800).await["success"] == true {
            solved += 1;
        }
    }
    let rate = f64::from(solved) / f64::from(rounds);
    println!(
        "a fixed guess (x = 120) solved {solved} of {rounds} puzzles: {:.1} %",
        rate * 100.0
    );
    assert!(rate <= 0.10, "{solved} of {rounds}");
    srv.stop().await;
}

/// `GET /auth/captcha` has its own limit per client IP (each costs image work, unauthenticated):
/// 30 a minute, then 429 with `Retry-After` in the API's error shape; other addresses go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenges_are_rate_limited_per_address() {
    let (_prefix, env) = isolated(None);
    let srv = TestServer::start(&as_refs(&env)).await;
    let client = reqwest::Client::new();
    let get = |ip: &'static str| {
        let (client, url) = (client.clone(), srv.http_url("/api/ef/v1/auth/captcha"));
        async move {
            let r = client
                .get(url)
                .header("X-Forwarded-For", ip)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry: Option<u64> = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            (status, retry, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    for i in 0..30 {
        let (status, _, body) = get("203.0.113.77").await;
        assert_eq!(status, 200, "challenge {i}: {body}");
    }
    let (status, retry, body) = get("203.0.113.77").await;
    assert_eq!(
        (status, code(&body).as_str()),
        (429, "RATE_LIMIT_EXCEEDED"),
        "{body}"
    );
    assert!(retry.is_some_and(|r| (1..=60).contains(&r)), "{retry:?}");
    let (status, _, _) = get("203.0.113.78").await;
    assert_eq!(status, 200, "another address is not limited");
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
