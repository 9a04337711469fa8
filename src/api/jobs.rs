//! `/jobs`: the job queue for admins — list by state, queue and type with cursor paging, look at
//! one, bring a dead job back, cancel one that has not started. An adapter over
//! `jobs::admin` (changes through `jobs::admin::actions`).

use axum::extract::State;
use serde_json::{Value, json};

use super::envelope::Envelope;
use super::error::ApiError;
use super::json::{ApiPath, ApiQuery};
use super::sync_services::api_error;
use crate::auth::{CurrentUser, Origin};
use crate::domain::Work;
use crate::jobs::admin::actions::{self, JobChange};
use crate::jobs::admin::{self, JobFilter};
use crate::state::AppState;

/// `GET /jobs?state=&queue=&job_type=&cursor=&limit=`
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiQuery(filter): ApiQuery<JobFilter>,
) -> Result<Envelope<Value>, ApiError> {
    actions::require_admin(&user.actor(&origin))?;
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
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
) -> Result<Envelope<Value>, ApiError> {
    actions::require_admin(&user.actor(&origin))?;
    let client = state.db().get().await?;
    Ok(Envelope(json!(
        admin::get_job(&**client, id).await.map_err(api_error)?
    )))
}

/// `POST /jobs/{id}/retry`: a dead job runs again with a fresh attempt count.
pub async fn retry(
    state: State<AppState>,
    user: CurrentUser,
    origin: Origin,
    id: ApiPath<i64>,
) -> Result<Envelope<Value>, ApiError> {
    change(state, user, origin, id, JobChange::Retry).await
}

/// `POST /jobs/{id}/cancel`: only jobs that have not started.
pub async fn cancel(
    state: State<AppState>,
    user: CurrentUser,
    origin: Origin,
    id: ApiPath<i64>,
) -> Result<Envelope<Value>, ApiError> {
    change(state, user, origin, id, JobChange::Cancel).await
}

async fn change(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(id): ApiPath<i64>,
    what: JobChange,
) -> Result<Envelope<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let job = actions::change_job(&mut work, &user.actor(&origin), id, what).await?;
    let _ = work.commit().await?;
    Ok(Envelope(json!(job)))
}
