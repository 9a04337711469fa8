use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const GOOD_SECRET: &str =
    "Zm9vYmFyYmF6cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2FsZG9mcmVkcGx1Z2h4eXp6eTEyMzQ1Njc4OTA";

fn opts(dir: &Path, env: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        dev: false,
        config_file: None,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cwd: dir.to_path_buf(),
        hostname: "testhost".into(),
        username: "tester".into(),
    }
}

fn with_file(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("euraflow.env");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn production_defaults_are_the_guides_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), &[("EF__SECRET_KEY", GOOD_SECRET)]);
    o.config_file = Some(with_file(dir.path(), ""));
    let loaded = load(&o).unwrap();
    let c = &loaded.config;
    assert!(c.is_production());
    assert_eq!(c.db.pool_size, 40);
    assert_eq!(c.db.max_overflow, 60);
    assert_eq!(c.db.max_connections(), 100);
    assert_eq!(c.redis.max_connections, 50);
    assert_eq!(c.worker.concurrency, 12);
    let rl = c.security.rate_limit.unwrap();
    assert_eq!((rl.requests, rl.per.as_secs()), (100, 60));
    assert!(
        c.security.login_captcha,
        "production requires the captcha (issue 14)"
    );
    assert!(!c.debug);
    assert_eq!(c.http.max_body_size, 50 * 1024 * 1024);
    assert_eq!(c.http.request_timeout, Duration::from_secs(60));
    assert_eq!(c.http.ws_idle_timeout, Duration::from_secs(3600));
    assert_eq!(c.web.downloads_cache_max_age, Duration::from_secs(3600));
    assert_eq!(c.web.web_cache_max_age, Duration::from_secs(86400));
    assert_eq!(c.log.level, LogLevel::Info);
    assert_eq!(
        c.http.https_listen,
        ListenAddr::On("[::]:443".parse().unwrap())
    );
    assert_eq!(c.http.http_listen, "127.0.0.1:8000".parse().unwrap());
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/euraflow"));
    assert_eq!(c.web.web_root, PathBuf::from("/var/lib/euraflow/web"));
    assert_eq!(c.security.access_token_ttl, Duration::from_secs(480 * 60));
    assert_eq!(c.server_name, "testhost");
}

#[test]
fn layering_file_then_env_then_credential_then_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("db_password"), "from-credential\n").unwrap();
    std::fs::write(dir.path().join("redis.pw"), "from-key-file\n").unwrap();
    let file = with_file(
        dir.path(),
        &format!(
            "EF__DB_POOL_SIZE=10\nEF__DB_MAX_OVERFLOW=5\nEF__DB_PASSWORD=from-file\nEF__REDIS_PASSWORD=from-file\nEF__SECRET_KEY={GOOD_SECRET}\n"
        ),
    );
    let mut o = opts(
        dir.path(),
        &[
            ("EF__DB_MAX_OVERFLOW", "7"),
            ("CREDENTIALS_DIRECTORY", creds.to_str().unwrap()),
            ("EF__REDIS_PASSWORD_FILE", "redis.pw"),
        ],
    );
    o.config_file = Some(file.clone());
    let loaded = load(&o).unwrap();
    let c = &loaded.config;
    assert_eq!(c.db.pool_size, 10);
    assert_eq!(c.db.max_overflow, 7);
    assert_eq!(c.db.password.expose(), "from-credential");
    assert_eq!(c.redis.password.expose(), "from-key-file");
    assert_eq!(
        loaded.settings["EF__DB_POOL_SIZE"].source,
        Source::File {
            path: file.clone(),
            line: 1
        }
    );
    assert_eq!(
        loaded.settings["EF__DB_MAX_OVERFLOW"].source,
        Source::Environment
    );
    assert!(matches!(
        loaded.settings["EF__DB_PASSWORD"].source,
        Source::Credential(_)
    ));
    assert!(matches!(
        loaded.settings["EF__REDIS_PASSWORD"].source,
        Source::KeyFile { .. }
    ));
}

