//! Read the request's credentials once — the `Authorization` header or `X-API-Key`, a JWT's
//! signature and expiry verified, a key hashed — and put the result into the request's
//! extensions. The rate limiter takes its subject from it, the `CurrentUser` extractor its
//! identity; nothing parses or verifies the credentials a second time.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::auth::credentials::Presented;
use crate::state::AppState;

/// The request's credentials, as the layer found them.
#[derive(Debug, Clone)]
pub struct Authentication {
    pub presented: Presented,
}

pub async fn credentials(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = Presented::from_headers(req.headers(), &state.auth().keys);
    req.extensions_mut().insert(Authentication { presented });
    next.run(req).await
}
