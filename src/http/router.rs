//! The complete route table and the middleware stack around it.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, get};
use tower::ServiceBuilder;

use super::middleware::body_limit::BodyLimit;
use super::middleware::{compression, cors, edge, panic};
use super::static_files;
use crate::api;
use crate::state::AppState;

pub fn build(state: AppState) -> Router {
    let config = state.config();
    let prefix = config.http.api_prefix.clone();
    let api = api::router(state.clone());

    let routes = Router::new()
        .route("/healthz", get(liveness))
        // The guide's nginx location for the websocket; the web app uses the API path. CONNECT
        // is the websocket over HTTP/2 (RFC 8441).
        .route("/ws", get(api::realtime::ws).connect(api::realtime::ws))
        .nest(&prefix, api)
        .route("/downloads", any(static_files::downloads))
        .route("/downloads/{*rest}", any(static_files::downloads))
        // `/healthz` answers JSON, so does a wrong method on it (the API has its own).
        .method_not_allowed_fallback(api::method_not_allowed)
        .fallback(fallback);

    let stack = ServiceBuilder::new()
        .layer(from_fn_with_state(state.clone(), edge::outer))
        .option_layer(cors::layer(&config.http.cors_origins))
        .layer(panic::layer())
        // The ceiling of every body; the API's JSON routes add their small limit (`api::router`).
        .layer(from_fn_with_state(
            BodyLimit::ceiling(&config.http),
            edge::limits,
        ))
        // Our limits are the limits; axum's own 2 MB default would contradict them.
        .layer(DefaultBodyLimit::disable())
        .layer(compression::layer());

    routes.layer(stack).with_state(state)
}

/// Paths no route matched: API-looking ones answer like the API (JSON 404, never the web app's
/// HTML), everything else is the web app.
async fn fallback(
    state: axum::extract::State<AppState>,
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") {
        return api::not_found(method, axum::extract::OriginalUri(uri))
            .await
            .into_response();
    }
    static_files::web_app(state, method, uri, headers).await
}

/// `GET /healthz`: liveness only — the process answers HTTP. It never touches a dependency, so a
/// database outage cannot make systemd or a load balancer restart a healthy server.
async fn liveness() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "healthy"}))
}
