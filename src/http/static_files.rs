//! The web app build at `/` and the files at `/downloads`, served the way the guide's nginx did
//! and better: `index.html` only for page navigations (a missing asset is a real 404), cache
//! lifetimes by file kind, ETag / Last-Modified revalidation, byte ranges, precompressed `.br` /
//! `.gz` siblings, and no way out of the root (`..`, encoded separators, dotfiles, symlinks).
//!
//! Small files are answered from memory after one `stat` (no blocking thread per request),
//! large ones streamed in big chunks, and a compressible file without a precompressed sibling is
//! compressed once per version and kept (see `static_cache`): the generic compression layer
//! never sees these responses again ([`compression::AlreadyEncoded`]).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Uri};
use percent_encoding::percent_decode_str;

use crate::http::middleware::compression;
use crate::http::static_cache::{
    self, COMPRESS_SOURCE_MAX, CachedFile, Encoding, FileId, SMALL_FILE_MAX, Sibling, StaticCache,
};
use crate::state::AppState;

/// Hashed build assets never change under the same name.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `index.html` must be revalidated, or a browser keeps running the previous deploy's app.
const NO_CACHE: &str = "no-cache";
/// Large files go out in chunks this big: few blocking reads per file, bounded memory.
const STREAM_CHUNK: usize = 256 * 1024;

/// Why a path was not served.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// Malformed or hostile: `..`, encoded `/` or `\`, NUL, invalid UTF-8.
    BadPath,
    /// Not there, a dotfile, or outside the root.
    NotFound,
    /// A directory: never listed, and not a page of the app either (`/assets/` is a 404).
    Directory,
}

