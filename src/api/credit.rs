//! `/credit/*` (every logged-in user) and `/admin/credit/*` (admins): the credit ledger — an
//! adapter over `credit`. Bare JSON objects as the original (no envelope); money as decimal
//! strings.

use axum::Json;
use axum::extract::State;
use http::HeaderMap;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::json::{ApiJson, ApiPath, ApiQuery};
use crate::auth::{CurrentUser, Origin};
use crate::credit::{
    self, AccountFilter, MAX_AMOUNT, MAX_BALANCE, ModuleChanges, Page, Recharge, RechargeFilter,
    TxFilter,
};
use crate::domain::{Checks, Work};
use crate::ozon;
use crate::state::AppState;

/// Most postings one estimate may name.
const MAX_POSTINGS: usize = 1000;
/// The `ozon_postings.posting_number` column's width.
const MAX_POSTING_NUMBER: usize = 100;
/// The module whose reprints are free.
const PRINT_LABEL: &str = "print_label";

/// An empty query value is no filter (the web app's cleared selects).
fn given(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// `GET /credit/balance`: for every role (the web app asks at every non-admin login; an admin
/// sees its own account).
pub async fn balance(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(credit::balance(&client, &user.actor(&origin)).await?))
}

#[derive(Debug, Deserialize)]
pub struct CalculateBody {
    module: String,
    #[serde(default)]
    posting_numbers: Vec<String>,
    /// Labels printed before are free (`print_label` only, the original's rule).
    #[serde(default = "yes")]
    exclude_reprints: bool,
}

fn yes() -> bool {
    true
}

/// `POST /credit/calculate`: what a charge would cost now. One unit per distinct posting number
/// (one when none is given), as the original's modules; for `print_label` with
/// `exclude_reprints` (the default) the postings whose label was printed before are free.
pub async fn calculate(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiJson(b): ApiJson<CalculateBody>,
) -> Result<Json<Value>, ApiError> {
    let mut checks = Checks::new();
    checks.len_between(&b.module, "module", 1, 50);
    checks.check(
        b.posting_numbers.len() <= MAX_POSTINGS,
        "posting_numbers",
        "too_long",
        format!("at most {MAX_POSTINGS}"),
    );
    checks.check(
        b.posting_numbers
            .iter()
            .all(|p| !p.trim().is_empty() && p.len() <= MAX_POSTING_NUMBER),
        "posting_numbers",
        "value_error",
        format!("each 1 to {MAX_POSTING_NUMBER} characters"),
    );
    checks.finish()?;
    // A batch naming a posting twice prints its label once.
    let mut postings: Vec<String> = b
        .posting_numbers
        .iter()
        .map(|p| p.trim().to_owned())
        .collect();
    postings.sort_unstable();
    postings.dedup();
    let units = u32::try_from(postings.len().max(1)).unwrap_or(u32::MAX);
    let client = state.db().get().await?;
    let actor = user.actor(&origin);
    let reprints = if b.module == PRINT_LABEL && b.exclude_reprints {
        ozon::postings::already_printed(&client, &actor, &postings).await?
    } else {
        0
    };
    let e = credit::calculate(&client, &actor, &b.module, units, reprints).await?;
    Ok(Json(json!({
        "total_cost": e.total_cost.to_string(),
        "unit_cost": e.unit_cost.to_string(),
        "billable_count": e.billable_count,
        "reprint_count": e.reprint_count,
        "current_balance": e.current_balance.to_string(),
        "sufficient": e.sufficient,
        "credit_name": e.credit_name,
    })))
}

/// `POST /credit/mute-alert` (no body): no low-balance popup until the next recharge.
pub async fn mute_alert(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Json<Value>, ApiError> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    credit::mute_alert(&mut work, &user.actor(&origin)).await?;
    let _ = work.commit().await?;
    Ok(Json(json!({"muted": true})))
}

#[derive(Debug, Deserialize)]
pub struct TxQuery {
    transaction_type: Option<String>,
    module: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
    page: Option<i64>,
    page_size: Option<i64>,
}

/// `GET /credit/transactions`
pub async fn transactions(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiQuery(q): ApiQuery<TxQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = Page::new(q.page, q.page_size)?;
    let filter = TxFilter {
        transaction_type: given(q.transaction_type),
        module: given(q.module),
        start_date: given(q.start_date),
        end_date: given(q.end_date),
    };
    let client = state.db().get().await?;
    Ok(Json(
        credit::transactions(&client, &user.actor(&origin), &filter, page).await?,
    ))
}

/// `GET /credit/module-configs`
pub async fn module_configs(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(
        credit::module_configs(&client, &user.actor(&origin), false).await?,
    ))
}

// ---------------------------------------------------------------------------------------------
// Admins

#[derive(Debug, Deserialize)]
pub struct RechargeBody {
    user_id: i64,
    amount: String,
    #[serde(default = "manual")]
    payment_method: String,
    #[serde(default)]
    payment_amount_cny: Option<String>,
    #[serde(default)]
    payment_order_no: Option<String>,
    #[serde(default)]
    notes: Option<String>,
    /// Or the `Idempotency-Key` header: the same key recharges once.
    #[serde(default)]
    idempotency_key: Option<String>,
}

fn manual() -> String {
    "manual".into()
}

