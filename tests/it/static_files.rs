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

/// `ef_static_compressions_total{encoding}` of this server, as the metrics endpoint shows it.
fn compressions(srv: &TestServer, encoding: &str) -> u64 {
    let mut out = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &srv.state().metrics().registry().gather(),
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    let prefix = format!("ef_static_compressions_total{{encoding=\"{encoding}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
}

fn unbrotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut brotli::Decompressor::new(data, 4096), &mut out).unwrap();
    out
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(data), &mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_once_per_file_version() {
    let srv = TestServer::start(&[]).await;
    install_web_build(&srv.web_root());
    // The test client has no decompression feature: bodies arrive as sent.
    let c = srv.client();
    let url = srv.https_url("/assets/js/index-BXk3a9Fz.js");
    let original = "console.log('app');\n".repeat(200);
    assert_eq!(compressions(&srv, "br"), 0);
    let mut etags = Vec::new();
    for round in 0..3 {
        let r = c
            .get(&url)
            .header("accept-encoding", "gzip, br")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-encoding"], "br", "round {round}");
        assert!(
            r.headers()["vary"]
                .to_str()
                .unwrap()
                .to_ascii_lowercase()
                .contains("accept-encoding")
        );
        etags.push(r.headers()["etag"].to_str().unwrap().to_owned());
        let len: usize = r.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), len);
        assert_eq!(unbrotli(&body), original.as_bytes(), "round {round}");
        // Compressed on the first request only.
        assert_eq!(compressions(&srv, "br"), 1, "round {round}");
    }
    assert!(
        etags.iter().all(|e| e == &etags[0] && e.starts_with("W/")),
        "{etags:?}"
    );
    // The 304 for the compressed variant needs no compression either.
    let r = c
        .get(&url)
        .header("accept-encoding", "gzip, br")
        .header("if-none-match", &etags[0])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // gzip for a gzip-only client, also once; the validator differs from brotli's.
    for _ in 0..2 {
        let r = c
            .get(&url)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-encoding"], "gzip");
        assert_ne!(r.headers()["etag"].to_str().unwrap(), etags[0]);
        assert_eq!(gunzip(&r.bytes().await.unwrap()), original.as_bytes());
    }
    assert_eq!(compressions(&srv, "gzip"), 1);
    assert_eq!(compressions(&srv, "br"), 1);
    // HEAD carries the compressed length without compressing again.
    let r = c
        .head(&url)
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "br");
    assert_eq!(compressions(&srv, "br"), 1);

    // A new version of the file is compressed (once) again, and decodes to the new bytes.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let v2 = "console.log('version two');\n".repeat(300);
    write(
        &srv.web_root().join("assets/js/index-BXk3a9Fz.js"),
        v2.as_bytes(),
    );
    for _ in 0..2 {
        let r = c
            .get(&url)
            .header("accept-encoding", "br")
            .send()
            .await
            .unwrap();
        assert_ne!(r.headers()["etag"].to_str().unwrap(), etags[0]);
        assert_eq!(unbrotli(&r.bytes().await.unwrap()), v2.as_bytes());
    }
    assert_eq!(compressions(&srv, "br"), 2);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precompressed_siblings_are_served_as_they_are() {
    let srv = TestServer::start(&[]).await;
    install_web_build(&srv.web_root());
    // The test client has no decompression feature: bodies arrive as sent.
    let c = srv.client();
    let url = srv.https_url("/assets/js/vendor-Ab12Cd34.js");
    let original = "var precompressed = true;\n".repeat(100);
    for _ in 0..2 {
        let r = c
            .get(&url)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-encoding"], "gzip");
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.ends_with("-gz\""), "{etag}");
        let body = r.bytes().await.unwrap();
        // Exactly the sibling's bytes, which decode to the original.
        assert_eq!(
            body.as_ref(),
            std::fs::read(srv.web_root().join("assets/js/vendor-Ab12Cd34.js.gz")).unwrap()
        );
        assert_eq!(gunzip(&body), original.as_bytes());
    }
    // A sibling for a lower preference beats compressing for the higher one.
    std::fs::remove_file(srv.web_root().join("assets/js/vendor-Ab12Cd34.js.br")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = c
        .get(&url)
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(gunzip(&r.bytes().await.unwrap()), original.as_bytes());
    assert_eq!(compressions(&srv, "gzip"), 0);
    assert_eq!(compressions(&srv, "br"), 0);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_files_follow_the_disk_at_once() {
    let srv = TestServer::start(&[]).await;
    install_web_build(&srv.web_root());
    let c = srv.client();
    let get = |path: &'static str| {
        let c = c.clone();
        let url = srv.https_url(path);
        async move {
            let r = c
                .get(url)
                .header("accept", "text/html")
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/index.html").await, (200, INDEX.to_owned()));
    assert_eq!(get("/index.html").await, (200, INDEX.to_owned()));
    // Same length, new content: served new on the next request (no waiting for a TTL). The
    // pause: file times tick with the kernel's coarse clock, and a rewrite of the same length
    // within one tick has the same identity (as for nginx's open_file_cache).
    std::thread::sleep(std::time::Duration::from_millis(20));
    let same_len = INDEX.replace("EuraFlow", "FlowEura");
    assert_eq!(same_len.len(), INDEX.len());
    write(&srv.web_root().join("index.html"), same_len.as_bytes());
    assert_eq!(get("/index.html").await, (200, same_len.clone()));
    assert_eq!(get("/dashboard").await, (200, same_len.clone()));
    // Replaced by rename (how deploy tools write), longer.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let v3 = format!("{INDEX}<!-- v3 -->");
    write(&srv.web_root().join("index.html.tmp"), v3.as_bytes());
    std::fs::rename(
        srv.web_root().join("index.html.tmp"),
        srv.web_root().join("index.html"),
    )
    .unwrap();
    assert_eq!(get("/index.html").await, (200, v3));
    // A deleted file is a 404 at once.
    assert_eq!(get("/favicon.svg").await.0, 200);
    std::fs::remove_file(srv.web_root().join("favicon.svg")).unwrap();
    assert_eq!(get("/favicon.svg").await.0, 404);
    // A file replaced by a symlink that leaves the root is refused at once.
    assert_eq!(get("/data/categoryTree.json").await.0, 200);
    let outside = srv.dir.path().join("outside.json");
    std::fs::write(&outside, "TOP-SECRET").unwrap();
    std::fs::remove_file(srv.web_root().join("data/categoryTree.json")).unwrap();
    std::os::unix::fs::symlink(&outside, srv.web_root().join("data/categoryTree.json")).unwrap();
    let (status, body) = get("/data/categoryTree.json").await;
    assert_eq!(status, 404);
    assert!(!body.contains("TOP-SECRET"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_files_stream_intact_with_ranges() {
    use sha2::Digest;
    let srv = TestServer::start(&[]).await;
    // 5 MiB + a bit: above the in-memory limit, not a multiple of the chunk size.
    let data: Vec<u8> = (0..5 * 1024 * 1024 + 12_345u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(&srv.downloads_root().join("big.bin"), &data);
    let c = srv.client();
    let url = srv.https_url("/downloads/big.bin");
    for _ in 0..2 {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-length"],
            data.len().to_string().as_str()
        );
        let body = r.bytes().await.unwrap();
        assert_eq!(body.len(), data.len());
        assert_eq!(sha2::Sha256::digest(&body), sha2::Sha256::digest(&data));
    }
    // A range across chunk boundaries, and the tail.
    let (s, e) = (200_000usize, 900_000usize);
    let r = c
        .get(&url)
        .header("range", format!("bytes={s}-{e}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes {s}-{e}/{}", data.len()).as_str()
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[s..=e]);
    let r = c
        .get(&url)
        .header("range", "bytes=-1000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        &data[data.len() - 1000..]
    );
    // Rewritten: the next download is the new file, whole.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let data2: Vec<u8> = data.iter().rev().copied().collect();
    write(&srv.downloads_root().join("big.bin"), &data2);
    let body = c.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(sha2::Sha256::digest(&body), sha2::Sha256::digest(&data2));
    // A range of a small (in-memory) file still works too.
    install_web_build(&srv.web_root());
    let r = c
        .get(srv.https_url("/notice.mp3"))
        .header("range", "bytes=4-7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &[0xff, 0xfb, 0x90, 0x00]);
    srv.stop().await;
}

/// A download whose file is cut short on disk while it is being sent ends in an error the client
/// sees (the connection is closed short of `Content-Length`); it is never padded, never a
/// different file's bytes, and never a complete-looking response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_cut_short_while_it_is_sent_ends_the_download_with_an_error() {
    use futures_util::StreamExt;
    let srv = TestServer::start(&[]).await;
    // Far more than the socket buffers and the chunks read ahead hold: most of it is still to
    // be read from the disk when the file is cut.
    let len = 64 * 1024 * 1024usize;
    let data: Vec<u8> = (0..len as u32).map(|i| (i % 251) as u8).collect();
    let path = srv.downloads_root().join("shrinking.bin");
    write(&path, &data);
    let r = srv
        .client()
        .get(srv.https_url("/downloads/shrinking.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], len.to_string().as_str());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1024 * 1024)
        .unwrap();
    let mut body = r.bytes_stream();
    let mut received = 0usize;
    let mut failed = false;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => {
                assert_eq!(
                    c.as_ref(),
                    &data[received..received + c.len()],
                    "only the file's own bytes, in order"
                );
                received += c.len();
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(
        failed && received < len,
        "the cut download must fail short ({received} of {len} bytes, failed: {failed})"
    );
    srv.stop().await;
}
