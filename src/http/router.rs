//! The complete route table and the middleware stack around it.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{any, get};
use tower::ServiceBuilder;

use super::middleware::{
    access_log, body_limit, client_ip, compression, cors, panic, request_id, security_headers,
    timeout,
};
use super::static_files;
use crate::api;
use crate::state::AppState;

pub fn build(state: AppState) -> Router {
    let config = state.config();
    let prefix = config.http.api_prefix.clone();
    let api = api::router().layer(from_fn_with_state(state.clone(), timeout::bound));

    let routes = Router::new()
        .route("/healthz", get(liveness))
        .nest(&prefix, api)
        // API-looking paths outside the prefix answer like the API, not with the web app.
        .route("/api", any(api::not_found))
        .route("/api/{*rest}", any(api::not_found))
        .route("/downloads", any(static_files::downloads))
        .route("/downloads/{*rest}", any(static_files::downloads))
        .fallback(static_files::web_app);

    let stack = ServiceBuilder::new()
        .layer(from_fn_with_state(state.clone(), client_ip::resolve))
        .layer(from_fn(request_id::assign))
        .layer(from_fn_with_state(state.clone(), access_log::log))
        .layer(from_fn_with_state(state.clone(), security_headers::add))
        .option_layer(cors::layer(&config.http.cors_origins))
        .layer(panic::layer())
        .layer(from_fn_with_state(state.clone(), body_limit::enforce))
        // The body limit above is the one limit; axum's own 2 MB default would contradict it.
        .layer(DefaultBodyLimit::disable())
        .layer(compression::layer());

    routes.layer(stack).with_state(state)
}

/// `GET /healthz`: liveness only — the process answers HTTP. It never touches a dependency, so a
/// database outage cannot make systemd or a load balancer restart a healthy server.
async fn liveness() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "healthy"}))
}