/// `POST /admin/credit/recharge`
pub async fn recharge(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    headers: HeaderMap,
    ApiJson(b): ApiJson<RechargeBody>,
) -> Result<Json<Value>, ApiError> {
    let mut checks = Checks::new();
    let amount = checks.parsed(
        "amount",
        credit::parse_amount(&b.amount, 4, true, MAX_AMOUNT),
    );
    let cny = match given(b.payment_amount_cny) {
        None => None,
        Some(s) => checks.parsed(
            "payment_amount_cny",
            credit::parse_amount(&s, 2, false, MAX_BALANCE),
        ),
    };
    let order_no = given(b.payment_order_no);
    if let Some(o) = &order_no {
        checks.len_between(o, "payment_order_no", 1, 64);
    }
    let notes = given(b.notes);
    if let Some(n) = &notes {
        checks.len_between(n, "notes", 1, 1000);
    }
    checks.finish()?;
    let header_key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str().map(str::to_owned).map_err(|_| {
                ApiError::new(
                    http::StatusCode::BAD_REQUEST,
                    "INVALID_IDEMPOTENCY_KEY",
                    "The Idempotency-Key header must be printable ASCII",
                )
            })
        })
        .transpose()?;
    // `finish` passed, so the amount parsed.
    let Some(amount) = amount else {
        return Err(ApiError::internal());
    };
    let r = Recharge {
        user_id: b.user_id,
        amount,
        payment_method: b.payment_method,
        payment_amount_cny: cny,
        payment_order_no: order_no,
        notes,
        idempotency_key: header_key.or(given(b.idempotency_key)),
    };
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let done = credit::recharge(&mut work, &user.actor(&origin), &r).await?;
    let _ = work.commit().await?;
    Ok(Json(json!({
        "transaction_id": done.transaction_id,
        "balance_before": done.balance_before.to_string(),
        "balance_after": done.balance_after.to_string(),
        "amount": done.amount.to_string(),
    })))
}

#[derive(Debug, Deserialize)]
pub struct AccountsQuery {
    search: Option<String>,
    role: Option<String>,
    page: Option<i64>,
    page_size: Option<i64>,
}

/// `GET /admin/credit/accounts`
pub async fn accounts(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiQuery(q): ApiQuery<AccountsQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = Page::new(q.page, q.page_size)?;
    let filter = AccountFilter {
        search: given(q.search),
        role: given(q.role),
    };
    let client = state.db().get().await?;
    Ok(Json(
        credit::accounts(&client, &user.actor(&origin), &filter, page).await?,
    ))
}

#[derive(Debug, Deserialize)]
pub struct RechargesQuery {
    user_id: Option<i64>,
    start_date: Option<String>,
    end_date: Option<String>,
    page: Option<i64>,
    page_size: Option<i64>,
}

/// `GET /admin/credit/recharge-records`
pub async fn recharge_records(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiQuery(q): ApiQuery<RechargesQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = Page::new(q.page, q.page_size)?;
    let filter = RechargeFilter {
        user_id: q.user_id,
        start_date: given(q.start_date),
        end_date: given(q.end_date),
    };
    let client = state.db().get().await?;
    Ok(Json(
        credit::recharge_records(&client, &user.actor(&origin), &filter, page).await?,
    ))
}

/// `GET /admin/credit/module-configs`
pub async fn admin_module_configs(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
) -> Result<Json<Value>, ApiError> {
    let client = state.db().get().await?;
    Ok(Json(
        credit::module_configs(&client, &user.actor(&origin), true).await?,
    ))
}

#[derive(Debug, Deserialize)]
pub struct ModuleBody {
    #[serde(default)]
    cost_per_unit: Option<String>,
    #[serde(default)]
    module_name: Option<String>,
    #[serde(default)]
    unit_description: Option<String>,
    #[serde(default)]
    is_enabled: Option<bool>,
}

/// `PUT /admin/credit/module-configs/{module_key}`
pub async fn update_module_config(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(module_key): ApiPath<String>,
    ApiJson(b): ApiJson<ModuleBody>,
) -> Result<Json<Value>, ApiError> {
    let mut checks = Checks::new();
    let cost: Option<Decimal> = match given(b.cost_per_unit) {
        None => None,
        Some(s) => checks.parsed(
            "cost_per_unit",
            credit::parse_amount(&s, 4, false, MAX_AMOUNT),
        ),
    };
    checks.finish()?;
    let changes = ModuleChanges {
        cost_per_unit: cost,
        module_name: b.module_name,
        unit_description: b.unit_description,
        is_enabled: b.is_enabled,
    };
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let v = credit::update_module_config(&mut work, &user.actor(&origin), &module_key, &changes)
        .await?;
    let _ = work.commit().await?;
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
pub struct ThresholdBody {
    /// The original sent the path's user id again; when given it must agree.
    #[serde(default)]
    user_id: Option<i64>,
    threshold: String,
}

/// `PUT /admin/credit/accounts/{user_id}/threshold` → `{ok, threshold}`
pub async fn set_threshold(
    State(state): State<AppState>,
    user: CurrentUser,
    origin: Origin,
    ApiPath(user_id): ApiPath<i64>,
    ApiJson(b): ApiJson<ThresholdBody>,
) -> Result<Json<Value>, ApiError> {
    let mut checks = Checks::new();
    checks.check(
        b.user_id.is_none_or(|id| id == user_id),
        "user_id",
        "value_error",
        "must be the user id of the path",
    );
    let threshold = checks.parsed(
        "threshold",
        credit::parse_amount(&b.threshold, 4, false, MAX_BALANCE),
    );
    checks.finish()?;
    let Some(threshold) = threshold else {
        return Err(ApiError::internal());
    };
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let stored = credit::set_threshold(&mut work, &user.actor(&origin), user_id, threshold).await?;
    let _ = work.commit().await?;
    Ok(Json(json!({"ok": true, "threshold": stored.to_string()})))
}
