//! `/account-levels`: quotas for main accounts (sub-accounts, shops, default expiry). Admins only.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::unique_violation;
use super::error::ApiError;
use super::json::ApiJson;
use super::validate::Checks;
use crate::auth::audit::{self, Entry};
use crate::auth::{CurrentUser, RequestMeta, Role};
use crate::db::DbError;
use crate::state::AppState;

const COLUMNS: &str = "id, name, alias, max_sub_accounts, max_shops, default_expiration_days, \
                       extra_config, is_default, sort_order, created_at, updated_at";

fn to_json(r: &tokio_postgres::Row) -> Value {
    json!({
        "id": r.get::<_, i64>(0),
        "name": r.get::<_, String>(1),
        "alias": r.get::<_, Option<String>>(2),
        "max_sub_accounts": r.get::<_, i32>(3),
        "max_shops": r.get::<_, i32>(4),
        "default_expiration_days": r.get::<_, i32>(5),
        "extra_config": r.get::<_, Value>(6),
        "is_default": r.get::<_, bool>(7),
        "sort_order": r.get::<_, i32>(8),
        "created_at": r.get::<_, DateTime<Utc>>(9),
        "updated_at": r.get::<_, DateTime<Utc>>(10),
    })
}

fn not_found() -> ApiError {
    ApiError::coded(
        StatusCode::NOT_FOUND,
        "LEVEL_NOT_FOUND",
        "No such account level",
    )
}

fn admin(user: &CurrentUser) -> Result<(), ApiError> {
    user.require_session()?;
    user.require_role(Role::Admin)
}

pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    admin(&user)?;
    let client = state.db().get().await?;
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM account_levels ORDER BY sort_order, id"),
            &[],
        )
        .await
        .map_err(DbError::from)?;
    Ok(Json(Value::Array(rows.iter().map(to_json).collect())))
}

pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    admin(&user)?;
    let client = state.db().get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM account_levels WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(DbError::from)?
        .ok_or_else(not_found)?;
    Ok(Json(to_json(&row)))
}

#[derive(Debug, Deserialize, Default)]
pub struct LevelBody {
    name: Option<String>,
    alias: Option<String>,
    max_sub_accounts: Option<i32>,
    max_shops: Option<i32>,
    default_expiration_days: Option<i32>,
    extra_config: Option<Value>,
    is_default: Option<bool>,
    sort_order: Option<i32>,
}

fn check(b: &LevelBody, creating: bool) -> Result<(), ApiError> {
    let mut c = Checks::new();
    match &b.name {
        Some(n) => {
            c.len_between(n.trim(), "name", 1, 50);
        }
        None => {
            c.check(!creating, "name", "missing", "is required");
        }
    }
    if let Some(a) = &b.alias {
        c.len_between(a, "alias", 0, 50);
    }
    for (v, loc) in [
        (b.max_sub_accounts, "max_sub_accounts"),
        (b.max_shops, "max_shops"),
        (b.default_expiration_days, "default_expiration_days"),
    ] {
        if let Some(v) = v {
            c.check(
                (0..=100_000).contains(&v),
                loc,
                "value_error",
                "must be 0 to 100000",
            );
        }
    }
    if let Some(x) = &b.extra_config {
        c.check(
            x.is_object() && x.to_string().len() <= 16 * 1024,
            "extra_config",
            "value_error",
            "must be a JSON object of at most 16 KiB",
        );
    }
    c.finish()
}