#[test]
fn same_value_from_environment_file_is_attributed_to_the_file() {
    // systemd's EnvironmentFile= repeats the file's values in the environment.
    let dir = tempfile::tempdir().unwrap();
    let file = with_file(
        dir.path(),
        &format!("EF__SECRET_KEY={GOOD_SECRET}\nEF__DB_PORT=5433\n"),
    );
    let mut o = opts(
        dir.path(),
        &[("EF__DB_PORT", "5433"), ("EF__SECRET_KEY", GOOD_SECRET)],
    );
    o.config_file = Some(file.clone());
    let loaded = load(&o).unwrap();
    assert_eq!(
        loaded.settings["EF__DB_PORT"].source,
        Source::File {
            path: file,
            line: 2
        }
    );
}

#[test]
fn malformed_values_are_all_reported_with_file_line_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = with_file(
        dir.path(),
        &format!(
            "EF__SECRET_KEY={GOOD_SECRET}\nEF__DB_POOL_SIZE=forty\n\nEF__MAX_BODY_SIZE=huge\nnot a line\n"
        ),
    );
    let mut o = opts(dir.path(), &[("EF__RATE_LIMIT_DEFAULT", "lots")]);
    o.config_file = Some(file.clone());
    let errs = load(&o).unwrap_err();
    let text = errs.to_string();
    // Syntax errors are reported first and stop the typed phase; fix them, then the values.
    assert!(text.contains("line 5"), "{text}");
    assert!(text.contains("KEY=value"), "{text}");

    std::fs::write(
        &file,
        format!("EF__SECRET_KEY={GOOD_SECRET}\nEF__DB_POOL_SIZE=forty\n\nEF__MAX_BODY_SIZE=huge\n"),
    )
    .unwrap();
    let errs = load(&o).unwrap_err();
    let text = errs.to_string();
    assert_eq!(errs.0.len(), 3, "{text}");
    assert!(
        text.contains(&format!(
            "EF__DB_POOL_SIZE=forty (from {} line 2)",
            file.display()
        )),
        "{text}"
    );
    assert!(text.contains("expected a whole number"), "{text}");
    assert!(text.contains("fix:"), "{text}");
    assert!(
        text.contains(&format!(
            "EF__MAX_BODY_SIZE=huge (from {} line 4)",
            file.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("EF__RATE_LIMIT_DEFAULT=lots (from the environment)"),
        "{text}"
    );
    assert!(text.contains("100/minute"), "{text}");
}

#[test]
fn secrets_are_never_echoed_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), &[("EF__SECRET_KEY", "short-but-secret-value")]);
    let text = load(&o).unwrap_err().to_string();
    assert!(!text.contains("short-but-secret-value"), "{text}");
    assert!(text.contains("22 characters"), "{text}");
    assert!(text.contains("euraflow gen-secret"), "{text}");
}

#[test]
fn production_refuses_missing_placeholder_short_secret_and_debug() {
    let dir = tempfile::tempdir().unwrap();
    let missing = load(&opts(dir.path(), &[])).unwrap_err().to_string();
    assert!(missing.contains("EF__SECRET_KEY is not set"), "{missing}");
    assert!(missing.contains("gen-secret"), "{missing}");

    let placeholder = load(&opts(
        dir.path(),
        &[("EF__SECRET_KEY", "<替换为64位以上随机密钥>")],
    ))
    .unwrap_err();
    assert!(
        placeholder.to_string().contains("placeholder"),
        "{placeholder}"
    );
    let change_me = load(&opts(
        dir.path(),
        &[(
            "EF__SECRET_KEY",
            "change-me-in-production-change-me-in-production-change-me-in-production",
        )],
    ))
    .unwrap_err();
    assert!(change_me.to_string().contains("placeholder"), "{change_me}");

    let debug = load(&opts(
        dir.path(),
        &[("EF__SECRET_KEY", GOOD_SECRET), ("EF__API_DEBUG", "true")],
    ))
    .unwrap_err()
    .to_string();
    assert!(debug.contains("EF__API_DEBUG=true"), "{debug}");
    assert!(debug.contains("refused in production"), "{debug}");
}

