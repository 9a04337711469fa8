//! The API's extractors for what a client sends — the JSON body ([`ApiJson`]; [`ApiBytes`] for
//! optional bodies, read with [`lenient_json`]), path parameters ([`ApiPath`]) and the query
//! ([`ApiQuery`]) — and the one place where that input is checked before a handler sees it:
//!
//! - every rejection is the API's JSON error: 413 past the route's body limit
//!   (`EF__MAX_JSON_BODY_SIZE`), 415 without a JSON content type, 400 for broken JSON or a
//!   malformed path or query, 422 with `validation_errors` when fields are missing or of the
//!   wrong type — never axum's `text/plain`;
//! - a NUL character in any string — a body's strings and keys at any depth, a path or query
//!   value — is a 422 naming where it is: PostgreSQL refuses NUL in text, so it used to reach
//!   the database and come back as a 500 whose log said only `db error`;
//! - messages name the field and the expected type but never repeat the submitted value:
//!   serde's own say `invalid type: string "hunter2", expected ...`, which may be a password.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{ApiError, FieldError};
use crate::http::middleware::body_limit::{self, BodyLimit};

/// NUL problems listed at most; the rest are the same mistake.
const MAX_NUL_PROBLEMS: usize = 10;
const NUL_MESSAGE: &str = "must not contain the NUL character (\\u0000)";

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "Send the body as JSON with Content-Type: application/json",
            ));
        }
        let ApiBytes(body) = ApiBytes::from_request(req, state).await?;
        parse(&body).map(ApiJson)
    }
}

/// `application/json`, or any `application/*+json`, as axum's `Json` accepts.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or_default().trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    let sub = sub.to_ascii_lowercase();
    kind.eq_ignore_ascii_case("application") && (sub == "json" || sub.ends_with("+json"))
}

/// A JSON body into `T`: 400 when it is not JSON, 422 for a NUL anywhere or a field that does
/// not fit `T` (its path and the expected type, never the value).
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| invalid_json())?;
    reject_nul(&value)?;
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let loc = std::iter::once("body".to_owned())
            .chain(e.path().iter().map(segment))
            .collect();
        field_problem(loc, &without_position(e.inner()))
    })?;
    de.end().map_err(|_| invalid_json())?;
    Ok(parsed)
}

/// An optional JSON body read leniently (anything that is not the expected JSON is `T::default()`,
/// as the original read such bodies), except that a NUL is still refused.
pub fn lenient_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Ok(T::default());
    };
    reject_nul(&value)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

fn invalid_json() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "INVALID_JSON",
        "The request body is not valid JSON",
    )
}

fn segment(s: &serde_path_to_error::Segment) -> String {
    use serde_path_to_error::Segment;
    match s {
        Segment::Seq { index } => index.to_string(),
        Segment::Map { key } => key.clone(),
        Segment::Enum { variant } => variant.clone(),
        Segment::Unknown => "?".to_owned(),
    }
}

fn field_problem(loc: Vec<String>, msg: &str) -> ApiError {
    ApiError::validation(vec![FieldError {
        kind: "value_error".into(),
        loc,
        msg: describe(msg),
    }])
}

/// serde_json's message without its ` at line L column C` suffix.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}

/// A deserialisation message with the submitted value taken out: serde writes the unexpected
/// value into `invalid type`, `invalid value` and `unknown variant` messages. Messages that can
/// only name fields or lengths pass; any other message that quotes something is replaced.
pub fn describe(msg: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            // The value comes first, the expectation (from the target type, not the client)
            // after the last ", expected ".
            return match rest.rsplit_once(", expected ") {
                Some((unexpected, expected)) => {
                    format!("{prefix}{}, expected {expected}", kind_of(unexpected))
                }
                None => format!("{prefix}{}", kind_of(rest)),
            };
        }
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        return match rest.rsplit_once(", expected ") {
            Some((_, expected)) => format!("unknown variant, expected {expected}"),
            None => "unknown variant".to_owned(),
        };
    }
    let names_only = [
        "missing field ",
        "unknown field ",
        "duplicate field ",
        "invalid length ",
    ];
    if names_only.iter().any(|p| msg.starts_with(p)) || !msg.contains(['"', '`', '\'']) {
        return msg.to_owned();
    }
    "has the wrong form".to_owned()
}

