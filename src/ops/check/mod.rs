//! `euraflow check`: the production guide's go-live checklist as a command. Every line says what
//! was checked, what was found, and how to fix it; the exit status is non-zero when anything
//! fails, so it can gate a deployment.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::{Config, ConfigError, ListenAddr, Loaded, Source, TlsConfig};
use crate::db;
use crate::db::migrate;
use crate::redis::Redis;

/// A certificate must stay valid at least this long.
const CERT_MIN_DAYS: u64 = 14;
/// PostgreSQL needs room beyond our pool for the worker, psql, backups and replication.
const PG_RESERVE: f64 = 0.2;
const REDIS_MIN_CLIENTS: u64 = 1000;
const BACKUP_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const WORKER_STALE: f64 = 90.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Warn,
    Fail,
    /// Informational: shown, never fails the run.
    Info,
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub id: &'static str,
    pub outcome: Outcome,
    pub found: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn item(id: &'static str, outcome: Outcome, found: impl Into<String>, fix: Option<String>) -> Item {
    Item {
        id,
        outcome,
        found: found.into(),
        fix,
    }
}

fn pass(id: &'static str, found: impl Into<String>) -> Item {
    item(id, Outcome::Pass, found, None)
}

fn fail(id: &'static str, found: impl Into<String>, fix: impl Into<String>) -> Item {
    item(id, Outcome::Fail, found, Some(fix.into()))
}

fn warn(id: &'static str, found: impl Into<String>, fix: impl Into<String>) -> Item {
    item(id, Outcome::Warn, found, Some(fix.into()))
}

/// `euraflow check [--json]` runs even on a configuration that `serve` would refuse: its
/// problems are failed lines of the checklist (the first thing an operator needs to see), not an
/// early exit.
pub fn run_command(dev: bool, file: Option<std::path::PathBuf>, json: bool) -> ExitCode {
    let (loaded, problems) =
        crate::config::load_with_problems(&crate::config::LoadOptions::from_process(dev, file));
    let mut log = loaded.config.log.clone();
    log.level = crate::config::LogLevel::Warn;
    crate::telemetry::init(&log);
    crate::process::block_on_small(run(&loaded, &problems, json))
}

