//! `/jobs`: the job queue for admins — list by state, queue and type with cursor paging, look at
//! one, bring a dead job back, cancel one that has not started.

use axum::extract::{Path, Query, State};
use serde_json::{Value, json};

use super::envelope::Envelope;
use super::error::ApiError;
use super::sync_services::api_error;
use crate::auth::audit::{self, Entry};
use crate::auth::{CurrentUser, Origin, Role};
use crate::jobs::admin::{self, JobFilter};
use crate::state::AppState;

fn admin_only(user: &CurrentUser) -> Result<(), ApiError> {
    let actor = user.actor(&Origin::default());
    actor.require_session()?;
    Ok(actor.require_role(Role::Admin)?)
}

/// `GET /jobs?state=&queue=&job_type=&cursor=&limit=`
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(filter): Query<JobFilter>,
) -> Result<Envelope<Value>, ApiError> {
    admin_only(&user)?;
    let client = state.db().get().await?;
    let page = admin::list_jobs(&**client, &filter)
        .await
        .map_err(api_error)?;
    Ok(Envelope(json!({
        "items": page.jobs,
        "has_more": page.next_cursor.is_some(),
        "next_cursor": page.next_cursor,
    })))
}

/// `GET /jobs/{id}`
pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Envelope<Value>, ApiError> {
    admin_only(&user)?;
    let client = state.db().get().await?;
    Ok(Envelope(json!(
        admin::get_job(&**client, id).await.map_err(api_error)?
    )))
}

/// `POST /jobs/{id}/retry`: a dead job runs again with a fresh attempt count.
pub async fn retry(
    state: State<AppState>,
    user: CurrentUser,
    meta: Origin,
    id: Path<i64>,
) -> Result<Envelope<Value>, ApiError> {
    change(state, user, meta, id, Change::Retry).await
}

/// `POST /jobs/{id}/cancel`: only jobs that have not started.
pub async fn cancel(
    state: State<AppState>,
    user: CurrentUser,
    meta: Origin,
    id: Path<i64>,
) -> Result<Envelope<Value>, ApiError> {
    change(state, user, meta, id, Change::Cancel).await
}

enum Change {
    Retry,
    Cancel,
}

async fn change(
    State(state): State<AppState>,
    user: CurrentUser,
    meta: Origin,
    Path(id): Path<i64>,
    what: Change,
) -> Result<Envelope<Value>, ApiError> {
    admin_only(&user)?;
    let client = state.db().get().await?;
    let (job, entry) = match what {
        Change::Retry => (
            admin::retry_job(&**client, id).await,
            Entry::new("job", "retry", "重试任务"),
        ),
        Change::Cancel => (
            admin::cancel_job(&**client, id).await,
            Entry::new("job", "cancel", "取消任务"),
        ),
    };
    let job = job.map_err(api_error)?;
    audit::write(&client, &user.actor(&meta), entry.record("jobs", id)).await?;
    Ok(Envelope(json!(job)))
}
