//! The real binary: command line, configuration errors and exit codes, systemd notifications and
//! socket activation, SIGHUP certificate reload, and SIGTERM with a request in flight.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;

use std::time::Duration;

use crate::common::{self, BIN, NotifySocket, Process, as_refs, production_env};
use rustix::process::Signal;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

fn run(args: &[&str], env: &[(&str, &str)], dir: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run euraflow");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_and_gen_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(&["--version"], &[], dir.path());
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("euraflow {}", env!("CARGO_PKG_VERSION"))
    );
    let (code, a, _) = run(&["gen-secret"], &[], dir.path());
    let (_, b, _) = run(&["gen-secret"], &[], dir.path());
    assert_eq!(code, 0);
    let a = a.trim();
    assert_eq!(a.len(), 86, "{a}");
    assert!(
        a.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    assert_ne!(a, b.trim());
}

#[test]
fn config_check_exits_0_or_1_and_says_how_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("euraflow.env");
    std::fs::write(&file, "EF__API_DEBUG=false\n").unwrap();
    let f = file.to_str().unwrap();
    let (code, _, err) = run(&["config", "check", "--config", f], &[], dir.path());
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("EF__SECRET_KEY is not set"), "{err}");
    assert!(err.contains("euraflow gen-secret"), "{err}");

    let secret = euraflow::config::generate_secret();
    std::fs::write(
        &file,
        format!("EF__SECRET_KEY={secret}\nEF__DB_POOL_SIZE=lots\n"),
    )
    .unwrap();
    let (code, _, err) = run(&["config", "check", "--config", f], &[], dir.path());
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("EF__DB_POOL_SIZE=lots (from {f} line 2)")),
        "{err}"
    );
    assert!(err.contains("fix:"), "{err}");
    assert!(!err.contains(&secret));

    std::fs::write(
        &file,
        format!("EF__SECRET_KEY={secret}\nEF__CELERY_BROKER_URL=redis://x\nEF__DB_POOLSIZE=3\n"),
    )
    .unwrap();
    let (code, out, err) = run(&["config", "check", "--config", f], &[], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configuration OK (production"), "{out}");
    assert!(
        err.contains("notice: EF__CELERY_BROKER_URL no longer applies"),
        "{err}"
    );
    assert!(err.contains("did you mean EF__DB_POOL_SIZE"), "{err}");

    // A configured certificate that does not match its key fails the check.
    let (cert_a, _) = euraflow::http::tls::generate_self_signed(&["localhost".into()]).unwrap();
    let (_, key_b) = euraflow::http::tls::generate_self_signed(&["localhost".into()]).unwrap();
    std::fs::write(dir.path().join("c.pem"), cert_a).unwrap();
    std::fs::write(dir.path().join("k.pem"), key_b).unwrap();
    let env = [("EF__TLS_CERT", "c.pem"), ("EF__TLS_KEY", "k.pem")];
    let (code, _, err) = run(&["config", "check", "--config", f], &env, dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("does not belong to the certificate"), "{err}");
}

#[test]
fn serve_refuses_an_unsafe_production_config_with_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("EF__CONFIG_FILE", "/nonexistent-dir/none.env"),
        ("EF__HTTPS_LISTEN", "127.0.0.1:0"),
        ("EF__API_PORT", "0"),
    ];
    let (code, _, err) = run(&["serve"], &env, dir.path());
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("/nonexistent-dir/none.env"), "{err}");

    let env = [
        ("EF__STATE_DIR", dir.path().to_str().unwrap()),
        ("EF__SECRET_KEY", "<替换为64位以上随机密钥>"),
        ("EF__API_DEBUG", "true"),
        ("EF__HTTPS_LISTEN", "127.0.0.1:0"),
        ("EF__API_PORT", "0"),
    ];
    let (code, _, err) = run(&["serve"], &env, dir.path());
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("placeholder"), "{err}");
    assert!(err.contains("EF__API_DEBUG=true"), "{err}");
    assert!(err.contains("config check"), "{err}");
}

#[test]
fn config_show_prints_every_value_with_its_source_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("euraflow.env");
    let secret = euraflow::config::generate_secret();
    std::fs::write(
        &file,
        format!("EF__SECRET_KEY={secret}\nEF__DB_POOL_SIZE=25\n"),
    )
    .unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("db_password"), "pg-secret-value\n").unwrap();
    let env = [
        ("EF__CONFIG_FILE", file.to_str().unwrap()),
        ("EF__REDIS_PORT", "6380"),
        ("CREDENTIALS_DIRECTORY", creds.to_str().unwrap()),
    ];
    let (code, out, err) = run(&["config", "show"], &env, dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains(&secret) && !out.contains("pg-secret-value"),
        "{out}"
    );
    let line = |k: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{k}=")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("EF__DB_POOL_SIZE").contains(&format!("# {} line 2", file.display())),
        "{out}"
    );
    assert!(line("EF__REDIS_PORT").ends_with("# environment"), "{out}");
    assert!(
        line("EF__DB_PASSWORD").contains("<redacted, 15 characters>"),
        "{out}"
    );
    assert!(line("EF__DB_PASSWORD").contains("credential"), "{out}");
    assert!(
        line("EF__DB_MAX_OVERFLOW").contains("60")
            && line("EF__DB_MAX_OVERFLOW").ends_with("# default"),
        "{out}"
    );
}

