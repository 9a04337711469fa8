//! The fake's HTTP side: one handler in front of every path does what Ozon does before any
//! method (authentication, then the test's knobs), then each endpoint validates its request as
//! Ozon documents (limits, batch sizes, filters) and answers from the generated data.
//!
//! Every call is logged, whatever the answer, so tests can count retries as well as successes.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::catalog::{self, Catalog};
use super::knobs::{CallRecord, FaultKind};
use super::{FakeState, Shop, lock, read};
use crate::ozon::client::{
    Endpoint, FBS_STOCKS_MAX_SKUS, FILTER_MAX_IDS, MAX_PAGE_LIMIT, PRODUCT_INFO_MAX_IDS,
    Visibility, parse_time,
};

/// A refusal: HTTP status and message (the Ozon code follows from the status).
type Reject = (u16, String);

pub(crate) fn router(state: Arc<FakeState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

async fn handle(
    State(state): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let body: Option<Value> = serde_json::from_slice(&body).ok();
    let response = answer(&state, &method, uri.path(), &headers, body.as_ref()).await;
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    lock(&state.log).record(CallRecord {
        at,
        path: uri.path().to_owned(),
        client_id: text("client-id"),
        request_id: text("x-request-id"),
        status: response.status().as_u16(),
        body: body.unwrap_or(Value::Null),
    });
    response
}

async fn answer(
    state: &FakeState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> Response {
    if method != Method::POST {
        return error(405, "method not allowed");
    }
    let Some(endpoint) = Endpoint::from_path(path) else {
        return error(404, "Not Found");
    };
    let Some(shop) = authenticate(state, headers) else {
        return error(401, "Invalid Api-Key, please contact support");
    };
    let (delay, auth_failure, fault) = {
        let mut k = lock(&shop.knobs);
        let fault = match k.auth_failure {
            Some(_) => None,
            None => k.take_fault(endpoint),
        };
        (k.delay, k.auth_failure, fault)
    };
    if !delay.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = state.stop.cancelled() => return error(503, "shutting down"),
        }
    }
    if let Some(status) = auth_failure {
        return error(
            status,
            "Api-key is deactivated or has no access to this method",
        );
    }
    match fault {
        Some(FaultKind::Status(status)) => return error(status, "injected failure"),
        Some(FaultKind::RateLimited { retry_after }) => {
            let mut r = error(429, "You have reached request rate limit per second");
            if let Some(secs) = retry_after
                && let Ok(v) = secs.to_string().parse()
            {
                r.headers_mut().insert("retry-after", v);
            }
            return r;
        }
        Some(FaultKind::Malformed) => {
            let truncated = r#"{"result":{"items":[{"product_id":12,"offer_id":"#;
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                truncated,
            )
                .into_response();
        }
        None => {}
    }
    let Some(body) = body else {
        return error(400, "invalid request: the body is not JSON");
    };
    let result = match endpoint {
        Endpoint::ProductList => product_list(shop, body),
        Endpoint::ProductInfoList => product_info(shop, body),
        Endpoint::ProductPrices => prices(shop, body),
        Endpoint::FbsStocks => fbs_stocks(shop, body),
        Endpoint::ProductAttributes => attributes(shop, body),
        Endpoint::PostingFbsList => posting_list(shop, body),
        Endpoint::PostingFbsGet => posting_get(shop, body),
        Endpoint::WarehouseList => Ok(json!({"result": read(&shop.orders).warehouses()})),
    };
    match result {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err((status, message)) => error(status, &message),
    }
}

fn authenticate<'a>(state: &'a FakeState, headers: &HeaderMap) -> Option<&'a Shop> {
    let client_id = headers.get("client-id")?.to_str().ok()?;
    let api_key = headers.get("api-key")?.to_str().ok()?;
    state
        .shops
        .iter()
        .find(|s| s.id.client_id == client_id && s.id.api_key == api_key)
}

/// Ozon's error body; `code` is the gRPC code Ozon uses for that HTTP status.
fn error(status: u16, message: &str) -> Response {
    let code = match status {
        400 => 3,
        401 => 16,
        403 => 7,
        404 => 5,
        429 => 8,
        500 => 13,
        503 => 14,
        _ => 2,
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"code": code, "message": message, "details": []});
    (status, axum::Json(body)).into_response()
}

fn parse<T: DeserializeOwned>(body: &Value) -> Result<T, Reject> {
    T::deserialize(body).map_err(|e| (400, format!("invalid request: {e}")))
}

