//! The order page (contract §1.6, §2.5 O-L/O-D, §2.3 Y2/Y3): the posting list with its tabs,
//! counters, keyword rules, date ranges and paging, a posting's detail, and the sync requests —
//! every request scoped by the shops the caller may see (`tenancy`), so another tenant's shop or
//! posting is "not found".
//!
//! Where the original differs (§7 C9, C11, C12, C18, S-scoping): the order is
//! `in_process_at DESC NULLS LAST, id DESC` (stable pages); date ranges are days of the global
//! time zone (`global_settings`, seeded to the web app's default); the detail is scoped too; a
//! whitespace keyword is "no keyword" instead of a 500; each posting carries its currency.

use chrono::{NaiveDate, NaiveDateTime};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Ozon;
use super::global_settings;
use super::posting_sync::{self, OrdersSync};
use super::product_sync::{Mode, SyncError};
use super::tasks::{self, SyncKind};
use super::tenancy;
use crate::auth::Actor;
use crate::db::Database;
use crate::db::filter::Filter;
use crate::db::sql::Sql;
use crate::domain::{Checks, DomainError, Work};

/// The tabs' statuses, in the counters' order.
pub const TAB_STATUSES: [&str; 6] = [
    "awaiting_packaging",
    "awaiting_deliver",
    "awaiting_registration",
    "delivering",
    "delivered",
    "cancelled",
];
pub const MAX_LIMIT: i64 = 1000;
const MAX_TEXT: usize = 100;

/// `GET /ozon/orders` query, as sent (strings: an empty value is "not set").
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    pub page: Option<String>,
    pub limit: Option<String>,
    pub shop_id: Option<String>,
    pub status: Option<String>,
    pub operation_status: Option<String>,
    pub posting_number: Option<String>,
    pub keyword: Option<String>,
    pub date_from: Option<String>,
    pub date_to: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn parse_int<T: std::str::FromStr>(s: &str) -> Result<T, &'static str> {
    s.parse().map_err(|_| "must be a whole number")
}

/// One shop as an equality (the per-shop indexes serve the order), many as `ANY`, all as nothing.
fn scope_clause(f: &mut Filter, scope: &Option<Vec<i64>>) {
    match scope {
        None => {}
        Some(ids) if ids.len() == 1 => {
            let p = f.param(ids[0]);
            f.push(format!("p.shop_id = {p}"));
        }
        Some(ids) => {
            let p = f.param(ids.clone());
            f.push(format!("p.shop_id = ANY({p})"));
        }
    }
}

/// `LIKE` text with `%`, `_` and `\` taken literally.
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How a keyword searches (§2.5).
#[derive(Debug, PartialEq, Eq)]
pub enum Keyword {
    /// `123-4` ⇒ `LIKE '123-4-%'`.
    PostingPrefix(String),
    /// A pattern with the user's own `%`.
    PostingLike(String),
    PostingExact(String),
    /// Ozon's tracking number (ends with a letter, has a digit): `UNIM…CN`.
    Tracking(String),
    /// All digits: a domestic tracking number or a SKU.
    DigitsOrSku(String),
    Domestic(String),
}

pub fn classify_keyword(raw: &str) -> Option<Keyword> {
    let v = raw.trim().to_uppercase();
    if v.is_empty() {
        return None;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    Some(if v.contains('-') {
        match v.split_once('-') {
            Some((a, b)) if digits(a) && digits(b) => {
                Keyword::PostingPrefix(format!("{}-%", like_literal(&v)))
            }
            _ if v.contains('%') => Keyword::PostingLike(v),
            _ => Keyword::PostingExact(v),
        }
    } else if v.chars().last().is_some_and(char::is_alphabetic)
        && v.chars().any(|c| c.is_ascii_digit())
    {
        Keyword::Tracking(v)
    } else if digits(&v) {
        Keyword::DigitsOrSku(v)
    } else {
        Keyword::Domestic(v)
    })
}

fn keyword_clause(f: &mut Filter, k: Keyword) {
    match k {
        Keyword::PostingPrefix(p) | Keyword::PostingLike(p) => {
            let p = f.param(p);
            f.push(format!("p.posting_number LIKE {p}"));
        }
        Keyword::PostingExact(v) => {
            let p = f.param(v);
            f.push(format!("p.posting_number = {p}"));
        }
        Keyword::Tracking(v) => {
            let p = f.param(v);
            f.push(format!(
                "EXISTS (SELECT 1 FROM ozon_shipment_packages k
                          WHERE k.posting_id = p.id AND k.tracking_number = {p})"
            ));
        }
        Keyword::DigitsOrSku(v) => {
            let p = f.param(v);
            f.push(format!(
                // One id list from both indexes: an OR of the two would scan the shop.
                "p.id IN (SELECT d.posting_id FROM ozon_domestic_tracking_numbers d
                           WHERE d.tracking_number = {p}
                          UNION ALL
                          SELECT q.id FROM ozon_postings q
                           WHERE q.product_skus @> ARRAY[{p}]::varchar[])"
            ));
        }
        Keyword::Domestic(v) => {
            let p = f.param(v);
            f.push(format!(
                "EXISTS (SELECT 1 FROM ozon_domestic_tracking_numbers d
                          WHERE d.posting_id = p.id AND d.tracking_number = {p})"
            ));
        }
    }
}

