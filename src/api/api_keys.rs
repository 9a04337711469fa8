//! `/api-keys/`: a user's keys for scripts and the browser extension. The key is shown once, at
//! creation or regeneration; only its SHA-256 is stored.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::json::ApiJson;
use super::validate::{Checks, string_list_problem};
use crate::auth::api_keys::{self, DEFAULT_PERMISSIONS, MAX_PER_USER};
use crate::auth::audit::{self, Entry};
use crate::auth::{CurrentUser, RequestMeta};
use crate::db::DbError;
use crate::state::AppState;

fn not_found() -> ApiError {
    ApiError::coded(
        StatusCode::NOT_FOUND,
        "API_KEY_NOT_FOUND",
        "No such API key",
    )
}

#[derive(Debug, Deserialize)]
pub struct CreateBody {
    name: String,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    expires_in_days: Option<i64>,
}

/// `POST /api-keys/` → 201
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    meta: RequestMeta,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    user.require_session()?;
    user.require_shops()?;
    let name = body.name.trim().to_owned();
    let permissions = body.permissions.clone().unwrap_or_else(|| {
        DEFAULT_PERMISSIONS
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    });
    let mut checks = Checks::new();
    checks.len_between(&name, "name", 1, 100);
    if let Some(why) = string_list_problem(&permissions, 50, 100) {
        checks.check(false, "permissions", "value_error", why);
    }
    if let Some(d) = body.expires_in_days {
        checks.check(
            (1..=3650).contains(&d),
            "expires_in_days",
            "value_error",
            "must be 1 to 3650 days",
        );
    }
    checks.finish()?;
    let expires_at: Option<DateTime<Utc>> =
        body.expires_in_days.map(|d| Utc::now() + Duration::days(d));
    let (key, hash) = api_keys::generate();
    let mut client = state.db().get().await?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    // Serialise this user's key creations so the limit holds under concurrency.
    tx.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&user.id])
        .await
        .map_err(DbError::from)?;
    let count: i64 = tx
        .query_one(
            "SELECT count(*) FROM api_keys WHERE user_id = $1",
            &[&user.id],
        )
        .await
        .map_err(DbError::from)?
        .get(0);
    if count >= MAX_PER_USER {
        return Err(ApiError::coded(
            StatusCode::BAD_REQUEST,
            "API_KEY_LIMIT",
            format!("At most {MAX_PER_USER} API keys per user; delete one first"),
        ));
    }
    let row = tx
        .query_one(
            "INSERT INTO api_keys (user_id, key_hash, name, permissions, expires_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at",
            &[&user.id, &hash, &name, &json!(permissions), &expires_at],
        )
        .await
        .map_err(DbError::from)?;
    let id: i64 = row.get(0);
    let created_at: DateTime<Utc> = row.get(1);
    audit::write(
        &*tx,
        &user.actor(&meta),
        Entry::new("api_key", "create", "创建API密钥")
            .record("api_keys", id)
            .changes(json!({"name": name})),
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "key_id": id,
            "key": key,
            "name": name,
            "permissions": permissions,
            "expires_at": expires_at,
            "created_at": created_at,
        })),
    )
        .into_response())
}

/// `GET /api-keys/`: the user's own keys, without secrets.
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    user.require_session()?;
    user.require_shops()?;
    let client = state.db().get().await?;
    let rows = client
        .query(
            "SELECT id, name, permissions, is_active, last_used_at, expires_at, created_at, updated_at
               FROM api_keys WHERE user_id = $1 ORDER BY id",
            &[&user.id],
        )
        .await
        .map_err(DbError::from)?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "id": r.get::<_, i64>(0),
                    "name": r.get::<_, String>(1),
                    "permissions": r.get::<_, Value>(2),
                    "is_active": r.get::<_, bool>(3),
                    "last_used_at": r.get::<_, Option<DateTime<Utc>>>(4),
                    "expires_at": r.get::<_, Option<DateTime<Utc>>>(5),
                    "created_at": r.get::<_, DateTime<Utc>>(6),
                    "updated_at": r.get::<_, DateTime<Utc>>(7),
                })
            })
            .collect(),
    )))
}

/// `DELETE /api-keys/{id}` → 204
pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    meta: RequestMeta,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    user.require_session()?;
    user.require_shops()?;
    let client = state.db().get().await?;
    let n = client
        .execute(
            "DELETE FROM api_keys WHERE id = $1 AND user_id = $2",
            &[&id, &user.id],
        )
        .await
        .map_err(DbError::from)?;
    if n == 0 {
        return Err(not_found());
    }
    audit::write(
        &**client,
        &user.actor(&meta),
        Entry::new("api_key", "delete", "删除API密钥").record("api_keys", id),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api-keys/{id}/regenerate`: a new secret for the same key; the old one stops working.
pub async fn regenerate(
    State(state): State<AppState>,
    user: CurrentUser,
    meta: RequestMeta,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    user.require_session()?;
    user.require_shops()?;
    let (key, hash) = api_keys::generate();
    let client = state.db().get().await?;
    let row = client
        .query_opt(
            "UPDATE api_keys SET key_hash = $3, updated_at = now()
              WHERE id = $1 AND user_id = $2
          RETURNING name, permissions, expires_at, updated_at",
            &[&id, &user.id, &hash],
        )
        .await
        .map_err(DbError::from)?
        .ok_or_else(not_found)?;
    audit::write(
        &**client,
        &user.actor(&meta),
        Entry::new("api_key", "regenerate", "重新生成API密钥").record("api_keys", id),
    )
    .await?;
    Ok(Json(json!({
        "key_id": id,
        "key": key,
        "name": row.get::<_, String>(0),
        "permissions": row.get::<_, Value>(1),
        "expires_at": row.get::<_, Option<DateTime<Utc>>>(2),
        "updated_at": row.get::<_, DateTime<Utc>>(3),
    })))
}
