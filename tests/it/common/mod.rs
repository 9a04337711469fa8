//! Test harness: start the real server, in-process (`TestServer`) or as the real binary
//! (`Process`), on ephemeral ports with its own state directory, and talk to it over real TLS.

pub mod jobs;
pub mod ozon;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use euraflow::config::{self, LoadOptions};
use euraflow::lifecycle::Lifecycle;
use euraflow::startup::{Application, Running};
use euraflow::systemd::InheritedSockets;

pub const BIN: &str = env!("CARGO_BIN_EXE_euraflow");

/// A database of its own for one test, on the local PostgreSQL (unix socket, peer
/// authentication as the user running the tests), dropped when the test ends.
pub struct TestDb {
    pub name: String,
}

pub const PG_SOCKET_DIR: &str = "/var/run/postgresql";

impl TestDb {
    /// An empty database (no migrations applied).
    pub async fn create() -> TestDb {
        let name = format!("ef_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_client("postgres").await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        TestDb { name }
    }

    /// A database with every migration applied, as the server does at start.
    pub async fn migrated() -> TestDb {
        let db = TestDb::create().await;
        let cfg = db.db_config();
        euraflow::db::prepare::run_migrations(&cfg)
            .await
            .expect("migrations");
        db
    }

    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("EF__DB_HOST".into(), PG_SOCKET_DIR.into()),
            ("EF__DB_NAME".into(), self.name.clone()),
            ("EF__DB_USER".into(), euraflow::config::current_username()),
        ]
    }

    pub fn db_config(&self) -> euraflow::config::DbConfig {
        dev_config(self.env()).db
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        admin_client(&self.name).await
    }
}

pub async fn admin_client(dbname: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::Config::new()
        .host(PG_SOCKET_DIR)
        .user(euraflow::config::current_username())
        .dbname(dbname)
        .application_name("euraflow-tests")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the local PostgreSQL as the current user (scripts/ensure-services creates the role)");
    tokio::spawn(conn);
    client
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside or outside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let admin = admin_client("postgres").await;
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}

/// Environment that keeps a test away from shared state: its own Redis key prefix and a database
/// name that does not exist (tests that need a database pass `TestDb::env()`).
/// The development configuration from exactly `env` (nothing from this machine's environment).
pub fn dev_config(env: Vec<(String, String)>) -> euraflow::config::Config {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LoadOptions {
        dev: true,
        config_file: None,
        env,
        cwd: dir.path().to_path_buf(),
        hostname: "localhost".into(),
        username: euraflow::config::current_username(),
    };
    config::load(&opts).unwrap_or_else(|e| panic!("{e}")).config
}

pub fn isolated_env() -> Vec<(String, String)> {
    vec![
        (
            "EF__REDIS_PREFIX".into(),
            format!("test:{}:", uuid::Uuid::new_v4().simple()),
        ),
        ("EF__DB_HOST".into(), PG_SOCKET_DIR.into()),
        ("EF__DB_USER".into(), euraflow::config::current_username()),
        (
            "EF__DB_NAME".into(),
            format!("ef_absent_{}", uuid::Uuid::new_v4().simple()),
        ),
        ("EF__DB_CONNECT_TIMEOUT".into(), "2s".into()),
    ]
}

/// The server in this test process, as `serve` builds it, on ephemeral loopback ports.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub running: Running,
    pub lifecycle: Lifecycle,
    pub ca_pem: Vec<u8>,
}

impl TestServer {
    pub async fn start(env: &[(&str, &str)]) -> TestServer {
        Self::start_in(tempfile::tempdir().expect("tempdir"), env).await
    }

    /// `dir` becomes the working directory for relative paths and holds `.euraflow-dev/`.
    pub async fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> TestServer {
        // The server's warnings and errors in the test's output (shown when a test fails).
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_test_writer()
            .try_init();
        let mut vars: Vec<(String, String)> = vec![
            ("EF__HTTPS_LISTEN".into(), "127.0.0.1:0".into()),
            ("EF__API_PORT".into(), "0".into()),
        ];
        vars.extend(isolated_env());
        // Tests make many requests from one address; the rate-limit tests set their own limit.
        vars.push(("EF__RATE_LIMIT_DEFAULT".into(), "100000/minute".into()));
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let opts = LoadOptions {
            dev: true,
            config_file: None,
            env: vars,
            cwd: dir.path().to_path_buf(),
            hostname: "localhost".into(),
            username: euraflow::config::current_username(),
        };
        let loaded = config::load(&opts).unwrap_or_else(|e| panic!("config: {e}"));
        let app = Application::build(loaded.config, InheritedSockets::default())
            .await
            .expect("build");
        let https = app.https_addr().expect("https listener");
        let http = app.http_addr();
        let ca_pem = std::fs::read(dir.path().join(".euraflow-dev/tls/selfsigned.crt"))
            .expect("self-signed certificate");
        let lifecycle = Lifecycle::new();
        let running = app.start(&lifecycle);
        TestServer {
            dir,
            https,
            http,
            running,
            lifecycle,
            ca_pem,
        }
    }