/// A day bound of the date filter: a date (`YYYY-MM-DD`, a whole day of the time zone) or a
/// local date-time (`YYYY-MM-DDTHH:MM[:SS]`), as local time without a zone.
fn parse_bound(s: &str, end: bool) -> Option<NaiveDateTime> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return if end {
            d.succ_opt()?.and_hms_opt(0, 0, 0)
        } else {
            d.and_hms_opt(0, 0, 0)
        };
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    None
}

/// Date conditions on `in_process_at`: local bounds of the global time zone, converted by
/// PostgreSQL (`timestamp AT TIME ZONE zone`).
fn date_clauses(
    f: &mut Filter,
    tz: &str,
    from: Option<NaiveDateTime>,
    to: Option<(NaiveDateTime, bool)>,
) {
    if from.is_none() && to.is_none() {
        return;
    }
    let z = f.param(tz.to_owned());
    if let Some(t) = from {
        let p = f.param(t);
        f.push(format!(
            "p.in_process_at >= ({p}::timestamp AT TIME ZONE {z})"
        ));
    }
    if let Some((t, whole_day)) = to {
        let p = f.param(t);
        let op = if whole_day { "<" } else { "<=" };
        f.push(format!(
            "p.in_process_at {op} ({p}::timestamp AT TIME ZONE {z})"
        ));
    }
}

/// The posting row of the list (the original's `to_packing_dict`), built by PostgreSQL.
pub const ROW_JSON: &str = "jsonb_build_object(
    'id', p.id, 'shop_id', p.shop_id, 'posting_number', p.posting_number,
    'status', p.status, 'substatus', p.substatus, 'operation_status', p.operation_status,
    'warehouse_name', p.warehouse_name, 'delivery_method_name', p.delivery_method_name,
    'shipment_date', p.shipment_date, 'in_process_at', p.in_process_at,
    'ordered_at', p.in_process_at, 'shipped_at', p.shipped_at, 'delivered_at', p.delivered_at,
    'cancelled_at', p.cancelled_at, 'is_cancelled', p.is_cancelled,
    'cancel_reason', p.cancel_reason,
    'total_amount', coalesce(nullif(p.order_total_price, 0)::text, '0'),
    'currency_code', coalesce(p.currency_code, 'CNY'),
    'material_cost', nullif(p.material_cost, 0)::text,
    'purchase_price', nullif(p.purchase_price, 0)::text,
    'purchase_price_updated_at', p.purchase_price_updated_at,
    'order_notes', p.order_notes, 'source_platform', p.source_platform,
    'last_mile_delivery_fee_cny', nullif(p.last_mile_delivery_fee_cny, 0)::text,
    'international_logistics_fee_cny', nullif(p.international_logistics_fee_cny, 0)::text,
    'ozon_commission_cny', nullif(p.ozon_commission_cny, 0)::text,
    'profit', nullif(p.profit, 0)::text, 'profit_rate', nullif(p.profit_rate, 0)::text,
    'label_printed_at', p.label_printed_at, 'label_print_count', p.label_print_count,
    'label_printed_by', p.label_printed_by, 'package_weight', p.package_weight,
    'tracking_synced_at', p.tracking_synced_at,
    'domestic_tracking_updated_at', p.domestic_tracking_updated_at,
    'domestic_tracking_numbers', coalesce((SELECT jsonb_agg(d.tracking_number ORDER BY d.id)
        FROM ozon_domestic_tracking_numbers d WHERE d.posting_id = p.id), '[]'::jsonb),
    'tracking_number', coalesce((SELECT k.tracking_number FROM ozon_shipment_packages k
        WHERE k.posting_id = p.id AND k.tracking_number IS NOT NULL ORDER BY k.id LIMIT 1),
        p.raw_payload->>'tracking_number', ''),
    'packages', coalesce((SELECT jsonb_agg(jsonb_build_object('id', k.id,
            'tracking_number', k.tracking_number, 'carrier_name', k.carrier_name,
            'carrier_code', k.carrier_code) ORDER BY k.id)
        FROM ozon_shipment_packages k WHERE k.posting_id = p.id), '[]'::jsonb),
    'products', coalesce((SELECT jsonb_agg(jsonb_build_object('sku', x.sku::text,
            'offer_id', x.offer_id, 'product_id', x.product_id, 'name', x.name,
            'quantity', x.quantity, 'price', coalesce(x.price::text, '0')) ORDER BY x.position)
        FROM ozon_posting_products x WHERE x.posting_id = p.id), '[]'::jsonb))";