/// `GET /downloads/...`
pub async fn downloads(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let web = &state.config().web;
    if !matches!(method, Method::GET | Method::HEAD) {
        return plain_status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let rel = uri.path().strip_prefix("/downloads").unwrap_or_default();
    let cache = format!("public, max-age={}", web.downloads_cache_max_age.as_secs());
    let files = state.static_files();
    match serve_path(files, &web.downloads_root, rel, &method, &headers, |_| {
        cache.clone()
    })
    .await
    {
        Ok(resp) => resp,
        Err(Refusal::BadPath) => plain_status(StatusCode::BAD_REQUEST),
        Err(Refusal::NotFound | Refusal::Directory) => plain_status(StatusCode::NOT_FOUND),
    }
}

/// Everything not matched by the API or `/downloads`: the single-page app.
pub async fn web_app(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let web = &state.config().web;
    if !matches!(method, Method::GET | Method::HEAD) {
        return plain_status(StatusCode::METHOD_NOT_ALLOWED);
    }
    let path = uri.path();
    let day = web.web_cache_max_age.as_secs();
    let cache_for = move |p: &Path| cache_rule(p, day);
    let files = state.static_files();
    if path != "/" {
        match serve_path(files, &web.web_root, path, &method, &headers, cache_for).await {
            Ok(resp) => return resp,
            Err(Refusal::BadPath) => return plain_status(StatusCode::BAD_REQUEST),
            Err(Refusal::Directory) => return plain_status(StatusCode::NOT_FOUND),
            Err(Refusal::NotFound) if !is_navigation(&method, path, &headers) => {
                return plain_status(StatusCode::NOT_FOUND);
            }
            Err(Refusal::NotFound) => {}
        }
    }
    // `/` and page navigations (deep links such as /dashboard/orders) get the app's shell.
    match serve_path(
        files,
        &web.web_root,
        "/index.html",
        &method,
        &headers,
        cache_for,
    )
    .await
    {
        Ok(resp) => resp,
        Err(_) => no_web_build_page(&web.web_root, method == Method::HEAD),
    }
}

/// A page navigation is what a browser sends when the user opens a URL: GET/HEAD, accepting
/// HTML, for a path without a file extension. A script or image request for a missing file is
/// not one, and gets 404 instead of the app's HTML (which would fail as JavaScript in confusing ways).
fn is_navigation(method: &Method, path: &str, headers: &HeaderMap) -> bool {
    let accepts_html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"));
    let last = path.rsplit('/').next().unwrap_or_default();
    accepts_html
        && matches!(*method, Method::GET | Method::HEAD)
        && !last.contains('.')
        && !path.starts_with("/api/")
        && path != "/api"
        && !path.starts_with("/downloads")
}

fn cache_rule(path: &Path, default_max_age: u64) -> String {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name == "index.html" {
        return NO_CACHE.to_owned();
    }
    let in_assets = path
        .components()
        .any(|c| matches!(c, Component::Normal(s) if s == "assets"));
    if in_assets && has_content_hash(name) {
        return IMMUTABLE.to_owned();
    }
    format!("public, max-age={default_max_age}")
}

/// Build tools name assets `name-<hash>.ext` (Vite/Rollup: `[name]-[hash]`, 8 characters of
/// URL-safe base64, so the hash itself may contain `-` and `_`: `index-Du-UEXJq.css`) or
/// `name.<hash>.ext` (webpack). A hash has a digit or an upper-case letter, which tells it from a
/// word (`category-tree.json`); an all-lower-case hash only gets the shorter cache, never a wrong one.
fn has_content_hash(file_name: &str) -> bool {
    fn looks_like_hash(h: &str) -> bool {
        h.len() >= 8
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && h.bytes()
                .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    }
    // `[name]-[hash]`: the last 8 characters of the stem, after a `-`. The stem ends at the first
    // dot (`x-HASH.js.map`) or the last (`vendor.react-HASH.js`).
    let vite = |stem: &str| {
        let n = stem.len();
        n > 9
            && stem.is_char_boundary(n - 8)
            && stem.as_bytes()[n - 9] == b'-'
            && looks_like_hash(&stem[n - 8..])
    };
    let first_stem = file_name.split_once('.').map_or(file_name, |(s, _)| s);
    let last_stem = file_name.rsplit_once('.').map_or(file_name, |(s, _)| s);
    let webpack = file_name.matches('.').count() >= 2
        && file_name.split('.').nth(1).is_some_and(looks_like_hash);
    vite(first_stem) || vite(last_stem) || webpack
}

/// Turn the URL path into a path below `root`, refusing anything that could leave it.
fn resolve_relative(url_path: &str) -> Result<PathBuf, Refusal> {
    let mut rel = PathBuf::new();
    for (i, raw) in url_path.split('/').enumerate() {
        if raw.is_empty() {
            continue;
        }
        let decoded = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| Refusal::BadPath)?;
        if decoded.contains(['/', '\\', '\0']) || decoded == ".." {
            return Err(Refusal::BadPath);
        }
        if decoded == "." {
            continue;
        }
        // Dotfiles (.env, .git, .htpasswd) are never served; .well-known at the top is standard.
        if decoded.starts_with('.') && !(i == 1 && decoded == ".well-known") {
            return Err(Refusal::NotFound);
        }
        rel.push(decoded.as_ref());
    }
    Ok(rel)
}

/// The canonical path of `requested` and its metadata, only if it stays inside `root` and is a
/// regular file (blocking: run on a blocking thread).
fn locate_blocking(
    root: &Path,
    requested: &Path,
    url_path: &str,
) -> Result<(PathBuf, std::fs::Metadata), Refusal> {
    let root = std::fs::canonicalize(root).map_err(|_| Refusal::NotFound)?;
    let real = std::fs::canonicalize(requested).map_err(|_| Refusal::NotFound)?;
    if !real.starts_with(&root) {
        tracing::warn!(path = %url_path, "refused a path that resolves outside its root");
        return Err(Refusal::NotFound);
    }
    let meta = std::fs::metadata(&real).map_err(|_| Refusal::NotFound)?;
    if meta.is_dir() {
        return Err(Refusal::Directory);
    }
    if !meta.is_file() {
        return Err(Refusal::NotFound);
    }
    Ok((real, meta))
}