pub async fn run(loaded: &Loaded, problems: &[ConfigError], json: bool) -> ExitCode {
    let items = collect(loaded, problems).await;
    if json {
        let failed = items.iter().filter(|i| i.outcome == Outcome::Fail).count();
        let out = serde_json::json!({"passed": failed == 0, "failed": failed, "checks": items});
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        for i in &items {
            let mark = match i.outcome {
                Outcome::Pass => "ok  ",
                Outcome::Warn => "warn",
                Outcome::Fail => "FAIL",
                Outcome::Info => "info",
            };
            println!("[{mark}] {:<22} {}", i.id, i.found);
            if let Some(f) = &i.fix {
                println!("       {:<22} fix: {f}", "");
            }
        }
        let failed = items.iter().filter(|i| i.outcome == Outcome::Fail).count();
        println!(
            "\n{} checks: {} passed, {} warnings, {failed} failed",
            items.len(),
            items.iter().filter(|i| i.outcome == Outcome::Pass).count(),
            items.iter().filter(|i| i.outcome == Outcome::Warn).count()
        );
    }
    if items.iter().any(|i| i.outcome == Outcome::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Every line of the checklist. `problems` are the configuration's errors: one failed `config`
/// line each (the rest is checked with defaults in place of the malformed values).
pub async fn collect(loaded: &Loaded, problems: &[ConfigError]) -> Vec<Item> {
    let c = &loaded.config;
    let mut items: Vec<Item> = problems
        .iter()
        .map(|p| match p.message.split_once("; fix: ") {
            Some((found, fix)) => fail("config", found, fix),
            None => fail("config", p.message.clone(), "see `euraflow config check`"),
        })
        .collect();
    if problems.is_empty() {
        items.push(pass(
            "config",
            match &loaded.config_file {
                Some(p) => format!("valid ({})", p.display()),
                None => "valid (no configuration file)".into(),
            },
        ));
    }
    items.push(if c.is_production() {
        pass("production_mode", "EF__ENV=production")
    } else {
        fail(
            "production_mode",
            "development mode",
            "remove EF__ENV=development and --dev",
        )
    });
    items.push(if c.debug {
        fail("debug_off", "EF__API_DEBUG=true", "set EF__API_DEBUG=false")
    } else {
        pass("debug_off", "EF__API_DEBUG=false")
    });
    items.push(secret_item(loaded));
    items.push(match c.security.rate_limit {
        Some(r) => pass("rate_limit", format!("on, {r}")),
        None => fail(
            "rate_limit",
            "EF__RATE_LIMIT_ENABLED=false",
            "set EF__RATE_LIMIT_ENABLED=true",
        ),
    });
    items.extend(tls_items(c));
    items.extend(database_items(c).await);
    items.extend(redis_items(c).await);
    items.push(websocket_item(c).await);
    items.push(backup_item(c));
    items.extend(port_items());
    items.push(firewall_item());
    items
}

fn secret_item(loaded: &Loaded) -> Item {
    let s = &loaded.config.security.secret_key;
    let source = loaded
        .settings
        .get("EF__SECRET_KEY")
        .map(|s| s.source.clone());
    if s.len() < crate::config::MIN_SECRET_LEN {
        return fail(
            "secret_key",
            format!("{} characters", s.len()),
            "euraflow gen-secret > /etc/euraflow/credentials/secret_key",
        );
    }
    match source {
        Some(Source::Generated(_)) => fail(
            "secret_key",
            "a development secret",
            "euraflow gen-secret > /etc/euraflow/credentials/secret_key",
        ),
        Some(src) => pass("secret_key", format!("{} characters, from {src}", s.len())),
        None => pass("secret_key", format!("{} characters", s.len())),
    }
}

fn tls_items(c: &Config) -> Vec<Item> {
    if matches!(c.http.https_listen, ListenAddr::Off) {
        return vec![warn(
            "tls",
            "HTTPS is off (EF__HTTPS_LISTEN=off)",
            "only right when a TLS-terminating proxy sits in front",
        )];
    }
    let TlsConfig::Files { cert, key } = &c.tls else {
        return vec![fail(
            "tls_certificate",
            "self-signed certificate (browsers will warn)",
            "point EF__TLS_CERT/EF__TLS_KEY at a real certificate, e.g. Let's Encrypt's fullchain.pem and privkey.pem",
        )];
    };
    let store = match crate::http::tls::CertificateStore::open(c.tls.clone(), &c.server_name) {
        Ok(s) => s,
        Err(e) => {
            return vec![fail(
                "tls_certificate",
                format!("{e:#}"),
                format!("check {} and {}", cert.display(), key.display()),
            )];
        }
    };
    let cert_info = store.current();
    let mut out = vec![pass(
        "tls_certificate",
        format!("{} (key matches)", cert_info.subject),
    )];
    let days = cert_info
        .not_after
        .duration_since(SystemTime::now())
        .map(|d| d.as_secs() / 86400)
        .unwrap_or(0);
    out.push(if days >= CERT_MIN_DAYS {
        pass("tls_expiry", format!("{days} days left"))
    } else {
        fail(
            "tls_expiry",
            format!("{days} days left"),
            "renew it (certbot renew) — the deploy hook reloads the server",
        )
    });
    out.push(match cert_names(cert) {
        Some(names) if names.iter().any(|n| name_matches(n, &c.server_name)) => {
            pass("tls_hostname", format!("valid for {}", c.server_name))
        }
        Some(names) => fail(
            "tls_hostname",
            format!("{} is not among {}", c.server_name, names.join(", ")),
            "set EF__SERVER_NAME to the site's name, or get a certificate for it",
        ),
        None => fail(
            "tls_hostname",
            "cannot read the certificate's names",
            "check EF__TLS_CERT",
        ),
    });
    out
}

fn name_matches(pattern: &str, host: &str) -> bool {
    let (p, h) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    match p.strip_prefix("*.") {
        Some(rest) => h
            .split_once('.')
            .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
        None => p == h,
    }
}

fn cert_names(path: &Path) -> Option<Vec<String>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).ok()?;
    let der = CertificateDer::from_pem_slice(&pem).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    Some(
        san.value
            .general_names
            .iter()
            .filter_map(|g| match g {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
    )
}

/// What to do when `check` cannot reach PostgreSQL. A refused login (SQLSTATE class 28) as root
/// almost always means peer authentication: the package's role is the `euraflow` system user, so
/// the check must run as that user — with `runuser`, which every Debian has (a minimal one has no
/// sudo). Anything else means the server is not there.
fn postgres_fix(refused: bool, as_root: bool, db_user: &str) -> String {
    match (refused, as_root) {
        (true, true) => format!(
            "PostgreSQL refused root; run the check as the service user: runuser -u {db_user} -- euraflow check"
        ),
        (true, false) => format!(
            "PostgreSQL refused the login of {db_user}: check EF__DB_USER/EF__DB_PASSWORD, or run the check as the service user (runuser -u {db_user} -- euraflow check)"
        ),
        (false, _) => "systemctl start postgresql, then check EF__DB_HOST/EF__DB_PORT (euraflow status shows details)".to_string(),
    }
}

async fn database_items(c: &Config) -> Vec<Item> {
    let client = match db::connect_one(&c.db, &c.db.name).await {
        Ok(client) => client,
        Err(e) => {
            let refused = matches!(&e, db::DbError::Query(q)
                if q.code().is_some_and(|c| c.code().starts_with("28")));
            let fix = postgres_fix(refused, rustix::process::geteuid().is_root(), &c.db.user);
            return vec![fail("postgresql", e.to_string(), fix)];
        }
    };
    let mut out = vec![pass("postgresql", format!("reachable as {}", c.db.user))];
    out.push(match migrate::status(&client, migrate::EMBEDDED).await {
        Ok(s) if s.pending.is_empty() => pass(
            "migrations",
            format!("{} applied, none pending", s.applied.len()),
        ),
        Ok(s) => fail(
            "migrations",
            format!("{} pending", s.pending.len()),
            "euraflow migrate",
        ),
        Err(e) => fail("migrations", e.to_string(), "euraflow migrate --status"),
    });
    let pool = c.db.max_connections();
    let needed = (pool as f64 * (1.0 + PG_RESERVE)).ceil() as i64;
    out.push(
        match client
            .query_one(
                "SELECT setting::bigint, pending_restart FROM pg_settings WHERE name = 'max_connections'",
                &[],
            )
            .await
        {
            Ok(row) => {
                let max: i64 = row.get(0);
                // The package raises max_connections in postgresql.conf; it takes effect only
                // when PostgreSQL restarts, so "set it" would be the wrong advice then.
                let pending_restart: bool = row.get(1);
                if max >= needed {
                    pass("pg_max_connections", format!("{max} ≥ pool {pool} + 20 % reserve"))
                } else if pending_restart {
                    fail(
                        "pg_max_connections",
                        format!(
                            "{max} < pool {pool} + 20 % reserve ({needed}); a new value is set in postgresql.conf and waits for a PostgreSQL restart"
                        ),
                        "systemctl restart postgresql (at a quiet moment: it ends every database connection)",
                    )
                } else {
                    fail(
                        "pg_max_connections",
                        format!("{max} < pool {pool} + 20 % reserve ({needed})"),
                        format!(
                            "set max_connections = {} in postgresql.conf (the guide uses 200) and restart PostgreSQL, or lower EF__DB_POOL_SIZE/EF__DB_MAX_OVERFLOW",
                            needed.max(200)
                        ),
                    )
                }
            }
            Err(e) => fail("pg_max_connections", e.to_string(), "check database permissions"),
        },
    );
    out.push(
        match client
            .query_one(
                "SELECT extract(epoch FROM now() - max(last_seen_at))::float8 FROM service_heartbeats WHERE kind = 'worker'",
                &[],
            )
            .await
        {
            Ok(row) => match row.get::<_, Option<f64>>(0) {
                Some(age) if age < WORKER_STALE => pass("worker", format!("heartbeat {age:.0}s ago")),
                Some(age) => fail("worker", format!("last heartbeat {age:.0}s ago"), "systemctl restart euraflow-worker; journalctl -u euraflow-worker"),
                None => fail("worker", "no worker has ever reported", "systemctl enable --now euraflow-worker"),
            },
            Err(e) => fail("worker", e.to_string(), "euraflow migrate"),
        },
    );
    out.push(data_key_item(c, &client).await);
    out.push(exchange_rate_item(c, &client).await);
    out
}

/// The exchange rate the pages read: configured or not, whether its key decrypts, the age of the
/// last good CNY→RUB rate, and a warning when it is stale (the last refresh failed, or it is
/// older than two hourly refreshes).
async fn exchange_rate_item(c: &Config, client: &tokio_postgres::Client) -> Item {
    use crate::exchange_rates::STALE_AFTER;
    const ID: &str = "exchange_rate";
    let cfg = match client
        .query_opt(
            "SELECT api_key, is_enabled, last_refresh_at, last_refresh_status, last_refresh_error
               FROM exchange_rate_config ORDER BY id LIMIT 1",
            &[],
        )
        .await
    {
        Ok(row) => row,
        Err(e) => return fail(ID, e.to_string(), "euraflow migrate"),
    };
    let Some(cfg) = cfg else {
        return item(
            ID,
            Outcome::Info,
            "not configured: the calculators and pages show no CNY↔RUB rate",
            Some("an admin enters the exchangerate-api.com key in 系统配置 → 第三方服务".into()),
        );
    };
    let stored: String = cfg.get(0);
    let enabled: bool = cfg.get(1);
    let last_at: Option<chrono::DateTime<chrono::Utc>> = cfg.get(2);
    let last_status: Option<String> = cfg.get(3);
    let last_error: Option<String> = cfg.get(4);
    let decrypts = matches!(
        crate::secrets::KeyRing::from_config(&c.security.data_key),
        Ok(Some(ring)) if ring.open(crate::secrets::EXCHANGE_RATE_KEY_CONTEXT, &stored).is_ok()
    );
    if !decrypts {
        return fail(
            ID,
            "the stored exchange-rate API key does not decrypt with the data key",
            "restore the data key file that encrypted it, or have an admin re-enter the key in 系统配置 → 第三方服务",
        );
    }
    if !enabled {
        return item(ID, Outcome::Info, "configured but disabled", None);
    }
    let newest = client
        .query_opt(
            "SELECT fetched_at, rate::text, extract(epoch FROM now() - fetched_at)::float8
               FROM exchange_rates WHERE from_currency = 'CNY' AND to_currency = 'RUB'
              ORDER BY fetched_at DESC, id DESC LIMIT 1",
            &[],
        )
        .await;
    let newest = match newest {
        Ok(r) => r,
        Err(e) => return fail(ID, e.to_string(), "euraflow migrate"),
    };
    let failed_since = |fetched: Option<chrono::DateTime<chrono::Utc>>| {
        last_status.as_deref() == Some("failed")
            && match (last_at, fetched) {
                (Some(at), Some(f)) => at > f,
                (Some(_), None) => true,
                _ => false,
            }
    };
    let error_text = last_error.clone().unwrap_or_default();
    match newest {
        None => warn(
            ID,
            if failed_since(None) {
                format!("configured, no rate fetched yet; the last refresh failed: {error_text}")
            } else {
                "configured, no rate fetched yet".to_owned()
            },
            "the worker refreshes it at minute 18 of every hour; an admin can press 刷新 in 系统配置 → 第三方服务 (journalctl -u euraflow-worker shows failures)",
        ),
        Some(row) => {
            let fetched: chrono::DateTime<chrono::Utc> = row.get(0);
            let rate: String = row.get(1);
            let age: f64 = row.get(2);
            let age_text = if age < 3600.0 {
                format!("{:.0} min", age / 60.0)
            } else {
                format!("{:.1} h", age / 3600.0)
            };
            if failed_since(Some(fetched)) || age > STALE_AFTER.as_secs_f64() {
                warn(
                    ID,
                    format!(
                        "stale: CNY→RUB {rate} is {age_text} old{}",
                        if failed_since(Some(fetched)) {
                            format!("; the last refresh failed: {error_text}")
                        } else {
                            String::new()
                        }
                    ),
                    "check the worker (systemctl status euraflow-worker) and the provider key (系统配置 → 第三方服务 → 测试连接)",
                )
            } else {
                pass(ID, format!("CNY→RUB {rate}, fetched {age_text} ago"))
            }
        }
    }
}

/// The data key: configured, and able to decrypt every stored credential (a restored database
/// with a lost key file is found here, not when a seller's sync fails).
async fn data_key_item(c: &Config, client: &tokio_postgres::Client) -> Item {
    const FIX: &str = "euraflow gen-data-key > /etc/euraflow/credentials/data_key; chmod 0640 and chgrp euraflow it; systemctl restart euraflow euraflow-worker (stored Api-Keys then need re-entering)";
    let ring = match crate::secrets::KeyRing::from_config(&c.security.data_key) {
        Ok(Some(ring)) => ring,
        Ok(None) => return fail("data_key", "EF__DATA_KEY is not set", FIX),
        Err(e) => return fail("data_key", e.to_string(), FIX),
    };
    let rows = match client
        .query(
            "SELECT id, client_id, api_key_enc FROM ozon_shops ORDER BY id LIMIT 100000",
            &[],
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => return fail("data_key", e.to_string(), "euraflow migrate"),
    };
    let broken: Vec<i64> = rows
        .iter()
        .filter(|r| {
            let client_id: String = r.get(1);
            let stored: String = r.get(2);
            ring.open(&crate::secrets::ozon_api_key_context(&client_id), &stored)
                .is_err()
        })
        .map(|r| r.get(0))
        .collect();
    if broken.is_empty() {
        pass(
            "data_key",
            format!(
                "key {} decrypts all {} stored Api-Keys",
                ring.current_id(),
                rows.len()
            ),
        )
    } else {
        fail(
            "data_key",
            format!(
                "{} of {} stored Api-Keys do not decrypt (shops {:?})",
                broken.len(),
                rows.len(),
                &broken[..broken.len().min(10)]
            ),
            "restore the data key file that encrypted them; otherwise the shops' owners re-enter their Api-Keys",
        )
    }
}

async fn redis_items(c: &Config) -> Vec<Item> {
    let redis = match Redis::new(&c.redis) {
        Ok(r) => r,
        Err(e) => return vec![fail("redis", format!("{e:#}"), "check EF__REDIS_*")],
    };
    if let Err(e) = redis.ping().await {
        return vec![fail(
            "redis",
            e.to_string(),
            "start Redis (systemctl start redis-server) and check EF__REDIS_*",
        )];
    }
    let mut out = vec![pass("redis", format!("reachable at {}", redis.target()))];
    out.push(match redis.client_counts().await {
        Ok((_, Some(max))) if max >= REDIS_MIN_CLIENTS => {
            pass("redis_maxclients", format!("{max}"))
        }
        Ok((_, Some(max))) => fail(
            "redis_maxclients",
            format!("{max} < {REDIS_MIN_CLIENTS}"),
            "set maxclients 1000 in /etc/redis/redis.conf and restart Redis",
        ),
        Ok((_, None)) => warn(
            "redis_maxclients",
            "unknown (CONFIG is disabled)",
            "check maxclients ≥ 1000 with your provider",
        ),
        Err(e) => fail("redis_maxclients", e.to_string(), "check Redis"),
    });
    let policy: Result<Vec<String>, _> = redis
        .query(redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy"))
        .await;
    out.push(match policy.ok().and_then(|v| v.get(1).cloned()) {
        Some(p) if p.ends_with("-lru") || p.ends_with("-lfu") || p == "volatile-ttl" => {
            pass("redis_memory_policy", p)
        }
        Some(p) => warn(
            "redis_memory_policy",
            format!("{p}: a full Redis refuses writes"),
            "set maxmemory 512mb and maxmemory-policy allkeys-lru (the guide's values); everything euraflow keeps there may be evicted",
        ),
        None => warn("redis_memory_policy", "unknown (CONFIG is disabled)", "use allkeys-lru"),
    });
    out
}

/// The guide's "WebSocket 连接正常": open a websocket to the running server (the loopback plain
/// listener, as the local operator) and expect `connected`.
async fn websocket_item(c: &Config) -> Item {
    let addr = crate::ops::status::local_address(c);
    let url = format!("ws://{addr}{}/notifications/ws?probe=1", c.http.api_prefix);
    let probe = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
        use futures_util::StreamExt;
        while let Some(m) = ws.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = m? {
                return Ok(t.contains("\"connected\""));
            }
        }
        Ok::<bool, tokio_tungstenite::tungstenite::Error>(false)
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), probe).await {
        Ok(Ok(true)) => pass("websocket", format!("WebSocket 连接正常 ({url})")),
        Ok(Ok(false)) => fail(
            "websocket",
            format!("{url} upgraded but sent no connected message"),
            "see journalctl -u euraflow",
        ),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Io(e)))
            if e.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            warn(
                "websocket",
                format!("no server answers at {addr}"),
                "start the server (systemctl start euraflow.socket euraflow) and run the check again",
            )
        }
        Ok(Err(e)) => fail(
            "websocket",
            format!("{url}: {e}"),
            "see journalctl -u euraflow",
        ),
        Err(_) => fail(
            "websocket",
            format!("{url}: no answer within 5 s"),
            "see journalctl -u euraflow",
        ),
    }
}