fn empty_stats() -> Value {
    let mut v = json!({"total": 0, "discarded": 0});
    for s in TAB_STATUSES {
        v[s] = json!(0);
    }
    v
}

/// `GET /ozon/orders`: `{data, total, page, page_size, total_pages, next_cursor, has_more,
/// stats, offer_id_images}`.
pub async fn list(c: &impl Sql, actor: &Actor, q: &ListQuery) -> Result<Value, DomainError> {
    let mut checks = Checks::new();
    let shop_id = given(&q.shop_id).and_then(|s| checks.parsed("shop_id", parse_int::<i64>(s)));
    let page = given(&q.page)
        .and_then(|s| checks.parsed("page", parse_int::<i64>(s)))
        .unwrap_or(1);
    checks.check(
        (1..=1_000_000).contains(&page),
        "page",
        "value_error",
        "must be between 1 and 1000000",
    );
    let limit = given(&q.limit)
        .and_then(|s| checks.parsed("limit", parse_int::<i64>(s)))
        .unwrap_or(50);
    checks.check(
        (1..=MAX_LIMIT).contains(&limit),
        "limit",
        "value_error",
        format!("must be between 1 and {MAX_LIMIT}"),
    );
    for (name, v) in [
        ("status", &q.status),
        ("operation_status", &q.operation_status),
        ("posting_number", &q.posting_number),
        ("keyword", &q.keyword),
    ] {
        if let Some(s) = given(v) {
            checks.len_between(s, name, 1, MAX_TEXT);
        }
    }
    let from = given(&q.date_from).map(|s| (s, parse_bound(s, false)));
    let to = given(&q.date_to).map(|s| (s, parse_bound(s, !s.contains('T'))));
    for (name, v) in [("date_from", from), ("date_to", to)] {
        if let Some((_, None)) = v {
            checks.check(
                false,
                name,
                "value_error",
                "must be a date YYYY-MM-DD or a date-time YYYY-MM-DDTHH:MM:SS",
            );
        }
    }
    checks.finish()?;
    let from = from.and_then(|(_, t)| t);
    let to = to.and_then(|(s, t)| t.map(|t| (t, !s.contains('T'))));

    let scope = tenancy::scope(c, actor, shop_id).await?;
    if scope.as_ref().is_some_and(Vec::is_empty) {
        return Ok(
            json!({"data": [], "total": 0, "page": page, "page_size": limit,
            "total_pages": 1, "next_cursor": null, "has_more": false, "stats": empty_stats(),
            "offer_id_images": {}}),
        );
    }
    let tz = global_settings::time_zone(c).await?;

    // Scope and dates: what the counters see. Without dates they are the kept counts.
    let mut f = Filter::default();
    scope_clause(&mut f, &scope);
    date_clauses(&mut f, &tz, from, to);
    let dated = from.is_some() || to.is_some();
    let kept = if dated {
        None
    } else {
        Some(kept_counts(c, &scope).await?)
    };
    let stats = match &kept {
        Some(k) => stats_of(k),
        None => counters(c, &f).await?,
    };

    if let Some(s) = given(&q.status) {
        let p = f.param(s.to_owned());
        f.push(format!("p.status = {p}"));
    }
    if let Some(s) = given(&q.operation_status) {
        let p = f.param(s.to_owned());
        f.push(format!("p.operation_status = {p}"));
    }
    if let Some(s) = given(&q.posting_number) {
        let p = f.param(s.to_owned());
        if s.contains('%') {
            f.push(format!("p.posting_number LIKE {p}"));
        } else {
            f.push(format!("p.posting_number = {p}"));
        }
    }
    if let Some(k) = given(&q.keyword).and_then(classify_keyword) {
        keyword_clause(&mut f, k);
    }
    let where_sql = f.sql();
    let searched = given(&q.posting_number).is_some() || given(&q.keyword).is_some();
    let operation = given(&q.operation_status);
    let total: i64 = match &kept {
        // Tabs (a status, the discarded tab) from the kept counts: no count over the shop.
        Some(k) if !searched && operation.is_none_or(|o| o == "cancelled") => k
            .iter()
            .filter(|(s, o, _)| {
                given(&q.status).is_none_or(|t| t == s.as_str())
                    && operation.is_none_or(|t| t == o.as_str())
            })
            .map(|(_, _, n)| n)
            .sum(),
        _ => c
            .query_one(
                &format!("SELECT count(*) FROM ozon_postings p WHERE {where_sql}"),
                &f.refs(),
            )
            .await?
            .get(0),
    };
    let lp = f.param(limit);
    let op = f.param((page - 1) * limit);
    let rows = c
        .query(
            // The page's ids from the order's index first, then the JSON of those rows alone.
            &format!(
                "SELECT {ROW_JSON} FROM (
                    SELECT p.id FROM ozon_postings p WHERE {where_sql}
                     ORDER BY p.in_process_at DESC NULLS LAST, p.id DESC
                     LIMIT {lp} OFFSET {op}) page
                   JOIN ozon_postings p ON p.id = page.id
                  ORDER BY p.in_process_at DESC NULLS LAST, p.id DESC"
            ),
            &f.refs(),
        )
        .await?;
    let data: Vec<Value> = rows.iter().map(|r| r.get(0)).collect();
    let ids: Vec<i64> = data.iter().filter_map(|v| v["id"].as_i64()).collect();
    let images = offer_images(c, &ids, &scope).await?;
    let total_pages = ((total + limit - 1) / limit).max(1);
    let has_more = page < total_pages;
    Ok(json!({
        "data": data,
        "total": total,
        "page": page,
        "page_size": limit,
        "total_pages": total_pages,
        "next_cursor": if has_more { json!(page + 1) } else { Value::Null },
        "has_more": has_more,
        "stats": stats,
        "offer_id_images": images,
    }))
}