/// `string "hunter2"` → `string`; `integer `5`` → `integer`; `map` → `map`.
fn kind_of(unexpected: &str) -> &str {
    let end = unexpected
        .find(['"', '`', '\''])
        .unwrap_or(unexpected.len());
    let kind = unexpected[..end].trim();
    if kind.is_empty() { "value" } else { kind }
}

/// 422 for every NUL in a string or an object key of `value`, with its path under `body`.
pub fn reject_nul(value: &Value) -> Result<(), ApiError> {
    let mut found = Vec::new();
    let mut path = vec!["body".to_owned()];
    find_nul(value, &mut path, &mut found);
    if found.is_empty() {
        return Ok(());
    }
    Err(ApiError::validation(
        found
            .into_iter()
            .map(|loc| FieldError {
                kind: "value_error".into(),
                loc,
                msg: NUL_MESSAGE.into(),
            })
            .collect(),
    ))
}

fn find_nul(value: &Value, path: &mut Vec<String>, found: &mut Vec<Vec<String>>) {
    if found.len() >= MAX_NUL_PROBLEMS {
        return;
    }
    match value {
        Value::String(s) if s.contains('\0') => found.push(path.clone()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                find_nul(item, path, found);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                // The key is shown with its NUL written out, so the answer carries none.
                path.push(key.replace('\0', "\\u0000"));
                if key.contains('\0') && found.len() < MAX_NUL_PROBLEMS {
                    found.push(path.clone());
                }
                find_nul(item, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

/// A raw body (for routes whose JSON body is optional) whose rejections are the API's JSON
/// errors: 413 past the route's limit, 400 when it cannot be read.
pub struct ApiBytes(pub Bytes);

impl<S> FromRequest<S> for ApiBytes
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().copied();
        Bytes::from_request(req, state)
            .await
            .map(ApiBytes)
            .map_err(|r| unreadable(&r, limit))
    }
}

fn unreadable(r: &BytesRejection, limit: Option<BodyLimit>) -> ApiError {
    if r.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "The request body could not be read",
        );
    }
    match limit {
        Some(BodyLimit(max)) => body_limit::too_large(max),
        None => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "REQUEST_TOO_LARGE",
            "The request body is larger than the server accepts; send a smaller one",
        ),
    }
}

/// A path parameter whose rejection is the API's JSON error (400 saying what form the
/// parameter has), not axum's plain-text 400; a NUL in it is a 422 like everywhere else.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Ok(raw) = axum::extract::RawPathParams::from_request_parts(parts, state).await {
            let nul: Vec<FieldError> = raw
                .iter()
                .filter(|(_, value)| value.contains('\0'))
                .map(|(key, _)| FieldError {
                    kind: "value_error".into(),
                    loc: vec!["path".to_owned(), key.to_owned()],
                    msg: NUL_MESSAGE.into(),
                })
                .collect();
            if !nul.is_empty() {
                return Err(ApiError::validation(nul));
            }
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(_) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_PATH_PARAMETER",
                "A path parameter has the wrong form (ids are whole numbers)",
            )),
        }
    }
}

/// Query parameters whose rejection is the API's JSON error (400 naming the problem without the
/// submitted value); a NUL in a name or value is a 422 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let nul = query_nul(parts.uri.query().unwrap_or_default());
        if !nul.is_empty() {
            return Err(ApiError::validation(nul));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(_) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_QUERY",
                "A query parameter is missing or has the wrong form",
            )),
        }
    }
}

