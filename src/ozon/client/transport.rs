//! One Ozon call: reserve a slot in the shop's budget, send, classify the answer, retry what may
//! succeed on a second try, give up with a typed error when the attempts are spent.
//!
//! Redirects are not followed: a redirect to another host would carry the `Api-Key` header there
//! (reqwest strips only the standard credential headers), and Ozon's API never redirects.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};

use super::error::{ErrorBody, OzonError};
use super::{Credentials, Endpoint, Inner, ShopClient};

/// Assumed when a 429 carries no usable `Retry-After` (what the original assumed, too).
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Error bodies are read only for their message; more than this is not worth holding.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What one attempt came to.
enum Outcome {
    Body(Vec<u8>),
    Fail(OzonError),
    RateLimited(Duration),
    Unavailable(String),
}

pub(super) async fn call<Req, Resp>(
    shop: &ShopClient,
    endpoint: Endpoint,
    body: &Req,
) -> Result<Resp, OzonError>
where
    Req: serde::Serialize + ?Sized,
    Resp: serde::de::DeserializeOwned,
{
    let inner = &shop.client.inner;
    let settings = &inner.settings;
    let client_id = shop.credentials.client_id.as_str();
    let payload = serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| OzonError::BadRequest {
            endpoint,
            status: 0,
            code: 0,
            message: format!("the request could not be encoded: {e}"),
        })?;
    let headers = headers(&shop.credentials).ok_or_else(|| OzonError::AuthFailed {
        status: 0,
        message: "the Client-Id or Api-Key contains characters that cannot be sent".to_owned(),
    })?;
    let url = format!("{}{}", inner.base_url, endpoint.path());
    let mut attempt: u32 = 0;
    loop {
        inner.budget.acquire(client_id).await;
        let wait = match send(
            inner, endpoint, &url, &headers, &payload, client_id, attempt,
        )
        .await
        {
            Outcome::Body(bytes) => return parse(endpoint, &bytes),
            Outcome::Fail(e) => return Err(e),
            Outcome::RateLimited(retry_after) => {
                if attempt >= settings.max_retries {
                    tracing::warn!(
                        endpoint = endpoint.path(),
                        client_id,
                        attempts = attempt + 1,
                        "Ozon still rate limits this shop; giving up this call"
                    );
                    return Err(OzonError::RateLimited {
                        endpoint,
                        retry_after,
                    });
                }
                // Every process holds off this shop, not only this call.
                inner.budget.pause(client_id, retry_after).await;
                retry_after + jitter(Duration::from_millis(250))
            }
            Outcome::Unavailable(reason) => {
                if attempt >= settings.max_retries {
                    tracing::warn!(
                        endpoint = endpoint.path(),
                        client_id,
                        attempts = attempt + 1,
                        reason,
                        "Ozon unavailable; giving up this call"
                    );
                    return Err(OzonError::OzonUnavailable {
                        endpoint,
                        attempts: attempt + 1,
                        reason,
                    });
                }
                backoff(settings.backoff_base, settings.backoff_cap, attempt)
            }
        };
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// The fixed headers of every call for this shop; `None` if a credential is not a valid header.
fn headers(credentials: &Credentials) -> Option<HeaderMap> {
    let mut h = HeaderMap::new();
    h.insert(
        "Client-Id",
        HeaderValue::from_str(&credentials.client_id).ok()?,
    );
    let mut key = HeaderValue::from_str(credentials.api_key.expose()).ok()?;
    // Keeps it out of any header dump (hyper's and reqwest's Debug print "Sensitive").
    key.set_sensitive(true);
    h.insert("Api-Key", key);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Some(h)
}

async fn send(
    inner: &Inner,
    endpoint: Endpoint,
    url: &str,
    headers: &HeaderMap,
    payload: &Bytes,
    client_id: &str,
    attempt: u32,
) -> Outcome {
    let request_id = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    let sent = inner
        .http
        .post(url)
        .headers(headers.clone())
        .header("X-Request-Id", &request_id)
        .body(payload.clone())
        .send()
        .await;
    let result = match sent {
        Ok(response) => {
            let status = response.status();
            let retry_after = response.headers().get(RETRY_AFTER).cloned();
            let limit = if status.is_success() {
                inner.settings.max_response_bytes
            } else {
                MAX_ERROR_BODY
            };
            read_limited(response, limit)
                .await
                .map(|body| (status, retry_after, body))
        }
        Err(e) => Err(e),
    };
    let latency = started.elapsed();
    let (label, outcome) = match result {
        Ok((status, retry_after, body)) => (
            status.as_str().to_owned(),
            classify(
                endpoint,
                status,
                retry_after.as_ref(),
                body,
                inner.settings.max_retry_after,
            ),
        ),
        Err(e) => {
            let label = if e.is_timeout() { "timeout" } else { "network" };
            (label.to_owned(), Outcome::Unavailable(network_reason(&e)))
        }
    };
    inner.metrics.observe(endpoint, &label, latency);
    tracing::debug!(
        endpoint = endpoint.path(),
        client_id,
        status = label,
        latency_ms = latency.as_millis() as u64,
        request_id,
        attempt,
        "Ozon call"
    );
    if let Outcome::Fail(OzonError::BadResponse { reason, .. }) = &outcome {
        tracing::warn!(
            endpoint = endpoint.path(),
            client_id,
            request_id,
            reason,
            "Ozon sent a body we cannot read"
        );
    }
    outcome
}

/// The body, or `None` as the body when it is larger than `limit` (checked while reading, so
/// a huge answer never sits in memory).
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

fn classify(
    endpoint: Endpoint,
    status: StatusCode,
    retry_after: Option<&HeaderValue>,
    body: Option<Vec<u8>>,
    max_retry_after: Duration,
) -> Outcome {
    let code = status.as_u16();
    if status.is_success() {
        return match body {
            Some(b) => Outcome::Body(b),
            None => Outcome::Fail(OzonError::BadResponse {
                endpoint,
                reason: "the answer is larger than the configured maximum".to_owned(),
            }),
        };
    }
    let (ozon_code, message) = ErrorBody::parse(code, body.as_deref().unwrap_or_default());
    match code {
        401 | 403 => Outcome::Fail(OzonError::AuthFailed {
            status: code,
            message,
        }),
        404 => Outcome::Fail(OzonError::NotFound { endpoint, message }),
        429 => Outcome::RateLimited(
            retry_after_of(retry_after, SystemTime::now()).min(max_retry_after),
        ),
        500..=599 => Outcome::Unavailable(message),
        _ => Outcome::Fail(OzonError::BadRequest {
            endpoint,
            status: code,
            code: ozon_code,
            message,
        }),
    }
}

/// `Retry-After` as seconds or an HTTP date; [`DEFAULT_RETRY_AFTER`] when absent or unreadable.
fn retry_after_of(value: Option<&HeaderValue>, now: SystemTime) -> Duration {
    let Some(text) = value.and_then(|v| v.to_str().ok()).map(str::trim) else {
        return DEFAULT_RETRY_AFTER;
    };
    if let Ok(secs) = text.parse::<u64>() {
        return Duration::from_secs(secs);
    }
    match httpdate::parse_http_date(text) {
        Ok(at) => at.duration_since(now).unwrap_or(Duration::ZERO),
        Err(_) => DEFAULT_RETRY_AFTER,
    }
}

/// `min(cap, base·2^attempt)`: half of it fixed, half random, so retrying processes spread out.
fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let full = base.saturating_mul(1u32 << attempt.min(20)).min(cap);
    full / 2 + jitter(full / 2)
}

