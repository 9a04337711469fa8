//! gzip/brotli on the fly for compressible responses (the guide's `gzip on` with
//! `gzip_types text/plain text/css application/json application/javascript`), and the same rules for
//! the static handler, which prefers precompressed `.br`/`.gz` files and must know whether its
//! response will be compressed to choose a strong or weak ETag.

use http::HeaderMap;
use http::header;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::Predicate;

/// Below this size compression costs more than it saves.
pub const MIN_SIZE: u64 = 256;

pub fn is_compressible(content_type: &str) -> bool {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if ct == "text/event-stream" {
        return false;
    }
    ct.starts_with("text/")
        || matches!(
            ct.as_str(),
            "application/json"
                | "application/javascript"
                | "application/x-javascript"
                | "application/xml"
                | "application/manifest+json"
                | "application/problem+json"
                | "application/wasm"
                | "image/svg+xml"
                | "image/x-icon"
                | "font/ttf"
                | "font/otf"
        )
}

/// Encodings the client accepts that we produce, most preferred first (q-values; brotli wins a tie).
pub fn accepted_in_preference_order(headers: &HeaderMap) -> Vec<&'static str> {
    let mut found: Vec<(&'static str, f32)> = Vec::new();
    let mut star: Option<f32> = None;
    for value in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match name.as_str() {
                "br" => found.push(("br", q)),
                "gzip" | "x-gzip" => found.push(("gzip", q)),
                "*" => star = Some(q),
                _ => {}
            }
        }
    }
    if let Some(q) = star {
        for enc in ["br", "gzip"] {
            if !found.iter().any(|(e, _)| *e == enc) {
                found.push((enc, q));
            }
        }
    }
    found.retain(|(_, q)| *q > 0.0);
    found.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then_with(|| (a.0 != "br").cmp(&(b.0 != "br")))
    });
    found.into_iter().map(|(e, _)| e).collect()
}

/// Whether the compression layer will encode a response of this type and size for this request.
pub fn would_compress(content_type: &str, len: u64, request_headers: &HeaderMap) -> bool {
    is_compressible(content_type)
        && len >= MIN_SIZE
        && !accepted_in_preference_order(request_headers).is_empty()
}

/// A response extension: the handler already chose the encoding of these bytes (the static
/// handler's compress-once variants, precompressed siblings, and identity it decided on), so this
/// layer must not compress them again per request.
#[derive(Clone, Copy, Debug)]
pub struct AlreadyEncoded;

#[derive(Clone, Copy, Debug, Default)]
pub struct CompressiblePredicate;

impl Predicate for CompressiblePredicate {
    fn should_compress<B>(&self, response: &http::Response<B>) -> bool
    where
        B: http_body::Body,
    {
        if response.extensions().get::<AlreadyEncoded>().is_some() {
            return false;
        }
        let headers = response.headers();
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let len = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .or_else(|| http_body::Body::size_hint(response.body()).exact());
        is_compressible(ct) && len.is_none_or(|n| n >= MIN_SIZE)
    }
}

pub fn layer() -> CompressionLayer<CompressiblePredicate> {
    CompressionLayer::new()
        .gzip(true)
        .br(true)
        .quality(tower_http::CompressionLevel::Default)
        .compress_when(CompressiblePredicate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
        m
    }

    #[test]
    fn preference_follows_q_values() {
        assert_eq!(
            accepted_in_preference_order(&h("gzip, deflate, br")),
            vec!["br", "gzip"]
        );
        assert_eq!(
            accepted_in_preference_order(&h("gzip;q=1, br;q=0.5")),
            vec!["gzip", "br"]
        );
        assert_eq!(
            accepted_in_preference_order(&h("br;q=0, gzip")),
            vec!["gzip"]
        );
        assert_eq!(
            accepted_in_preference_order(&h("identity")),
            Vec::<&str>::new()
        );
        assert_eq!(accepted_in_preference_order(&h("*")), vec!["br", "gzip"]);
    }

    #[test]
    fn types() {
        assert!(is_compressible("text/html; charset=utf-8"));
        assert!(is_compressible("application/json"));
        assert!(!is_compressible("image/png"));
        assert!(!is_compressible("text/event-stream"));
    }
}