#[test]
fn dev_mode_generates_and_keeps_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), &[("EF__API_DEBUG", "true")]);
    o.dev = true;
    let first = load(&o).unwrap();
    assert!(!first.config.is_production());
    assert!(first.config.security.secret_key.len() >= MIN_SECRET_LEN);
    assert_eq!(first.config.state_dir, dir.path().join(".euraflow-dev"));
    assert_eq!(
        first.config.http.https_listen,
        ListenAddr::On("127.0.0.1:8443".parse().unwrap())
    );
    assert!(first.config.http.hsts.is_none());
    assert!(
        !first.config.security.login_captcha,
        "--dev logs in without the captcha"
    );
    let second = load(&o).unwrap();
    assert!(
        second
            .config
            .security
            .secret_key
            .ct_eq(first.config.security.secret_key.expose())
    );
    let path = dir.path().join(".euraflow-dev/secret_key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn original_env_file_is_accepted_with_one_notice_per_retired_key() {
    // The original's .env.production.example, as an operator would copy it (secret replaced).
    let dir = tempfile::tempdir().unwrap();
    let file = with_file(
        dir.path(),
        &format!(
            "EF__DB_HOST=localhost\nEF__DB_PORT=5432\nEF__DB_NAME=euraflow\nEF__DB_USER=euraflow\nEF__DB_PASSWORD=s3cret\n\
EF__DB_POOL_SIZE=40           # 基础连接池大小（默认 20）\nEF__DB_MAX_OVERFLOW=60        # 允许的溢出连接数\n\
EF__REDIS_HOST=localhost\nEF__REDIS_PORT=6379\nEF__REDIS_DB=0\nEF__API_HOST=0.0.0.0\nEF__API_PORT=8000\n\
EF__API_PREFIX=/api/ef/v1\nEF__API_DEBUG=false           # 生产环境必须为 false\nEF__SECRET_KEY={GOOD_SECRET}\n\
EF__ALGORITHM=HS256\nEF__ACCESS_TOKEN_EXPIRE_MINUTES=480  # 8小时\nEF__CELERY_BROKER_URL=redis://localhost:6379/0\n\
EF__CELERY_RESULT_BACKEND=redis://localhost:6379/1\nEF__CELERY_CONCURRENCY=12           # Celery Worker 并发数\n\
EF__USE_ARQ_DISPATCHER=true   # 生产环境推荐开启\nEF__LOG_LEVEL=INFO            # 生产环境使用 INFO\nEF__LOG_FORMAT=json\n\
EF__METRICS_ENABLED=true\nEF__METRICS_PREFIX=ef\nEF__TRACE_ENABLED=false\nEF__PLUGIN_DIR=plugins\nEF__PLUGIN_AUTO_LOAD=true\n\
EF__PLUGIN_CONFIG_FILE=plugin.json\nEF__RATE_LIMIT_ENABLED=true\nEF__RATE_LIMIT_DEFAULT=100/minute  # 默认每分钟 100 次\n\
EF__INVENTORY_DEFAULT_THRESHOLD=5\nEF__PRICE_MIN_MARGIN=0.2\n"
        ),
    );
    let mut o = opts(dir.path(), &[]);
    o.config_file = Some(file);
    let loaded = load(&o).unwrap();
    let notices: Vec<&str> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Notice)
        .map(|d| d.message.as_str())
        .collect();
    for key in [
        "EF__CELERY_BROKER_URL",
        "EF__CELERY_RESULT_BACKEND",
        "EF__USE_ARQ_DISPATCHER",
        "EF__METRICS_PREFIX",
        "EF__TRACE_ENABLED",
        "EF__PLUGIN_DIR",
        "EF__PLUGIN_AUTO_LOAD",
        "EF__PLUGIN_CONFIG_FILE",
    ] {
        let n = notices
            .iter()
            .filter(|m| m.starts_with(&format!("{key} no longer applies")))
            .count();
        assert_eq!(n, 1, "{key}: {notices:#?}");
    }
    assert!(
        notices
            .iter()
            .any(|m| m.contains("EF__CELERY_CONCURRENCY") && m.contains("EF__WORKER_CONCURRENCY"))
    );
    let warnings: Vec<&str> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| d.message.as_str())
        .collect();
    // 0.0.0.0 for the plain listener is accepted, with a warning.
    assert!(
        warnings.iter().any(|m| m.contains("EF__API_HOST=0.0.0.0")),
        "{warnings:#?}"
    );
    assert_eq!(loaded.config.db.host, "localhost");
    assert_eq!(loaded.config.log.format, LogFormat::Json);
    assert_eq!(loaded.config.worker.concurrency, 12);
}

