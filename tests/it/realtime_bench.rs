//! The websocket benchmark (`scripts/bench-ws`; ignored in the test suite, asserts nothing but
//! that it could run): N authenticated websockets over TLS to a real `serve` process, then
//! - server RSS per connection,
//! - broadcast-to-all latency (p50/p99), published on the Redis channel as the worker does,
//! - the time for all N to reconnect after SIGTERM and a new process on the same ports (the
//!   server spreads its 1001 closes over up to 2 s; this client retries after 50-100 ms).
//!
//! `BENCH_WS_N` (default 1000) connections; the script raises the file limit first.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::realtime::{Ws, tls_connector};
use crate::common::{Process, TestDb, as_refs, hash, insert_user, production_env};

const ROUNDS: usize = 20;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

async fn open(addr: std::net::SocketAddr, ca: &[u8], path: &str) -> Option<Ws> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let tls = tls_connector(ca)
        .connect("localhost".try_into().ok()?, tcp)
        .await
        .ok()?;
    let url = format!("wss://localhost:{}{path}", addr.port());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.ok()?;
    // Until `connected`, it is not in.
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("\"connected\"") => return Some(ws),
            Ok(Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

enum Event {
    Connected,
    Latency(u64),
}

/// One client: connect (retrying), report latencies of `bench` messages, reconnect after a close.
async fn client(
    addr: std::net::SocketAddr,
    ca: Arc<Vec<u8>>,
    path: Arc<String>,
    events: mpsc::UnboundedSender<Event>,
) {
    loop {
        let mut ws = loop {
            if let Some(ws) = open(addr, &ca, &path).await {
                break ws;
            }
            // The web app waits 5 s; a benchmark retries fast, with jitter, to measure the server.
            let jitter = rand_ms(50) + 50;
            tokio::time::sleep(Duration::from_millis(jitter)).await;
        };
        if events.send(Event::Connected).is_err() {
            return;
        }
        while let Some(Ok(m)) = ws.next().await {
            match m {
                Message::Text(t) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&t)
                        && v["type"] == "bench"
                    {
                        let sent = v["sent_us"].as_u64().unwrap_or(0);
                        let _ = events.send(Event::Latency(now_us().saturating_sub(sent)));
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    }
}

fn rand_ms(max: u64) -> u64 {
    (now_us() ^ (std::process::id() as u64).rotate_left(17)) % max.max(1)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run scripts/bench-ws"]
async fn bench_ws() {
    let n: usize = std::env::var("BENCH_WS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let db = TestDb::migrated().await;
    insert_user(&db, "bench", "main_account", None, &hash("bench-password")).await;
    let dir = tempfile::tempdir().unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (https, http) = (free(), free());
    let mut env = production_env(dir.path());
    env.extend(db.env());
    let cap = (n * 2 + 100).to_string();
    for (k, v) in [
        ("EF__HTTPS_LISTEN", https.to_string()),
        ("EF__API_PORT", http.port().to_string()),
        ("EF__MAX_CONNECTIONS", cap.clone()),
        ("EF__WS_MAX_CONNECTIONS", cap.clone()),
        ("EF__WS_MAX_PER_USER", cap.clone()),
        ("EF__WS_MAX_PER_IP", cap.clone()),
        ("EF__RATE_LIMIT_DEFAULT", "10000000/minute".to_owned()),
    ] {
        env.retain(|(key, _)| key != k);
        env.push((k.to_owned(), v));
    }
    let prefix = env
        .iter()
        .rev()
        .find(|(k, _)| k == "EF__REDIS_PREFIX")
        .map(|(_, v)| v.clone())
        .unwrap();
    let spawn = |env: Vec<(String, String)>, dir: std::path::PathBuf| {
        tokio::task::spawn_blocking(move || Process::spawn(&dir, &["serve"], &as_refs(&env)))
    };
    let mut server = spawn(env.clone(), dir.path().to_path_buf()).await.unwrap();
    let ca = Arc::new(std::fs::read(dir.path().join("tls/selfsigned.crt")).unwrap());
    let client_http = crate::common::client_for(&ca, https, crate::common::Protocol::Any);
    let login: Value = client_http
        .post(format!(
            "https://localhost:{}/api/ef/v1/auth/login",
            https.port()
        ))
        .json(&json!({"username": "bench", "password": "bench-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    let path = Arc::new(format!("/api/ef/v1/notifications/ws?token={token}"));

    let base_rss = rss_kib(server.child.id());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    // Opened 100 at a time, as a crowd of browsers arriving would not all be in the same ms.
    let connected = Arc::new(AtomicUsize::new(0));
    for i in 0..n {
        tokio::spawn(client(https, ca.clone(), path.clone(), tx.clone()));
        if i % 100 == 99 {
            while connected.load(Ordering::Relaxed) + 200 < i {
                match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
                    Ok(Some(Event::Connected)) => {
                        connected.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(Event::Latency(_))) => {}
                    _ => panic!(
                        "connections stalled at {}",
                        connected.load(Ordering::Relaxed)
                    ),
                }
            }
        }
    }
    while connected.load(Ordering::Relaxed) < n {
        match tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
            Ok(Some(Event::Connected)) => {
                connected.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(Event::Latency(_))) => {}
            _ => panic!(
                "connections stalled at {}",
                connected.load(Ordering::Relaxed)
            ),
        }
    }
    let connect_time = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_kib(server.child.id());

    // Broadcasts, published on the channel as another process would.
    let redis = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let mut latencies = Vec::with_capacity(n * ROUNDS);
    for _ in 0..ROUNDS {
        let env = json!({"target": "all", "message": {"type": "bench", "sent_us": now_us()}});
        let _: i64 = redis::cmd("PUBLISH")
            .arg(format!("{prefix}realtime"))
            .arg(env.to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut got = 0;
        while got < n {
            match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
                Ok(Some(Event::Latency(us))) => {
                    latencies.push(us);
                    got += 1;
                }
                Ok(Some(Event::Connected)) => {}
                _ => panic!("broadcast: only {got} of {n} arrived"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    latencies.sort_unstable();

    // Restart: SIGTERM (every socket gets 1001), a new process on the same ports, everyone back.
    let restart = Instant::now();
    server.signal(rustix::process::Signal::TERM);
    let mut server = tokio::task::spawn_blocking(move || {
        server.wait_exit(Duration::from_secs(60));
        server
    })
    .await
    .unwrap();
    let stopped = restart.elapsed();
    drop(server);
    server = spawn(env.clone(), dir.path().to_path_buf()).await.unwrap();
    let listening = restart.elapsed();
    let mut back = 0;
    while back < n {
        match tokio::time::timeout(Duration::from_secs(120), rx.recv()).await {
            Ok(Some(Event::Connected)) => back += 1,
            Ok(Some(Event::Latency(_))) => {}
            _ => panic!("reconnect: only {back} of {n} came back"),
        }
    }
    let all_back = restart.elapsed();

    println!("websocket benchmark, {n} connections over TLS (one client process, loopback)");
    println!("  connect all:        {:.2} s", connect_time.as_secs_f64());
    println!(
        "  server RSS:         {} KiB before, {} KiB with {n} sockets: {:.1} KiB per connection",
        base_rss,
        rss,
        (rss.saturating_sub(base_rss)) as f64 / n as f64
    );
    println!(
        "  broadcast to all:   p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({ROUNDS} rounds)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    println!(
        "  restart:            old process exited after {:.2} s, new one listening at {:.2} s, all {n} reconnected at {:.2} s ({:.2} s after listening)",
        stopped.as_secs_f64(),
        listening.as_secs_f64(),
        all_back.as_secs_f64(),
        (all_back - listening).as_secs_f64()
    );
    server.signal(rustix::process::Signal::TERM);
    let _ = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(30))).await;
}
