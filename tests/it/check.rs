//! `euraflow check`, the go-live checklist, against a real PostgreSQL and Redis.

use std::process::Command;

use crate::common::{self, TestDb, production_env};

fn check(env: &[(String, String)]) -> (i32, serde_json::Value) {
    let out = Command::new(common::BIN)
        .args(["check", "--json"])
        .env_clear()
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "not JSON: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

fn outcome<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checklist_names_each_failure_and_its_fix() {
    let db = TestDb::migrated().await;
    db.client()
        .await
        .execute(
            "INSERT INTO service_heartbeats (instance_id, kind, hostname, pid, version) VALUES ('t', 'worker', 'h', 1, 'x')",
            &[],
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) =
        euraflow::http::tls::generate_self_signed(&["shop.example.test".into()]).unwrap();
    std::fs::write(dir.path().join("fullchain.pem"), cert).unwrap();
    std::fs::write(dir.path().join("privkey.pem"), key).unwrap();
    let mut env = production_env(dir.path());
    env.extend(db.env());
    env.push((
        "EF__TLS_CERT".into(),
        dir.path().join("fullchain.pem").display().to_string(),
    ));
    env.push((
        "EF__TLS_KEY".into(),
        dir.path().join("privkey.pem").display().to_string(),
    ));
    env.push(("EF__SERVER_NAME".into(), "shop.example.test".into()));
    env.push(("PATH".into(), std::env::var("PATH").unwrap_or_default()));

    let (code, v) = check(&env);
    for id in [
        "config",
        "production_mode",
        "debug_off",
        "secret_key",
        "rate_limit",
        "tls_certificate",
        "tls_expiry",
        "tls_hostname",
        "postgresql",
        "migrations",
        "worker",
        "redis",
        "redis_maxclients",
    ] {
        assert_eq!(outcome(&v, id)["outcome"], "pass", "{id}: {v}");
    }
    // No backup timer on a test machine: a failure with its fix, and a non-zero exit.
    let backups = outcome(&v, "backups");
    assert_eq!(backups["outcome"], "fail");
    assert!(backups["fix"].as_str().unwrap().contains("euraflow-backup"));
    assert_eq!(code, 1);
    assert!(v["failed"].as_u64().unwrap() >= 1);
    // max_connections is judged against the pool: 100 + 20 % needs 120.
    let max: String = db
        .client()
        .await
        .query_one("SHOW max_connections", &[])
        .await
        .unwrap()
        .get(0);
    let pool = outcome(&v, "pg_max_connections");
    if max.parse::<u32>().unwrap() >= 120 {
        assert_eq!(pool["outcome"], "pass", "max_connections={max}: {pool}");
    } else {
        assert_eq!(pool["outcome"], "fail", "max_connections={max}: {pool}");
        assert!(
            pool["fix"].as_str().unwrap().contains("max_connections"),
            "{pool}"
        );
    }

    // A certificate for another name and a disabled rate limit are each caught.
    let mut wrong = env.clone();
    wrong.retain(|(k, _)| k != "EF__SERVER_NAME" && k != "EF__RATE_LIMIT_ENABLED");
    wrong.push(("EF__SERVER_NAME".into(), "other.example.test".into()));
    wrong.push(("EF__RATE_LIMIT_ENABLED".into(), "false".into()));
    let (_, v) = check(&wrong);
    assert_eq!(outcome(&v, "tls_hostname")["outcome"], "fail");
    assert_eq!(outcome(&v, "rate_limit")["outcome"], "fail");
    // A certificate that ends in five days fails the 14-day rule, saying how long is left.
    let soon = chrono::Utc::now() + chrono::Duration::days(5);
    let mut params = rcgen::CertificateParams::new(vec!["shop.example.test".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = {
        use chrono::Datelike;
        rcgen::date_time_ymd(soon.year(), soon.month() as u8, soon.day() as u8)
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.path().join("expiring.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("expiring.key"), key.serialize_pem()).unwrap();
    let mut expiring = env.clone();
    expiring.retain(|(k, _)| k != "EF__TLS_CERT" && k != "EF__TLS_KEY");
    expiring.push((
        "EF__TLS_CERT".into(),
        dir.path().join("expiring.pem").display().to_string(),
    ));
    expiring.push((
        "EF__TLS_KEY".into(),
        dir.path().join("expiring.key").display().to_string(),
    ));
    let (_, v) = check(&expiring);
    let expiry = outcome(&v, "tls_expiry");
    assert_eq!(expiry["outcome"], "fail", "{v}");
    assert!(
        expiry["found"].as_str().unwrap().contains("4 days")
            || expiry["found"].as_str().unwrap().contains("5 days"),
        "{expiry}"
    );
    assert!(
        expiry["fix"].as_str().unwrap().contains("renew"),
        "{expiry}"
    );
    let mut self_signed = env.clone();
    self_signed.retain(|(k, _)| k != "EF__TLS_CERT" && k != "EF__TLS_KEY");
    let (_, v) = check(&self_signed);
    assert_eq!(outcome(&v, "tls_certificate")["outcome"], "fail");
    // Without a worker heartbeat, the worker check fails.
    db.client()
        .await
        .execute("DELETE FROM service_heartbeats", &[])
        .await
        .unwrap();
    let (_, v) = check(&env);
    assert_eq!(outcome(&v, "worker")["outcome"], "fail");
}

/// A configuration that `serve` refuses still gets the whole checklist: its problems are failed
/// lines with their fixes (the production guide's "secret changed, debug off" items), not an
/// early exit without a report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_configuration_is_reported_as_failed_checks() {
    let db = TestDb::migrated().await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = production_env(dir.path());
    env.extend(db.env());
    env.retain(|(k, _)| k != "EF__SECRET_KEY");
    env.push(("EF__SECRET_KEY".into(), "too-short-secret".into()));
    env.push(("EF__API_DEBUG".into(), "true".into()));
    env.push(("PATH".into(), std::env::var("PATH").unwrap_or_default()));
    let (code, v) = check(&env);
    assert_eq!(code, 1, "{v}");
    let config: Vec<&serde_json::Value> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == "config")
        .collect();
    assert_eq!(config.len(), 2, "one line per problem: {v}");
    assert!(config.iter().all(|c| c["outcome"] == "fail"));
    let text = serde_json::to_string(&config).unwrap();
    assert!(
        text.contains("EF__SECRET_KEY") && text.contains("EF__API_DEBUG"),
        "{text}"
    );
    assert!(text.contains("gen-secret"), "the fix is named: {text}");
    assert_eq!(outcome(&v, "debug_off")["outcome"], "fail");
    assert_eq!(outcome(&v, "secret_key")["outcome"], "fail");
    // The rest was still checked.
    assert_eq!(outcome(&v, "postgresql")["outcome"], "pass", "{v}");
    assert_eq!(outcome(&v, "migrations")["outcome"], "pass", "{v}");
}
