//! No default password: the first admin's random password is written to a private file by
//! `euraflow migrate`; `euraflow user ...` manages accounts from the machine.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::{self, TestDb, TestServer, as_refs, login, production_env};

/// The server and the CLI must share a Redis prefix, as they share the configuration file.
fn prefix(state: &std::path::Path) -> String {
    format!("test:{}:", state.file_name().unwrap().to_string_lossy())
}

fn cli(
    db: &TestDb,
    state: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> (i32, String, String) {
    let mut env = production_env(state);
    env.extend(db.env());
    env.push(("EF__REDIS_PREFIX".into(), prefix(state)));
    let mut child = Command::new(common::BIN)
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_first_admin_with_a_private_random_password() {
    let db = TestDb::create().await;
    let state = tempfile::tempdir().unwrap();
    let (code, out, err) = cli(&db, state.path(), &["migrate"], None);
    assert_eq!(code, 0, "{out}\n{err}");
    let file = state.path().join("initial-admin-password");
    assert!(out.contains(&file.display().to_string()), "{out}");
    // Said once (the install printed it twice: a log line and the command's own output).
    assert_eq!(
        format!("{out}{err}")
            .matches("created the first admin")
            .count(),
        1,
        "{out}\n{err}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(password.len() >= 20);
    assert!(
        !out.contains(&password) && !err.contains(&password),
        "the password was printed"
    );

    let srv = TestServer::start(&as_refs(&db.env())).await;
    let (status, body) = login(&srv, "admin", &password).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["role"], "admin");
    assert_eq!(
        body["user"]["shop_ids"],
        serde_json::json!([]),
        "a new admin has no linked shops (and the list is never null: the web app's modal)"
    );
    assert_eq!(
        login(&srv, "admin", "admin123").await.0,
        401,
        "no default password"
    );

    // Again: nothing new, the file is untouched.
    let (code, out, _) = cli(&db, state.path(), &["migrate"], None);
    assert_eq!(code, 0);
    assert!(!out.contains("created the first admin"), "{out}");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_commands_create_reset_list_and_disable() {
    let db = TestDb::migrated().await;
    let state = tempfile::tempdir().unwrap();
    let (code, out, err) = cli(
        &db,
        state.path(),
        &["user", "create", "--role", "admin", "opsadmin"],
        Some("first-password\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created user opsadmin"), "{out}");
    let (code, _, err) = cli(
        &db,
        state.path(),
        &["user", "create", "--role", "main_account", "shopowner"],
        Some("short\n"),
    );
    assert_eq!(code, 1);
    assert!(err.contains("at least 8"), "{err}");
    let (code, _, _) = cli(
        &db,
        state.path(),
        &["user", "create", "--role", "main_account", "shopowner"],
        Some("owner-password\n"),
    );
    assert_eq!(code, 0);
    // A sub-account needs its main account, named by --parent.
    let (code, _, err) = cli(
        &db,
        state.path(),
        &["user", "create", "--role", "sub_account", "helper"],
        Some("helper-password\n"),
    );
    assert_eq!(code, 1);
    assert!(err.contains("--parent"), "{err}");
    let (code, _, err) = cli(
        &db,
        state.path(),
        &[
            "user",
            "create",
            "--role",
            "sub_account",
            "--parent",
            "opsadmin",
            "helper",
        ],
        Some("helper-password\n"),
    );
    assert_eq!(code, 1);
    assert!(err.contains("must be a main account"), "{err}");
    let (code, out, err) = cli(
        &db,
        state.path(),
        &[
            "user",
            "create",
            "--role",
            "sub_account",
            "--parent",
            "shopowner",
            "helper",
        ],
        Some("helper-password\n"),
    );
    assert_eq!(code, 0, "{out}{err}");
    let parent: Option<String> = db
        .client()
        .await
        .query_one(
            "SELECT p.username FROM users u JOIN users p ON p.id = u.parent_user_id WHERE u.username = 'helper'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(parent.as_deref(), Some("shopowner"));

    let mut env = db.env();
    env.push(("EF__REDIS_PREFIX".into(), prefix(state.path())));
    let srv = TestServer::start(&as_refs(&env)).await;
    let (access, _) = common::tokens(&srv, "opsadmin", "first-password").await;
    let (code, out, _) = cli(
        &db,
        state.path(),
        &["user", "passwd", "opsadmin"],
        Some("second-password\n"),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 session(s) ended"), "{out}");
    assert_eq!(
        common::call(&srv, reqwest::Method::GET, "/auth/me", &access, None)
            .await
            .0,
        401
    );
    assert_eq!(login(&srv, "opsadmin", "first-password").await.0, 401);
    assert_eq!(login(&srv, "opsadmin", "second-password").await.0, 200);

    let (code, out, _) = cli(&db, state.path(), &["user", "list"], None);
    assert_eq!(code, 0);
    assert!(
        out.contains("opsadmin") && out.contains("shopowner") && out.contains("main_account"),
        "{out}"
    );

    let (code, _, _) = cli(&db, state.path(), &["user", "disable", "opsadmin"], None);
    assert_eq!(code, 0);
    let (status, body) = login(&srv, "opsadmin", "second-password").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(common::code(&body), "USER_INACTIVE");
    let (code, _, err) = cli(
        &db,
        state.path(),
        &["user", "passwd", "nobody"],
        Some("whatever-password\n"),
    );
    assert_eq!(code, 1);
    assert!(err.contains("no user named nobody"), "{err}");

    // Each change made from the machine is in the audit log, attributed to the CLI and its user.
    let rows = db
        .client()
        .await
        .query(
            "SELECT a.action, a.username, u.username FROM audit_logs a
               JOIN users u ON u.id = a.record_id::bigint
              WHERE a.username LIKE 'cli:%' ORDER BY a.id",
            &[],
        )
        .await
        .unwrap();
    let actions: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(2)))
        .collect();
    assert_eq!(
        actions,
        [
            ("create".to_owned(), "opsadmin".to_owned()),
            ("create".to_owned(), "shopowner".to_owned()),
            ("create".to_owned(), "helper".to_owned()),
            ("reset_password".to_owned(), "opsadmin".to_owned()),
            ("update".to_owned(), "opsadmin".to_owned()),
        ]
    );
    let me = euraflow::config::current_username();
    assert!(
        rows.iter()
            .all(|r| r.get::<_, String>(1) == format!("cli:{me}"))
    );
    srv.stop().await;
}

/// The README's development command on a fresh checkout: `serve --dev` creates the database,
/// applies the migrations and creates the first admin with a password only in a private file,
/// and that password logs in. The real binary, as a developer runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_dev_creates_the_database_and_the_first_admin_and_runs_jobs() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    // A name nobody created: the server must. Dropped at the end like any test database.
    let db = TestDb {
        name: format!("ef_test_{}", uuid::Uuid::new_v4().simple()),
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.env"), "").unwrap();
    let mut env = common::isolated_env();
    env.retain(|(k, _)| k != "EF__DB_NAME");
    env.extend(db.env());
    env.extend([
        ("EF__HTTPS_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("EF__API_PORT".to_owned(), "0".to_owned()),
        (
            "EF__CONFIG_FILE".to_owned(),
            dir.path().join("empty.env").display().to_string(),
        ),
    ]);
    let mut p = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || common::Process::spawn(&dir, &["serve", "--dev"], &as_refs(&env))
    })
    .await
    .unwrap();

    let state = dir.path().join(".euraflow-dev");
    let pw_file = state.join("initial-admin-password");
    let meta = std::fs::metadata(&pw_file).expect("the first admin's password file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let password = std::fs::read_to_string(&pw_file).unwrap().trim().to_owned();
    assert!(password.len() >= 16, "a random password");
    let log = p.log_text();
    assert!(
        log.contains(&pw_file.display().to_string()),
        "the path is logged"
    );
    assert!(!log.contains(&password), "the password is never logged");

    let ca = std::fs::read(state.join("tls/selfsigned.crt")).unwrap();
    let client = common::client_for(&ca, p.https.unwrap(), common::Protocol::Any);
    let r = client
        .post(format!(
            "https://localhost:{}/api/ef/v1/auth/login",
            p.https.unwrap().port()
        ))
        .json(&serde_json::json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["user"]["role"], "admin");

    // `serve --dev` runs the worker and the scheduler too: a triggered job runs, with no
    // `euraflow worker` started.
    let c = db.client().await;
    let health_id: i32 = c
        .query_one(
            "SELECT id FROM sync_services WHERE celery_task_name = 'ef.core.system_health_check'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let triggered =
        euraflow::jobs::admin::trigger_service(&c, &euraflow::jobs::builtin_registry(), health_id)
            .await
            .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let state: String = c
            .query_one("SELECT state FROM jobs WHERE id = $1", &[&triggered.job_id])
            .await
            .unwrap()
            .get(0);
        if state == "succeeded" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dev server did not run the job (state {state}):\n{}",
            p.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let beats: i64 = c
        .query_one(
            "SELECT count(*) FROM service_heartbeats WHERE kind = 'worker' AND pid = $1",
            &[&(p.child.id() as i32)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(beats, 1, "the dev server's worker beats");

    p.signal(rustix::process::Signal::TERM);
    assert_eq!(p.wait_exit(Duration::from_secs(10)).code(), Some(0));
}