fn content_type_of(path: &Path) -> String {
    mime_guess::from_path(path)
        .first_raw()
        .map(|m| {
            if m.starts_with("text/") || m == "application/javascript" || m == "application/json" {
                format!("{m}; charset=utf-8")
            } else {
                m.to_owned()
            }
        })
        .unwrap_or_else(|| "application/octet-stream".to_owned())
}

/// The bytes of a small file, reusing what the previous entry held when the version is the same.
fn small_body(real: &Path, id: FileId, reuse: Option<(FileId, &Option<Bytes>)>) -> Option<Bytes> {
    if id.size() > SMALL_FILE_MAX {
        return None;
    }
    if let Some((old_id, Some(old))) = reuse
        && old_id == id
    {
        return Some(old.clone());
    }
    // Unreadable or changed while read: stream it instead (the stream checks the version too).
    static_cache::read_version(real, id).ok()
}

/// Resolve `requested` in full: symlinks, the root check, the type, the bytes of a small file
/// and its precompressed siblings (blocking).
fn load_blocking(
    root: &Path,
    requested: &Path,
    url_path: &str,
    previous: Option<Arc<CachedFile>>,
) -> Result<CachedFile, Refusal> {
    let (real, meta) = locate_blocking(root, requested, url_path)?;
    let id = FileId::of(&meta);
    let content_type = content_type_of(&real);
    let compressible = compression::is_compressible(&content_type);
    let prev = previous.as_deref();
    let body = small_body(&real, id, prev.map(|p| (p.id, &p.body)));
    let mut siblings = Vec::new();
    if compressible {
        for encoding in Encoding::ALL {
            let mut name = requested.as_os_str().to_owned();
            name.push(encoding.suffix());
            let sibling_url = format!("{url_path}{}", encoding.suffix());
            let Ok((s_real, s_meta)) = locate_blocking(root, Path::new(&name), &sibling_url) else {
                continue;
            };
            let s_id = FileId::of(&s_meta);
            let old = prev
                .and_then(|p| p.sibling(encoding))
                .map(|s| (s.id, &s.body));
            siblings.push(Sibling {
                encoding,
                body: small_body(&s_real, s_id, old),
                real: s_real,
                id: s_id,
                modified: s_meta.modified().ok(),
            });
        }
    }
    Ok(CachedFile {
        real,
        id,
        modified: meta.modified().ok(),
        content_type: HeaderValue::from_str(&content_type)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
        compressible,
        body,
        siblings,
        verified: Instant::now(),
    })
}

/// The file for `url_path` below `root`: from memory after one `stat` when it is unchanged,
/// else resolved again on a blocking thread and kept.
async fn lookup(
    cache: &StaticCache,
    root: &Path,
    url_path: &str,
) -> Result<Arc<CachedFile>, Refusal> {
    let requested = root.join(resolve_relative(url_path)?);
    if let Some(file) = cache.current(&requested) {
        return Ok(file);
    }
    let previous = cache.previous(&requested);
    let (root_owned, req, url) = (root.to_owned(), requested.clone(), url_path.to_owned());
    let loaded =
        tokio::task::spawn_blocking(move || load_blocking(&root_owned, &req, &url, previous))
            .await
            .map_err(|_| Refusal::NotFound)?;
    match loaded {
        Ok(file) => {
            let file = Arc::new(file);
            cache.keep(requested, file.clone());
            Ok(file)
        }
        Err(refusal) => {
            cache.forget(&requested);
            Err(refusal)
        }
    }
}

/// Which bytes answer the request.
#[derive(Clone, Copy)]
enum Variant<'a> {
    Identity,
    Sibling(&'a Sibling),
    /// Compressed by us, once per file version.
    Compressed(Encoding),
}

