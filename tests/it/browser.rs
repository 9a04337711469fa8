//! A real browser (headless Chromium) against the real server over TLS: the web build's deep link,
//! its module script and stylesheet, and the login flow the operators' web app runs, with a user
//! imported from the original system (a Python bcrypt hash). The page is `tests/fixtures/web-app`,
//! which makes the app's calls the app's way; what it saw is read back from the DOM.
//!
//! Chromium is installed by `scripts/ensure-services` (part of the README's test command).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{TestDb, TestServer, as_refs, hash, insert_user};
use euraflow::ozon::fake::{FakeConfig, FakeOzon};

/// The same fixture as tests/it/identity.rs: made with Python's bcrypt as the original did.
const PY_USER: (&str, &str, &str) = (
    "legacy",
    "EuraFlow-pass-2025",
    "$2b$12$wogTz4VFiwKv4AlnYzBwzehangBN0j7GguuEJdYNwb1lG8DmCJSxu",
);

fn chromium() -> String {
    let path = std::env::var("EF_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&path).exists(),
        "{path} is missing: install Chromium (scripts/ensure-services does: apt-get install chromium) or set EF_TEST_CHROMIUM"
    );
    path
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Load `url` in headless Chromium and return the DOM once the page's scripts settled.
fn browse(url: &str, profile: &Path) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            // The server's self-signed certificate; the test is about what the page can do.
            "--ignore-certificate-errors",
            // Virtual time does not advance while fetches are in flight: the DOM is dumped after
            // the whole login flow, however long the server takes (bounded by the test's timeout).
            "--virtual-time-budget=30000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of `<pre id="result">` in a dumped DOM, one step per line.
fn result_lines(dom: &str) -> Vec<String> {
    let start = dom
        .find("<pre id=\"result\">")
        .map(|i| i + "<pre id=\"result\">".len())
        .unwrap_or_else(|| panic!("no #result in the page:\n{dom}"));
    let end = dom[start..].find("</pre>").map(|i| start + i).unwrap();
    dom[start..end]
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Run the page at `path_and_query` of `srv` in Chromium and return its #result lines.
async fn run_page(srv: &TestServer, path_and_query: &str) -> Vec<String> {
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/web-app"),
        &srv.web_root(),
    );
    let profile = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{}{path_and_query}", srv.https.port());
    let dom = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::task::spawn_blocking({
            let profile = profile.path().to_path_buf();
            move || browse(&url, &profile)
        }),
    )
    .await
    .expect("the browser finished within 90 s")
    .unwrap();
    result_lines(&dom)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_adds_an_ozon_shop_from_the_shop_page_in_a_real_browser() {
    let db = TestDb::migrated().await;
    insert_user(&db, PY_USER.0, "main_account", None, PY_USER.2).await;
    let fake = FakeOzon::start(FakeConfig {
        shops: 1,
        products: 3,
        postings: 0,
        call_log_capacity: 100,
    })
    .await
    .unwrap();
    let mut env = db.env();
    env.push(("EF__OZON_API_BASE_URL".into(), fake.base_url()));
    let srv = TestServer::start(&as_refs(&env)).await;
    let c = fake.handle().credentials(0);
    let lines = run_page(
        &srv,
        &format!(
            "/dashboard/shops?flow=shop&u={}&p={}&client_id={}&api_key={}",
            PY_USER.0,
            PY_USER.1,
            c.client_id,
            c.api_key.expose()
        ),
    )
    .await;
    let expected = [
        "shops before []",
        // The key is never sent back, only its mask.
        "shop created 200 key ******",
        "shop test-connection 200 true",
        "shops listed 浏览器店铺 ******",
        "me shops [true]",
        "done",
    ];
    assert_eq!(lines, expected, "the page saw:\n{}", lines.join("\n"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_clones_a_seller_and_restores_in_a_real_browser() {
    let db = TestDb::migrated().await;
    let seller = insert_user(&db, PY_USER.0, "main_account", None, PY_USER.2).await;
    insert_user(&db, "root", "admin", None, &hash("browser-admin-password")).await;
    let srv = TestServer::start(&as_refs(&db.env())).await;
    let lines = run_page(
        &srv,
        &format!("/dashboard/users?flow=clone&u=root&p=browser-admin-password&target={seller}"),
    )
    .await;
    let expected = [
        "clone 200 as legacy by root",
        "me as clone legacy main_account",
        "clone shops []",
        // 30 minutes, counting down.
        "clone status true true",
        "clone on permissions 403 CLONE_RESTRICTED",
        "restore 200 root",
        "me after restore root admin",
        "done",
    ];
    assert_eq!(lines, expected, "the page saw:\n{}", lines.join("\n"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_app_loads_from_a_deep_link_and_logs_in_in_a_real_browser() {
    let db = TestDb::migrated().await;
    insert_user(&db, PY_USER.0, "main_account", None, PY_USER.2).await;
    let srv = TestServer::start(&as_refs(&db.env())).await;
    let lines = run_page(&srv, &format!("/login?u={}&p={}", PY_USER.0, PY_USER.1)).await;
    let expected = [
        // Deep link → index.html, over HTTP/2 (ALPN) through rustls.
        "page /login over h2",
        // The hashed stylesheet was served as text/css and applied.
        "style rgb(1, 2, 3)",
        "captcha 200 string data:image/png;",
        "login 200 bearer legacy",
        "token exp in future true, role main_account",
        "me 200 legacy main_account shops [] settings object",
        "refresh 200 new pair true",
        "me after refresh 200",
        // After login the page's websocket is open; a second login elsewhere reaches it through
        // the realtime fan-out, then the close the web app takes as "log out".
        "ws connected as me true",
        "ws session_expired session_replaced",
        "ws closed 4001",
        "missing asset 404",
        "headers nosniff SAMEORIGIN",
        // 204 as the original; the revoked token is refused from then on.
        "logout 204",
        "me after logout 401 INVALID_TOKEN",
        "done",
    ];
    assert_eq!(lines, expected, "the page saw:\n{}", lines.join("\n"));
    srv.stop().await;
}
