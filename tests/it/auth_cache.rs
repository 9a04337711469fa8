//! The sign-in cache (`auth::cache`) across servers: two servers share one database and one
//! Redis; a user's requests on A are answered from A's memory, and every change made through B
//! shows on A at once — well inside the cache's five seconds, so only the invalidation published
//! through Redis can make these pass.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::jobs::wait_until;
use crate::common::{TestDb, TestServer, as_refs, call, hash, insert_shop, insert_user, tokens};

/// Comfortably under `auth::cache::TTL` (5 s): a change must show sooner than an entry expires.
const AT_ONCE: Duration = Duration::from_secs(2);

async fn pair(db: &TestDb) -> (TestServer, TestServer) {
    let mut env = db.env();
    env.push((
        "EF__REDIS_PREFIX".into(),
        format!("test:{}:", uuid::Uuid::new_v4().simple()),
    ));
    env.push(("EF__SECRET_KEY".into(), euraflow::config::generate_secret()));
    let a = TestServer::start(&as_refs(&env)).await;
    let b = TestServer::start(&as_refs(&env)).await;
    a.sign_in_cache_live().await;
    b.sign_in_cache_live().await;
    (a, b)
}

async fn me(srv: &TestServer, access: &str) -> (u16, Value) {
    call(srv, Method::GET, "/auth/me", access, None).await
}

/// Ask `srv` until `done` holds, for at most [`AT_ONCE`].
async fn soon(srv: &TestServer, access: &str, what: &str, done: impl Fn(u16, &Value) -> bool) {
    let deadline = Instant::now() + AT_ONCE;
    loop {
        let (status, body) = me(srv, access).await;
        if done(status, &body) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {status} {body} after {AT_ONCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_server_reaches_the_other_servers_cache_at_once() {
    let db = TestDb::migrated().await;
    let alice = insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    insert_user(&db, "boss", "admin", None, &hash("boss-password")).await;
    // Settings belong to a seller with a shop.
    insert_shop(&db, 1, alice).await;
    db.client()
        .await
        .execute(
            "INSERT INTO user_shops (user_id, shop_id) VALUES ($1, 1)",
            &[&alice],
        )
        .await
        .expect("bind the shop");
    let (a, b) = pair(&db).await;
    let (access, _) = tokens(&a, "alice", "alice-password").await;
    let (boss, _) = tokens(&b, "boss", "boss-password").await;

    // Warm A, then rename on B: A's next answers carry the new name at once.
    let (status, before) = me(&a, &access).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["username"], "alice");
    assert_eq!(
        me(&a, &access).await.1,
        before,
        "a cached answer is the same answer"
    );
    let (status, body) = call(
        &b,
        Method::PUT,
        "/auth/me",
        &access,
        Some(json!({"username": "alice2"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    soon(&a, &access, "rename made on B", |s, v| {
        s == 200 && v["username"] == "alice2"
    })
    .await;

    // Settings saved on B.
    let (status, mut settings) = call(&b, Method::GET, "/settings", &access, None).await;
    assert_eq!(status, 200, "{settings}");
    assert_ne!(settings["display"]["currency"], "CNY");
    settings["display"]["currency"] = json!("CNY");
    let (status, body) = call(&b, Method::PUT, "/settings", &access, Some(settings)).await;
    assert_eq!(status, 200, "{body}");
    soon(&a, &access, "settings saved on B", |s, v| {
        s == 200 && v["settings"]["display"]["currency"] == "CNY"
    })
    .await;

    // An admin disables Alice on B: her token stops working on A at once.
    assert_eq!(me(&a, &access).await.0, 200);
    let (status, body) = call(
        &b,
        Method::PUT,
        &format!("/auth/users/{alice}"),
        &boss,
        Some(json!({"is_active": false})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    soon(&a, &access, "account disabled on B", |s, _| {
        s == 401 || s == 403
    })
    .await;

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_server_ends_the_token_on_the_other_at_once() {
    let db = TestDb::migrated().await;
    insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    let (a, b) = pair(&db).await;
    let (access, refresh) = tokens(&a, "alice", "alice-password").await;
    assert_eq!(me(&a, &access).await.0, 200);
    assert_eq!(me(&a, &access).await.0, 200);
    let (status, body) = call(
        &b,
        Method::POST,
        "/auth/logout",
        &access,
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    soon(&a, &access, "logout on B", |s, _| s == 401).await;

    // A newer login (on B) replaces the session a token on A speaks for.
    let (first, _) = tokens(&a, "alice", "alice-password").await;
    assert_eq!(me(&a, &first).await.0, 200);
    let (second, _) = tokens(&b, "alice", "alice-password").await;
    soon(&a, &first, "login elsewhere", |s, v| {
        s == 401 && v["error"]["code"] == "SESSION_EXPIRED"
    })
    .await;
    assert_eq!(me(&a, &second).await.0, 200);

    a.stop().await;
    b.stop().await;
}

/// A TCP proxy to the local Redis that the test can cut (every connection closed, new ones
/// refused) and restore.
struct RedisLink {
    port: u16,
    up: tokio::sync::watch::Sender<bool>,
}

impl RedisLink {
    async fn start() -> RedisLink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (up, watch) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut watch = watch.clone();
                if !*watch.borrow() {
                    continue; // refused: dropped at once
                }
                tokio::spawn(async move {
                    let Ok(mut redis) = tokio::net::TcpStream::connect("127.0.0.1:6379").await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut redis) => {}
                        _ = watch.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        RedisLink { port, up }
    }

    fn set(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// When the server stops hearing the channel, it stops trusting its cache: a session ended in
/// PostgreSQL while Redis was unreachable (so nobody could publish it) is refused on the very
/// next request, though the token was cached a moment before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_redis_channel_the_server_trusts_no_cached_sign_in() {
    let db = TestDb::migrated().await;
    let alice = insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    let link = RedisLink::start().await;
    let port = link.port.to_string();
    let mut env = db.env();
    env.push(("EF__REDIS_HOST".into(), "127.0.0.1".into()));
    env.push(("EF__REDIS_PORT".into(), port));
    env.push(("EF__REDIS_TIMEOUT".into(), "500ms".into()));
    let srv = TestServer::start(&as_refs(&env)).await;
    let cache = srv.state().auth().store.cache();
    srv.sign_in_cache_live().await;
    let (access, _) = tokens(&srv, "alice", "alice-password").await;
    assert_eq!(me(&srv, &access).await.0, 200);
    assert_eq!(me(&srv, &access).await.0, 200);

    link.set(false);
    wait_until(
        "the cache to notice the lost channel",
        Duration::from_secs(10),
        || async move { !cache.is_live() },
    )
    .await;
    db.client()
        .await
        .execute(
            "UPDATE user_login_sessions SET is_active = false WHERE user_id = $1",
            &[&alice],
        )
        .await
        .expect("end the session");
    let (status, body) = me(&srv, &access).await;
    assert_eq!(
        status, 401,
        "a cached sign-in was trusted without its channel: {body}"
    );

    link.set(true);
    srv.sign_in_cache_live().await;
    let (access, _) = tokens(&srv, "alice", "alice-password").await;
    assert_eq!(me(&srv, &access).await.0, 200);
    srv.stop().await;
}
