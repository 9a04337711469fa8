//! `/ozon/*`: the sellers' business pages — adapters over `crate::ozon`'s services. Shop-bearing
//! routes never trust an id: the services scope every request by the shops the caller may see
//! (`ozon::tenancy`), so another tenant's shop is a 404.

pub mod orders;
pub mod products;
pub mod shops;
pub mod tasks;
pub mod webhook;

use axum::Router;
use axum::routing::{get, post, put};

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/ozon/shops", get(shops::list).post(shops::create))
        .route("/ozon/shops/management", get(shops::management))
        .route(
            "/ozon/shops/{shop_id}",
            put(shops::update).delete(shops::delete),
        )
        .route(
            "/ozon/shops/{shop_id}/test-connection",
            post(shops::test_connection),
        )
        .route("/ozon/shops/{shop_id}/sync", post(products::sync_shop))
        .route("/ozon/products", get(products::list))
        .route("/ozon/products/sync", post(products::sync_products))
        .route("/ozon/products/{id}/sync", post(products::sync_product))
        .route(
            "/ozon/products/{id}/sync-errors",
            get(products::sync_errors),
        )
        .route("/ozon/statistics", get(products::statistics))
        .route("/ozon/daily-stats", get(orders::daily_stats))
        .route("/ozon/orders", get(orders::list))
        .route("/ozon/orders/sync", post(orders::sync))
        .route("/ozon/orders/{posting_number}", get(orders::detail))
        .route("/ozon/orders/{posting_number}/sync", post(orders::sync_one))
        .route("/ozon/global-settings", get(orders::global_settings_all))
        .route(
            "/ozon/global-settings/{key}",
            get(orders::global_setting).put(orders::put_global_setting),
        )
        .route("/ozon/sync/status/{task_id}", get(tasks::status))
        .route(
            "/ozon/shops/{shop_id}/webhook",
            get(webhook::shop_config).post(webhook::rotate),
        )
        .route("/ozon/webhook", post(webhook::receive_legacy))
        .route("/ozon/webhook/health", get(webhook::health))
        .route("/audit/webhooks/logs", get(webhook::audit_logs))
        .route("/audit/webhooks/logs/{id}", get(webhook::audit_log))
        .route("/ozon/webhook/events", get(webhook::events))
        .route("/ozon/webhook/events/{id}/retry", post(webhook::retry))
        .route("/ozon/webhook/{shop_id}/{secret}", post(webhook::receive))
        .route(
            "/ozon/scan-shipping/access",
            get(shops::scan_shipping_access),
        )
        .route("/ozon/watermark/configs", get(products::watermark_configs))
}