/// The kept counts (`ozon_posting_counts`) of the scoped shops: (status, operation_status, n).
pub async fn kept_counts(
    c: &impl Sql,
    scope: &Option<Vec<i64>>,
) -> Result<Vec<(String, String, i64)>, DomainError> {
    if scope.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Vec::new());
    }
    Ok(c.rows(
        "SELECT status, operation_status, sum(n)::bigint FROM ozon_posting_counts
              WHERE ($1::bigint[] IS NULL OR shop_id = ANY($1)) AND n <> 0
              GROUP BY status, operation_status",
        &[scope],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect())
}

fn stats_of(kept: &[(String, String, i64)]) -> Value {
    let mut v = empty_stats();
    let (mut total, mut discarded) = (0i64, 0i64);
    let mut by_status: std::collections::HashMap<&str, i64> = Default::default();
    for (status, operation, n) in kept {
        total += n;
        if operation == "cancelled" {
            discarded += n;
        }
        *by_status.entry(status.as_str()).or_default() += n;
    }
    for s in TAB_STATUSES {
        v[s] = json!(by_status.get(s).copied().unwrap_or(0));
    }
    v["total"] = json!(total);
    v["discarded"] = json!(discarded);
    v
}

/// Tab counters over the scope and dates (ignoring tab, keyword): per status, `discarded`
/// (`operation_status = cancelled`) and `total`.
async fn counters(c: &impl Sql, f: &Filter) -> Result<Value, DomainError> {
    let rows = c
        .query(
            &format!(
                "SELECT p.status, count(*), count(*) FILTER (WHERE p.operation_status = 'cancelled')
                   FROM ozon_postings p WHERE {} GROUP BY p.status",
                f.sql()
            ),
            &f.refs(),
        )
        .await?;
    let mut v = empty_stats();
    let (mut total, mut discarded) = (0i64, 0i64);
    for r in rows {
        let status: String = r.get(0);
        let n: i64 = r.get(1);
        total += n;
        discarded += r.get::<_, i64>(2);
        if TAB_STATUSES.contains(&status.as_str()) {
            v[status.as_str()] = json!(n);
        }
    }
    v["total"] = json!(total);
    v["discarded"] = json!(discarded);
    Ok(v)
}