fn backup_item(c: &Config) -> Item {
    let timer = std::process::Command::new("systemctl")
        .args(["is-enabled", "euraflow-backup.timer"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    backup_verdict(timer.as_deref(), &c.worker.backup_dir)
}

/// The backups line from the timer's state (`systemctl is-enabled`) and the backup folder.
fn backup_verdict(timer: Option<&str>, dir: &Path) -> Item {
    // The same rule as `backup --unless-recent`: finished dumps only, never a `.partial`.
    let age = crate::ops::backup::newest_backup_age(dir);
    match (timer, age) {
        (Some("enabled"), Some(a)) if a < BACKUP_MAX_AGE => pass(
            "backups",
            format!("timer enabled, last backup {}h ago", a.as_secs() / 3600),
        ),
        (Some("enabled"), Some(a)) => fail(
            "backups",
            format!("last backup {}h ago", a.as_secs() / 3600),
            "journalctl -u euraflow-backup; euraflow backup",
        ),
        (Some("enabled"), None) => fail(
            "backups",
            format!("timer enabled, no backup in {} yet", dir.display()),
            "run one now: systemctl start euraflow-backup",
        ),
        (other, _) => fail(
            "backups",
            format!(
                "euraflow-backup.timer is {}",
                other
                    .filter(|s| !s.is_empty())
                    .unwrap_or("not installed, or systemd is not running")
            ),
            "systemctl enable --now euraflow-backup.timer",
        ),
    }
}

mod network;
use network::{firewall_item, port_items};

#[cfg(test)]
mod tests {
    use super::network::parse_proc_ip;
    use super::*;

    #[test]
    fn backups_count_only_finished_dumps_in_the_backup_folder() {
        let dir = tempfile::tempdir().unwrap();
        let verdict = |timer| backup_verdict(timer, dir.path());
        assert_eq!(verdict(Some("disabled")).outcome, Outcome::Fail);
        // An interrupted dump and a stray file are not backups.
        std::fs::write(
            dir.path()
                .join("euraflow_backup_20261126T050000Z_euraflow.dump.partial"),
            b"x",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let none = verdict(Some("enabled"));
        assert_eq!(none.outcome, Outcome::Fail);
        assert!(
            none.found.contains(&dir.path().display().to_string()),
            "names the folder it looked in: {}",
            none.found
        );
        std::fs::write(
            dir.path()
                .join("euraflow_backup_20261126T050000Z_euraflow.dump"),
            b"x",
        )
        .unwrap();
        assert_eq!(verdict(Some("enabled")).outcome, Outcome::Pass);
        assert_eq!(verdict(None).outcome, Outcome::Fail, "no systemd, no timer");
    }

    #[test]
    fn proc_addresses() {
        assert_eq!(
            parse_proc_ip("0100007F", false),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            parse_proc_ip("00000000", false),
            Some("0.0.0.0".parse().unwrap())
        );
        assert_eq!(
            parse_proc_ip("00000000000000000000000001000000", true),
            Some("::1".parse().unwrap())
        );
    }

    #[test]
    fn the_postgresql_fix_line_says_what_works_for_the_user_running_the_check() {
        let root = postgres_fix(true, true, "euraflow");
        assert!(
            root.contains("runuser -u euraflow -- euraflow check"),
            "{root}"
        );
        assert!(
            !root.contains("sudo"),
            "a minimal Debian has no sudo: {root}"
        );
        let user = postgres_fix(true, false, "euraflow");
        assert!(user.contains("EF__DB_PASSWORD"), "{user}");
        let down = postgres_fix(false, true, "euraflow");
        assert!(down.starts_with("systemctl start postgresql"), "{down}");
    }

    #[test]
    fn wildcard_names() {
        assert!(name_matches("*.example.com", "shop.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(name_matches("Example.com", "example.com"));
    }
}