#[test]
fn unknown_keys_warn_with_the_closest_known_key() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(&opts(
        dir.path(),
        &[
            ("EF__SECRET_KEY", GOOD_SECRET),
            ("EF__DB_POOLSIZE", "10"),
            ("EF__DATABASE__URL", "x"),
        ],
    ))
    .unwrap();
    let w: Vec<&str> = loaded
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert!(
        w.iter()
            .any(|m| m.contains("EF__DB_POOLSIZE") && m.contains("did you mean EF__DB_POOL_SIZE")),
        "{w:#?}"
    );
    assert!(w.iter().any(|m| m.contains("EF__DATABASE__URL")), "{w:#?}");
    assert_eq!(loaded.config.db.pool_size, 40);
}

#[test]
fn celery_concurrency_alias_loses_to_the_new_name() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(&opts(
        dir.path(),
        &[
            ("EF__SECRET_KEY", GOOD_SECRET),
            ("EF__CELERY_CONCURRENCY", "4"),
            ("EF__WORKER_CONCURRENCY", "6"),
        ],
    ))
    .unwrap();
    assert_eq!(loaded.config.worker.concurrency, 6);
    let alone = load(&opts(
        dir.path(),
        &[
            ("EF__SECRET_KEY", GOOD_SECRET),
            ("EF__CELERY_CONCURRENCY", "4"),
        ],
    ))
    .unwrap();
    assert_eq!(alone.config.worker.concurrency, 4);
}

#[test]
fn explicit_config_file_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), &[("EF__SECRET_KEY", GOOD_SECRET)]);
    o.config_file = Some(dir.path().join("missing.env"));
    let text = load(&o).unwrap_err().to_string();
    assert!(text.contains("missing.env"), "{text}");
    // EF__CONFIG_FILE works the same as --config.
    let o = opts(
        dir.path(),
        &[
            ("EF__SECRET_KEY", GOOD_SECRET),
            ("EF__CONFIG_FILE", "/nonexistent/x.env"),
        ],
    );
    assert!(
        load(&o)
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/x.env")
    );
}

#[test]
fn tls_cert_and_key_go_together() {
    let dir = tempfile::tempdir().unwrap();
    let text = load(&opts(
        dir.path(),
        &[
            ("EF__SECRET_KEY", GOOD_SECRET),
            ("EF__TLS_CERT", "/x/fullchain.pem"),
        ],
    ))
    .unwrap_err()
    .to_string();
    assert!(
        text.contains("EF__TLS_CERT and EF__TLS_KEY must be set together"),
        "{text}"
    );
}

#[test]
fn show_redacts_secrets_and_names_sources() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load(&opts(
        dir.path(),
        &[
            ("EF__SECRET_KEY", GOOD_SECRET),
            ("EF__DB_PASSWORD", "pw-xyz"),
        ],
    ))
    .unwrap();
    let shown = render_show(&loaded);
    assert!(!shown.contains(GOOD_SECRET));
    assert!(!shown.contains("pw-xyz"));
    assert!(shown.contains("EF__SECRET_KEY=<redacted"), "{shown}");
    for k in keys::KEYS {
        assert!(
            shown.contains(&format!("{}=", k.name)),
            "{} missing",
            k.name
        );
    }
    assert!(shown.contains("# environment"));
    assert!(shown.contains("# default"));
}

#[test]
fn template_documents_every_key_and_parses_back_to_defaults() {
    let t = render_template();
    for k in keys::KEYS {
        assert!(t.contains(&format!("#{}=", k.name)), "{}", k.name);
    }
    // Uncommenting every line must give a valid file whose values equal the defaults.
    let uncommented: String = t
        .lines()
        .filter_map(|l| l.strip_prefix("#EF__").map(|rest| format!("EF__{rest}\n")))
        .collect();
    let (entries, errors) = env_file::parse(&uncommented);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(entries.len(), keys::KEYS.len());
}

