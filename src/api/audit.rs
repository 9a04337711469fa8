//! `/audit`: the action log, for admins — an adapter over `auth::audit`. Envelope responses and
//! cursor paging (by id, descending), as the original.

use axum::extract::State;
use serde_json::Value;

use super::envelope::Envelope;
use super::error::ApiError;
use super::json::ApiQuery;
use crate::auth::audit::{self, LogQuery};
use crate::auth::{CurrentUser, Origin};
use crate::state::AppState;

/// `GET /audit/logs`
pub async fn logs(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Envelope<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Envelope(
        audit::logs(&client, &user.actor(&origin), &q).await?,
    ))
}

/// `GET /audit/stats`: last 7 days.
pub async fn stats(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Envelope<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Envelope(audit::stats(&client, &user.actor(&origin)).await?))
}