/// Precompressed siblings first (the operator made them; most preferred accepted encoding
/// first), else our own compression with the client's most preferred encoding.
fn choose_variant<'a>(file: &'a CachedFile, headers: &HeaderMap, wants_range: bool) -> Variant<'a> {
    // Ranges are served from the identity file, so offsets mean the same to every client.
    if !file.compressible || wants_range {
        return Variant::Identity;
    }
    let accepted: Vec<Encoding> = compression::accepted_in_preference_order(headers)
        .into_iter()
        .filter_map(Encoding::from_token)
        .collect();
    if let Some(s) = accepted.iter().find_map(|e| file.sibling(*e)) {
        return Variant::Sibling(s);
    }
    match accepted.first() {
        Some(e) if (compression::MIN_SIZE..=COMPRESS_SOURCE_MAX).contains(&file.id.size()) => {
            Variant::Compressed(*e)
        }
        _ => Variant::Identity,
    }
}

/// Where the body comes from.
enum Source {
    Memory(Bytes),
    File(PathBuf, FileId),
}

/// The file changed between its lookup and the open: look it up again.
struct Changed;

async fn serve_path(
    cache: &StaticCache,
    root: &Path,
    url_path: &str,
    method: &Method,
    headers: &HeaderMap,
    cache_for: impl Fn(&Path) -> String,
) -> Result<Response, Refusal> {
    let file = lookup(cache, root, url_path).await?;
    match respond(cache, &file, method, headers, &cache_for).await {
        Ok(resp) => Ok(resp),
        Err(Changed) => {
            cache.forget(&root.join(resolve_relative(url_path)?));
            let file = lookup(cache, root, url_path).await?;
            respond(cache, &file, method, headers, &cache_for)
                .await
                .map_err(|Changed| Refusal::NotFound)
        }
    }
}

