//! The web root and /downloads: SPA navigation fallback, real 404s for assets, cache policy,
//! revalidation, ranges, precompressed and on-the-fly compression, MIME types, and every way of
//! trying to leave the root.

use std::io::Write;
use std::path::Path;

use crate::common::{TestServer, raw_get, status_of};

const INDEX: &str = "<!doctype html><html><head><title>EuraFlow</title></head><body><div id=root></div></body></html>";

fn write(path: &Path, contents: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A web build shaped like the real one (index.html, hashed assets, data, root files).
fn install_web_build(root: &Path) {
    write(&root.join("index.html"), INDEX.as_bytes());
    let js = "console.log('app');\n".repeat(200);
    write(&root.join("assets/js/index-BXk3a9Fz.js"), js.as_bytes());
    // Vite's hashes are URL-safe base64 and may hold `-` and `_` (15 of the real build's 151).
    write(
        &root.join("assets/css/index-Du-UEXJq.css"),
        "a{color:red}\n".repeat(50).as_bytes(),
    );
    write(&root.join("assets/js/OrderList-B_kz-3Qm.js"), js.as_bytes());
    write(
        &root.join("assets/css/index-Dq81LmZp.css"),
        "body{margin:0}\n".repeat(100).as_bytes(),
    );
    write(
        &root.join("data/categoryTree.json"),
        format!("[{}]", "{\"id\":1},".repeat(500) + "{}").as_bytes(),
    );
    write(
        &root.join("favicon.svg"),
        b"<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>",
    );
    write(
        &root.join("notice.mp3"),
        &[0xffu8, 0xfb, 0x90, 0x00].repeat(100),
    );
    // A precompressed sibling whose content is recognisably different from on-the-fly output.
    let bundle = "var precompressed = true;\n".repeat(100);
    write(
        &root.join("assets/js/vendor-Ab12Cd34.js"),
        bundle.as_bytes(),
    );
    write(
        &root.join("assets/js/vendor-Ab12Cd34.js.gz"),
        &gzip(bundle.as_bytes()),
    );
    write(
        &root.join("assets/js/vendor-Ab12Cd34.js.br"),
        b"BROTLI-PRECOMPRESSED-MARKER",
    );
    write(&root.join(".env"), b"EF__SECRET_KEY=leak");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn navigations_get_index_html_and_missing_assets_get_404() {
    let srv = TestServer::start(&[]).await;
    install_web_build(&srv.web_root());
    let c = srv.client();
    for path in ["/", "/login", "/dashboard/orders/123"] {
        let r = c
            .get(srv.https_url(path))
            .header("accept", "text/html,application/xhtml+xml")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-cache", "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert_eq!(r.text().await.unwrap(), INDEX, "{path}");
    }
    // Not navigations: an asset, a script fetch without text/html, a POST.
    let r = c
        .get(srv.https_url("/assets/js/missing-AAAAAAAA.js"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .get(srv.https_url("/login"))
        .header("accept", "*/*")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .post(srv.https_url("/login"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    // /downloads never falls back to the app.
    let r = c
        .get(srv.https_url("/downloads/nothing-here"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_policy_by_file_kind() {
    let srv = TestServer::start(&[]).await;
    install_web_build(&srv.web_root());
    write(
        &srv.downloads_root().join("extension-1.2.zip"),
        b"PK\x03\x04 zip bytes",
    );
    let c = srv.client();
    let cc = |r: &reqwest::Response| r.headers()["cache-control"].to_str().unwrap().to_owned();
    let r = c
        .get(srv.https_url("/assets/js/index-BXk3a9Fz.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(cc(&r), "public, max-age=31536000, immutable");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    for hashed in [
        "/assets/css/index-Du-UEXJq.css",
        "/assets/js/OrderList-B_kz-3Qm.js",
    ] {
        let r = c.get(srv.https_url(hashed)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{hashed}");
        assert_eq!(cc(&r), "public, max-age=31536000, immutable", "{hashed}");
    }
    // Directories are neither listed nor the app's shell, even for a browser navigation.
    for dir in ["/assets", "/assets/", "/assets/js/", "/data"] {
        let r = c
            .get(srv.https_url(dir))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{dir}");
    }
    let r = c.get(srv.https_url("/index.html")).send().await.unwrap();
    assert_eq!(cc(&r), "no-cache");
    let r = c
        .get(srv.https_url("/data/categoryTree.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(cc(&r), "public, max-age=86400");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let r = c.get(srv.https_url("/favicon.svg")).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    let r = c.get(srv.https_url("/notice.mp3")).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "audio/mpeg");
    let r = c
        .get(srv.https_url("/downloads/extension-1.2.zip"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(cc(&r), "public, max-age=3600");
    assert_eq!(r.headers()["content-type"], "application/zip");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"PK\x03\x04 zip bytes");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etag_and_last_modified_revalidate_to_304() {
    let srv = TestServer::start(&[]).await;
    install_web_build(&srv.web_root());
    let c = srv.client();
    let url = srv.https_url("/notice.mp3");
    let r = c.get(&url).send().await.unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let lm = r.headers()["last-modified"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"'),
        "binary files get a strong ETag: {etag}"
    );
    let r = c
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = c
        .get(&url)
        .header("if-modified-since", &lm)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = c
        .get(&url)
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A changed file gets a new validator.
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(
        &srv.web_root().join("notice.mp3"),
        b"new content, other length",
    );
    let r = c
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);

    // Text compressed on the fly carries a weak ETag, which still revalidates.
    let r = c
        .get(srv.https_url("/assets/css/index-Dq81LmZp.css"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    let weak = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(weak.starts_with("W/"), "{weak}");
    let r = c
        .get(srv.https_url("/assets/css/index-Dq81LmZp.css"))
        .header("accept-encoding", "gzip")
        .header("if-none-match", &weak)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_ranges() {
    let srv = TestServer::start(&[]).await;
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    write(&srv.downloads_root().join("pkg.bin"), &data);
    let c = srv.client();
    let url = srv.https_url("/downloads/pkg.bin");
    let r = c
        .get(&url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 100-199/10000");
    assert_eq!(r.headers()["content-length"], "100");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[100..200]);
    let r = c
        .get(&url)
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[9990..]);
    let r = c
        .get(&url)
        .header("range", "bytes=20000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */10000");
    // If-Range with a stale validator: the whole (new) file.
    let r = c
        .get(&url)
        .header("range", "bytes=0-9")
        .header("if-range", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 10_000);
    let etag = c.head(&url).send().await.unwrap().headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let r = c
        .get(&url)
        .header("range", "bytes=0-9")
        .header("if-range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precompressed_siblings_and_on_the_fly_compression() {
    let srv = TestServer::start(&[]).await;
    install_web_build(&srv.web_root());
    // Raw requests so the client does not decode the body for us.
    let js = "/assets/js/vendor-Ab12Cd34.js";
    let br = raw_get(srv.http, js, "Accept-Encoding: gzip, br\r\n");
    assert_eq!(status_of(&br), 200);
    let lower = br.to_ascii_lowercase();
    assert!(lower.contains("content-encoding: br"), "{br}");
    assert!(lower.contains("vary: accept-encoding"), "{br}");
    assert!(br.ends_with("BROTLI-PRECOMPRESSED-MARKER"), "{br}");
    let gz = raw_get(srv.http, js, "Accept-Encoding: gzip\r\n");
    assert!(gz.to_ascii_lowercase().contains("content-encoding: gzip"));
    let plain = raw_get(srv.http, js, "");
    assert!(!plain.to_ascii_lowercase().contains("content-encoding"));
    assert!(plain.contains("var precompressed = true;"));

    // No sibling: gzip on the fly for text, never for already-compressed media.
    let c = srv.client();
    let r = c
        .get(srv.https_url("/assets/js/index-BXk3a9Fz.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert!(
        r.headers()["vary"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("accept-encoding")
    );
    let body = r.bytes().await.unwrap();
    let mut decoded = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(body.as_ref()),
        &mut decoded,
    )
    .unwrap();
    assert_eq!(decoded, "console.log('app');\n".repeat(200));
    let r = c
        .get(srv.https_url("/notice.mp3"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    // API JSON is compressed too when large enough; small answers are not worth it.
    let r = c
        .get(srv.https_url("/api/ef/v1/system/info"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_dotfiles_and_symlinks_never_leave_the_root() {
    let srv = TestServer::start(&[]).await;
    install_web_build(&srv.web_root());
    let outside = srv.dir.path().join("outside-secret.txt");
    std::fs::write(&outside, "TOP-SECRET").unwrap();
    std::os::unix::fs::symlink(&outside, srv.web_root().join("link.txt")).unwrap();
    std::os::unix::fs::symlink(srv.dir.path(), srv.downloads_root().join("escape")).ok();
    std::fs::create_dir_all(srv.downloads_root()).unwrap();
    std::os::unix::fs::symlink(srv.dir.path(), srv.downloads_root().join("escape")).ok();
    // A symlink that stays inside the root is fine.
    std::os::unix::fs::symlink(
        srv.web_root().join("favicon.svg"),
        srv.web_root().join("icon.svg"),
    )
    .unwrap();

    let attempts = [
        "/../outside-secret.txt",
        "/..%2foutside-secret.txt",
        "/%2e%2e/outside-secret.txt",
        "/%2E%2E%2Foutside-secret.txt",
        "/assets/..%5c..%5coutside-secret.txt",
        "/assets/%5c..%5c..%5coutside-secret.txt",
        "/..\\outside-secret.txt",
        "/link.txt",
        "/.env",
        "/%2eenv",
        "/downloads/../outside-secret.txt",
        "/downloads/%2e%2e/outside-secret.txt",
        "/downloads/escape/outside-secret.txt",
        "/downloads/..%2f..%2foutside-secret.txt",
        "//etc/passwd",
        "/%00/etc/passwd",
    ];
    for path in attempts {
        for (accept, tls) in [
            ("", false),
            ("Accept: text/html\r\n", false),
            ("", true),
            ("Accept: text/html\r\n", true),
        ] {
            let resp = if tls {
                srv.raw_https(&format!(
                    "GET {path} HTTP/1.1\r\nHost: localhost\r\n{accept}Connection: close\r\n\r\n"
                ))
            } else {
                raw_get(srv.http, path, accept)
            };
            let status = status_of(&resp);
            assert!(!resp.contains("TOP-SECRET"), "{path} leaked: {resp}");
            assert!(!resp.contains("EF__SECRET_KEY=leak"), "{path} leaked .env");
            assert!(!resp.contains("root:x:0:0"), "{path} leaked /etc/passwd");
            assert!(
                status == 400 || status == 404 || (status == 200 && resp.contains("<div id=root>")),
                "{path} ({accept:?}, TLS: {tls}) -> {status}: {resp}"
            );
        }
    }
    let ok = raw_get(srv.http, "/icon.svg", "");
    assert_eq!(status_of(&ok), 200);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_web_build_the_root_explains_itself() {
    let srv = TestServer::start(&[]).await;
    let r = srv.client().get(srv.https_url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert!(body.contains("EuraFlow server"), "{body}");
    assert!(
        body.contains(&srv.web_root().display().to_string()),
        "{body}"
    );
    // Installing the build needs no restart.
    install_web_build(&srv.web_root());
    let r = srv.client().get(srv.https_url("/")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), INDEX);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_requests_carry_headers_without_body() {
    let srv = TestServer::start(&[]).await;
    install_web_build(&srv.web_root());
    let r = srv
        .client()
        .head(srv.https_url("/notice.mp3"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "400");
    assert!(r.bytes().await.unwrap().is_empty());
    srv.stop().await;
}
