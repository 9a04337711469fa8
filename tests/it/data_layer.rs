//! The data layer against the machine's real PostgreSQL and Redis: pool exhaustion answered with
//! 503, killed connections replaced, Redis outages degrading instead of failing, the shared health
//! probe, metrics with route patterns, and `euraflow status`.

use std::time::{Duration, Instant};

use crate::common::{self, TestDb, TestServer, as_refs};
use rustls::pki_types::pem::PemObject;

fn with(db: &TestDb, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = db.env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// `euraflow status --json` with exactly `env`.
async fn status_json(env: Vec<(String, String)>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::BIN)
            .args(["status", "--json"])
            .env_clear()
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

async fn get_json(url: &str) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
    let r = reqwest::Client::new().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.json().await.unwrap_or_default(), headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_answers_503_with_retry_after_inside_the_timeout() {
    let db = TestDb::migrated().await;
    let env = with(
        &db,
        &[
            ("EF__DB_POOL_SIZE", "2"),
            ("EF__DB_MAX_OVERFLOW", "0"),
            ("EF__DB_POOL_TIMEOUT", "1s"),
        ],
    );
    let srv = TestServer::start(&as_refs(&env)).await;
    let (status, _, _) = get_json(&srv.http_url("/api/ef/v1/system/status")).await;
    assert_eq!(status, 200);

    // Hold both connections.
    let a = srv.state().db().get().await.unwrap();
    let b = srv.state().db().get().await.unwrap();
    assert_eq!(srv.state().db().status().max, 2);
    let started = Instant::now();
    let (status, body, headers) = get_json(&srv.http_url("/api/ef/v1/system/status")).await;
    let waited = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "DB_POOL_EXHAUSTED");
    assert!(headers.contains_key("retry-after"));
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    // The timeout is counted for metrics, and freeing a connection makes requests succeed again.
    assert!(srv.state().db().pool_timeouts() >= 1);
    drop(a);
    let (status, _, _) = get_json(&srv.http_url("/api/ef/v1/system/status")).await;
    assert_eq!(status, 200);
    drop(b);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_by_the_database_are_replaced() {
    let db = TestDb::migrated().await;
    let srv = TestServer::start(&as_refs(&db.env())).await;
    let url = srv.http_url("/api/ef/v1/system/status");
    let (status, body, _) = get_json(&url).await;
    assert_eq!(status, 200, "{body}");
    assert!(srv.state().db().status().size >= 1);

    let admin = db.client().await;
    let killed: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = $1 AND application_name = 'euraflow') t",
            &[&db.name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 1, "no server connection to kill");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        let (status, body, _) = get_json(&url).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body["data"]["postgres"]["database_connections"]
                .as_i64()
                .unwrap()
                >= 1
        );
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_degraded_and_the_api_keeps_serving() {
    let db = TestDb::migrated().await;
    let env = with(&db, &[("EF__REDIS_PORT", "1"), ("EF__REDIS_TIMEOUT", "1s")]);
    let srv = TestServer::start(&as_refs(&env)).await;
    let (status, body, _) = get_json(&srv.http_url("/api/ef/v1/health")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "degraded");
    assert_eq!(body["data"]["checks"]["redis"]["status"], "down");
    assert_eq!(body["data"]["checks"]["database"]["status"], "ok");
    let (status, _, _) = get_json(&srv.http_url("/api/ef/v1/system/info")).await;
    assert_eq!(status, 200);
    let (status, body, _) = get_json(&srv.http_url("/api/ef/v1/system/status")).await;
    assert_eq!(status, 200);
    assert!(
        body["data"]["redis_error"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:1")
            || body["data"]["redis_error"]
                .as_str()
                .unwrap()
                .contains("localhost:1"),
        "{body}"
    );
    assert!(srv.state().redis().is_down());
    srv.stop().await;
}

/// Commands share a few multiplexed connections; one that Redis drops (a restart, its idle
/// timeout) fails the command that finds it broken, and its slot connects again at the next:
/// no outage is declared and no backoff refuses the commands after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_redis_connection_is_replaced_at_once() {
    let redis =
        euraflow::redis::Redis::new(&common::dev_config(common::isolated_env()).redis).unwrap();
    let client_id = || async {
        redis
            .query::<i64>(&redis::cmd("CLIENT").arg("ID").clone())
            .await
            .unwrap()
    };
    let mut ours = std::collections::BTreeSet::new();
    for _ in 0..16 {
        ours.insert(client_id().await);
    }
    assert!(
        ours.len() <= std::thread::available_parallelism().unwrap().get(),
        "16 commands, at most one connection per core: {ours:?}"
    );
    let mut admin = redis::Client::open("redis://127.0.0.1:6379/0")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for id in &ours {
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(killed, 1);
    }
    let mut failed = 0;
    for _ in 0..16 {
        match redis.query::<String>(&redis::cmd("PING")).await {
            Ok(pong) => assert_eq!(pong, "PONG"),
            Err(_) => failed += 1,
        }
    }
    println!(
        "{} connections dropped: {failed} of 16 commands failed",
        ours.len()
    );
    assert!(failed <= ours.len(), "{failed} failed");
    assert!(!redis.is_down());
    let now = client_id().await;
    assert!(
        !ours.contains(&now),
        "a new connection: {now} not in {ours:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_each_dependency_and_hides_details_from_outsiders() {
    let db = TestDb::migrated().await;
    let srv = TestServer::start(&as_refs(&db.env())).await;
    // Anonymous over HTTPS: statuses only, even when details are asked for.
    for path in [
        "/api/ef/v1/health",
        "/api/ef/v1/system/health",
        "/api/ef/v1/health?details=1",
    ] {
        let r = srv.client().get(srv.https_url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        let d = &v["data"];
        assert_eq!(d["status"], "healthy", "{v}");
        for c in ["database", "redis", "migrations"] {
            assert_eq!(d["checks"][c]["status"], "ok", "{c}: {v}");
        }
        assert_eq!(d["checks"]["worker"]["status"], "unknown");
        assert!(
            d.get("version").is_none() && d["checks"]["database"].get("pool").is_none(),
            "{v}"
        );
    }
    // The local operator gets the details.
    let (status, v, _) = get_json(&srv.http_url("/api/ef/v1/health?details=1")).await;
    assert_eq!(status, 200);
    let d = &v["data"];
    assert_eq!(d["version"], env!("CARGO_PKG_VERSION"));
    assert!(d["uptime_s"].is_u64());
    assert!(d["checks"]["database"]["latency_ms"].is_f64(), "{v}");
    assert!(d["checks"]["redis"]["latency_ms"].is_f64(), "{v}");
    let pool = &d["checks"]["database"]["pool"];
    assert_eq!(pool["max"], 100);
    assert!(
        pool["size"].as_u64().unwrap() >= 1 && pool["idle"].is_u64() && pool["waiting"].is_u64(),
        "{v}"
    );
    assert_eq!(d["checks"]["migrations"]["pending"], 0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_migrations_or_a_missing_database_are_unhealthy() {
    let empty = TestDb::create().await;
    let srv = TestServer::start(&as_refs(&empty.env())).await;
    let (status, v, _) = get_json(&srv.http_url("/api/ef/v1/health?details=1")).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["data"]["status"], "unhealthy");
    assert_eq!(v["data"]["checks"]["database"]["status"], "ok");
    assert_eq!(v["data"]["checks"]["migrations"]["status"], "down");
    assert!(
        v["data"]["checks"]["migrations"]["pending"]
            .as_u64()
            .unwrap()
            >= 1
    );
    // `euraflow status` asks the running server, which answers, and exits non-zero: unhealthy.
    let dir = tempfile::tempdir().unwrap();
    let mut env = common::production_env(dir.path());
    env.extend(empty.env());
    env.push(("EF__API_PORT".into(), srv.http.port().to_string()));
    let out = status_json(env).await;
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["health"]["status"], "unhealthy", "{view}");
    assert!(
        view.get("server_error").is_none_or(|e| e.is_null()),
        "{view}"
    );
    assert_eq!(out.status.code(), Some(1));
    srv.stop().await;

    // Without a database (isolated_env names one that does not exist).
    let srv = TestServer::start(&[]).await;
    let (status, v, _) = get_json(&srv.http_url("/api/ef/v1/health")).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["data"]["checks"]["database"]["status"], "down");
    // Static files and liveness do not depend on it.
    let (status, _, _) = get_json(&srv.http_url("/healthz")).await;
    assert_eq!(status, 200);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_health_requests_cost_a_few_probes() {
    let db = TestDb::migrated().await;
    let srv = TestServer::start(&as_refs(&db.env())).await;
    let client = srv.client();
    let before = srv.state().health().probes();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let c = client.clone();
        let url = srv.https_url("/api/ef/v1/health");
        tasks.push(tokio::spawn(async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().len())
        }));
    }
    let mut lengths = std::collections::HashSet::new();
    for t in tasks {
        let (status, len) = t.await.unwrap();
        assert_eq!(status, 200);
        lengths.insert(len);
    }
    let elapsed = started.elapsed();
    let probes = srv.state().health().probes() - before;
    println!("1000 concurrent health requests in {elapsed:?}: {probes} dependency probes");
    // One probe per second of wall time at most, plus the first.
    assert!(
        probes as f64 <= elapsed.as_secs_f64().ceil() + 1.0,
        "{probes} probes in {elapsed:?}"
    );
    assert_eq!(
        lengths.len(),
        1,
        "the summary must keep a stable length: {lengths:?}"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_label_requests_by_route_pattern_on_loopback_only() {
    let db = TestDb::migrated().await;
    let srv = TestServer::start(&as_refs(&db.env())).await;
    std::fs::create_dir_all(srv.downloads_root()).unwrap();
    std::fs::write(srv.downloads_root().join("a.zip"), b"a").unwrap();
    let c = srv.client();
    for path in [
        "/api/ef/v1/system/info",
        "/api/ef/v1/system/info",
        "/api/ef/v1/orders/123",
        "/api/ef/v1/orders/456",
        "/downloads/a.zip",
        "/downloads/b.zip",
        "/assets/x.js",
    ] {
        c.get(srv.https_url(path)).send().await.unwrap();
    }
    let r = c
        .get(srv.https_url("/api/ef/v1/system/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let r = reqwest::get(srv.http_url("/api/ef/v1/system/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.starts_with(needle) || l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle} in metrics:\n{text}"))
            .to_owned()
    };
    assert!(line(r#"ef_http_requests_total{endpoint="/api/ef/v1/system/info",method="GET",status_code="200"}"#).ends_with(" 2"));
    assert!(
        line(r#"ef_http_requests_total{endpoint="unmatched",method="GET",status_code="404"}"#)
            .ends_with(" 2")
    );
    line(r#"ef_http_requests_total{endpoint="/downloads/{*rest}",method="GET",status_code="200"}"#);
    line(r#"ef_http_requests_total{endpoint="static",method="GET",status_code="404"}"#);
    assert!(
        !text.contains("/orders/123"),
        "raw paths leaked into labels"
    );
    for name in [
        "ef_http_request_duration_seconds_bucket",
        "ef_http_request_size_bytes_bucket",
        "ef_http_response_size_bytes_bucket",
        "ef_db_pool_size",
        "ef_db_pool_available",
        "ef_db_pool_waiting",
        "ef_db_pool_timeouts_total",
        "ef_redis_up 1",
        "ef_build_info{version=",
        "process_resident_memory_bytes",
    ] {
        line(name);
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_reports_connection_counts() {
    let db = TestDb::migrated().await;
    let srv = TestServer::start(&as_refs(&db.env())).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = common::production_env(dir.path());
    env.extend(db.env());
    env.push(("EF__API_PORT".into(), srv.http.port().to_string()));
    let env2 = env.clone();
    let out = status_json(env2).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["health"]["status"], "healthy");
    assert!(
        v["postgres"]["database_connections"].as_i64().unwrap() >= 1,
        "{v}"
    );
    assert!(
        v["postgres"]["total_connections"].as_i64().unwrap()
            >= v["postgres"]["database_connections"].as_i64().unwrap()
    );
    assert!(v["postgres"]["max_connections"].as_i64().unwrap() > 0);
    assert!(v["redis"]["connected_clients"].as_u64().unwrap() >= 1);
    assert_eq!(v["server"]["version"], env!("CARGO_PKG_VERSION"));
    srv.stop().await;

    // With the server gone: non-zero, says so, still reports the dependencies.
    let out = status_json(env).await;
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["server_error"]
            .as_str()
            .unwrap()
            .contains("not reachable"),
        "{v}"
    );
    assert!(
        v["postgres"]["max_connections"].as_i64().unwrap() > 0,
        "{v}"
    );
}

fn db_config_with(db: &TestDb, extra: &[(&str, &str)]) -> euraflow::config::DbConfig {
    common::dev_config(with(db, extra)).db
}

/// Every pooled connection names itself and has a statement timeout, and EF__DB_SSLMODE means what
/// libpq's sslmode means, over TCP to the local PostgreSQL (which has Debian's snakeoil TLS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_named_bounded_in_time_and_encrypted_as_configured() {
    let db = TestDb::migrated().await;
    let tcp = [("EF__DB_HOST", "127.0.0.1"), ("EF__DB_PORT", "5432")];
    let pool = |extra: &[(&str, &str)]| {
        let mut env = tcp.to_vec();
        env.extend_from_slice(extra);
        euraflow::db::Database::new(&db_config_with(&db, &env)).unwrap()
    };
    let ssl_of = |p: std::sync::Arc<euraflow::db::Database>| async move {
        let c = p.get().await.unwrap_or_else(|e| panic!("{e}"));
        let row = c
            .query_one(
                "SELECT ssl, current_setting('application_name') FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, bool>(0), row.get::<_, String>(1))
    };
    let ssl_on: String = db
        .client()
        .await
        .query_one("SHOW ssl", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        ssl_on, "on",
        "the test needs PostgreSQL with TLS (Debian's default)"
    );

    assert_eq!(
        ssl_of(pool(&[("EF__DB_SSLMODE", "require")])).await,
        (true, "euraflow".to_owned())
    );
    assert_eq!(
        ssl_of(pool(&[("EF__DB_SSLMODE", "disable")])).await,
        (false, "euraflow".to_owned())
    );

    // verify-full against the public roots: the snakeoil certificate is refused, and the error
    // says where and why.
    let strict = pool(&[("EF__DB_SSLMODE", "verify-full")]);
    let Err(err) = strict.get().await else {
        panic!("an unverifiable server must be refused");
    };
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:5432"), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    // A bundle that is not one is a configuration problem, named as such.
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not-a-bundle.pem");
    std::fs::write(&not_pem, "nothing here").unwrap();
    let cfg = db_config_with(
        &db,
        &[
            tcp[0],
            tcp[1],
            ("EF__DB_SSLMODE", "verify-full"),
            ("EF__DB_SSLROOTCERT", not_pem.to_str().unwrap()),
        ],
    );
    let Err(err) = euraflow::db::Database::new(&cfg) else {
        panic!("a bundle without certificates must be refused");
    };
    assert!(format!("{err:#}").contains("EF__DB_SSLROOTCERT"), "{err:#}");

    // verify-full with the server's own certificate as the root: accepted, when its name is the
    // host we connect to (Debian's snakeoil is made for the machine's name at install time).
    let cert_file: String = db
        .client()
        .await
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .unwrap()
        .get(0);
    let pem = std::fs::read(&cert_file).unwrap_or_default();
    let names = rustls::pki_types::CertificateDer::from_pem_slice(&pem)
        .ok()
        .and_then(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
            let san = cert.subject_alternative_name().ok().flatten()?;
            Some(
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .unwrap_or_default();
    if names.iter().any(|n| n == "localhost") {
        let verified = euraflow::db::Database::new(&db_config_with(
            &db,
            &[
                ("EF__DB_HOST", "localhost"),
                tcp[1],
                ("EF__DB_SSLMODE", "verify-full"),
                ("EF__DB_SSLROOTCERT", &cert_file),
            ],
        ))
        .unwrap();
        assert!(ssl_of(verified).await.0, "verified and encrypted");
    } else {
        println!("verify-full success not checked: {cert_file} is for {names:?}, not localhost");
    }

    // The statement timeout applies to every pooled connection.
    let bounded = pool(&[("EF__DB_STATEMENT_TIMEOUT", "300ms")]);
    let c = bounded.get().await.unwrap();
    let started = Instant::now();
    let err = c.execute("SELECT pg_sleep(5)", &[]).await.unwrap_err();
    assert_eq!(
        err.as_db_error().map(|e| e.code().code()),
        Some("57014"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Overflow connections (above EF__DB_POOL_SIZE) idle for EF__DB_POOL_IDLE_TIMEOUT are closed,
/// the base ones are kept; connections older than EF__DB_POOL_RECYCLE are replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_overflow_connections_are_closed_and_old_ones_replaced() {
    let db = TestDb::migrated().await;
    let pool = euraflow::db::Database::new(&db_config_with(
        &db,
        &[
            ("EF__DB_POOL_SIZE", "1"),
            ("EF__DB_MAX_OVERFLOW", "3"),
            ("EF__DB_POOL_IDLE_TIMEOUT", "1s"),
            ("EF__DB_POOL_RECYCLE", "3600s"),
        ],
    ))
    .unwrap();
    let held = futures_util::future::join_all((0..4).map(|_| pool.get())).await;
    assert!(held.iter().all(Result::is_ok));
    drop(held);
    assert_eq!(pool.status().size, 4);
    assert_eq!(pool.trim_idle(), 0, "not idle long enough yet");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(pool.trim_idle(), 3);
    assert_eq!(pool.status().size, 1, "the base size stays");

    let pool = euraflow::db::Database::new(&db_config_with(
        &db,
        &[("EF__DB_POOL_SIZE", "1"), ("EF__DB_POOL_RECYCLE", "1s")],
    ))
    .unwrap();
    let pid = |p: std::sync::Arc<euraflow::db::Database>| async move {
        let c = p.get().await.unwrap();
        c.query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get::<_, i32>(0)
    };
    let first = pid(pool.clone()).await;
    assert_eq!(pid(pool.clone()).await, first, "reused while young");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(pool.trim_idle(), 1);
    assert_ne!(
        pid(pool.clone()).await,
        first,
        "replaced once older than the limit"
    );
}
