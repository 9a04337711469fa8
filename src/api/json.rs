//! A JSON body extractor whose failures use the API's error shape: 413 when the body passes
//! the route's limit (`EF__MAX_JSON_BODY_SIZE`), 415 without a JSON content type, 400 for broken JSON, 422 with
//! `validation_errors` when fields are missing or of the wrong type.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use http::StatusCode;
use http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::{ApiError, FieldError};
use crate::http::middleware::body_limit::{self, BodyLimit};

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().copied();
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(map_rejection(rejection, limit)),
        }
    }
}

fn map_rejection(r: JsonRejection, limit: Option<BodyLimit>) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => {
            let msg = e.body_text();
            // serde_path_to_error puts the failing field's path before the first ':'.
            let (loc, reason) = match msg.split_once(": ") {
                Some((path, why)) => (path.rsplit_once(": ").map(|(_, p)| p).unwrap_or(path), why),
                None => ("body", msg.as_str()),
            };
            ApiError::validation(vec![FieldError {
                kind: "value_error".into(),
                loc: std::iter::once("body".to_owned())
                    .chain(
                        loc.split('.')
                            .filter(|s| !s.is_empty() && *s != "body")
                            .map(str::to_owned),
                    )
                    .collect(),
                msg: reason.to_owned(),
            }])
        }
        JsonRejection::JsonSyntaxError(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
            "The request body is not valid JSON",
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "Send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(b) => {
            if b.status() == StatusCode::PAYLOAD_TOO_LARGE {
                match limit {
                    Some(BodyLimit(max)) => body_limit::too_large(max),
                    None => ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "REQUEST_TOO_LARGE",
                        "The request body is larger than the server accepts; send a smaller one",
                    ),
                }
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    "The request body could not be read",
                )
            }
        }
        other => ApiError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", other.body_text()),
    }
}

/// A raw body (for routes whose JSON body is optional) whose rejections are the API's JSON
/// errors: 413 past the route's limit, 400 when it cannot be read.
pub struct ApiBytes(pub bytes::Bytes);

impl<S> FromRequest<S> for ApiBytes
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = req.extensions().get::<BodyLimit>().copied();
        match bytes::Bytes::from_request(req, state).await {
            Ok(b) => Ok(ApiBytes(b)),
            Err(r) => Err(map_rejection(JsonRejection::BytesRejection(r), limit)),
        }
    }
}

/// A path parameter whose rejection is the API's JSON error (422 naming the parameter), not
/// axum's plain-text 400.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
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
/// submitted value).
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
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