    pub fn state(&self) -> &euraflow::state::AppState {
        self.running.state()
    }

    pub fn web_root(&self) -> PathBuf {
        self.dir.path().join(".euraflow-dev/web")
    }

    pub fn downloads_root(&self) -> PathBuf {
        self.dir.path().join(".euraflow-dev/downloads")
    }

    /// A client that verifies the server's certificate for `localhost`.
    pub fn client(&self) -> reqwest::Client {
        client_for(&self.ca_pem, self.https, Protocol::Any)
    }

    pub fn client_h1(&self) -> reqwest::Client {
        client_for(&self.ca_pem, self.https, Protocol::Http1)
    }

    /// A raw connection over TLS (ALPN `alpn`), verifying the server's certificate: for requests
    /// a client library would normalise, and to see which protocol was negotiated.
    pub fn tls_stream(
        &self,
        alpn: &[u8],
    ) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        self.tls_stream_with(alpn, rustls::DEFAULT_VERSIONS)
    }

    /// [`TestServer::tls_stream`] offering only `versions`.
    pub fn tls_stream_with(
        &self,
        alpn: &[u8],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.ca_pem) {
            roots.add(cert.expect("test CA")).expect("test CA");
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = vec![alpn.to_vec()];
        let conn = rustls::ClientConnection::new(
            Arc::new(cfg),
            "localhost".try_into().expect("server name"),
        )
        .expect("TLS client");
        let sock = TcpStream::connect(self.https).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(10))).ok();
        rustls::StreamOwned::new(conn, sock)
    }

    /// [`raw_http`] over TLS (HTTP/1.1).
    pub fn raw_https(&self, request: &str) -> String {
        let mut s = self.tls_stream(b"http/1.1");
        s.write_all(request.as_bytes()).expect("write");
        let mut out = Vec::new();
        // Whatever arrived before the close (with or without close_notify) is the answer.
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Until the sign-in cache (`auth::cache`) hears its Redis channel: it is used only then.
    pub async fn sign_in_cache_live(&self) {
        let cache = self.state().auth().store.cache();
        jobs::wait_until(
            "the sign-in cache to subscribe",
            Duration::from_secs(10),
            || async move { cache.is_live() },
        )
        .await;
    }

    pub async fn stop(self) {
        self.lifecycle.begin_shutdown();
        self.running.drain(Duration::from_secs(5)).await;
        self.lifecycle.join(Duration::from_secs(5)).await;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Any,
    Http1,
}

pub fn client_for(ca_pem: &[u8], https: SocketAddr, protocol: Protocol) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).expect("ca pem"))
        .resolve("localhost", https)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .tls_info(true)
        .timeout(Duration::from_secs(30));
    if protocol == Protocol::Http1 {
        b = b.http1_only();
    }
    b.build().expect("client")
}

/// Send raw bytes to a plain-HTTP listener and read the whole answer (the connection is closed by
/// `Connection: close`). Used where a client library would normalise the request (`..` paths).
pub fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(request.as_bytes()).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

pub fn raw_get(addr: SocketAddr, path: &str, extra_headers: &str) -> String {
    raw_http(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra_headers}Connection: close\r\n\r\n"
        ),
    )
}