/// The parameters of a raw query string whose name or value decodes to a NUL. A URI cannot
/// carry a raw NUL, so `%00` is the only way to write one.
fn query_nul(query: &str) -> Vec<FieldError> {
    query
        .split('&')
        .filter(|pair| pair.contains("%00"))
        .take(MAX_NUL_PROBLEMS)
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            let name = percent_encoding::percent_decode_str(&name.replace('+', " "))
                .decode_utf8_lossy()
                .replace('\0', "\\u0000");
            FieldError {
                kind: "value_error".into(),
                loc: vec!["query".to_owned(), name],
                msg: NUL_MESSAGE.into(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_the_expectation_and_drop_the_value() {
        assert_eq!(
            describe(r#"invalid type: string "hunter2", expected u32"#),
            "invalid type: string, expected u32"
        );
        assert_eq!(
            describe(r#"invalid type: string "a\", expected x", expected a boolean"#),
            "invalid type: string, expected a boolean"
        );
        assert_eq!(
            describe("invalid value: integer `-5`, expected u32"),
            "invalid value: integer, expected u32"
        );
        assert_eq!(
            describe("invalid type: map, expected a string"),
            "invalid type: map, expected a string"
        );
        assert_eq!(
            describe("unknown variant `hunter2`, expected one of `a`, `b`"),
            "unknown variant, expected one of `a`, `b`"
        );
        assert_eq!(
            describe("missing field `password`"),
            "missing field `password`"
        );
        assert_eq!(describe("trailing comma"), "trailing comma");
        assert_eq!(describe(r#"bad "hunter2" here"#), "has the wrong form");
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        limits: Limits,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Limits {
        max: u32,
    }

    fn problems(e: ApiError) -> Vec<(Vec<String>, String)> {
        e.validation_errors
            .unwrap_or_default()
            .into_iter()
            .map(|f| (f.loc, f.msg))
            .collect()
    }

    #[test]
    fn a_wrong_type_names_the_field_path_and_not_the_value() {
        let e = parse::<Body>(br#"{"name": "x", "limits": {"max": "hunter2"}}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            problems(e),
            vec![(
                vec!["body".to_owned(), "limits".to_owned(), "max".to_owned()],
                "invalid type: string, expected u32".to_owned()
            )]
        );
        let e = parse::<Body>(br#"{"name": "x", "limits": {"max": 1}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e = parse::<Body>(br#"{"name": "x", "limits": {"max": 1}} trailing"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_nul_anywhere_is_a_422_at_its_path() {
        let e = parse::<Value>(br#"{"a": {"b": ["ok", "bad\u0000"]}, "c\u0000": 1}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        let locs: Vec<Vec<String>> = problems(e).into_iter().map(|(l, _)| l).collect();
        assert!(locs.contains(&vec!["body".into(), "a".into(), "b".into(), "1".into()]));
        assert!(locs.contains(&vec!["body".into(), "c\\u0000".into()]));
        // Even when the target type would not look at the field.
        assert!(parse::<serde::de::IgnoredAny>(br#"{"x": "\u0000"}"#).is_err());
        assert!(parse::<Value>(br#"{"x": "\\u0000 is text"}"#).is_ok());
        assert!(lenient_json::<Value>(br#"{"x": "\u0000"}"#).is_err());
        assert!(lenient_json::<Value>(b"not json").is_ok());
    }

    #[test]
    fn a_nul_in_the_query_names_the_parameter() {
        let p = query_nul("a=1&username=ad%00min&b=%2500");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].loc, vec!["query", "username"]);
        assert!(query_nul("a=%2500").is_empty());
    }

    #[test]
    fn json_content_types() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::CONTENT_TYPE, v.parse().unwrap());
            m
        };
        assert!(is_json(&h("application/json")));
        assert!(is_json(&h("application/json; charset=utf-8")));
        assert!(is_json(&h("application/problem+json")));
        assert!(!is_json(&h("text/plain")));
        assert!(!is_json(&HeaderMap::new()));
    }
}
