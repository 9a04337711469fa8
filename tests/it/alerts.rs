//! The shipped Prometheus alert rules (packaging/prometheus/euraflow-alerts.yml) watch metrics the
//! server really exports: every `ef_*` name in a rule's expression appears in a scrape of the real
//! server, and the values an alert compares against mean what the rule assumes. promtool checks
//! the rules' syntax and their unit tests in the test command (scripts/test).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{self, TestDb};

const RULES: &str = include_str!("../../packaging/prometheus/euraflow-alerts.yml");

/// The metric names the rules' `expr:` lines use (a name is `ef_` and word characters).
fn metric_names_in_rules() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_expr = false;
    for line in RULES.lines() {
        let t = line.trim_start();
        if t.starts_with("expr:") {
            in_expr = true;
        } else if t.starts_with("for:") || t.starts_with("labels:") || t.starts_with("- alert:") {
            in_expr = false;
        }
        if !in_expr {
            continue;
        }
        let mut rest = t;
        while let Some(i) = rest.find("ef_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    names
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_an_alert_rule_watches_is_exported_by_the_server() {
    let names = metric_names_in_rules();
    assert!(
        names.len() >= 10,
        "the rules file should name the appliance's metrics, found {names:?}"
    );
    let db = TestDb::migrated().await;
    let srv = common::TestServer::start(&common::as_refs(&db.env())).await;
    // One request, so the request counter has a series.
    let r = srv
        .client()
        .get(format!("https://localhost:{}/healthz", srv.https.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = reqwest::get(srv.http_url("/api/ef/v1/system/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !exported.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "alert rules use metrics the server does not export: {missing:?}\nexported: {exported:?}"
    );

    // What the rules assume about the values. No worker runs here, so the worker check is not
    // ok and the verdict is degraded (not unhealthy: the database is up, migrations applied).
    assert_eq!(
        sample(&text, "ef_health_check_ok{check=\"database\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "ef_health_check_ok{check=\"worker\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "ef_health_status{status=\"unhealthy\"}"),
        Some(0.0)
    );
    let verdicts: f64 = ["healthy", "degraded", "unhealthy"]
        .iter()
        .filter_map(|s| sample(&text, &format!("ef_health_status{{status=\"{s}\"}}")))
        .sum();
    assert_eq!(verdicts, 1.0, "exactly one health verdict is current");
    // The self-signed certificate is valid for about 397 days from now: a Unix timestamp in the
    // future, which `expiry - time() < 14 days` compares against.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let expiry = sample(&text, "ef_tls_certificate_expiry_timestamp_seconds").unwrap();
    assert!(
        expiry > now + 300.0 * 86400.0 && expiry < now + 400.0 * 86400.0,
        "certificate expiry {expiry} is not about 397 days after {now}"
    );
    // No backup in the fresh state directory: 0, so the age rule fires for a machine that never
    // backed up.
    assert_eq!(
        sample(&text, "ef_backup_newest_timestamp_seconds"),
        Some(0.0)
    );
}

/// A finished backup file in EF__BACKUP_DIR shows up as its modification time; a `.partial`
/// one (a backup that did not finish) does not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_age_metric_reads_only_finished_backups() {
    let db = TestDb::migrated().await;
    let backups = tempfile::tempdir().unwrap();
    let dir = backups.path().to_str().unwrap().to_string();
    let mut env = db.env();
    env.push(("EF__BACKUP_DIR".to_string(), dir));
    let srv = common::TestServer::start(&common::as_refs(&env)).await;
    std::fs::write(
        backups
            .path()
            .join("euraflow_backup_20261202T050000Z_x.dump.partial"),
        b"unfinished",
    )
    .unwrap();
    let scrape = || async {
        reqwest::get(srv.http_url("/api/ef/v1/system/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    assert_eq!(
        sample(&scrape().await, "ef_backup_newest_timestamp_seconds"),
        Some(0.0)
    );
    std::fs::write(
        backups
            .path()
            .join("euraflow_backup_20261202T050000Z_x.dump"),
        b"finished",
    )
    .unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let newest = sample(&scrape().await, "ef_backup_newest_timestamp_seconds").unwrap();
    assert!(
        (newest - now.as_secs_f64()).abs() < Duration::from_secs(60).as_secs_f64(),
        "newest backup {newest} is not the file just written (now {})",
        now.as_secs()
    );
}