pub fn status_of(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The real binary, with captured stderr (JSON log lines) and its listening addresses.
pub struct Process {
    pub child: Child,
    pub https: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Start `bin <args>` (a program built on the library, or the real binary) and wait until a
    /// log line contains `ready`.
    pub fn spawn_until(
        bin: &Path,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        ready: &str,
    ) -> Process {
        let (p, _lines) = Self::launch(bin, dir, args, env);
        p.wait_for_log(ready, Duration::from_secs(30));
        p
    }

    /// Start `euraflow <args>` with `env` (plus JSON logs) in `dir`, and wait for "listening".
    pub fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Process {
        let (mut p, rx) = Self::launch(Path::new(BIN), dir, args, env);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                        && v["message"] == "listening"
                    {
                        p.https = v["https"].as_str().and_then(|s| s.parse().ok());
                        p.http = v["http"].as_str().and_then(|s| s.parse().ok());
                        return p;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = p.child.try_wait() {
                        panic!("euraflow exited early ({status}):\n{}", p.log_text());
                    }
                }
                Err(_) => break,
            }
        }
        panic!("euraflow did not report listening:\n{}", p.log_text());
    }

    /// Start the process with JSON logs on a captured stderr; its lines also arrive on the channel.
    fn launch(
        bin: &Path,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (Process, std::sync::mpsc::Receiver<String>) {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("EF__LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn euraflow");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let _ = tx.send(line.clone());
                    log.lock().expect("log lock").push(line);
                }
            });
        }
        let p = Process {
            child,
            https: None,
            http: None,
            log,
        };
        (p, rx)
    }

    pub fn pid(&self) -> rustix::process::Pid {
        rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid")
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        rustix::process::kill_process(self.pid(), sig).expect("kill");
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// Wait until a log line contains `needle` (or panic after `timeout`).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self
                .log
                .lock()
                .expect("log lock")
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            if Instant::now() > deadline {
                panic!("no log line with {needle:?}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("euraflow did not exit in {timeout:?}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Environment for a production-mode process on ephemeral loopback ports with its own state.
pub fn production_env(state_dir: &Path) -> Vec<(String, String)> {
    let file = state_dir.join("euraflow.env");
    if !file.exists() {
        std::fs::write(&file, "# test configuration\n").expect("config file");
    }
    let mut env = isolated_env();
    env.extend(vec![
        ("EF__STATE_DIR".into(), state_dir.display().to_string()),
        (
            "EF__CONFIG_FILE".into(),
            state_dir.join("euraflow.env").display().to_string(),
        ),
        ("EF__HTTPS_LISTEN".into(), "127.0.0.1:0".into()),
        ("EF__API_PORT".into(), "0".into()),
        ("EF__SECRET_KEY".into(), config::generate_secret()),
        // Production requires a solved captcha to log in (the default, tested by the config
        // tests, tests/it/captcha.rs and the end-to-end test); the tests that log in through the
        // real binary are about other things.
        ("EF__LOGIN_CAPTCHA".into(), "false".into()),
    ]);
    env
}

pub fn as_refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

/// Connect, retrying while the listener is not up yet.
pub fn connect_retry(addr: SocketAddr, timeout: Duration) -> TcpStream {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cannot connect to {addr}: {e}"),
        }
    }
}

/// Insert a user directly (as an imported database would have it) and return its id.
pub async fn insert_user(
    db: &TestDb,
    name: &str,
    role: &str,
    parent: Option<i64>,
    password_hash: &str,
) -> i64 {
    db.client()
        .await
        .query_one(
            "INSERT INTO users (username, password_hash, role, parent_user_id, account_level_id)
             VALUES ($1, $2, $3, $4, CASE WHEN $3::varchar = 'main_account' THEN (SELECT id FROM account_levels WHERE is_default) END)
             RETURNING id",
            &[&name, &password_hash, &role, &parent],
        )
        .await
        .expect("insert user")
        .get(0)
}

/// An Ozon shop row with a given id, owned by `owner`, for tests that only need a shop to exist
/// (its key is no real ciphertext: tests that talk to Ozon add shops through the API).
pub async fn insert_shop(db: &TestDb, id: i64, owner: i64) {
    db.client()
        .await
        .execute(
            "INSERT INTO ozon_shops (id, shop_name, owner_user_id, client_id, api_key_enc)
             VALUES ($1, $2, $3, $4, 'ef1:test:not-a-real-key')",
            &[&id, &format!("shop {id}"), &owner, &format!("client-{id}")],
        )
        .await
        .expect("insert a shop");
}

/// An argon2id hash of `password`, as the server would store it.
pub fn hash(password: &str) -> String {
    euraflow::auth::password::hash_blocking(password, euraflow::config::PasswordHash::Argon2id)
        .expect("hash")
}

/// Log in over HTTPS; returns (status, body).
pub async fn login(srv: &TestServer, name: &str, password: &str) -> (u16, serde_json::Value) {
    let r = srv
        .client()
        .post(srv.https_url("/api/ef/v1/auth/login"))
        .json(&serde_json::json!({"username": name, "password": password, "captcha_token": "ignored"}))
        .send()
        .await
        .expect("login request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// Log in and return the access and refresh tokens (panics on failure).
pub async fn tokens(srv: &TestServer, name: &str, password: &str) -> (String, String) {
    let (status, body) = login(srv, name, password).await;
    assert_eq!(status, 200, "login {name}: {body}");
    (
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned(),
        body["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_owned(),
    )
}

/// An authenticated request over HTTPS: (status, body).
pub async fn call(
    srv: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = srv
        .client()
        .request(method, srv.https_url(&format!("/api/ef/v1{path}")))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// The business error code, wherever the response put it.
pub fn code(body: &serde_json::Value) -> String {
    body["error"]["detail"]["code"]
        .as_str()
        .or_else(|| body["error"]["code"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Collects the datagrams the server sends to its `NOTIFY_SOCKET`.
pub struct NotifySocket {
    pub path: std::path::PathBuf,
    messages: Arc<Mutex<Vec<String>>>,
}

impl NotifySocket {
    pub fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let m = messages.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => m
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        if Arc::strong_count(&m) == 1 {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        NotifySocket { path, messages }
    }

    pub fn all(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    pub fn wait_for(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.all().into_iter().find(|m| pred(m)) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no matching notification in {:?}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for a datagram containing `needle`.
    pub fn wait_for_text(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for(|m| m.contains(needle), timeout)
    }
}