/// `POST /account-levels` → 201. Making a level the default clears the previous default.
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    meta: RequestMeta,
    ApiJson(b): ApiJson<LevelBody>,
) -> Result<Response, ApiError> {
    admin(&user)?;
    check(&b, true)?;
    let mut client = state.db().get().await?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    let is_default = b.is_default.unwrap_or(false);
    if is_default {
        tx.execute(
            "UPDATE account_levels SET is_default = false WHERE is_default",
            &[],
        )
        .await
        .map_err(DbError::from)?;
    }
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO account_levels (name, alias, max_sub_accounts, max_shops, default_expiration_days,
                                             extra_config, is_default, sort_order)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
            ),
            &[
                &b.name.as_deref().map(str::trim),
                &b.alias,
                &b.max_sub_accounts.unwrap_or(5),
                &b.max_shops.unwrap_or(10),
                &b.default_expiration_days.unwrap_or(30),
                &b.extra_config.clone().unwrap_or_else(|| json!({})),
                &is_default,
                &b.sort_order.unwrap_or(0),
            ],
        )
        .await
        .map_err(|e| unique_violation(e, "LEVEL_EXISTS", "A level with this name exists"))?;
    let v = to_json(&row);
    audit::write(
        &*tx,
        &user.actor(&meta),
        Entry::new("account_level", "create", "创建账号等级")
            .record("account_levels", &v["id"])
            .changes(v.clone()),
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// `PUT /account-levels/{id}`: partial update.
pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    meta: RequestMeta,
    Path(id): Path<i64>,
    ApiJson(b): ApiJson<LevelBody>,
) -> Result<Json<Value>, ApiError> {
    admin(&user)?;
    check(&b, false)?;
    let mut client = state.db().get().await?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    let before = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM account_levels WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await
        .map_err(DbError::from)?
        .ok_or_else(not_found)?;
    if b.is_default == Some(true) {
        tx.execute(
            "UPDATE account_levels SET is_default = false WHERE is_default AND id <> $1",
            &[&id],
        )
        .await
        .map_err(DbError::from)?;
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE account_levels SET
                    name = COALESCE($2, name), alias = COALESCE($3, alias),
                    max_sub_accounts = COALESCE($4, max_sub_accounts), max_shops = COALESCE($5, max_shops),
                    default_expiration_days = COALESCE($6, default_expiration_days),
                    extra_config = COALESCE($7, extra_config), is_default = COALESCE($8, is_default),
                    sort_order = COALESCE($9, sort_order), updated_at = now()
                  WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &b.name.as_deref().map(str::trim),
                &b.alias,
                &b.max_sub_accounts,
                &b.max_shops,
                &b.default_expiration_days,
                &b.extra_config,
                &b.is_default,
                &b.sort_order,
            ],
        )
        .await
        .map_err(|e| unique_violation(e, "LEVEL_EXISTS", "A level with this name exists"))?;
    let after = to_json(&row);
    let old = to_json(&before);
    let fields = [
        "name",
        "alias",
        "max_sub_accounts",
        "max_shops",
        "default_expiration_days",
        "extra_config",
        "is_default",
        "sort_order",
    ];
    let pairs: Vec<(&str, Value, Value)> = fields
        .iter()
        .map(|f| (*f, old[*f].clone(), after[*f].clone()))
        .collect();
    audit::write(
        &*tx,
        &user.actor(&meta),
        Entry::new("account_level", "update", "更新账号等级")
            .record("account_levels", id)
            .changes(audit::diff(&pairs)),
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(Json(after))
}

/// `DELETE /account-levels/{id}` → 204; 400 while users reference it.
pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    meta: RequestMeta,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    admin(&user)?;
    let mut client = state.db().get().await?;
    let tx = client.transaction().await.map_err(DbError::from)?;
    let in_use: i64 = tx
        .query_one(
            "SELECT count(*) FROM users WHERE account_level_id = $1",
            &[&id],
        )
        .await
        .map_err(DbError::from)?
        .get(0);
    if in_use > 0 {
        return Err(ApiError::coded(
            StatusCode::BAD_REQUEST,
            "LEVEL_IN_USE",
            format!("{in_use} users have this level; move them first"),
        ));
    }
    let n = tx
        .execute("DELETE FROM account_levels WHERE id = $1", &[&id])
        .await
        .map_err(DbError::from)?;
    if n == 0 {
        return Err(not_found());
    }
    audit::write(
        &*tx,
        &user.actor(&meta),
        Entry::new("account_level", "delete", "删除账号等级").record("account_levels", id),
    )
    .await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(StatusCode::NO_CONTENT)
}
