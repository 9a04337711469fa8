//! The API under `EF__API_PREFIX` (`/api/ef/v1`): the original's paths and JSON shapes, one module
//! per resource. Unknown paths and wrong methods answer in the API's error shape, not HTML.
//!
//! Every handler is a thin adapter: extract (`extract`, `json`), call the domain service
//! (`auth::*`, `settings`, `jobs::admin`, later `ozon::*`) with the caller as its `Actor`, commit
//! the `Work` and apply its effects, and shape the answer. No SQL here: a handler that needs data
//! asks a service. Errors become the API's error through `From<DomainError> for ApiError`.

pub mod account_levels;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod captcha;
pub mod clone;
pub mod credit;
pub mod envelope;
pub mod error;
pub mod exchange_rates;
pub mod extract;
pub mod health;
pub mod jobs;
pub mod json;
pub mod middleware;
pub mod operator;
pub mod ozon;
pub mod permissions;
pub mod realtime;
pub mod settings;
pub mod sync_services;
pub mod system;
pub mod users;

use axum::Router;
use axum::extract::OriginalUri;
use axum::routing::{delete, get, patch, post, put};
use http::{Method, StatusCode};

use crate::http::middleware::body_limit::{self, BodyLimit};
use crate::state::AppState;
use error::ApiError;

/// The routes below the prefix; `http::router` nests this under `EF__API_PREFIX`.
pub fn router(state: AppState) -> Router<AppState> {
    json_routes(&state)
        .merge(upload_routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state,
            middleware::gate::api,
        ))
}

/// Routes that take uploads: they keep `EF__MAX_BODY_SIZE` (the ceiling every request has) and
/// must stream the body to disk, never buffer it. There are none yet; a route added here opts
/// out of the small limit of [`json_routes`].
fn upload_routes() -> Router<AppState> {
    Router::new()
}

/// Every other route: its body, if any, is a small JSON document, buffered by its extractor, so
/// it is bounded by `EF__MAX_JSON_BODY_SIZE` (64 KiB) — anyone may send one to `/auth/login`.
fn json_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/captcha", get(captcha::challenge))
        .route("/auth/captcha/verify", post(captcha::verify))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me).put(auth::update_me))
        .route("/auth/me/password", put(auth::change_my_password))
        .route("/auth/users", get(users::list).post(users::create))
        .route(
            "/auth/users/{user_id}",
            put(users::update).delete(users::delete),
        )
        .route(
            "/auth/users/{user_id}/password",
            patch(users::reset_password),
        )
        .route("/auth/users/{user_id}/quota", get(users::quota))
        .merge(clone_and_permission_routes())
        .route("/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/api-keys/", get(api_keys::list).post(api_keys::create))
        .route("/api-keys/{key_id}", delete(api_keys::delete))
        .route("/api-keys/{key_id}/regenerate", put(api_keys::regenerate))
        .route(
            "/settings",
            get(settings::get)
                .put(settings::put)
                .delete(settings::reset),
        )
        .route(
            "/account-levels",
            get(account_levels::list).post(account_levels::create),
        )
        .route(
            "/account-levels/{level_id}",
            get(account_levels::get)
                .put(account_levels::update)
                .delete(account_levels::delete),
        )
        .route("/sync-services", get(sync_services::list))
        .route("/sync-services/", get(sync_services::list))
        .route("/sync-services/handlers", get(sync_services::handlers))
        .route("/sync-services/{id}", put(sync_services::update))
        .route("/sync-services/{id}/trigger", post(sync_services::trigger))
        .route(
            "/sync-services/{id}/logs",
            get(sync_services::logs).delete(sync_services::delete_logs),
        )
        .route("/sync-services/{id}/stats", get(sync_services::stats))
        .route(
            "/sync-services/{id}/reset-stats",
            post(sync_services::reset_stats),
        )
        .route("/jobs", get(jobs::list))
        .route("/jobs/{id}", get(jobs::get))
        .route("/jobs/{id}/retry", post(jobs::retry))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/audit/logs", get(audit::logs))
        .route("/audit/stats", get(audit::stats))
        .route("/health", get(health::health))
        .route("/system/health", get(health::health))
        .route("/system/info", get(system::info))
        .route("/system/metrics", get(system::metrics))
        .route("/system/status", get(system::server_status))
        .merge(credit_routes())
        // GET: the HTTP/1.1 upgrade; CONNECT: HTTP/2's extended CONNECT (RFC 8441).
        .route("/notifications/ws", get(realtime::ws).connect(realtime::ws))
        .route("/notifications/stats", get(realtime::stats))
        .merge(ozon::routes())
        .merge(exchange_rates::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            BodyLimit::json(&state.config().http),
            body_limit::enforce,
        ))
}

/// The credit ledger: `/credit/*` for every logged-in user, `/admin/credit/*` for admins.
fn credit_routes() -> Router<AppState> {
    Router::new()
        .route("/credit/balance", get(credit::balance))
        .route("/credit/calculate", post(credit::calculate))
        .route("/credit/mute-alert", post(credit::mute_alert))
        .route("/credit/transactions", get(credit::transactions))
        .route("/credit/module-configs", get(credit::module_configs))
        .route("/admin/credit/recharge", post(credit::recharge))
        .route("/admin/credit/accounts", get(credit::accounts))
        .route(
            "/admin/credit/accounts/{user_id}/threshold",
            put(credit::set_threshold),
        )
        .route(
            "/admin/credit/recharge-records",
            get(credit::recharge_records),
        )
        .route(
            "/admin/credit/module-configs",
            get(credit::admin_module_configs),
        )
        .route(
            "/admin/credit/module-configs/{module_key}",
            put(credit::update_module_config),
        )
}

/// `/auth/clone/*` and `/permissions/*` (`clone`, `permissions`).
fn clone_and_permission_routes() -> Router<AppState> {
    Router::new()
        .route("/auth/clone/status", get(clone::status))
        .route("/auth/clone/restore", post(clone::restore))
        .route("/auth/clone/{user_id}", post(clone::start))
        .route(
            "/permissions/roles",
            get(permissions::list_roles).post(permissions::create_role),
        )
        .route(
            "/permissions/roles/{role_id}",
            get(permissions::get_role)
                .put(permissions::update_role)
                .delete(permissions::delete_role),
        )
        .route(
            "/permissions/roles/{role_id}/permissions",
            get(permissions::role_codes).put(permissions::set_role_codes),
        )
        .route(
            "/permissions/roles/{role_id}/permissions/{permission_code}",
            post(permissions::add_role_code).delete(permissions::remove_role_code),
        )
        .route(
            "/permissions/apis",
            get(permissions::list_permissions).post(permissions::create_permission),
        )
        .route("/permissions/apis/modules", get(permissions::modules))
        .route("/permissions/apis/tree", get(permissions::tree))
        .route(
            "/permissions/apis/{permission_id}",
            put(permissions::update_permission).delete(permissions::delete_permission),
        )
        .route("/permissions/scan", post(permissions::scan))
}

pub async fn not_found(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found(format!("No API route for {method} {}", uri.path()))
}

pub async fn method_not_allowed(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