/// `offer_id → image URL` for the products of these postings, from the mirror's products of the
/// scoped shops.
async fn offer_images(
    c: &impl Sql,
    posting_ids: &[i64],
    scope: &Option<Vec<i64>>,
) -> Result<Value, DomainError> {
    if posting_ids.is_empty() {
        return Ok(json!({}));
    }
    let rows = c
        .rows(
            "SELECT DISTINCT ON (o.offer_id) o.offer_id,
                    coalesce(o.primary_image, o.images->>'primary', o.images->'main'->>0,
                             CASE WHEN jsonb_typeof(o.images) = 'array' THEN o.images->>0 END)
               FROM ozon_posting_products x
               JOIN ozon_postings p ON p.id = x.posting_id
               JOIN ozon_products o ON o.shop_id = p.shop_id AND o.offer_id = x.offer_id
              WHERE x.posting_id = ANY($1) AND ($2::bigint[] IS NULL OR o.shop_id = ANY($2))
              ORDER BY o.offer_id, o.id",
            &[&posting_ids, scope],
        )
        .await?;
    let mut out = serde_json::Map::new();
    for r in rows {
        if let Some(url) = r.get::<_, Option<String>>(1) {
            out.insert(r.get(0), json!(url));
        }
    }
    Ok(Value::Object(out))
}

fn posting_not_found() -> DomainError {
    DomainError::not_found("POSTING_NOT_FOUND", "Posting not found")
}

/// `GET /ozon/orders/{posting_number}?shop_id`: the row with product images, a summary, the
/// images. Another tenant's posting is "not found".
pub async fn detail(
    c: &impl Sql,
    actor: &Actor,
    posting_number: &str,
    shop_id: Option<i64>,
) -> Result<Value, DomainError> {
    if posting_number.len() > MAX_TEXT {
        return Err(posting_not_found());
    }
    // Another tenant's shop named in the query says as little as an unknown posting.
    let scope = match tenancy::scope(c, actor, shop_id).await {
        Err(DomainError::NotFound { .. }) => return Err(posting_not_found()),
        other => other?,
    };
    let row = c
        .maybe_row(
            &format!(
                "SELECT {ROW_JSON}, p.cancel_reason_id FROM ozon_postings p
                  WHERE p.posting_number = $1 AND ($2::bigint[] IS NULL OR p.shop_id = ANY($2))"
            ),
            &[&posting_number, &scope],
        )
        .await?
        .ok_or_else(posting_not_found)?;
    let mut data: Value = row.get(0);
    let reason_id: Option<i32> = row.get(1);
    let id = data["id"].as_i64().unwrap_or_default();
    let images = offer_images(c, &[id], &scope).await?;
    let (mut items, mut quantity) = (0i64, 0i64);
    if let Some(products) = data["products"].as_array_mut() {
        for p in products.iter_mut() {
            items += 1;
            quantity += p["quantity"].as_i64().unwrap_or(0);
            let image = p["offer_id"]
                .as_str()
                .and_then(|o| images.get(o))
                .cloned()
                .unwrap_or(Value::Null);
            p["image"] = image;
        }
    }
    let has_cancellation = data["cancel_reason"]
        .as_str()
        .is_some_and(|s| !s.is_empty())
        || reason_id.unwrap_or(0) > 0;
    Ok(json!({
        "success": true,
        "data": data,
        "summary": {"total_items": items, "total_quantity": quantity, "has_barcodes": false,
            "has_cancellation": has_cancellation, "sync_info": {}},
        "offer_id_images": images,
    }))
}