#[test]
fn the_short_template_lists_the_operator_keys_and_parses_back_to_defaults() {
    let t = super::render_short_template();
    for name in super::OPERATOR_KEYS {
        assert!(
            keys::KEYS.iter().any(|k| k.name == *name),
            "{name} is not a key"
        );
        assert!(t.contains(&format!("#{name}=")), "{name}");
    }
    assert!(t.contains("/usr/share/doc/euraflow/euraflow.env.reference"));
    let uncommented: String = t
        .lines()
        .filter_map(|l| l.strip_prefix("#EF__").map(|rest| format!("EF__{rest}\n")))
        .collect();
    let (entries, errors) = env_file::parse(&uncommented);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(entries.len(), super::OPERATOR_KEYS.len());
    // Nothing is set by the file itself: every line is a comment or blank.
    assert!(t.lines().all(|l| l.is_empty() || l.starts_with('#')), "{t}");
}

#[test]
fn a_lone_local_postgresql_on_another_port_is_found_by_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sockets = dir.path().join("pg");
    std::fs::create_dir(&sockets).unwrap();
    std::fs::write(sockets.join(".s.PGSQL.5433"), "").unwrap();
    std::fs::write(sockets.join(".s.PGSQL.5433.lock"), "").unwrap();
    let host = sockets.to_str().unwrap();
    let loaded = load(&opts(
        dir.path(),
        &[("EF__SECRET_KEY", GOOD_SECRET), ("EF__DB_HOST", host)],
    ))
    .unwrap();
    assert_eq!(loaded.config.db.port, 5433);
    assert!(
        loaded
            .diagnostics
            .iter()
            .any(|d| d.message.contains("port 5433"))
    );
    // An explicit port is never second-guessed.
    let loaded = load(&opts(
        dir.path(),
        &[
            ("EF__SECRET_KEY", GOOD_SECRET),
            ("EF__DB_HOST", host),
            ("EF__DB_PORT", "5432"),
        ],
    ))
    .unwrap();
    assert_eq!(loaded.config.db.port, 5432);
    // Two clusters: ambiguous, the default stays.
    std::fs::write(sockets.join(".s.PGSQL.5434"), "").unwrap();
    let loaded = load(&opts(
        dir.path(),
        &[("EF__SECRET_KEY", GOOD_SECRET), ("EF__DB_HOST", host)],
    ))
    .unwrap();
    assert_eq!(loaded.config.db.port, 5432);
}

#[test]
fn worker_settings_have_defaults_and_queue_caps_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path(), &[("EF__SECRET_KEY", GOOD_SECRET)]);
    let c = load(&o).unwrap().config;
    use crate::queues::Queue;
    assert_eq!(
        c.worker.queue_limits,
        vec![
            (Queue::Pull, 4),
            (Queue::Push, 4),
            (Queue::Sync, 4),
            (Queue::Default, 4),
            (Queue::Low, 2)
        ]
    );
    assert_eq!(c.worker.lease, Duration::from_secs(60));
    assert_eq!(c.worker.shutdown_timeout, Duration::from_secs(60));
    assert_eq!(c.worker.job_retention_days, 14);
    assert_eq!(c.worker.backup_retention_days, 7);
    assert_eq!(
        c.worker.backup_dir,
        PathBuf::from("/var/lib/euraflow/backups")
    );
    assert!(c.worker.scheduler_enabled);

    let o = opts(
        dir.path(),
        &[
            ("EF__SECRET_KEY", GOOD_SECRET),
            ("EF__WORKER_QUEUES", "ef_pull=4,celery=2"),
            ("EF__JOB_LEASE_TIMEOUT", "1s"),
        ],
    );
    let errors = load(&o).unwrap_err().to_string();
    assert!(errors.contains("'celery' is not a job queue"), "{errors}");
    assert!(errors.contains("use one of ef_core, ef_pull"), "{errors}");
    assert!(errors.contains("EF__JOB_LEASE_TIMEOUT"), "{errors}");
    for bad in ["default=0", "default", "default=2,default=3"] {
        let o = opts(
            dir.path(),
            &[("EF__SECRET_KEY", GOOD_SECRET), ("EF__WORKER_QUEUES", bad)],
        );
        assert!(load(&o).is_err(), "{bad}");
    }
}
