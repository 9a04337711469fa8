//! How many database round trips a login and an authenticated request cost, counted on the wire:
//! the server talks to PostgreSQL through a proxy that counts the frontend's Sync ('S') and
//! simple Query ('Q') messages — each one is a round trip the request waits for. The pool has one
//! connection, so statements cached on it count as they would on a warm server.

use crate::common;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::common::{TestDb, TestServer, as_refs, hash, insert_user, tokens};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy to 127.0.0.1:5432 counting the client's round-trip messages.
struct PgCounter {
    port: u16,
    round_trips: Arc<AtomicU64>,
}

impl PgCounter {
    async fn start() -> PgCounter {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let round_trips = Arc::new(AtomicU64::new(0));
        let counter = round_trips.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect("127.0.0.1:5432").await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let down = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    // Client → server: parse the message stream (after the untyped startup
                    // message) and count Sync and Query.
                    let mut buf = Vec::new();
                    let mut started = false;
                    let mut chunk = [0u8; 16 * 1024];
                    loop {
                        let n = match cr.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if sw.write_all(&chunk[..n]).await.is_err() {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        loop {
                            if !started {
                                if buf.len() < 4 {
                                    break;
                                }
                                let len =
                                    u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                                if buf.len() < len {
                                    break;
                                }
                                // An SSLRequest is followed by another startup message.
                                let code = buf
                                    .get(4..8)
                                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                                buf.drain(..len);
                                if code != Some(80877103) {
                                    started = true;
                                }
                                continue;
                            }
                            if buf.len() < 5 {
                                break;
                            }
                            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                            if buf.len() < 1 + len {
                                break;
                            }
                            if matches!(buf[0], b'S' | b'Q') {
                                counter.fetch_add(1, Ordering::SeqCst);
                            }
                            buf.drain(..1 + len);
                        }
                    }
                    down.abort();
                });
            }
        });
        PgCounter { port, round_trips }
    }

    fn count(&self) -> u64 {
        self.round_trips.load(Ordering::SeqCst)
    }
}

async fn measure<F, Fut>(proxy: &PgCounter, f: F) -> u64
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let before = proxy.count();
    f().await;
    proxy.count() - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_costs_two_round_trips_and_an_api_key_request_one() {
    let db = TestDb::migrated().await;
    let uid = insert_user(
        &db,
        "counted",
        "main_account",
        None,
        &hash("counted-password"),
    )
    .await;
    common::insert_shop(&db, 1, uid).await;
    db.client()
        .await
        .execute(
            "INSERT INTO user_shops (user_id, shop_id) VALUES ($1, 1)",
            &[&uid],
        )
        .await
        .unwrap();
    let proxy = PgCounter::start().await;
    let port = proxy.port.to_string();
    let env = [
        ("EF__DB_HOST", "127.0.0.1"),
        ("EF__DB_PORT", port.as_str()),
        ("EF__DB_SSLMODE", "disable"),
        ("EF__DB_NAME", db.name.as_str()),
        ("EF__DB_POOL_SIZE", "1"),
        ("EF__DB_MAX_OVERFLOW", "0"),
    ];
    let srv = TestServer::start(&env).await;
    // Warm the one pooled connection's statement cache, as on a running server.
    for _ in 0..2 {
        tokens(&srv, "counted", "counted-password").await;
    }
    let login = measure(&proxy, || async {
        tokens(&srv, "counted", "counted-password").await;
    })
    .await;

    let (access, _) = tokens(&srv, "counted", "counted-password").await;
    let (status, key) = common::call(
        &srv,
        reqwest::Method::POST,
        "/api-keys/",
        &access,
        Some(serde_json::json!({"name": "counted"})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let key = key["key"].as_str().unwrap().to_owned();
    // A route that needs an authenticated caller and nothing else from the database.
    let with_key = || {
        let (srv, key) = (&srv, key.clone());
        async move {
            let r = srv
                .client()
                .get(srv.https_url("/api/ef/v1/sync-services/handlers"))
                .header("x-api-key", key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    with_key().await;
    let api_key = measure(&proxy, with_key).await;
    let bearer = measure(&proxy, || async {
        let r = srv
            .client()
            .get(srv.https_url("/api/ef/v1/sync-services/handlers"))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    })
    .await;
    // `GET /auth/me`, which the web app asks on every page: the first read fills the sign-in
    // cache, the next ones cost nothing (while the cache hears its Redis channel).
    srv.sign_in_cache_live().await;
    let get_me = || async {
        let (status, body) =
            common::call(&srv, reqwest::Method::GET, "/auth/me", &access, None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["username"], "counted");
    };
    let me_first = measure(&proxy, get_me).await;
    let me_again = measure(&proxy, || async {
        for _ in 0..20 {
            get_me().await;
        }
    })
    .await;
    println!(
        "database round trips: login {login}, API-key request {api_key}, bearer request {bearer}, \
         /auth/me first {me_first}, 20 more {me_again}"
    );
    assert!(me_first >= 1, "the first /auth/me reads the user");
    assert_eq!(me_again, 0, "a cached /auth/me reads nothing");
    assert_eq!(
        login, 2,
        "a login: the user lookup and the session statement"
    );
    assert_eq!(api_key, 1, "an API key resolves in one statement");
    assert_eq!(bearer, 0, "a bearer token is checked in Redis");
    let _ = as_refs(&[]);
    srv.stop().await;
}
