//! The websocket over HTTP/2 (RFC 8441 extended CONNECT with `:protocol websocket`), with a real
//! HTTP/2 client over TLS (ALPN h2): what holds for the HTTP/1.1 upgrade holds here too — the
//! same authentication and refusals (4001), the same caps (1013), `session_expired`, 1001 at
//! shutdown, no token in the log — and the connection that carries the socket keeps serving
//! plain requests, is not shut as idle, and is the only `EF__MAX_CONNECTIONS` slot it takes.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::common::{TestDb, TestServer, as_refs, hash, insert_shop, insert_user, tokens};
use crate::realtime::{
    Served, close_code, login_at, next_json, next_of, next_or_close, send, serve_process,
    tls_connector_alpn,
};

type H2Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// One HTTP/2 connection over TLS to `addr`: its request sender, after a plain GET on it has
/// shown that the server speaks HTTP/2 and offers extended CONNECT (its SETTINGS have arrived).
async fn h2_connect(addr: std::net::SocketAddr, ca_pem: &[u8]) -> SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let tls = tokio::time::timeout(
        Duration::from_secs(10),
        tls_connector_alpn(ca_pem, b"h2").connect("localhost".try_into().unwrap(), tcp),
    )
    .await
    .expect("the TLS handshake within 10 s")
    .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/2 handshake");
    let mut conn = Box::pin(conn);
    let resp = tokio::select! {
        r = send.send_request(get(addr, "/healthz")) => r.expect("GET /healthz"),
        r = &mut conn => panic!("the connection ended: {r:?}"),
    };
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert!(
        conn.is_extended_connect_protocol_enabled(),
        "the server does not offer SETTINGS_ENABLE_CONNECT_PROTOCOL"
    );
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

fn get(addr: std::net::SocketAddr, path: &str) -> http::Request<Empty<Bytes>> {
    request(addr, http::Method::GET, path, None)
}

fn request(
    addr: std::net::SocketAddr,
    method: http::Method,
    path: &str,
    bearer: Option<&str>,
) -> http::Request<Empty<Bytes>> {
    let mut r = http::Request::builder()
        .method(method)
        .uri(format!("https://localhost:{}{path}", addr.port()));
    if let Some(t) = bearer {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Empty::new()).unwrap()
}

