//! The HTTPS server in-process over real TLS: protocols, headers on every response, the API's
//! error shapes, body limits, CORS, timeouts and the connection cap.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{TestServer, raw_http, status_of};
use futures_util::StreamExt;
use reqwest::{StatusCode, Version};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_speaks_http2_and_http1_with_tls_1_2_or_1_3() {
    let srv = TestServer::start(&[]).await;
    let r = srv
        .client()
        .get(srv.https_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), Version::HTTP_2);
    assert_eq!(r.status(), StatusCode::OK);
    let r = srv
        .client_h1()
        .get(srv.https_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), Version::HTTP_11);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "healthy"
    );

    // Old protocol versions are refused: a TLS 1.0/1.1-only ClientHello gets no session.
    let mut s = TcpStream::connect(srv.https).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&tls10_client_hello()).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    // Either a fatal alert record (type 21) or a closed connection, never a ServerHello (22).
    assert!(
        n == 0 || buf[0] == 21,
        "unexpected answer to a TLS 1.0 hello: {:?}",
        &buf[..n]
    );
    srv.stop().await;
}

/// A minimal ClientHello offering only TLS 1.0 and one CBC suite.
fn tls10_client_hello() -> Vec<u8> {
    let mut hello = vec![0x03, 0x01]; // client_version TLS 1.0
    hello.extend_from_slice(&[0u8; 32]); // random
    hello.push(0); // session id
    hello.extend_from_slice(&[0x00, 0x02, 0x00, 0x2f]); // TLS_RSA_WITH_AES_128_CBC_SHA
    hello.extend_from_slice(&[0x01, 0x00]); // compression: null
    let mut hs = vec![0x01, 0x00, 0x00, hello.len() as u8];
    hs.extend_from_slice(&hello);
    let mut rec = vec![0x16, 0x03, 0x01, 0x00, hs.len() as u8];
    rec.extend_from_slice(&hs);
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_and_trace_id_on_every_response() {
    let srv = TestServer::start(&[("EF__HSTS", "max-age=63072000; includeSubDomains")]).await;
    let c = srv.client();
    for path in ["/healthz", "/api/ef/v1/nope", "/no-such-asset.js", "/"] {
        let r = c.get(srv.https_url(path)).send().await.unwrap();
        let h = r.headers();
        assert_eq!(h["x-frame-options"], "SAMEORIGIN", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(
            h["referrer-policy"], "strict-origin-when-cross-origin",
            "{path}"
        );
        assert_eq!(h["x-xss-protection"], "1; mode=block", "{path}");
        assert_eq!(
            h["strict-transport-security"], "max-age=63072000; includeSubDomains",
            "{path}"
        );
        let id = h["x-trace-id"].to_str().unwrap();
        assert_eq!(id.len(), 36, "{path}: {id}");
    }
    // Trace ids differ per request.
    let a = c.get(srv.https_url("/healthz")).send().await.unwrap();
    let b = c.get(srv.https_url("/healthz")).send().await.unwrap();
    assert_ne!(a.headers()["x-trace-id"], b.headers()["x-trace-id"]);
    // No HSTS over plain HTTP.
    let plain = reqwest::get(srv.http_url("/healthz")).await.unwrap();
    assert!(plain.headers().get("strict-transport-security").is_none());
    assert_eq!(plain.headers()["x-frame-options"], "SAMEORIGIN");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_paths_answer_in_the_envelope_with_json_404_and_405() {
    let srv = TestServer::start(&[]).await;
    let c = srv.client();
    let r = c
        .get(srv.https_url("/api/ef/v1/system/info"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["error"], serde_json::Value::Null);
    assert_eq!(v["data"]["name"], "EuraFlow");

    let r = c
        .get(srv.https_url("/api/ef/v1/does/not/exist"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["data"], serde_json::Value::Null);
    let e = &v["error"];
    assert_eq!(e["type"], "about:blank");
    assert_eq!(e["title"], "Not Found");
    assert_eq!(e["status"], 404);
    assert_eq!(e["code"], "NOT_FOUND");
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("/api/ef/v1/does/not/exist")
    );

    let r = c
        .delete(srv.https_url("/api/ef/v1/system/info"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let allow = r.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET"), "{allow}");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "METHOD_NOT_ALLOWED");
    assert_eq!(v["error"]["status"], 405);

    // API-looking paths outside the prefix are JSON too, never the web app.
    for p in ["/api", "/api/v2/x", "/api/ef/v9/health"] {
        let r = c
            .get(srv.https_url(p))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{p}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "NOT_FOUND", "{p}");
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413_before_they_are_read() {
    let srv = TestServer::start(&[("EF__MAX_BODY_SIZE", "1K")]).await;
    // Declared too large: answered at once, although the body never arrives.
    let mut s = TcpStream::connect(srv.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"POST /api/ef/v1/system/info HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 52428801\r\n\r\n",
    )
    .unwrap();
    let started = Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(status_of(&head), 413, "{head}");
    assert!(head.contains("REQUEST_TOO_LARGE"), "{head}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The same over TLS (HTTP/1.1).
    let mut tls = srv.tls_stream(b"http/1.1");
    tls.write_all(
        b"POST /api/ef/v1/system/info HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 52428801\r\n\r\n",
    )
    .unwrap();
    let n = tls.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(status_of(&head), 413, "{head}");

    // Same for a static path and over HTTPS/2.
    let r = srv
        .client()
        .put(srv.https_url("/downloads/x"))
        .body(vec![b'a'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "REQUEST_TOO_LARGE");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_only_for_configured_origins_and_preflight_needs_no_auth() {
    let srv = TestServer::start(&[(
        "EF__CORS_ORIGINS",
        "https://app.example.com, https://seller.ozon.ru",
    )])
    .await;
    let c = srv.client();
    let r = c
        .request(
            reqwest::Method::OPTIONS,
            srv.https_url("/api/ef/v1/auth/me"),
        )
        .header("origin", "https://seller.ozon.ru")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://seller.ozon.ru"
    );
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    assert_eq!(r.headers()["x-frame-options"], "SAMEORIGIN");

    let r = c
        .request(
            reqwest::Method::OPTIONS,
            srv.https_url("/api/ef/v1/auth/me"),
        )
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // Error responses carry CORS headers for allowed origins too.
    let r = c
        .get(srv.https_url("/api/ef/v1/nope"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let srv = TestServer::start(&[("EF__HTTP_HEADER_TIMEOUT", "1s")]).await;
    let mut s = TcpStream::connect(srv.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    // The server closes the connection; read returns EOF (possibly after a 408).
    let _ = s.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "connection kept open for {waited:?}"
    );
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    // The same over TLS: the handshake completes, the headers never do.
    let mut tls = srv.tls_stream(b"http/1.1");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "TLS connection kept open for {waited:?}"
    );
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    // Meanwhile the server answers others normally.
    assert_eq!(
        status_of(&raw_http(
            srv.http,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )),
        200
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tls_client_neither_stalls_others_nor_stays_forever() {
    let srv = TestServer::start(&[("EF__TLS_HANDSHAKE_TIMEOUT", "1s")]).await;
    // Ten connections that never send a ClientHello.
    let silent: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(srv.https).unwrap())
        .collect();
    let started = Instant::now();
    let r = srv
        .client()
        .get(srv.https_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "accepting was stalled: {:?}",
        started.elapsed()
    );
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 16];
        let t = Instant::now();
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0);
        assert!(t.elapsed() < Duration::from_secs(5));
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_clients_wait_instead_of_being_refused() {
    let srv = TestServer::start(&[("EF__MAX_CONNECTIONS", "1")]).await;
    let addr = srv.http;
    // Hold the only slot with an open keep-alive connection.
    let mut first = TcpStream::connect(addr).unwrap();
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = first.read(&mut buf).unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 200);

    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let resp = raw_http(
            addr,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        (t.elapsed(), resp)
    });
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        !waiter.is_finished(),
        "the second client was served while the cap was reached"
    );
    drop(first);
    let (waited, resp) = waiter.join().unwrap();
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(waited >= Duration::from_millis(600));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_are_bounded() {
    let srv = TestServer::start(&[]).await;
    let mut req = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    let resp = raw_http(srv.http, &req);
    assert_eq!(status_of(&resp), 431, "{resp}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_accepted_before_the_stop_still_gets_its_first_request_answered() {
    let srv = TestServer::start(&[]).await;
    let addr = srv.http;
    // Connected (and accepted) but silent when the stop begins, like a client whose request is
    // still on the wire during `systemctl restart`.
    let mut s = TcpStream::connect(addr).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(srv.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (resp, took) = tokio::task::spawn_blocking(move || {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let t = Instant::now();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(status_of(&resp), 200, "{resp}");
    // It was the last request on that connection (closed right after), and new connections are
    // refused.
    assert!(
        took < Duration::from_secs(5),
        "the connection stayed open: {took:?}"
    );
    stopping.await.unwrap();
    assert!(TcpStream::connect(addr).is_err());
}

/// An HTTP/2 connection answers the server's pings, so nothing but an idle limit ever closes it:
/// without one, parked connections would hold every `EF__MAX_CONNECTIONS` slot. Idle means no
/// request in progress: a request slower than the limit (here a body that trickles in) is never
/// cut, and the connection closes (GOAWAY) once it has been idle for the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed_but_slow_requests_are_not() {
    let srv = TestServer::start(&[("EF__KEEPALIVE_TIMEOUT", "1s")]).await;
    let stats = || srv.state().stats().open_connections();
    let wait_for_no_connections = |within: Duration| async move {
        let deadline = Instant::now() + within;
        while stats() > 0 {
            assert!(
                Instant::now() < deadline,
                "{} connections still open",
                stats()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let client = srv.client();

    let r = client.get(srv.https_url("/healthz")).send().await.unwrap();
    assert_eq!(r.version(), Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert_eq!(stats(), 1);
    let idle_since = Instant::now();
    wait_for_no_connections(Duration::from_secs(5)).await;
    assert!(
        idle_since.elapsed() >= Duration::from_millis(900),
        "closed after {:?}, before the limit",
        idle_since.elapsed()
    );

    // A request body that takes 2.5 s (2.5 limits) to arrive.
    let chunks = [
        "{\"username\":",
        "\"nobody\",",
        "\"password\":",
        "\"wrong-password\"}",
    ];
    let body = futures_util::stream::iter(chunks).then(|c| async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        Ok::<_, std::io::Error>(c)
    });
    let r = client
        .post(srv.https_url("/api/ef/v1/auth/login"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("the slow request completed on its connection");
    assert_eq!(r.version(), Version::HTTP_2);
    assert_ne!(r.status(), 200);
    assert!(
        r.status().is_client_error() || r.status().is_server_error(),
        "{}",
        r.status()
    );
    // Had the connection been shut down while the request was in progress, it would close as
    // soon as that request ended; it stays open for the whole limit after it.
    let idle_since = Instant::now();
    wait_for_no_connections(Duration::from_secs(5)).await;
    assert!(
        idle_since.elapsed() >= Duration::from_millis(900),
        "the connection was shut down during the slow request (closed {:?} after it)",
        idle_since.elapsed()
    );
    srv.stop().await;
}

/// TLS 1.2 and TLS 1.3 are both negotiated (clients that can do only one of them are served), with
/// the ALPN protocol the client asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_and_1_3_are_each_negotiated() {
    let srv = TestServer::start(&[]).await;
    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let mut s = srv.tls_stream_with(b"http/1.1", &[version]);
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert_eq!(
            status_of(&String::from_utf8_lossy(&out)),
            200,
            "{expected:?}"
        );
        assert_eq!(s.conn.protocol_version(), Some(expected));
        assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    }
    srv.stop().await;
}

/// Read one HTTP/1.1 response (headers and a `Content-Length` body) from a keep-alive connection.
/// `None` when the connection ended before a whole response arrived: a failed request.
fn read_response(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    Some(head)
}

fn says_close(head: &str) -> bool {
    head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close")
        })
    })
}

/// `systemctl restart` with keep-alive clients (browsers, the CDN, API clients): the drain must not
/// close a connection whose client has just sent its next request. Each busy connection gets one
/// more answer, marked `Connection: close`, and then closes; a connection idle when the stop
/// begins is still answered if its request comes within the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_clients_lose_no_request_when_the_server_stops() {
    let srv = TestServer::start(&[]).await;
    let addr = srv.http;
    const REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";

    // One idle keep-alive connection: one request before the stop, the next one during it.
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    idle.write_all(REQUEST).unwrap();
    let first = read_response(&mut idle).expect("answered before the stop");
    assert_eq!(status_of(&first), 200, "{first}");
    assert!(!says_close(&first), "closed before the stop: {first}");

    // Busy keep-alive connections, each sending its next request as soon as it has an answer.
    let busy: Vec<_> = (0..12)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let (mut answered, mut failed) = (0u32, 0u32);
                loop {
                    if s.write_all(REQUEST).is_err() {
                        failed += 1;
                        break;
                    }
                    match read_response(&mut s) {
                        Some(head) if status_of(&head) == 200 => {
                            answered += 1;
                            if says_close(&head) {
                                return (answered, failed, true);
                            }
                        }
                        _ => {
                            failed += 1;
                            break;
                        }
                    }
                }
                (answered, failed, false)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::spawn(srv.stop());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (resp, idle) = tokio::task::spawn_blocking(move || {
        idle.write_all(REQUEST).unwrap();
        let resp = read_response(&mut idle);
        (resp, idle)
    })
    .await
    .unwrap();
    let resp = resp.expect("the idle connection's request during the stop was answered");
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(says_close(&resp), "the last answer must say close: {resp}");
    drop(idle);

    let mut total = 0;
    for t in busy {
        let (answered, failed, told_to_close) = t.join().unwrap();
        assert_eq!(failed, 0, "a keep-alive request failed during the stop");
        assert!(
            told_to_close,
            "a busy connection was closed without Connection: close"
        );
        total += answered;
    }
    assert!(total > 12, "the clients made only {total} requests");
    stopping.await.unwrap();
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after the stop"
    );
}
