//! A panicking handler answers 500 in the API's error shape and is logged; the connection and the
//! server carry on.

use std::any::Any;

use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;

pub fn layer()
-> tower_http::catch_panic::CatchPanicLayer<fn(Box<dyn Any + Send + 'static>) -> Response> {
    tower_http::catch_panic::CatchPanicLayer::custom(
        respond as fn(Box<dyn Any + Send + 'static>) -> Response,
    )
}

fn respond(err: Box<dyn Any + Send + 'static>) -> Response {
    let what = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = %what, "a request handler panicked");
    ApiError::internal().into_response()
}
