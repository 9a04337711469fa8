//! `/system/*`: what this server is.

use serde_json::json;

use super::envelope::Envelope;

/// `GET /system/info` — the original's shape (`name, version, api_version, plugins`); features
/// are built in, so there are no plugins to count.
pub async fn info() -> Envelope<serde_json::Value> {
    Envelope(json!({
        "name": "EuraFlow",
        "version": env!("CARGO_PKG_VERSION"),
        "api_version": "v1",
        "plugins": {"total": 0, "enabled": 0},
    }))
}