/// How many of `posting_numbers` already had their label printed — reprints, which the original
/// does not charge for. Only the actor's own postings count: a number from another tenant (or
/// one not mirrored yet) is a first print, so the estimate says nothing about anyone else's
/// postings (the original looked them up across every shop). The numbers are distinct.
pub async fn already_printed(
    c: &impl Sql,
    actor: &Actor,
    posting_numbers: &[String],
) -> Result<u32, DomainError> {
    if posting_numbers.is_empty() {
        return Ok(0);
    }
    let scope = tenancy::visible_shop_ids(c, actor).await?;
    let n: i64 = c
        .row(
            "SELECT count(*) FROM ozon_postings
              WHERE posting_number = ANY($1) AND label_print_count > 0
                AND ($2::bigint[] IS NULL OR shop_id = ANY($2))",
            &[&posting_numbers, &scope],
        )
        .await?
        .get(0);
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Start the shop's posting sync (Y2), or return the one in flight.
pub async fn start_sync(
    work: &mut Work<'_>,
    actor: &Actor,
    shop_id: i64,
    mode: Mode,
) -> Result<tasks::Started, DomainError> {
    let job = OrdersSync::new_job(shop_id, mode)?;
    tasks::start(work, actor, shop_id, SyncKind::Orders, job).await
}

/// `POST /ozon/orders/{posting_number}/sync?shop_id` (Y3): this posting from Ozon now, through
/// the mirror's writer. The actor must be allowed to change the shop.
pub async fn sync_one(
    db: &Database,
    actor: &Actor,
    ozon: &Ozon,
    shop_id: i64,
    posting_number: &str,
) -> Result<Value, DomainError> {
    actor.require_session()?;
    {
        let c = db.get().await?;
        tenancy::editable_shop(&c, actor, shop_id).await?;
    }
    if posting_number.is_empty() || posting_number.len() > MAX_TEXT {
        return Err(DomainError::not_found(
            "POSTING_NOT_FOUND",
            format!("在OZON中未找到货件 {posting_number}"),
        ));
    }
    match posting_sync::sync_posting(db, ozon, shop_id, posting_number).await {
        Ok(Some((status, synced_at))) => Ok(json!({
            "success": true,
            "message": "订单同步成功",
            "data": {"posting_number": posting_number, "status": status, "synced_at": synced_at},
        })),
        Ok(None) => Err(DomainError::not_found(
            "POSTING_NOT_FOUND",
            format!("在OZON中未找到货件 {posting_number}"),
        )),
        Err(SyncError::Db(e)) => Err(e.into()),
        Err(SyncError::ShopNotFound(_)) => Err(tenancy::shop_not_found()),
        Err(e) => {
            let text = e.to_string();
            Err(DomainError::Unavailable {
                code: "OZON_SYNC_FAILED",
                message: format!("同步失败: {}", text.lines().next().unwrap_or_default()).into(),
                retry_after_s: 30,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_follow_the_contract() {
        assert_eq!(
            classify_keyword(" 123-4 "),
            Some(Keyword::PostingPrefix("123-4-%".into()))
        );
        assert_eq!(
            classify_keyword("123-0001-1"),
            Some(Keyword::PostingExact("123-0001-1".into()))
        );
        assert_eq!(
            classify_keyword("12%-1"),
            Some(Keyword::PostingLike("12%-1".into()))
        );
        assert_eq!(
            classify_keyword("unim0123456789cn"),
            Some(Keyword::Tracking("UNIM0123456789CN".into()))
        );
        assert_eq!(
            classify_keyword("777001"),
            Some(Keyword::DigitsOrSku("777001".into()))
        );
        assert_eq!(
            classify_keyword("SF12345X9"),
            Some(Keyword::Domestic("SF12345X9".into()))
        );
        assert_eq!(classify_keyword("   "), None);
    }

    #[test]
    fn date_bounds_are_local_days() {
        let d = |s| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(
            parse_bound("2025-12-13", false),
            Some(d("2025-12-13 00:00:00"))
        );
        assert_eq!(
            parse_bound("2025-12-13", true),
            Some(d("2025-12-14 00:00:00"))
        );
        assert_eq!(
            parse_bound("2025-12-13T10:30:00", true),
            Some(d("2025-12-13 10:30:00"))
        );
        assert_eq!(parse_bound("13.12.2025", false), None);
    }
}