async fn respond(
    cache: &StaticCache,
    file: &Arc<CachedFile>,
    method: &Method,
    headers: &HeaderMap,
    cache_for: &impl Fn(&Path) -> String,
) -> Result<Response, Changed> {
    let wants_range = headers.contains_key(header::RANGE);
    let mut variant = choose_variant(file, headers, wants_range);

    // Our own compressed bytes, unless the client's copy is current (a 304 needs none).
    let mut compressed = None;
    if let Variant::Compressed(e) = variant {
        let etag = make_etag(file.id.size(), file.modified, Some(e), true);
        if !not_modified(headers, &etag, file.modified) {
            match cache.compressed(file, e).await {
                Some(bytes) => compressed = Some(bytes),
                None => variant = Variant::Identity,
            }
        }
    }

    let content_type = file.content_type.to_str().unwrap_or_default();
    // Too large to compress once (see COMPRESS_SOURCE_MAX): the compression layer does it on the
    // fly as before, so the bytes differ from the file's and the validator may only be weak.
    let left_to_layer = matches!(variant, Variant::Identity)
        && !wants_range
        && file.id.size() > COMPRESS_SOURCE_MAX
        && compression::would_compress(content_type, file.id.size(), headers);
    let (len, modified, encoding, etag, source) = match variant {
        Variant::Identity => (
            file.id.size(),
            file.modified,
            None,
            make_etag(file.id.size(), file.modified, None, left_to_layer),
            match &file.body {
                Some(b) => Source::Memory(b.clone()),
                None => Source::File(file.real.clone(), file.id),
            },
        ),
        Variant::Sibling(s) => (
            s.id.size(),
            s.modified,
            Some(s.encoding),
            make_etag(s.id.size(), s.modified, Some(s.encoding), false),
            match &s.body {
                Some(b) => Source::Memory(b.clone()),
                None => Source::File(s.real.clone(), s.id),
            },
        ),
        Variant::Compressed(e) => {
            let bytes = compressed.unwrap_or_default();
            (
                bytes.len() as u64,
                file.modified,
                Some(e),
                make_etag(file.id.size(), file.modified, Some(e), true),
                Source::Memory(bytes),
            )
        }
    };

    let mut resp_headers = HeaderMap::new();
    resp_headers.insert(header::CONTENT_TYPE, file.content_type.clone());
    insert(&mut resp_headers, header::ETAG, &etag);
    insert(
        &mut resp_headers,
        header::CACHE_CONTROL,
        &cache_for(&file.real),
    );
    if let Some(m) = modified {
        insert(
            &mut resp_headers,
            header::LAST_MODIFIED,
            &httpdate::fmt_http_date(m),
        );
    }
    if file.compressible {
        resp_headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if let Some(e) = encoding {
        resp_headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(e.token()),
        );
    } else {
        resp_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    let finish = |mut resp: Response| {
        if !left_to_layer {
            resp.extensions_mut().insert(compression::AlreadyEncoded);
        }
        resp
    };

    if not_modified(headers, &etag, modified) {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        for name in [
            header::ETAG,
            header::CACHE_CONTROL,
            header::LAST_MODIFIED,
            header::VARY,
        ] {
            if let Some(v) = resp_headers.get(&name) {
                resp.headers_mut().insert(name, v.clone());
            }
        }
        return Ok(finish(resp));
    }

    let mut status = StatusCode::OK;
    let (mut start, mut count) = (0u64, len);
    if encoding.is_none()
        && *method == Method::GET
        && let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok())
        && if_range_matches(headers, &etag, modified)
    {
        match parse_range(range, len) {
            RangeRequest::Single(s, e) => {
                status = StatusCode::PARTIAL_CONTENT;
                start = s;
                count = e - s + 1;
                insert(
                    &mut resp_headers,
                    header::CONTENT_RANGE,
                    &format!("bytes {s}-{e}/{len}"),
                );
            }
            RangeRequest::Unsatisfiable => {
                let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                insert(
                    resp.headers_mut(),
                    header::CONTENT_RANGE,
                    &format!("bytes */{len}"),
                );
                return Ok(finish(resp));
            }
            RangeRequest::Ignore => {}
        }
    }
    insert(
        &mut resp_headers,
        header::CONTENT_LENGTH,
        &count.to_string(),
    );

    let body = if *method == Method::HEAD {
        Body::empty()
    } else {
        match source {
            Source::Memory(bytes) => {
                let (s, e) = (
                    usize::try_from(start).unwrap_or(usize::MAX),
                    usize::try_from(start + count).unwrap_or(usize::MAX),
                );
                match bytes.get(s..e) {
                    Some(_) => Body::from(bytes.slice(s..e)),
                    None => return Err(Changed),
                }
            }
            Source::File(path, id) => stream_file(path, id, start, count).await?,
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = resp_headers;
    Ok(finish(resp))
}

/// Stream `count` bytes of the file from `start` in big chunks, after checking the open file is
/// still version `id`. The next chunk is read (on a blocking thread) while the current one is
/// being sent: read one after the other, a single download waited for every read and every
/// hand-off to the blocking pool, and went at ~0.8× nginx's rate. A response holds at most
/// [`READ_AHEAD`] chunks being read plus the one being sent.
async fn stream_file(path: PathBuf, id: FileId, start: u64, count: u64) -> Result<Body, Changed> {
    let file = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&path).ok()?;
        let current = f.metadata().ok().map(|m| FileId::of(&m));
        (current == Some(id)).then_some(f)
    })
    .await
    .ok()
    .flatten()
    .ok_or(Changed)?;
    let file = Arc::new(file);
    let chunk = STREAM_CHUNK as u64;
    let chunks = futures_util::stream::iter(0..count.div_ceil(chunk))
        .map(move |i| {
            let file = file.clone();
            let pos = start + i * chunk;
            let want = usize::try_from((count - i * chunk).min(chunk)).unwrap_or(STREAM_CHUNK);
            async move {
                tokio::task::spawn_blocking(move || read_chunk(&file, pos, want))
                    .await
                    .map_err(std::io::Error::other)?
            }
        })
        .buffered(READ_AHEAD);
    Ok(Body::from_stream(chunks))
}

