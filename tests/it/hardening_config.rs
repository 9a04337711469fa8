//! Issue 17, item 6: `config check` warns about settings the server runs with but an operator
//! should not — trusting every proxy, HSTS off, the rate limit off, a placeholder database
//! password — each with its fix, never printing the secret.

use crate::common;
use euraflow::config::{self, LoadOptions, Severity};

fn warnings(production: bool, env: &[(&str, &str)]) -> Vec<String> {
    let mut vars: Vec<(String, String)> =
        vec![("EF__SECRET_KEY".into(), config::generate_secret())];
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let dir = tempfile::tempdir().unwrap();
    let loaded = config::load(&LoadOptions {
        dev: !production,
        config_file: None,
        env: vars,
        cwd: dir.path().to_path_buf(),
        hostname: "localhost".into(),
        username: config::current_username(),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    loaded
        .diagnostics
        .into_iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| d.message)
        .collect()
}

fn has(ws: &[String], needle: &str) -> bool {
    ws.iter().any(|w| w.contains(needle))
}

#[test]
fn the_defaults_draw_none_of_these_warnings() {
    let ws = warnings(true, &[]);
    for key in [
        "EF__TRUSTED_PROXIES",
        "EF__HSTS",
        "rate limit",
        "EF__DB_PASSWORD",
    ] {
        assert!(!has(&ws, key), "{key}: {ws:?}");
    }
}

#[test]
fn trusting_every_proxy_is_a_warning() {
    for (value, family) in [
        ("0.0.0.0/0", "every IPv4 peer"),
        ("::/0", "every IPv6 peer"),
        ("127.0.0.1/32, 0.0.0.0/1, 128.0.0.0/1", "every IPv4 peer"),
    ] {
        for production in [true, false] {
            let ws = warnings(production, &[("EF__TRUSTED_PROXIES", value)]);
            assert!(
                ws.iter()
                    .any(|w| w.contains("EF__TRUSTED_PROXIES") && w.contains(family)),
                "{value}: {ws:?}"
            );
            assert!(has(&ws, "fix:"), "{ws:?}");
        }
    }
    let ws = warnings(true, &[("EF__TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")]);
    assert!(!has(&ws, "EF__TRUSTED_PROXIES"), "{ws:?}");
}

#[test]
fn hsts_and_the_rate_limit_off_in_production_are_warnings() {
    let ws = warnings(true, &[("EF__HSTS", "off")]);
    assert!(has(&ws, "EF__HSTS=off"), "{ws:?}");
    // Development has HSTS off by default: no warning there.
    assert!(!has(&warnings(false, &[]), "EF__HSTS"));
    let ws = warnings(true, &[("EF__RATE_LIMIT_ENABLED", "false")]);
    assert!(has(&ws, "rate limit is off"), "{ws:?}");
    assert!(has(&ws, "EF__RATE_LIMIT_ENABLED=true"), "{ws:?}");
}

#[test]
fn a_placeholder_database_password_is_a_warning_that_does_not_print_it() {
    for value in [
        "change-me-db-7731",
        "admin123",
        "<your database password>",
        "PaSsWoRd",
    ] {
        let ws = warnings(true, &[("EF__DB_PASSWORD", value)]);
        let w = ws
            .iter()
            .find(|w| w.contains("EF__DB_PASSWORD"))
            .unwrap_or_else(|| panic!("{value}: {ws:?}"));
        assert!(!w.contains(value), "the password was printed: {w}");
        assert!(w.contains("fix:"), "{w}");
    }
    let ws = warnings(true, &[("EF__DB_PASSWORD", "q8Zr-2mVx_tL9pWc4KyN")]);
    assert!(!has(&ws, "EF__DB_PASSWORD"), "{ws:?}");
}

/// The command the unit runs as `ExecStartPre`: the warnings are printed, the check still
/// passes (the server can run; the operator is told).
#[test]
fn config_check_prints_them_and_still_passes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("euraflow.env");
    std::fs::write(
        &file,
        format!(
            "EF__SECRET_KEY={}\nEF__TRUSTED_PROXIES=0.0.0.0/0, ::/0\nEF__HSTS=off\nEF__RATE_LIMIT_ENABLED=false\nEF__DB_PASSWORD=changeme\n",
            config::generate_secret()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["config", "check", "--config"])
        .arg(&file)
        .current_dir(dir.path())
        .env_clear()
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    for needle in [
        "warning: EF__TRUSTED_PROXIES",
        "every IPv4 peer",
        "every IPv6 peer",
        "warning: EF__HSTS=off",
        "warning: the request rate limit is off",
        "warning: EF__DB_PASSWORD",
    ] {
        assert!(err.contains(needle), "{needle} missing:\n{err}");
    }
    assert!(
        !err.contains("changeme"),
        "the password was printed:\n{err}"
    );
}