fn jitter(max: Duration) -> Duration {
    max.mul_f64(rand::random::<f64>())
}

fn parse<Resp: serde::de::DeserializeOwned>(
    endpoint: Endpoint,
    bytes: &[u8],
) -> Result<Resp, OzonError> {
    serde_json::from_slice(bytes).map_err(|e| OzonError::BadResponse {
        endpoint,
        reason: without_quoted(&e.to_string()),
    })
}

/// serde's message with quoted values elided: they are Ozon data (a buyer's name in a posting)
/// and this text goes to logs and task statuses. Field names (in backticks) stay.
fn without_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

/// A network error in one line, without the URL's query (there is none, but stay safe) and
/// without the source chain's duplicates.
fn network_reason(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "connection failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_defaults_to_a_minute() {
        let now = SystemTime::now();
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(retry_after_of(Some(&v("7")), now), Duration::from_secs(7));
        assert_eq!(retry_after_of(None, now), DEFAULT_RETRY_AFTER);
        assert_eq!(retry_after_of(Some(&v("soon")), now), DEFAULT_RETRY_AFTER);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        let d = retry_after_of(Some(&v(&later)), now);
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(29),
            "{d:?}"
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after_of(Some(&v(&past)), now), Duration::ZERO);
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_in_its_upper_half() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        for attempt in 0..40 {
            let full = (base * 2u32.pow(attempt.min(20))).min(cap);
            let d = backoff(base, cap, attempt);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn statuses_map_to_typed_outcomes() {
        let ep = Endpoint::ProductList;
        let max = Duration::from_secs(10);
        let body = |s: &str| Some(s.as_bytes().to_vec());
        let err = br#"{"code":3,"message":"bad filter","details":[]}"#;
        assert!(matches!(
            classify(ep, StatusCode::OK, None, body("{}"), max),
            Outcome::Body(_)
        ));
        assert!(matches!(
            classify(ep, StatusCode::OK, None, None, max),
            Outcome::Fail(OzonError::BadResponse { .. })
        ));
        for s in [401, 403] {
            assert!(matches!(
                classify(ep, StatusCode::from_u16(s).unwrap(), None, Some(err.to_vec()), max),
                Outcome::Fail(OzonError::AuthFailed { status, .. }) if status == s
            ));
        }
        match classify(ep, StatusCode::BAD_REQUEST, None, Some(err.to_vec()), max) {
            Outcome::Fail(OzonError::BadRequest { code, message, .. }) => {
                assert_eq!((code, message.as_str()), (3, "bad filter"));
            }
            _ => panic!("400 is a BadRequest"),
        }
        let ra = HeaderValue::from_static("3600");
        assert!(matches!(
            classify(ep, StatusCode::TOO_MANY_REQUESTS, Some(&ra), None, max),
            Outcome::RateLimited(d) if d == max
        ));
        assert!(matches!(
            classify(ep, StatusCode::BAD_GATEWAY, None, None, max),
            Outcome::Unavailable(_)
        ));
        assert!(matches!(
            classify(ep, StatusCode::FOUND, None, None, max),
            Outcome::Fail(OzonError::BadRequest { status: 302, .. })
        ));
    }

    #[test]
    fn parse_errors_do_not_repeat_ozon_data() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Item {
            id: i64,
        }
        let e = parse::<Item>(Endpoint::PostingFbsList, br#"{"id":"Ivan Petrov"}"#).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("Ivan"), "{text}");
        assert!(text.contains("invalid type"), "{text}");
        let e = parse::<Item>(Endpoint::PostingFbsList, b"{}").unwrap_err();
        assert!(e.to_string().contains("`id`"), "{e}");
    }
}
