//! The websocket (`/api/ef/v1/notifications/ws`, `/ws`) with a real websocket client over TLS:
//! authentication as the REST API does it (4001 before any message otherwise), the protocol,
//! tenancy of shop subscriptions, `session_expired` from the API and the CLI, limits, shutdown.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{
    self, Process, TestDb, TestServer, as_refs, hash, insert_shop, insert_user, production_env,
    tokens,
};

pub type Ws = WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

pub fn tls_connector(ca_pem: &[u8]) -> tokio_rustls::TlsConnector {
    tls_connector_alpn(ca_pem, b"http/1.1")
}

/// A TLS client trusting `ca_pem` that offers only `alpn`.
pub fn tls_connector_alpn(ca_pem: &[u8], alpn: &[u8]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.expect("test CA")).expect("test CA");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A websocket over TLS to `addr` (the certificate checked for `localhost`), with extra headers.
pub async fn connect_to(
    addr: std::net::SocketAddr,
    ca_pem: &[u8],
    path: &str,
    headers: &[(&str, &str)],
) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = tls_connector(ca_pem)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let mut req = format!("wss://localhost:{}{path}", addr.port())
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let (ws, resp) = tokio_tungstenite::client_async(req, tls)
        .await
        .expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    ws
}

pub async fn connect(srv: &TestServer, token: &str) -> Ws {
    connect_to(
        srv.https,
        &srv.ca_pem,
        &format!("/api/ef/v1/notifications/ws?token={token}"),
        &[],
    )
    .await
}

/// The next text message as JSON (protocol pings skipped); panics after 10 s.
pub async fn next_json<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a message");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// The next message of `kind`, skipping server pings.
pub async fn next_of<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    kind: &str,
) -> Value {
    loop {
        let v = next_json(ws).await;
        if v["type"] == kind {
            return v;
        }
        assert_eq!(v["type"], "ping", "expected {kind}, got {v}");
    }
}

/// The close code the server ends with, asserting no text message (but `ping` / `pong`) came
/// before it.
pub async fn close_code<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> u16 {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the close within 10 s");
        match m {
            Some(Ok(Message::Close(Some(f)))) => return u16::from(f.code),
            Some(Ok(Message::Close(None))) => return 1005,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Text(t)))
                if t.contains(r#""type":"ping""#) || t.contains(r#""type":"pong""#) =>
            {
                continue;
            }
            Some(Ok(other)) => panic!("expected the close, got {other:?}"),
            Some(Err(e)) => panic!("expected the close, got the error {e}"),
            None => panic!("the socket ended without a close frame"),
        }
    }
}

pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn server(db: &TestDb, extra: &[(&str, &str)]) -> TestServer {
    let mut env = db.env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    TestServer::start(&as_refs(&env)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_ping_pong_errors_and_notifications_to_the_user() {
    let db = TestDb::migrated().await;
    let alice = insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    insert_shop(&db, 11, alice).await;
    insert_shop(&db, 12, alice).await;
    let srv = server(&db, &[]).await;
    let (access, _) = tokens(&srv, "alice", "alice-password").await;

    let mut ws = connect(&srv, &access).await;
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "connected", "{hello}");
    assert_eq!(hello["user_id"], alice);
    // No shop_ids asked for: the user's own shops.
    assert_eq!(hello["shop_ids"], json!([11, 12]));
    assert!(hello["timestamp"].is_string());

    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next_json(&mut ws).await["type"], "pong");
    ws.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "error");
    send(&mut ws, json!({"type": "dance"})).await;
    let e = next_json(&mut ws).await;
    assert_eq!(e["type"], "error");
    assert!(e["message"].as_str().unwrap().contains("dance"), "{e}");
    send(&mut ws, json!({"type": "subscribe", "shop_ids": "x"})).await;
    assert_eq!(next_json(&mut ws).await["type"], "error");

    let rt = srv.state().realtime();
    rt.notify(
        euraflow::realtime::Target::User(alice),
        json!({"type": "job.finished", "data": {"id": 1}}),
    )
    .await;
    let m = next_json(&mut ws).await;
    assert_eq!(m["type"], "job.finished", "{m}");
    rt.notify(
        euraflow::realtime::Target::Shop(12),
        json!({"type": "posting.created", "shop_id": 12}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["shop_id"], 12);

    send(&mut ws, json!({"type": "unsubscribe", "shop_ids": [12]})).await;
    assert_eq!(next_json(&mut ws).await["type"], "unsubscribed");
    rt.notify(
        euraflow::realtime::Target::Shop(12),
        json!({"type": "posting.created", "shop_id": 12}),
    )
    .await;
    rt.notify(euraflow::realtime::Target::All, json!({"type": "all"}))
        .await;
    // Unsubscribed: the shop message does not arrive, the broadcast does.
    assert_eq!(next_json(&mut ws).await["type"], "all");
    send(&mut ws, json!({"type": "subscribe", "shop_ids": [12]})).await;
    let s = next_json(&mut ws).await;
    assert_eq!(s["type"], "subscribed");
    assert_eq!(s["shop_ids"], json!([12]));

    // The nginx location /ws, with the token in the Authorization header.
    let mut ws2 = connect_to(
        srv.https,
        &srv.ca_pem,
        "/ws",
        &[("authorization", &format!("Bearer {access}"))],
    )
    .await;
    assert_eq!(next_json(&mut ws2).await["type"], "connected");
    drop(ws);
    drop(ws2);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_shops_are_refused_by_name() {
    let db = TestDb::migrated().await;
    let alice = insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    let bob = insert_user(&db, "bob", "main_account", None, &hash("bob-password")).await;
    insert_shop(&db, 21, alice).await;
    insert_shop(&db, 22, bob).await;
    let srv = server(&db, &[]).await;
    let (access, _) = tokens(&srv, "alice", "alice-password").await;

    let mut ws = connect_to(
        srv.https,
        &srv.ca_pem,
        &format!("/api/ef/v1/notifications/ws?token={access}&shop_ids=21,22"),
        &[],
    )
    .await;
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["shop_ids"], json!([21]), "{hello}");
    let e = next_json(&mut ws).await;
    assert_eq!(e["type"], "error");
    assert!(e["message"].as_str().unwrap().contains("22"), "{e}");

    send(&mut ws, json!({"type": "subscribe", "shop_ids": [22]})).await;
    let e = next_json(&mut ws).await;
    assert_eq!(e["type"], "error", "{e}");
    assert!(e["message"].as_str().unwrap().contains("22"), "{e}");
    // Bob's shop's events never reach Alice.
    let rt = srv.state().realtime();
    rt.notify(
        euraflow::realtime::Target::Shop(22),
        json!({"type": "chat.new_message", "shop_id": 22}),
    )
    .await;
    rt.notify(
        euraflow::realtime::Target::Shop(21),
        json!({"type": "chat.new_message", "shop_id": 21}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["shop_id"], 21);
    drop(ws);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_closed_with_4001_before_any_message() {
    let db = TestDb::migrated().await;
    insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    let secret = euraflow::config::generate_secret();
    let srv = server(&db, &[("EF__SECRET_KEY", &secret)]).await;
    let (access, refresh) = tokens(&srv, "alice", "alice-password").await;

    let keys = euraflow::auth::tokens::TokenKeys::new(
        &euraflow::config::Secret::new(secret.clone()),
        Duration::from_secs(60),
        Duration::from_secs(60),
    );
    let parts: Vec<&str> = access.split('.').collect();
    let mut claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap();
    claims["exp"] = json!(euraflow::auth::tokens::now_s() - 3600);
    let expired = keys.sign(&claims).unwrap();
    claims["exp"] = json!(euraflow::auth::tokens::now_s() + 3600);
    let other_key = euraflow::auth::tokens::TokenKeys::new(
        &euraflow::config::Secret::new("x".repeat(86)),
        Duration::from_secs(60),
        Duration::from_secs(60),
    )
    .sign(&claims)
    .unwrap();
    for (what, path) in [
        ("no token", "/api/ef/v1/notifications/ws".to_owned()),
        (
            "empty token",
            "/api/ef/v1/notifications/ws?token=".to_owned(),
        ),
        (
            "garbage",
            "/api/ef/v1/notifications/ws?token=not.a.token".to_owned(),
        ),
        (
            "expired",
            format!("/api/ef/v1/notifications/ws?token={expired}"),
        ),
        (
            "other key",
            format!("/api/ef/v1/notifications/ws?token={other_key}"),
        ),
        (
            "refresh as access",
            format!("/api/ef/v1/notifications/ws?token={refresh}"),
        ),
        ("no token on /ws", "/ws".to_owned()),
    ] {
        let mut ws = connect_to(srv.https, &srv.ca_pem, &path, &[]).await;
        assert_eq!(close_code(&mut ws).await, 4001, "{what}");
    }

    // Logged out: the token's session has ended (and the token is revoked).
    let mut ws = connect(&srv, &access).await;
    assert_eq!(next_json(&mut ws).await["type"], "connected");
    let (status, _) =
        common::call(&srv, reqwest::Method::POST, "/auth/logout", &access, None).await;
    assert_eq!(status, 204);
    let m = next_of(&mut ws, "session_expired").await;
    assert_eq!(m["data"]["reason"], "logged_out", "{m}");
    assert_eq!(close_code(&mut ws).await, 4001);
    let mut ws = connect(&srv, &access).await;
    assert_eq!(close_code(&mut ws).await, 4001, "a logged-out token");

    // A plain GET (no upgrade) is told what this is.
    let r = srv
        .client()
        .get(srv.https_url("/api/ef/v1/notifications/ws"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 426);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_login_expires_the_first_sessions_socket() {
    let db = TestDb::migrated().await;
    insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    let srv = server(&db, &[]).await;
    let (first, _) = tokens(&srv, "alice", "alice-password").await;
    let mut old = connect(&srv, &first).await;
    assert_eq!(next_json(&mut old).await["type"], "connected");

    let (second, _) = tokens(&srv, "alice", "alice-password").await;
    let mut new = connect(&srv, &second).await;
    assert_eq!(next_json(&mut new).await["type"], "connected");
    let m = next_of(&mut old, "session_expired").await;
    assert_eq!(m["data"]["reason"], "session_replaced", "{m}");
    assert_eq!(close_code(&mut old).await, 4001);

    // The new session's socket is untouched: it still answers.
    send(&mut new, json!({"type": "ping"})).await;
    assert_eq!(next_of(&mut new, "pong").await["type"], "pong");
    drop(new);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_disable_and_passwd_expire_sessions_on_the_running_server() {
    let db = TestDb::migrated().await;
    insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    insert_user(&db, "bob", "main_account", None, &hash("bob-password")).await;
    let state = tempfile::tempdir().unwrap();
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let srv = server(&db, &[("EF__REDIS_PREFIX", &prefix)]).await;
    let (alice, _) = tokens(&srv, "alice", "alice-password").await;
    let (bob, _) = tokens(&srv, "bob", "bob-password").await;
    let mut a = connect(&srv, &alice).await;
    let mut b = connect(&srv, &bob).await;
    assert_eq!(next_json(&mut a).await["type"], "connected");
    assert_eq!(next_json(&mut b).await["type"], "connected");

    let cli = |args: &[&str], stdin: &str| {
        let mut env = production_env(state.path());
        env.extend(db.env());
        env.push(("EF__REDIS_PREFIX".into(), prefix.clone()));
        let mut child = Command::new(common::BIN)
            .args(args)
            .env_clear()
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cli(&["user", "disable", "alice"], "");
    let m = next_of(&mut a, "session_expired").await;
    assert_eq!(m["data"]["reason"], "account_disabled", "{m}");
    assert_eq!(close_code(&mut a).await, 4001);

    cli(&["user", "passwd", "bob"], "bob-new-password\n");
    let m = next_of(&mut b, "session_expired").await;
    assert_eq!(m["data"]["reason"], "password_changed", "{m}");
    assert_eq!(close_code(&mut b).await, 4001);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_close_with_1009() {
    let db = TestDb::migrated().await;
    insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    let srv = server(&db, &[]).await;
    let (access, _) = tokens(&srv, "alice", "alice-password").await;
    let mut ws = connect(&srv, &access).await;
    assert_eq!(next_json(&mut ws).await["type"], "connected");
    let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(70 * 1024));
    // The server refuses the message from its frame header and closes at once. While this client
    // is still writing the rest, the server's kernel may answer the unread bytes with a reset
    // that loses the close frame (a browser then sees 1006). Either way the socket is closed
    // (else the wait below times out), and a close frame that arrives says 1009.
    let code = match ws.send(Message::Text(big.into())).await {
        Err(_) => None,
        Ok(()) => loop {
            let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("the socket is closed within 10 s");
            match m {
                Some(Ok(Message::Close(f))) => break Some(f.map_or(1005, |f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => break None,
            }
        },
    };
    assert!(matches!(code, None | Some(1009)), "closed with {code:?}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_in_the_query_string_never_reaches_the_log() {
    let db = TestDb::migrated().await;
    insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    let Served {
        dir: _dir,
        p,
        https,
        ca,
        ..
    } = serve_process(&db, &[("EF__LOG_LEVEL", "debug")]).await;
    let client = common::client_for(&ca, https, common::Protocol::Any);
    let login: Value = client
        .post(format!(
            "https://localhost:{}/api/ef/v1/auth/login",
            https.port()
        ))
        .json(&json!({"username": "alice", "password": "alice-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = login["access_token"].as_str().unwrap().to_owned();
    let mut ws = connect_to(
        https,
        &ca,
        &format!("/api/ef/v1/notifications/ws?token={access}&shop_ids=1"),
        &[],
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "connected");
    let mut bad = connect_to(https, &ca, "/ws?token=secret-looking-garbage", &[]).await;
    assert_eq!(close_code(&mut bad).await, 4001);
    drop(ws);
    p.wait_for_log("/notifications/ws", Duration::from_secs(5));
    p.wait_for_log("\"/ws\"", Duration::from_secs(5));
    let log = p.log_text();
    let signature = access.rsplit('.').next().unwrap();
    assert!(!log.contains(signature), "the token is in the log:\n{log}");
    assert!(!log.contains("secret-looking-garbage"), "{log}");
    assert!(!log.contains("token="), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_floods_idle_sockets_and_server_pings() {
    let db = TestDb::migrated().await;
    insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    let srv = server(
        &db,
        &[
            ("EF__WS_MAX_PER_USER", "2"),
            ("EF__WS_MAX_MESSAGES_PER_SECOND", "3"),
            ("EF__WS_PING_INTERVAL", "300ms"),
            ("EF__WS_IDLE_TIMEOUT", "2s"),
        ],
    )
    .await;
    let (access, _) = tokens(&srv, "alice", "alice-password").await;
    let mut a = connect(&srv, &access).await;
    let mut b = connect(&srv, &access).await;
    assert_eq!(next_json(&mut a).await["type"], "connected");
    assert_eq!(next_json(&mut b).await["type"], "connected");
    let mut third = connect(&srv, &access).await;
    assert_eq!(close_code(&mut third).await, 1013, "EF__WS_MAX_PER_USER");

    // The server's ping arrives on its own.
    assert_eq!(next_json(&mut a).await["type"], "ping");
    // Nothing from the client for EF__WS_IDLE_TIMEOUT: closed.
    let started = std::time::Instant::now();
    assert_eq!(close_code(&mut a).await, 1000);
    assert!(started.elapsed() < Duration::from_secs(5));

    // More than EF__WS_MAX_MESSAGES_PER_SECOND: closed with 1008 (no "authentication" in the
    // reason, so the web app reconnects instead of logging out).
    for _ in 0..6 {
        send(&mut b, json!({"type": "ping"})).await;
    }
    assert_eq!(close_code(&mut b).await, 1008);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgraded_sockets_count_against_max_connections() {
    let db = TestDb::migrated().await;
    insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    let srv = server(&db, &[("EF__MAX_CONNECTIONS", "4")]).await;
    let (access, _) = tokens(&srv, "alice", "alice-password").await;
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..5 {
        let mut ws = connect(&srv, &access).await;
        match next_or_close(&mut ws).await {
            Ok(v) => {
                assert_eq!(v["type"], "connected");
                open.push(ws);
            }
            Err(code) => {
                assert_eq!(code, 1013);
                refused += 1;
            }
        }
    }
    // The upgrade itself needs one slot while hyper still holds the connection's own.
    assert_eq!(
        open.len(),
        3,
        "websockets hold slots of EF__MAX_CONNECTIONS"
    );
    assert_eq!(refused, 2);
    drop(open);
    srv.stop().await;
}

/// The first text message, or the close code if the socket closes first.
pub async fn next_or_close<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> Result<Value, u16> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s");
        match m {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(f))) => return Err(f.map_or(1005, |f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_closed_while_others_keep_receiving() {
    let db = TestDb::migrated().await;
    insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    insert_user(&db, "bob", "main_account", None, &hash("bob-password")).await;
    let srv = server(&db, &[("EF__WS_SEND_QUEUE", "32")]).await;
    let (alice, _) = tokens(&srv, "alice", "alice-password").await;
    let (bob, _) = tokens(&srv, "bob", "bob-password").await;

    // Bob's client never reads, with a tiny receive buffer.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(srv.https).await.unwrap();
    let tls = tls_connector(&srv.ca_pem)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (slow, _) = tokio_tungstenite::client_async(
        format!(
            "wss://localhost:{}/api/ef/v1/notifications/ws?token={bob}",
            srv.https.port()
        ),
        tls,
    )
    .await
    .unwrap();

    let mut fast = connect(&srv, &alice).await;
    assert_eq!(next_json(&mut fast).await["type"], "connected");
    const N: usize = 400;
    let reader = tokio::spawn(async move {
        let mut got = 0;
        while got < N {
            let v = next_json(&mut fast).await;
            if v["type"] == "bulk" {
                assert_eq!(v["n"], got, "in order, none lost");
                got += 1;
            }
        }
        fast
    });
    let rt = srv.state().realtime().clone();
    let pad = "x".repeat(32 * 1024);
    for n in 0..N {
        rt.notify(
            euraflow::realtime::Target::All,
            json!({"type": "bulk", "n": n, "pad": pad}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let fast = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the fast client got every message")
        .unwrap();
    // Bob's socket was dropped from the hub; Alice's is still there.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rt.hub().stats().connections != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            rt.hub().stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        rt.metrics()
            .closed
            .with_label_values(&["slow_reader"])
            .get(),
        1
    );
    drop((slow, fast));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_local_delivery_works_and_health_is_degraded() {
    let db = TestDb::migrated().await;
    insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    let srv = server(
        &db,
        &[("EF__REDIS_PORT", "1"), ("EF__REDIS_TIMEOUT", "500ms")],
    )
    .await;
    let (access, _) = tokens(&srv, "alice", "alice-password").await;
    let mut ws = connect(&srv, &access).await;
    assert_eq!(next_json(&mut ws).await["type"], "connected");
    let alice = srv.state().realtime().hub().stats().users;
    assert_eq!(alice, 1);
    srv.state()
        .realtime()
        .notify(euraflow::realtime::Target::All, json!({"type": "local"}))
        .await;
    assert_eq!(next_json(&mut ws).await["type"], "local");
    assert!(!srv.state().realtime().fanout_ok());
    let body: Value = reqwest::get(srv.http_url("/api/ef/v1/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"]["status"], "degraded", "{body}");
    let stats: Value = reqwest::get(srv.http_url("/api/ef/v1/notifications/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["data"]["fanout"], "degraded", "{stats}");
    assert_eq!(stats["data"]["connections"], 1, "{stats}");
    // The other servers cannot be listed without Redis: this process only.
    let processes = stats["data"]["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 1, "{stats}");
    assert_eq!(processes[0]["process_id"], std::process::id(), "{stats}");
    assert_eq!(processes[0]["connections"], 1, "{stats}");
    assert_eq!(stats["data"]["total"]["connections"], 1, "{stats}");
    assert_eq!(stats["data"]["total"]["users"], 1, "{stats}");
    drop(ws);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_socket_with_1001_and_exits_within_the_bound() {
    let db = TestDb::migrated().await;
    insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    let Served {
        dir: _dir,
        mut p,
        https,
        ca,
        ..
    } = serve_process(&db, &[("EF__SHUTDOWN_TIMEOUT", "5s")]).await;
    let client = common::client_for(&ca, https, common::Protocol::Any);
    let login: Value = client
        .post(format!(
            "https://localhost:{}/api/ef/v1/auth/login",
            https.port()
        ))
        .json(&json!({"username": "alice", "password": "alice-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = login["access_token"].as_str().unwrap().to_owned();
    let path = format!("/api/ef/v1/notifications/ws?token={access}");
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let mut ws = connect_to(https, &ca, &path, &[]).await;
        assert_eq!(next_json(&mut ws).await["type"], "connected");
        sockets.push(ws);
    }
    let started = std::time::Instant::now();
    p.signal(rustix::process::Signal::TERM);
    for ws in &mut sockets {
        assert_eq!(close_code(ws).await, 1001);
    }
    let status = tokio::task::spawn_blocking(move || {
        let s = p.wait_exit(Duration::from_secs(10));
        (s, p.log_text())
    })
    .await
    .unwrap();
    assert_eq!(status.0.code(), Some(0), "{}", status.1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exited after {:?}",
        started.elapsed()
    );
}

/// A real `serve` process on `db` with a state directory of its own and `extra` settings: the
/// directory (bind it for as long as the process runs: dropping it removes the process's
/// state), the process, its HTTPS address, its self-signed
/// certificate and the environment it runs with (for CLI commands against it).
pub struct Served {
    pub dir: tempfile::TempDir,
    pub p: Process,
    pub https: std::net::SocketAddr,
    pub ca: Vec<u8>,
    pub env: Vec<(String, String)>,
}

pub async fn serve_process(db: &TestDb, extra: &[(&str, &str)]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let mut env = production_env(dir.path());
    env.extend(db.env());
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let (dir_path, env2) = (dir.path().to_path_buf(), env.clone());
    let p =
        tokio::task::spawn_blocking(move || Process::spawn(&dir_path, &["serve"], &as_refs(&env2)))
            .await
            .unwrap();
    let https = p.https.expect("https listener");
    let ca = std::fs::read(dir.path().join("tls/selfsigned.crt")).expect("certificate");
    Served {
        dir,
        p,
        https,
        ca,
        env,
    }
}

/// Log in through the real server at `https`; returns the access token.
pub async fn login_at(
    https: std::net::SocketAddr,
    ca: &[u8],
    name: &str,
    password: &str,
) -> String {
    let client = common::client_for(ca, https, common::Protocol::Any);
    let login: Value = client
        .post(format!(
            "https://localhost:{}/api/ef/v1/auth/login",
            https.port()
        ))
        .json(&json!({"username": name, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("login {name}: {login}"))
        .to_owned()
}

/// Processes of one deployment past one VM: they share the database, the Redis prefix and the
/// secret key (so a token from one server is good on another).
struct Cluster {
    db_env: Vec<(String, String)>,
    prefix: String,
    secret: String,
}

impl Cluster {
    fn new(db: &TestDb) -> Cluster {
        Cluster {
            db_env: db.env(),
            prefix: format!("test:{}:", uuid::Uuid::new_v4().simple()),
            secret: euraflow::config::generate_secret(),
        }
    }

    /// Start `serve` or `worker` (each in its own state directory): the process, its TLS
    /// certificate (a server's), and the directory to keep.
    async fn start(
        &self,
        args: &'static [&'static str],
        extra: Vec<(String, String)>,
    ) -> (Process, Vec<u8>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut env = production_env(dir.path());
        env.extend(self.db_env.iter().cloned());
        env.push(("EF__REDIS_PREFIX".into(), self.prefix.clone()));
        env.push(("EF__SECRET_KEY".into(), self.secret.clone()));
        env.extend(extra);
        let path = dir.path().to_path_buf();
        let p = tokio::task::spawn_blocking(move || {
            if args[0] == "worker" {
                Process::spawn_until(
                    std::path::Path::new(common::BIN),
                    &path,
                    args,
                    &as_refs(&env),
                    "worker ready",
                )
            } else {
                Process::spawn(&path, args, &as_refs(&env))
            }
        })
        .await
        .unwrap();
        let ca = std::fs::read(dir.path().join("tls/selfsigned.crt")).unwrap_or_default();
        (p, ca, dir)
    }
}

/// Past one VM: two `serve` processes and a `worker` share one database and one Redis; each
/// server delivers what the other (or the worker) publishes to its own sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_and_a_worker_reach_each_others_sockets() {
    let db = TestDb::migrated().await;
    insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    let carol = insert_user(&db, "carol", "main_account", None, &hash("carol-password")).await;
    db.client()
        .await
        .execute(
            "UPDATE users SET expires_at = now() + interval '4 seconds' WHERE id = $1",
            &[&carol],
        )
        .await
        .unwrap();
    let cluster = Cluster::new(&db);
    let start = |args, extra| cluster.start(args, extra);
    let (a, ca_a, _da) = start(&["serve"], vec![]).await;
    let (b, ca_b, _db) = start(&["serve"], vec![]).await;
    let (_w, _, _dw) = start(
        &["worker"],
        vec![("EF__ACCOUNT_EXPIRY_CHECK_INTERVAL".into(), "1s".into())],
    )
    .await;
    let (a_https, b_https) = (a.https.unwrap(), b.https.unwrap());
    let ws_path = |t: &str| format!("/api/ef/v1/notifications/ws?token={t}");

    // A login on A expires the session of a client connected to B.
    let first = login_at(a_https, &ca_a, "alice", "alice-password").await;
    let mut on_b = connect_to(b_https, &ca_b, &ws_path(&first), &[]).await;
    assert_eq!(next_json(&mut on_b).await["type"], "connected");
    let second = login_at(a_https, &ca_a, "alice", "alice-password").await;
    let m = next_of(&mut on_b, "session_expired").await;
    assert_eq!(m["data"]["reason"], "session_replaced", "{m}");
    assert_eq!(close_code(&mut on_b).await, 4001);

    // And the other way: published on B, received on A.
    let mut on_a = connect_to(a_https, &ca_a, &ws_path(&second), &[]).await;
    assert_eq!(next_json(&mut on_a).await["type"], "connected");
    let _third = login_at(b_https, &ca_b, "alice", "alice-password").await;
    let m = next_of(&mut on_a, "session_expired").await;
    assert_eq!(m["data"]["reason"], "session_replaced", "{m}");
    assert_eq!(close_code(&mut on_a).await, 4001);

    // Published by the worker: Carol's account expires while her socket on B is open.
    let carols = login_at(a_https, &ca_a, "carol", "carol-password").await;
    let mut carol_on_b = connect_to(b_https, &ca_b, &ws_path(&carols), &[]).await;
    assert_eq!(next_json(&mut carol_on_b).await["type"], "connected");
    let m = next_of(&mut carol_on_b, "session_expired").await;
    assert_eq!(m["data"]["reason"], "account_expired", "{m}");
    assert_eq!(close_code(&mut carol_on_b).await, 4001);
}

/// `euraflow check` opens a websocket to the running server ("WebSocket 连接正常"); status and
/// metrics count the open sockets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_status_and_metrics_see_the_websockets() {
    let db = TestDb::migrated().await;
    insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    let Served {
        dir: _dir,
        p,
        https,
        ca,
        env,
    } = serve_process(&db, &[]).await;
    let http = p.http.unwrap();
    let access = login_at(https, &ca, "alice", "alice-password").await;
    let mut ws = connect_to(
        https,
        &ca,
        &format!("/api/ef/v1/notifications/ws?token={access}"),
        &[],
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "connected");

    let status: Value = reqwest::get(format!("http://{http}/api/ef/v1/system/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["data"]["websockets"]["connections"], 1, "{status}");
    assert_eq!(status["data"]["websockets"]["fanout"], "ok", "{status}");
    let stats: Value = reqwest::get(format!("http://{http}/api/ef/v1/notifications/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["data"]["users"], 1, "{stats}");
    let metrics = reqwest::get(format!("http://{http}/api/ef/v1/system/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("ef_ws_connections 1"), "{metrics}");
    assert!(metrics.contains("ef_ws_messages_sent_total"), "{metrics}");

    // An outsider cannot use the check's probe: without a token it is a 4001.
    let mut outsider = connect_to(https, &ca, "/api/ef/v1/notifications/ws?probe=1", &[]).await;
    assert_eq!(close_code(&mut outsider).await, 4001);

    let mut check_env = env.clone();
    check_env.retain(|(k, _)| k != "EF__API_PORT");
    check_env.push(("EF__API_PORT".into(), http.port().to_string()));
    check_env.push(("PATH".into(), std::env::var("PATH").unwrap_or_default()));
    let out = Command::new(common::BIN)
        .args(["check", "--json"])
        .env_clear()
        .envs(check_env)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let item = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "websocket")
        .cloned()
        .unwrap_or_else(|| panic!("no websocket check: {v}"));
    assert_eq!(item["outcome"], "pass", "{item}");
    drop(ws);
}

/// The user who triggers a job hears how it ended, from the worker (another process's role; here
/// an in-process worker sharing the Redis prefix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_who_triggered_a_job_gets_job_finished() {
    let db = TestDb::migrated().await;
    insert_user(&db, "admin", "admin", None, &hash("admin-password")).await;
    let c = db.client().await;
    let existing = c
        .query_opt(
            "SELECT id FROM sync_services WHERE service_key = 'ef.core.cleanup'",
            &[],
        )
        .await
        .unwrap();
    let id: i32 = match existing {
        Some(r) => r.get(0),
        None => c
            .query_one(
                "INSERT INTO sync_services (service_key, service_name, celery_task_name, service_type, schedule_config, is_enabled, config_json)
                 VALUES ('ef.core.cleanup', 'cleanup', 'ef.core.cleanup', 'cron', '0 3 * * *', true, '{}') RETURNING id",
                &[],
            )
            .await
            .unwrap()
            .get(0),
    };
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let srv = server(&db, &[("EF__REDIS_PREFIX", &prefix)]).await;
    let (admin, _) = tokens(&srv, "admin", "admin-password").await;
    let mut ws = connect(&srv, &admin).await;
    assert_eq!(next_json(&mut ws).await["type"], "connected");
    let (status, trig) = common::call(
        &srv,
        reqwest::Method::POST,
        &format!("/sync-services/{id}/trigger"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{trig}");
    let job_id = trig["job_id"].as_i64().unwrap();

    let harness = common::jobs::Harness::new(&db, &[("EF__REDIS_PREFIX", &prefix)]);
    let worker = harness.start(euraflow::jobs::builtin_registry(), harness.options());
    let m = next_of(&mut ws, "job.finished").await;
    assert_eq!(m["data"]["job_id"], job_id, "{m}");
    assert_eq!(m["data"]["job_type"], "ef.core.cleanup", "{m}");
    worker.stop().await;
    drop(ws);
    srv.stop().await;
}

/// `GET /notifications/stats` on one server lists the sockets of every server sharing its Redis,
/// per process and in total (unique users counted once across servers); a server that stops
/// leaves the list at once, and one that is killed leaves it when its entry expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_on_one_server_list_every_servers_sockets() {
    let db = TestDb::migrated().await;
    let alice = insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    let bob = insert_user(&db, "bob", "main_account", None, &hash("bob-password")).await;
    insert_shop(&db, 41, alice).await;
    insert_shop(&db, 42, bob).await;
    let cluster = Cluster::new(&db);
    let (a, ca_a, _da) = cluster.start(&["serve"], vec![]).await;
    let (mut b, ca_b, _db) = cluster.start(&["serve"], vec![]).await;
    let (a_https, b_https, a_http) = (a.https.unwrap(), b.https.unwrap(), a.http.unwrap());
    let pid = |p: &Process| p.pid().as_raw_nonzero().get();
    let (a_pid, b_pid) = (pid(&a), pid(&b));

    // One login each (a second would end the first session): Alice on both servers.
    let alices = login_at(a_https, &ca_a, "alice", "alice-password").await;
    let bobs = login_at(b_https, &ca_b, "bob", "bob-password").await;
    let ws_path = |t: &str| format!("/api/ef/v1/notifications/ws?token={t}");
    let mut sockets = Vec::new();
    for (addr, ca, token) in [
        (a_https, &ca_a, &alices),
        (a_https, &ca_a, &alices),
        (b_https, &ca_b, &alices),
        (b_https, &ca_b, &bobs),
    ] {
        let mut ws = connect_to(addr, ca, &ws_path(token), &[]).await;
        assert_eq!(next_json(&mut ws).await["type"], "connected");
        sockets.push(ws);
    }

    let stats_url = format!("http://{a_http}/api/ef/v1/notifications/stats");
    let get_stats = || async {
        let v: Value = reqwest::get(&stats_url)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["data"].clone()
    };
    let of = |stats: &Value, pid: i32| {
        stats["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["process_id"] == pid)
            .cloned()
    };
    // B publishes shortly after its sockets change (and every 10 s): wait for its numbers.
    let started = std::time::Instant::now();
    let stats = loop {
        let s = get_stats().await;
        if of(&s, b_pid).is_some_and(|b| b["connections"] == 2) {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "B's sockets never showed up on A: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "B's sockets listed on A after {:?}: {stats}",
        started.elapsed()
    );
    // The fields the endpoint always had: this process's own.
    assert_eq!(stats["process_id"], a_pid, "{stats}");
    assert_eq!(stats["connections"], 2, "{stats}");
    assert_eq!(stats["users"], 1, "{stats}");
    assert_eq!(stats["fanout"], "ok", "{stats}");
    assert_eq!(stats["processes"].as_array().unwrap().len(), 2, "{stats}");
    let on_a = of(&stats, a_pid).unwrap();
    assert_eq!(on_a["connections"], 2, "{stats}");
    assert_eq!(on_a["users"], 1, "{stats}");
    assert_eq!(on_a["shops"], json!({"41": 2}), "{stats}");
    assert!(!on_a["host"].as_str().unwrap().is_empty(), "{stats}");
    assert!(on_a["updated_at"].is_string(), "{stats}");
    let on_b = of(&stats, b_pid).unwrap();
    assert_eq!(on_b["users"], 2, "{stats}");
    assert_eq!(on_b["shops"], json!({"41": 1, "42": 1}), "{stats}");
    // Alice has sockets on both servers and counts once.
    assert_eq!(
        stats["total"],
        json!({"processes": 2, "connections": 4, "users": 2, "shops": {"41": 3, "42": 1}}),
        "{stats}"
    );

    // Every entry expires by itself: a killed process (no chance to remove it) leaves the list.
    let mut redis = redis::Client::open("redis://127.0.0.1:6379/0")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}realtime:process*", cluster.prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    // Two entries, Alice's and Bob's user sets, and the index.
    assert_eq!(keys.len(), 5, "{keys:?}");
    for k in &keys {
        let ttl: i64 = redis::cmd("TTL")
            .arg(k)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!((1..=30).contains(&ttl), "{k} expires in {ttl} s");
    }

    // B stops: its entry goes with it, no waiting for the expiry.
    b.signal(rustix::process::Signal::TERM);
    let status = tokio::task::spawn_blocking(move || b.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let stats = get_stats().await;
    assert_eq!(stats["processes"].as_array().unwrap().len(), 1, "{stats}");
    assert!(of(&stats, a_pid).is_some(), "{stats}");
    assert_eq!(
        stats["total"],
        json!({"processes": 1, "connections": 2, "users": 1, "shops": {"41": 2}}),
        "{stats}"
    );
    drop(sockets);
}