fn write_pair(dir: &Path, cert: &str, key: &str) {
    std::fs::write(dir.join("fullchain.pem"), cert).unwrap();
    std::fs::write(dir.join("privkey.pem"), key).unwrap();
}

/// A fresh TLS connection's peer certificate (DER).
async fn served_certificate(addr: SocketAddr, roots: &[&str]) -> Vec<u8> {
    let mut b = reqwest::Client::builder()
        .resolve("localhost", addr)
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10));
    for r in roots {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(r.as_bytes()).unwrap());
    }
    let resp = b
        .build()
        .unwrap()
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("peer certificate")
        .to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_watchdog_reload_swaps_certificates_and_sigterm_stops() {
    let dir = tempfile::tempdir().unwrap();
    let names = vec!["localhost".to_owned()];
    let (cert_a, key_a) = euraflow::http::tls::generate_self_signed(&names).unwrap();
    let (cert_b, key_b) = euraflow::http::tls::generate_self_signed(&names).unwrap();
    write_pair(dir.path(), &cert_a, &key_a);
    let notify = NotifySocket::bind(dir.path());
    let mut env = production_env(dir.path());
    env.push(("EF__TLS_CERT".into(), "fullchain.pem".into()));
    env.push(("EF__TLS_KEY".into(), "privkey.pem".into()));
    env.push(("NOTIFY_SOCKET".into(), notify.path.display().to_string()));
    env.push(("WATCHDOG_USEC".into(), "300000".into()));
    let mut p = Process::spawn(dir.path(), &["serve"], &as_refs(&env));
    let https = p.https.unwrap();

    let ready = notify.wait_for(|m| m.contains("READY=1"), Duration::from_secs(5));
    assert!(ready.contains("STATUS=serving https 127.0.0.1:"), "{ready}");
    let ready_at = std::time::Instant::now();
    // Pings at half the watchdog interval: several within a second.
    std::thread::sleep(Duration::from_millis(900));
    let pings = notify
        .all()
        .iter()
        .filter(|m| m.contains("WATCHDOG=1"))
        .count();
    assert!(
        pings >= 3,
        "only {pings} watchdog pings: {:?}",
        notify.all()
    );

    assert_eq!(
        served_certificate(https, &[&cert_a, &cert_b]).await,
        der(&cert_a)
    );

    // Renewal: new files, SIGHUP, new handshakes get the new certificate.
    write_pair(dir.path(), &cert_b, &key_b);
    let before = notify.all().len();
    p.signal(Signal::HUP);
    let reloading = notify.wait_for(|m| m.contains("RELOADING=1"), Duration::from_secs(5));
    assert!(
        reloading.contains("MONOTONIC_USEC="),
        "RELOADING=1 and MONOTONIC_USEC= must share a datagram: {reloading:?}"
    );
    p.wait_for_log("reloaded certificate", Duration::from_secs(5));
    notify.wait_for(|m| m.contains("READY=1"), Duration::from_secs(5));
    assert!(notify.all()[before..].iter().any(|m| m.contains("READY=1")));
    assert_eq!(
        served_certificate(https, &[&cert_a, &cert_b]).await,
        der(&cert_b)
    );

    // A key that does not match: refused, loudly, and B stays.
    write_pair(dir.path(), &cert_a, &key_b);
    p.signal(Signal::HUP);
    let refused = p.wait_for_log("was refused", Duration::from_secs(5));
    assert!(
        refused.contains("does not belong to the certificate"),
        "{refused}"
    );
    assert_eq!(
        served_certificate(https, &[&cert_a, &cert_b]).await,
        der(&cert_b)
    );
    // Garbage: refused as well.
    std::fs::write(dir.path().join("fullchain.pem"), "not a certificate").unwrap();
    p.signal(Signal::HUP);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        served_certificate(https, &[&cert_a, &cert_b]).await,
        der(&cert_b)
    );
    assert!(p.log_text().matches("was refused").count() >= 2);

    // The STATUS= line is refreshed every 10 s with connections and request rate.
    let refreshed = notify.wait_for(
        |m| m.starts_with("STATUS=serving") && m.contains("connections,") && m.contains("req/s"),
        Duration::from_secs(12).saturating_sub(ready_at.elapsed()),
    );
    assert!(!refreshed.contains("READY=1"), "{refreshed}");

    p.signal(Signal::TERM);
    let status = p.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", p.log_text());
    notify.wait_for(|m| m.contains("STOPPING=1"), Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_takes_listeners_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (https, http) = (free(), free());
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("--fdname=https:http")
        .arg(format!("--listen={https}"))
        .arg(format!("--listen={http}"))
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut env = production_env(dir.path());
    // The configured addresses must be ignored in favour of the passed sockets.
    env.retain(|(k, _)| k != "EF__HTTPS_LISTEN" && k != "EF__API_PORT");
    env.push(("EF__HTTPS_LISTEN".into(), "127.0.0.1:1".into()));
    env.push(("EF__API_PORT".into(), "1".into()));
    env.push(("EF__LOG_FORMAT".into(), "json".into()));
    for (k, v) in &env {
        cmd.arg(format!("--setenv={k}={v}"));
    }
    cmd.arg(BIN).arg("serve");
    let mut child = cmd.spawn().expect("systemd-socket-activate");
    // The first connection starts the server; it must be queued, not refused.
    let ca_path = dir.path().join("tls/selfsigned.crt");
    let client_https = tokio::task::spawn_blocking(move || {
        let mut s = common::connect_retry(http, Duration::from_secs(10));
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(client_https.starts_with("HTTP/1.1 200"), "{client_https}");
    let ca = std::fs::read_to_string(&ca_path).unwrap();
    let c = common::client_for(ca.as_bytes(), https, common::Protocol::Any);
    let r = c
        .get(format!("https://localhost:{}/healthz", https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);

    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("\"socket_activated\":true"), "{err}");
}

#[test]
fn sigterm_lets_an_in_flight_download_finish_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let size = 64 * 1024 * 1024;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    std::fs::create_dir_all(dir.path().join("downloads")).unwrap();
    std::fs::write(dir.path().join("downloads/big.bin"), &data).unwrap();
    let env = production_env(dir.path());
    let mut p = Process::spawn(dir.path(), &["serve"], &as_refs(&env));
    let http = p.http.unwrap();

    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /downloads/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut received = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let n = s.read(&mut buf).unwrap();
    received.extend_from_slice(&buf[..n]);

    p.signal(Signal::TERM);
    p.wait_for_log("stopping", Duration::from_secs(5));
    // New connections are no longer accepted once stopping began.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        TcpStream::connect(http).is_err(),
        "still accepting after SIGTERM"
    );
    // Read the rest slowly: the server must wait for us. Kernel socket buffers hold a few MB,
    // so halfway through a 64 MB body the server cannot have written everything yet.
    let mut reads = 0;
    let mut alive_at_half = None;
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
        reads += 1;
        if reads % 64 == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        if alive_at_half.is_none() && received.len() >= size / 2 {
            alive_at_half = Some(p.child.try_wait().unwrap().is_none());
        }
    }
    assert_eq!(
        alive_at_half,
        Some(true),
        "the server exited before the transfer could have finished"
    );
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&received[..head_end]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains(&format!("content-length: {size}")), "{head}");
    assert_eq!(received.len() - head_end, size);
    assert!(received[head_end..] == data[..], "body differs");
    let status = p.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", p.log_text());
    p.wait_for_log("\"connections_cut\":0", Duration::from_secs(1));
}

#[test]
fn legacy_keys_are_logged_once_each_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = production_env(dir.path());
    std::fs::write(
        dir.path().join("euraflow.env"),
        "EF__CELERY_BROKER_URL=redis://localhost:6379/0\nEF__USE_ARQ_DISPATCHER=true\nEF__PLUGIN_DIR=plugins\nEF__CELERY_CONCURRENCY=8\n",
    )
    .unwrap();
    env.push(("EF__USE_ARQ_DISPATCHER".into(), "true".into()));
    let mut p = Process::spawn(dir.path(), &["serve"], &as_refs(&env));
    let log = p.log_text();
    for key in [
        "EF__CELERY_BROKER_URL",
        "EF__USE_ARQ_DISPATCHER",
        "EF__PLUGIN_DIR",
    ] {
        assert_eq!(
            log.matches(&format!("{key} no longer applies")).count(),
            1,
            "{key}:\n{log}"
        );
    }
    assert!(log.contains("EF__CELERY_CONCURRENCY"), "{log}");
    p.signal(Signal::TERM);
    assert_eq!(p.wait_exit(Duration::from_secs(10)).code(), Some(0));
}
