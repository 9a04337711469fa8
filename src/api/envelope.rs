//! The success half of the original's envelope: `{"ok": true, "data": ..., "error": null}`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

pub struct Envelope<T>(pub T);

impl<T: Serialize> IntoResponse for Envelope<T> {
    fn into_response(self) -> Response {
        Json(json!({"ok": true, "data": self.0, "error": null})).into_response()
    }
}