fn limit(value: Option<i64>) -> Result<usize, Reject> {
    match value {
        Some(n) if (1..=i64::from(MAX_PAGE_LIMIT)).contains(&n) => Ok(n as usize),
        _ => Err((
            400,
            format!("invalid request: limit must be between 1 and {MAX_PAGE_LIMIT}"),
        )),
    }
}

fn time(value: Option<&str>, field: &str) -> Result<Option<DateTime<Utc>>, Reject> {
    match value {
        None => Ok(None),
        Some(s) => parse_time(s).map_err(|e| (400, format!("invalid request: {field}: {e}"))),
    }
}

fn cursor(value: &str) -> Result<Option<usize>, Reject> {
    if value.is_empty() {
        return Ok(None);
    }
    catalog::parse_cursor(value)
        .map(Some)
        .ok_or_else(|| (400, "invalid request: unknown last_id/cursor".to_owned()))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct IdFilter {
    offer_id: Vec<String>,
    product_id: Vec<i64>,
    sku: Vec<i64>,
    visibility: Option<Visibility>,
    last_changed_since: Option<String>,
}

impl IdFilter {
    /// The products named, sorted (`None`: no id filter), refusing more than `max` ids.
    fn candidates(&self, c: &Catalog, max: usize) -> Result<Option<Vec<usize>>, Reject> {
        let n = self.offer_id.len() + self.product_id.len() + self.sku.len();
        if n > max {
            return Err((
                400,
                format!("invalid request: at most {max} identifiers per request, got {n}"),
            ));
        }
        if n == 0 {
            return Ok(None);
        }
        let mut v: Vec<usize> = self
            .offer_id
            .iter()
            .filter_map(|o| c.by_offer_id(o))
            .chain(self.product_id.iter().filter_map(|&p| c.by_product_id(p)))
            .chain(self.sku.iter().filter_map(|&s| c.by_sku(s)))
            .collect();
        v.sort_unstable();
        v.dedup();
        Ok(Some(v))
    }
}

/// One cursor page over the catalogue: (indices, next cursor, total).
fn cursor_page(
    c: &Catalog,
    filter: &IdFilter,
    after: &str,
    limit: usize,
) -> Result<(Vec<usize>, String, usize), Reject> {
    let candidates = filter.candidates(c, FILTER_MAX_IDS)?;
    let since = time(filter.last_changed_since.as_deref(), "last_changed_since")?;
    let vis = filter.visibility.unwrap_or_default();
    let page = c.page(candidates.as_deref(), vis, since, cursor(after)?, limit);
    // Ozon hands out a cursor with every full page; the page after the last is empty.
    let next = match page.last() {
        Some(&last) if page.len() == limit => catalog::cursor(last),
        _ => String::new(),
    };
    let total = c.total(candidates.as_deref(), vis, since);
    Ok((page, next, total))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CursorRequest {
    filter: IdFilter,
    last_id: String,
    cursor: String,
    limit: Option<i64>,
}

fn product_list(shop: &Shop, body: &Value) -> Result<Value, Reject> {
    let req: CursorRequest = parse(body)?;
    let c = read(&shop.catalog);
    let (page, last_id, total) = cursor_page(&c, &req.filter, &req.last_id, limit(req.limit)?)?;
    let items: Vec<Value> = page.into_iter().map(|i| c.list_item(i)).collect();
    Ok(json!({"result": {"items": items, "total": total, "last_id": last_id}}))
}

fn product_info(shop: &Shop, body: &Value) -> Result<Value, Reject> {
    let req: IdFilter = parse(body)?;
    let c = read(&shop.catalog);
    let items: Vec<Value> = req
        .candidates(&c, PRODUCT_INFO_MAX_IDS)?
        .unwrap_or_default()
        .into_iter()
        .map(|i| c.info(i))
        .collect();
    Ok(json!({"items": items}))
}

fn prices(shop: &Shop, body: &Value) -> Result<Value, Reject> {
    let req: CursorRequest = parse(body)?;
    let c = read(&shop.catalog);
    let (page, next, total) = cursor_page(&c, &req.filter, &req.cursor, limit(req.limit)?)?;
    let items: Vec<Value> = page.into_iter().map(|i| c.price(i)).collect();
    Ok(json!({"cursor": next, "items": items, "total": total}))
}

fn fbs_stocks(shop: &Shop, body: &Value) -> Result<Value, Reject> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Req {
        sku: Vec<i64>,
    }
    let req: Req = parse(body)?;
    if req.sku.len() > FBS_STOCKS_MAX_SKUS {
        return Err((
            400,
            format!("invalid request: at most {FBS_STOCKS_MAX_SKUS} sku per request"),
        ));
    }
    let c = read(&shop.catalog);
    let rows: Vec<Value> = req
        .sku
        .iter()
        .filter_map(|&s| c.by_sku(s))
        .flat_map(|i| c.stock_rows(i))
        .collect();
    Ok(json!({"result": rows}))
}

fn attributes(shop: &Shop, body: &Value) -> Result<Value, Reject> {
    let req: CursorRequest = parse(body)?;
    let c = read(&shop.catalog);
    let (page, last_id, total) = cursor_page(&c, &req.filter, &req.last_id, limit(req.limit)?)?;
    let items: Vec<Value> = page.into_iter().map(|i| c.attributes(i)).collect();
    Ok(json!({"result": items, "last_id": last_id, "total": total}))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct With {
    analytics_data: bool,
    financial_data: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Range {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PostingFilter {
    since: Option<String>,
    to: Option<String>,
    status: Option<String>,
    last_changed_status_date: Option<Range>,
    warehouse_id: Vec<i64>,
    delivery_method_id: Vec<i64>,
}

fn posting_list(shop: &Shop, body: &Value) -> Result<Value, Reject> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Req {
        dir: Option<String>,
        filter: PostingFilter,
        limit: Option<i64>,
        offset: Option<i64>,
        with: With,
    }
    let req: Req = parse(body)?;
    let limit = limit(req.limit)?;
    let offset = usize::try_from(req.offset.unwrap_or(0)).map_err(|_| {
        (
            400,
            "invalid request: offset must not be negative".to_owned(),
        )
    })?;
    let desc = match req.dir.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("ASC") => false,
        Some("DESC") => true,
        Some(other) => return Err((400, format!("invalid request: dir {other:?}"))),
    };
    let f = &req.filter;
    let since = time(f.since.as_deref(), "filter.since")?;
    let to = time(f.to.as_deref(), "filter.to")?;
    let (changed_from, changed_to) = match &f.last_changed_status_date {
        Some(r) => (
            time(r.from.as_deref(), "last_changed_status_date.from")?,
            time(r.to.as_deref(), "last_changed_status_date.to")?,
        ),
        None => (None, None),
    };
    let o = read(&shop.orders);
    // Processing time is index order: the since/to window is a range of indices, found by
    // binary search, so paging a big shop does not rescan it for every page.
    let range = o.range(since, to);
    let any_filter = changed_from.is_some()
        || changed_to.is_some()
        || f.status.is_some()
        || !f.warehouse_id.is_empty()
        || !f.delivery_method_id.is_empty();
    let matches = |i: &usize| {
        let i = *i;
        let changed = || o.status_changed_at(i);
        changed_from.is_none_or(|t| changed() >= t)
            && changed_to.is_none_or(|t| changed() <= t)
            && f.status.as_deref().is_none_or(|s| o.status(i) == s)
            && (f.warehouse_id.is_empty() || f.warehouse_id.contains(&o.warehouse_id(i)))
            && (f.delivery_method_id.is_empty()
                || f.delivery_method_id.contains(&o.delivery_method_id(i)))
    };
    let ordered: Box<dyn Iterator<Item = usize>> = match (desc, any_filter) {
        (false, false) => Box::new(range),
        (true, false) => Box::new(range.rev()),
        (false, true) => Box::new(range.filter(matches)),
        (true, true) => Box::new(range.rev().filter(matches)),
    };
    let mut selected = ordered.skip(offset);
    let page: Vec<usize> = selected.by_ref().take(limit).collect();
    let has_next = selected.next().is_some();
    let postings: Vec<Value> = page
        .into_iter()
        .map(|i| o.posting(i, req.with.analytics_data, req.with.financial_data))
        .collect();
    Ok(json!({"result": {"postings": postings, "has_next": has_next}}))
}

fn posting_get(shop: &Shop, body: &Value) -> Result<Value, Reject> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Req {
        posting_number: String,
        with: With,
    }
    let req: Req = parse(body)?;
    if req.posting_number.is_empty() {
        return Err((
            400,
            "invalid request: posting_number is required".to_owned(),
        ));
    }
    let o = read(&shop.orders);
    let idx = o
        .by_posting_number(&req.posting_number)
        .ok_or_else(|| (404, "posting not found".to_owned()))?;
    let posting = o.posting(idx, req.with.analytics_data, req.with.financial_data);
    Ok(json!({"result": posting}))
}