/// Chunks of one download being read ahead of the one being sent.
const READ_AHEAD: usize = 2;

/// `want` bytes of `file` from `pos`. Positional reads (`pread`), so the chunks read ahead never
/// share a file offset. Not into `vec![0; want]`: jemalloc zeroes a large allocation by handing
/// its pages back to the kernel (every page then faults again: 3 400 faults and twice the CPU per
/// 20 MB download); the read fills the spare capacity unzeroed.
fn read_chunk(file: &std::fs::File, pos: u64, want: usize) -> std::io::Result<Bytes> {
    let mut buf = Vec::with_capacity(want);
    while buf.len() < want {
        let at = pos + buf.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file shrank while being sent",
                ));
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // The spare capacity may be larger than asked for: never send past the range.
    buf.truncate(want);
    Ok(Bytes::from(buf))
}

fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

fn make_etag(
    len: u64,
    modified: Option<SystemTime>,
    encoding: Option<Encoding>,
    weak: bool,
) -> String {
    let nanos = modified
        .and_then(|m| m.duration_since(SystemTime::UNIX_EPOCH).ok())
        .unwrap_or(Duration::ZERO)
        .as_nanos();
    let suffix = match encoding {
        Some(Encoding::Br) => "-br",
        Some(Encoding::Gzip) => "-gz",
        None => "",
    };
    let tag = format!("\"{len:x}-{nanos:x}{suffix}\"");
    if weak { format!("W/{tag}") } else { tag }
}

fn opaque(tag: &str) -> &str {
    tag.trim().trim_start_matches("W/")
}

/// RFC 9110 §13.1.2 / §13.1.3: If-None-Match (weak comparison) wins over If-Modified-Since.
fn not_modified(headers: &HeaderMap, etag: &str, modified: Option<SystemTime>) -> bool {
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        return inm.trim() == "*" || inm.split(',').any(|t| opaque(t) == opaque(etag));
    }
    let (Some(ims), Some(m)) = (
        headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok()),
        modified,
    ) else {
        return false;
    };
    // HTTP dates have whole seconds.
    let m_secs = m
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ims_secs = ims
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    m_secs <= ims_secs
}

/// If-Range needs a strong match; otherwise the whole (changed) file is sent.
fn if_range_matches(headers: &HeaderMap, etag: &str, modified: Option<SystemTime>) -> bool {
    let Some(v) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let v = v.trim();
    if v.starts_with('"') {
        return !etag.starts_with("W/") && v == etag;
    }
    match (httpdate::parse_http_date(v), modified) {
        (Ok(date), Some(m)) => httpdate::fmt_http_date(date) == httpdate::fmt_http_date(m),
        _ => false,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    Single(u64, u64),
    Unsatisfiable,
    /// Not a byte range we serve as such (several ranges, other units, garbage): send it all.
    Ignore,
}

fn parse_range(value: &str, len: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignore;
    };
    if spec.contains(',') {
        return RangeRequest::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Ignore;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.is_empty(), b.is_empty()) {
        // bytes=-N: the last N bytes
        (true, false) => match b.parse::<u64>() {
            Ok(0) => RangeRequest::Unsatisfiable,
            Ok(n) if len > 0 => RangeRequest::Single(len.saturating_sub(n), len - 1),
            Ok(_) => RangeRequest::Unsatisfiable,
            Err(_) => RangeRequest::Ignore,
        },
        (false, _) => {
            let Ok(start) = a.parse::<u64>() else {
                return RangeRequest::Ignore;
            };
            let end = if b.is_empty() {
                len.saturating_sub(1)
            } else {
                match b.parse::<u64>() {
                    Ok(e) if e >= start => e.min(len.saturating_sub(1)),
                    Ok(_) => return RangeRequest::Ignore,
                    Err(_) => return RangeRequest::Ignore,
                }
            };
            if start >= len {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::Single(start, end)
            }
        }
        (true, true) => RangeRequest::Ignore,
    }
}