/// A plain request without a body on the connection: its status and body.
async fn h2_call(
    send: &mut SendRequest<Empty<Bytes>>,
    req: http::Request<Empty<Bytes>>,
) -> (u16, Bytes) {
    let what = format!("{} {}", req.method(), req.uri().path());
    send.ready().await.expect("the connection takes requests");
    let resp = send
        .send_request(req)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// A websocket as one stream of the connection: extended CONNECT to `path`, 200, then the
/// websocket protocol on the stream.
async fn h2_ws(
    send: &mut SendRequest<Empty<Bytes>>,
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> H2Ws {
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("https://localhost:{}{path}", addr.port()))
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .header("sec-websocket-version", "13");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send.ready().await.expect("the connection takes requests");
    let mut resp = send
        .send_request(req.body(Empty::new()).unwrap())
        .await
        .expect("extended CONNECT");
    assert_eq!(
        resp.status(),
        200,
        "CONNECT {}",
        path.split('?').next().unwrap()
    );
    let upgraded = hyper::upgrade::on(&mut resp).await.expect("the stream");
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_over_http2_share_one_connection_with_the_rest_api() {
    let db = TestDb::migrated().await;
    let alice = insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    insert_shop(&db, 31, alice).await;
    let mut env = db.env();
    env.extend([
        // One connection at most: every socket below lives on the one HTTP/2 connection.
        ("EF__MAX_CONNECTIONS".to_owned(), "1".to_owned()),
        ("EF__KEEPALIVE_TIMEOUT".to_owned(), "1s".to_owned()),
        ("EF__WS_MAX_PER_USER".to_owned(), "3".to_owned()),
    ]);
    let srv = TestServer::start(&as_refs(&env)).await;
    // The login's client is dropped with its connection, so the one slot comes free.
    let (access, _) = tokens(&srv, "alice", "alice-password").await;
    let addr = srv.https;
    let mut h2 = h2_connect(addr, &srv.ca_pem).await;

    let mut ws = h2_ws(
        &mut h2,
        addr,
        &format!("/api/ef/v1/notifications/ws?token={access}"),
        &[],
    )
    .await;
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["type"], "connected", "{hello}");
    assert_eq!(hello["user_id"], alice);
    assert_eq!(hello["shop_ids"], json!([31]));
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next_json(&mut ws).await["type"], "pong");

    // The nginx location, with the token in the Authorization header, on the same connection.
    let bearer = format!("Bearer {access}");
    let mut ws2 = h2_ws(&mut h2, addr, "/ws", &[("authorization", &bearer)]).await;
    assert_eq!(next_json(&mut ws2).await["type"], "connected");

    // Refused as the HTTP/1.1 upgrade refuses: 4001 before any message.
    for (what, path) in [
        ("no token", "/api/ef/v1/notifications/ws".to_owned()),
        (
            "garbage",
            "/api/ef/v1/notifications/ws?token=not.a.token".to_owned(),
        ),
        ("no token on /ws", "/ws".to_owned()),
    ] {
        let mut bad = h2_ws(&mut h2, addr, &path, &[]).await;
        assert_eq!(close_code(&mut bad).await, 4001, "{what}");
    }

    // The per-user cap counts HTTP/2 sockets: the fourth is told to come back later.
    let path = format!("/api/ef/v1/notifications/ws?token={access}");
    let mut ws3 = h2_ws(&mut h2, addr, &path, &[]).await;
    assert_eq!(next_json(&mut ws3).await["type"], "connected");
    let mut over = h2_ws(&mut h2, addr, &path, &[]).await;
    assert_eq!(
        next_or_close(&mut over).await,
        Err(1013),
        "over the user cap"
    );
    // Three sockets on one connection under EF__MAX_CONNECTIONS=1: a stream takes no slot of
    // its own (an HTTP/1.1 socket would need one each).
    assert_eq!(srv.state().realtime().hub().stats().connections, 3);

    srv.state()
        .realtime()
        .notify(
            euraflow::realtime::Target::User(alice),
            json!({"type": "job.finished", "data": {"id": 7}}),
        )
        .await;
    for s in [&mut ws, &mut ws2, &mut ws3] {
        assert_eq!(next_of(s, "job.finished").await["data"]["id"], 7);
    }

    // A plain request on the connection that carries the sockets.
    let (status, body) = h2_call(&mut h2, get(addr, "/api/ef/v1/notifications/ws")).await;
    assert_eq!(status, 426, "{}", String::from_utf8_lossy(&body));

    // Past EF__KEEPALIVE_TIMEOUT with no request in progress, the connection still is not idle:
    // its sockets keep it open, and it keeps taking requests (after a GOAWAY it would not).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, _) = h2_call(&mut h2, get(addr, "/healthz")).await;
    assert_eq!(status, 200);
    send(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next_of(&mut ws, "pong").await["type"], "pong");

    // A closed socket leaves the hub; the connection and the others carry on.
    drop(ws3);
    for _ in 0..100 {
        if srv.state().realtime().hub().stats().connections == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(srv.state().realtime().hub().stats().connections, 2);

    // Logging out (on the same connection: it is the only one) ends the session's sockets.
    let logout = request(
        addr,
        http::Method::POST,
        "/api/ef/v1/auth/logout",
        Some(&access),
    );
    let (status, body) = h2_call(&mut h2, logout).await;
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&body));
    for s in [&mut ws, &mut ws2] {
        let m = next_of(s, "session_expired").await;
        assert_eq!(m["data"]["reason"], "logged_out", "{m}");
        assert_eq!(close_code(s).await, 4001);
    }
    srv.stop().await;
}

/// At SIGTERM an HTTP/2 socket gets 1001 like an HTTP/1.1 one, and the process exits within
/// the drain bound, although the socket's connection was still open; the token in the CONNECT's
/// query string reaches no log line, not even at debug level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_http2_sockets_with_1001_and_no_token_is_logged() {
    let db = TestDb::migrated().await;
    insert_user(&db, "alice", "main_account", None, &hash("alice-password")).await;
    let Served {
        dir: _dir,
        mut p,
        https,
        ca,
        ..
    } = serve_process(
        &db,
        &[("EF__SHUTDOWN_TIMEOUT", "5s"), ("EF__LOG_LEVEL", "debug")],
    )
    .await;
    let access = login_at(https, &ca, "alice", "alice-password").await;
    let mut h2 = h2_connect(https, &ca).await;
    let path = format!("/api/ef/v1/notifications/ws?token={access}");
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let mut ws = h2_ws(&mut h2, https, &path, &[]).await;
        assert_eq!(next_json(&mut ws).await["type"], "connected");
        sockets.push(ws);
    }
    let mut bad = h2_ws(&mut h2, https, "/ws?token=secret-looking-garbage", &[]).await;
    assert_eq!(close_code(&mut bad).await, 4001);

    p.wait_for_log(
        "CONNECT /api/ef/v1/notifications/ws",
        Duration::from_secs(5),
    );
    p.wait_for_log("\"/ws\"", Duration::from_secs(5));
    let log = p.log_text();
    let signature = access.rsplit('.').next().unwrap();
    assert!(!log.contains(signature), "the token is in the log:\n{log}");
    assert!(!log.contains("secret-looking-garbage"), "{log}");
    assert!(!log.contains("token="), "{log}");

    let started = std::time::Instant::now();
    p.signal(rustix::process::Signal::TERM);
    for ws in &mut sockets {
        assert_eq!(close_code(ws).await, 1001);
    }
    let (status, log) = tokio::task::spawn_blocking(move || {
        let s = p.wait_exit(Duration::from_secs(10));
        (s, p.log_text())
    })
    .await
    .unwrap();
    let took = started.elapsed();
    println!("SIGTERM to exit with two HTTP/2 sockets open: {took:?}");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
}