fn plain_status(status: StatusCode) -> Response {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

/// What `/` shows before the web build is installed: the server runs, and where the build goes.
fn no_web_build_page(web_root: &Path, head: bool) -> Response {
    let root = html_escape(&web_root.display().to_string());
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>EuraFlow server</title>\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}}code{{background:#f2f2f2;padding:.1rem .3rem}}</style>\
</head><body><h1>EuraFlow server {version} is running</h1>\
<p>The API answers under <code>/api/ef/v1</code>. No web app is installed yet.</p>\
<p>Copy the web build (the contents of <code>dist/</code>) into <code>{root}</code>, \
so that <code>{root}/index.html</code> exists. No restart is needed.</p>\
<p>Health: <a href=\"/healthz\"><code>/healthz</code></a></p></body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
    );
    let body = if head {
        Body::empty()
    } else {
        Body::from(html)
    };
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_forms_are_refused() {
        for p in [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc%2Fpasswd",
            "/..%5c..%5cetc%5cpasswd",
            "/a%00b",
            "/%ff%fe",
        ] {
            assert_eq!(resolve_relative(p), Err(Refusal::BadPath), "{p}");
        }
        assert_eq!(resolve_relative("/.env"), Err(Refusal::NotFound));
        assert_eq!(
            resolve_relative("/assets/.git/config"),
            Err(Refusal::NotFound)
        );
        assert_eq!(
            resolve_relative("/.well-known/security.txt"),
            Ok(PathBuf::from(".well-known/security.txt"))
        );
        assert_eq!(
            resolve_relative("/assets/./js//app.js"),
            Ok(PathBuf::from("assets/js/app.js"))
        );
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeRequest::Single(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), RangeRequest::Single(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), RangeRequest::Single(90, 99));
        assert_eq!(
            parse_range("bytes=95-200", 100),
            RangeRequest::Single(95, 99)
        );
        assert_eq!(parse_range("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeRequest::Ignore);
        assert_eq!(parse_range("items=0-1", 100), RangeRequest::Ignore);
        assert_eq!(parse_range("bytes=5-1", 100), RangeRequest::Ignore);
    }

    #[test]
    fn hashed_asset_names() {
        assert!(has_content_hash("index-BXk3a9Fz.js"));
        assert!(has_content_hash("vendor-react-Dm2kLq9x.js"));
        assert!(has_content_hash("main.3f2a1b4c9.css"));
        // Hashes with `-` and `_` (index-Du-UEXJq.css is a name of the real web build; the
        // others are shaped like its names).
        assert!(has_content_hash("index-Du-UEXJq.css"));
        assert!(has_content_hash("vendor-antd-C_1q-zWx.js"));
        assert!(has_content_hash("OrderList-B-kz_3Qm.js"));
        assert!(has_content_hash("index-Du-UEXJq.js.map"));
        assert!(!has_content_hash("my-longname.js"));
        assert!(!has_content_hash("ab-cdefghij.js"));
        assert!(!has_content_hash("favicon.svg"));
        assert!(!has_content_hash("notice.mp3"));
        assert!(!has_content_hash("category-tree.json"));
        assert_eq!(cache_rule(Path::new("/w/index.html"), 86400), NO_CACHE);
        assert_eq!(
            cache_rule(Path::new("/w/assets/js/index-BXk3a9Fz.js"), 86400),
            IMMUTABLE
        );
        assert_eq!(
            cache_rule(Path::new("/w/data/categoryTree.json"), 86400),
            "public, max-age=86400"
        );
    }
}
