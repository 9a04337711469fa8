//! The product page (contract §1.5, §2.4 P-L, P-E, §2.3 Y1/Y4/Y5, §2.6 products part): the
//! mirror's list with its filters, sorts, paging and status counts, a product's sync errors, and
//! starting syncs — every request scoped by the shops the caller may see (`tenancy`), so another
//! tenant's shop or product is "not found".
//!
//! Where the original differs (§7 C9, C18, S2, S4): sorts end with `id` so pages never repeat or
//! skip rows; `sort_by` and `sort_order` come from an allow-list; the page size is capped at 100;
//! the `sync_status` filter the page sends is applied; statistics count only the caller's shops;
//! syncing a product or a shop needs the right to change that shop.

use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Ozon;
use super::product_sync::{self, Mode, ProductSync, SyncError};
use super::tasks::{self, SyncKind};
use super::tenancy;
use crate::auth::Actor;
use crate::db::Database;
use crate::db::filter::Filter;
use crate::db::sql::Sql;
use crate::domain::{Checks, DomainError, Work};

pub const STATUSES: [&str; 6] = [
    "on_sale",
    "ready_to_sell",
    "error",
    "pending_modification",
    "inactive",
    "archived",
];
const SYNC_STATUSES: [&str; 3] = ["pending", "success", "failed"];
/// `sort_by` values and the column each sorts on.
const SORTS: [(&str, &str); 6] = [
    ("updated_at", "p.updated_at"),
    ("created_at", "p.ozon_created_at"),
    ("title", "p.title"),
    ("price", "p.price"),
    ("stock", "p.stock"),
    ("sales_count", "p.sales_count"),
];
pub const MAX_PAGE_SIZE: i64 = 100;
const MAX_TEXT: usize = 200;

/// `GET /ozon/products` query, as sent (strings, so an empty value is "not set" rather than an
/// error, and every problem is reported at once).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    pub page: Option<String>,
    pub page_size: Option<String>,
    pub offset: Option<String>,
    pub limit: Option<String>,
    pub shop_id: Option<String>,
    pub search: Option<String>,
    pub sku: Option<String>,
    pub title: Option<String>,
    pub status: Option<String>,
    pub sync_status: Option<String>,
    pub price_min: Option<String>,
    pub price_max: Option<String>,
    pub stock_min: Option<String>,
    pub stock_max: Option<String>,
    pub has_stock: Option<String>,
    pub visibility: Option<String>,
    pub archived: Option<String>,
    pub category_id: Option<String>,
    pub brand: Option<String>,
    pub created_from: Option<String>,
    pub created_to: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub include_stats: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn parse_bool(s: &str) -> Result<bool, &'static str> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err("must be true or false"),
    }
}

fn parse_int<T: std::str::FromStr>(s: &str) -> Result<T, &'static str> {
    s.parse().map_err(|_| "must be a whole number")
}

fn parse_decimal(s: &str) -> Result<String, &'static str> {
    super::client::Money::parse(s)
        .map(|m| m.as_str().to_owned())
        .filter(|m| m.len() <= 20)
        .ok_or("must be a decimal number such as 12.50")
}

/// `%text%` for ILIKE, with the pattern characters of `text` taken literally.
fn contains(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The shops condition: one shop as an equality (so the per-shop indexes serve the sort), many
/// as `ANY`, every shop (admins) as nothing.
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

fn shop_param(checks: &mut Checks, q: &Option<String>) -> Option<i64> {
    given(q).and_then(|s| checks.parsed("shop_id", parse_int::<i64>(s)))
}

/// `GET /ozon/products`: `{data, total, page, page_size}` (+ `stats`, `search_info`).
pub async fn list(c: &impl Sql, actor: &Actor, q: &ListQuery) -> Result<Value, DomainError> {
    let mut checks = Checks::new();
    let shop_id = shop_param(&mut checks, &q.shop_id);
    let page = given(&q.page)
        .and_then(|s| checks.parsed("page", parse_int::<i64>(s)))
        .unwrap_or(1);
    checks.check(
        (1..=1_000_000).contains(&page),
        "page",
        "value_error",
        "must be between 1 and 1000000",
    );
    let page_size = given(&q.page_size)
        .and_then(|s| checks.parsed("page_size", parse_int::<i64>(s)))
        .unwrap_or(20);
    checks.check(
        page_size >= 1,
        "page_size",
        "value_error",
        "must be at least 1",
    );
    let offset = given(&q.offset).and_then(|s| checks.parsed("offset", parse_int::<i64>(s)));
    let limit = given(&q.limit).and_then(|s| checks.parsed("limit", parse_int::<i64>(s)));
    checks.check(
        offset.is_none_or(|o| (0..=100_000_000).contains(&o)),
        "offset",
        "value_error",
        "must be between 0 and 100000000",
    );
    checks.check(
        limit.is_none_or(|l| l >= 1),
        "limit",
        "value_error",
        "must be at least 1",
    );
    for (name, v) in [
        ("search", &q.search),
        ("sku", &q.sku),
        ("title", &q.title),
        ("brand", &q.brand),
    ] {
        if let Some(s) = given(v) {
            checks.len_between(s, name, 1, MAX_TEXT);
        }
    }
    let status = given(&q.status);
    checks.check(
        status.is_none_or(|s| STATUSES.contains(&s)),
        "status",
        "value_error",
        format!("must be one of {}", STATUSES.join(", ")),
    );
    let sync_status = given(&q.sync_status);
    checks.check(
        sync_status.is_none_or(|s| SYNC_STATUSES.contains(&s)),
        "sync_status",
        "value_error",
        format!("must be one of {}", SYNC_STATUSES.join(", ")),
    );
    let price_min = given(&q.price_min).and_then(|s| checks.parsed("price_min", parse_decimal(s)));
    let price_max = given(&q.price_max).and_then(|s| checks.parsed("price_max", parse_decimal(s)));
    let stock_min =
        given(&q.stock_min).and_then(|s| checks.parsed("stock_min", parse_int::<i32>(s)));
    let stock_max =
        given(&q.stock_max).and_then(|s| checks.parsed("stock_max", parse_int::<i32>(s)));
    let has_stock = given(&q.has_stock).and_then(|s| checks.parsed("has_stock", parse_bool(s)));
    let visibility = given(&q.visibility).and_then(|s| checks.parsed("visibility", parse_bool(s)));
    let archived = given(&q.archived).and_then(|s| checks.parsed("archived", parse_bool(s)));
    let include_stats = given(&q.include_stats)
        .and_then(|s| checks.parsed("include_stats", parse_bool(s)))
        .unwrap_or(false);
    let category_id =
        given(&q.category_id).and_then(|s| checks.parsed("category_id", parse_int::<i32>(s)));
    let mut dates = [None, None];
    for (i, (name, v)) in [
        ("created_from", &q.created_from),
        ("created_to", &q.created_to),
    ]
    .into_iter()
    .enumerate()
    {
        if let Some(s) = given(v) {
            match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                Ok(d) => dates[i] = Some(d),
                Err(_) => {
                    return Err(DomainError::rejected(
                        "INVALID_DATE",
                        format!("Invalid {name} format, expected YYYY-MM-DD"),
                    ));
                }
            }
        }
    }
    let sort_by = given(&q.sort_by).unwrap_or("updated_at");
    let sort_col = SORTS.iter().find(|(k, _)| *k == sort_by).map(|(_, c)| *c);
    checks.check(
        sort_col.is_some(),
        "sort_by",
        "value_error",
        format!("must be one of {}", SORTS.map(|(k, _)| k).join(", ")),
    );
    let sort_order = given(&q.sort_order)
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| "desc".into());
    checks.check(
        sort_order == "asc" || sort_order == "desc",
        "sort_order",
        "value_error",
        "must be asc or desc",
    );
    checks.finish()?;
    let sort_col = sort_col.unwrap_or("p.updated_at");
    let dir = if sort_order == "asc" { "ASC" } else { "DESC" };

    let scope = tenancy::scope(c, actor, shop_id).await?;
    if scope.as_ref().is_some_and(Vec::is_empty) {
        return Ok(empty_page(
            page,
            page_size.min(MAX_PAGE_SIZE),
            include_stats,
        ));
    }

    let mut f = Filter::default();
    scope_clause(&mut f, &scope);
    if let Some(s) = given(&q.search) {
        let p = f.param(contains(s));
        let digits = s.chars().all(|c| c.is_ascii_digit());
        let sku = if digits {
            format!(" OR p.ozon_sku::text ILIKE {p}")
        } else {
            String::new()
        };
        f.push(format!(
            "(p.title ILIKE {p} OR p.offer_id ILIKE {p} OR p.barcode ILIKE {p}{sku})"
        ));
    }
    if let Some(s) = given(&q.sku) {
        let p = f.param(contains(s));
        if s.chars().all(|c| c.is_ascii_digit()) {
            f.push(format!("p.ozon_sku::text ILIKE {p}"));
        } else {
            f.push(format!("p.offer_id ILIKE {p}"));
        }
    }
    if let Some(s) = given(&q.title) {
        let p = f.param(contains(s));
        f.push(format!("p.title ILIKE {p}"));
    }
    if let Some(s) = given(&q.brand) {
        let p = f.param(contains(s));
        f.push(format!("p.brand ILIKE {p}"));
    }
    if let Some(s) = status {
        let p = f.param(s.to_owned());
        f.push(format!("p.status = {p}"));
    }
    if let Some(s) = sync_status {
        let p = f.param(s.to_owned());
        f.push(format!("p.sync_status = {p}"));
    }
    if let Some(v) = price_min.clone() {
        let p = f.param(v);
        f.push(format!("p.price >= {p}::text::numeric"));
    }
    if let Some(v) = price_max.clone() {
        let p = f.param(v);
        f.push(format!("p.price <= {p}::text::numeric"));
    }
    if let Some(v) = stock_min {
        let p = f.param(v);
        f.push(format!("p.stock >= {p}"));
    }
    if let Some(v) = stock_max {
        let p = f.param(v);
        f.push(format!("p.stock <= {p}"));
    }
    match has_stock {
        Some(true) => f.push("p.stock > 0".into()),
        Some(false) => f.push("p.stock = 0".into()),
        None => {}
    }
    if let Some(v) = visibility {
        let p = f.param(v);
        f.push(format!("p.visibility = {p}"));
    }
    match archived {
        Some(true) => f.push("(p.is_archived OR p.ozon_archived)".into()),
        Some(false) => f.push("NOT p.is_archived AND NOT p.ozon_archived".into()),
        None => {}
    }
    if let Some(v) = category_id {
        let p = f.param(v);
        f.push(format!("p.category_id = {p}"));
    }
    if let Some(d) = dates[0] {
        let p = f.param(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()));
        f.push(format!("p.ozon_created_at >= {p}"));
    }
    if let Some(d) = dates[1] {
        let next = d
            .succ_opt()
            .and_then(|n| n.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc());
        let p = f.param(next);
        f.push(format!("p.ozon_created_at < {p}"));
    }

    let (limit, offset, page, page_size) = match (offset, limit) {
        (None, None) => {
            let size = page_size.min(MAX_PAGE_SIZE);
            (size, (page - 1) * size, page, size)
        }
        (o, l) => {
            let l = l.unwrap_or(50).min(MAX_PAGE_SIZE);
            let o = o.unwrap_or(0);
            (l, o, o / l + 1, l)
        }
    };
    let where_sql = f.sql();
    let total: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM ozon_products p WHERE {where_sql}"),
            &f.refs(),
        )
        .await?
        .get(0);
    let lp = f.param(limit);
    let op = f.param(offset);
    let rows = c
        .query(
            // The page's ids first (from the sort's index), then the rows' JSON for those
            // alone: built in one query, the JSON of every row of the shop would be made
            // before the sort.
            &format!(
                "SELECT {ROW_JSON} FROM (
                    SELECT p.id FROM ozon_products p WHERE {where_sql}
                     ORDER BY {sort_col} {dir}, p.id {dir} LIMIT {lp} OFFSET {op}) page
                   JOIN ozon_products p ON p.id = page.id
                  ORDER BY {sort_col} {dir}, p.id {dir}"
            ),
            &f.refs(),
        )
        .await?;
    let data: Vec<Value> = rows.iter().map(|r| r.get(0)).collect();
    let results_count = data.len();
    let mut out = json!({"data": data, "total": total, "page": page, "page_size": page_size});
    if include_stats {
        out["stats"] = list_stats(c, &scope).await?;
    }
    let filtered = [
        &q.search,
        &q.sku,
        &q.title,
        &q.status,
        &q.price_min,
        &q.price_max,
        &q.stock_min,
        &q.stock_max,
        &q.has_stock,
        &q.visibility,
        &q.archived,
        &q.category_id,
        &q.brand,
        &q.created_from,
        &q.created_to,
        &q.sync_status,
    ]
    .iter()
    .any(|v| given(v).is_some());
    if filtered {
        out["search_info"] = json!({
            "query": given(&q.search),
            "filters_applied": {
                "status": status,
                "price_range": {"min": price_min, "max": price_max},
                "stock_range": {"min": stock_min, "max": stock_max},
                "has_stock": has_stock,
                "visibility": visibility,
                "archived": archived,
                "category_id": category_id,
                "brand": given(&q.brand),
                "sync_status": sync_status,
            },
            "results_count": results_count,
            "sort": {"by": sort_by, "order": sort_order},
        });
    }
    Ok(out)
}

/// Every column of the row (the original's `to_dict`), numerics as decimal strings with their
/// scale, as the original serialised them.
const ROW_JSON: &str = "to_jsonb(p) || jsonb_build_object(
    'price', p.price::text, 'old_price', p.old_price::text, 'premium_price', p.premium_price::text,
    'cost', p.cost::text, 'min_price', p.min_price::text, 'weight', p.weight::text,
    'width', p.width::text, 'height', p.height::text, 'depth', p.depth::text)";

fn empty_stats() -> Value {
    json!({"on_sale": 0, "ready_to_sell": 0, "error": 0, "pending_modification": 0,
        "inactive": 0, "archived": 0, "active": 0, "out_of_stock": 0, "sync_failed": 0})
}

fn empty_page(page: i64, page_size: i64, include_stats: bool) -> Value {
    let mut v = json!({"data": [], "total": 0, "page": page, "page_size": page_size});
    if include_stats {
        v["stats"] = empty_stats();
    }
    v
}

/// Counts per status over the scoped shops, ignoring the other filters (the status tabs).
struct Counts {
    by_status: Vec<(String, i64)>,
    out_of_stock: i64,
    sync_failed: i64,
    synced: i64,
    total: i64,
}

async fn counts(c: &impl Sql, scope: &Option<Vec<i64>>) -> Result<Counts, DomainError> {
    let mut f = Filter::default();
    scope_clause(&mut f, scope);
    let rows = c
        .query(
            &format!(
                "SELECT p.status, count(*), count(*) FILTER (WHERE p.stock = 0),
                        count(*) FILTER (WHERE p.sync_status = 'failed'),
                        count(*) FILTER (WHERE p.sync_status = 'success')
                   FROM ozon_products p WHERE {} GROUP BY p.status",
                f.sql()
            ),
            &f.refs(),
        )
        .await?;
    let mut out = Counts {
        by_status: Vec::new(),
        out_of_stock: 0,
        sync_failed: 0,
        synced: 0,
        total: 0,
    };
    for r in rows {
        let n: i64 = r.get(1);
        out.total += n;
        out.out_of_stock += r.get::<_, i64>(2);
        out.sync_failed += r.get::<_, i64>(3);
        out.synced += r.get::<_, i64>(4);
        out.by_status.push((r.get(0), n));
    }
    Ok(out)
}

impl Counts {
    fn of(&self, status: &str) -> i64 {
        self.by_status
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n)
    }
}

async fn list_stats(c: &impl Sql, scope: &Option<Vec<i64>>) -> Result<Value, DomainError> {
    let k = counts(c, scope).await?;
    let mut v = empty_stats();
    for s in STATUSES {
        v[s] = json!(k.of(s));
    }
    v["active"] = json!(k.of("on_sale"));
    v["out_of_stock"] = json!(k.out_of_stock);
    v["sync_failed"] = json!(k.sync_failed);
    Ok(v)
}

/// `GET /ozon/statistics?shop_id`: the status-tab counts of the product page, in the overview's
/// shape (contract §2.6), with the overview's order counters and revenue (`overview`).
pub async fn statistics(
    c: &impl Sql,
    actor: &Actor,
    shop_id: Option<i64>,
) -> Result<Value, DomainError> {
    let scope = tenancy::scope(c, actor, shop_id).await?;
    let mut products = json!({"total": 0, "synced": 0});
    for s in STATUSES {
        products[s] = json!(0);
    }
    let mut balance = "0".to_owned();
    if !scope.as_ref().is_some_and(Vec::is_empty) {
        let k = counts(c, &scope).await?;
        for s in STATUSES {
            products[s] = json!(k.of(s));
        }
        products["total"] = json!(k.total);
        products["synced"] = json!(k.synced);
        let row = c
            .row(
                "SELECT coalesce(sum(current_balance_rub), 0)::text FROM ozon_shops
                  WHERE status = 'active' AND ($1::bigint[] IS NULL OR id = ANY($1))",
                &[&scope],
            )
            .await?;
        balance = row.get(0);
    }
    let (orders, revenue) = super::overview::orders_and_revenue(c, &scope).await?;
    Ok(json!({
        "products": products,
        "orders": orders,
        "revenue": revenue,
        "balance": {"total_rub": balance, "total_cny": "0", "rate": "0"},
    }))
}

fn product_not_found() -> DomainError {
    DomainError::not_found("PRODUCT_NOT_FOUND", "商品不存在")
}

/// The product's shop and offer id, if the actor may see its shop; otherwise "not found".
async fn visible_product(
    c: &impl Sql,
    actor: &Actor,
    product_id: i64,
) -> Result<(i64, String, String), DomainError> {
    let row = c
        .maybe_row(
            "SELECT shop_id, offer_id, title FROM ozon_products WHERE id = $1",
            &[&product_id],
        )
        .await?
        .ok_or_else(product_not_found)?;
    let shop_id: i64 = row.get(0);
    if let Some(ids) = tenancy::visible_shop_ids(c, actor).await?
        && !ids.contains(&shop_id)
    {
        return Err(product_not_found());
    }
    Ok((shop_id, row.get(1), row.get(2)))
}

/// `GET /ozon/products/{id}/sync-errors` (P-E).
pub async fn sync_errors(
    c: &impl Sql,
    actor: &Actor,
    product_id: i64,
) -> Result<Value, DomainError> {
    let (shop_id, offer_id, _) = visible_product(c, actor, product_id).await?;
    let row = c
        .maybe_row(
            "SELECT id, offer_id, task_id, status, errors, created_at, updated_at
               FROM ozon_product_sync_errors
              WHERE shop_id = $1 AND (product_id = $2 OR offer_id = $3)
              ORDER BY updated_at DESC, id DESC LIMIT 1",
            &[&shop_id, &product_id, &offer_id],
        )
        .await?;
    Ok(match row {
        None => json!({"has_errors": false, "message": "该商品没有错误记录"}),
        Some(r) => json!({
            "has_errors": true,
            "sync_error": {
                "id": r.get::<_, i64>(0),
                "offer_id": r.get::<_, String>(1),
                "task_id": r.get::<_, Option<i64>>(2),
                "status": r.get::<_, Option<String>>(3),
                "errors": r.get::<_, Value>(4),
                "created_at": r.get::<_, chrono::DateTime<chrono::Utc>>(5),
                "updated_at": r.get::<_, chrono::DateTime<chrono::Utc>>(6),
            },
        }),
    })
}

/// Start the shop's product sync (Y1 with `sync_type=products`/`all`, Y5), or return the one
/// in flight: the task id.
pub async fn start_sync(
    work: &mut Work<'_>,
    actor: &Actor,
    shop_id: i64,
    mode: Mode,
) -> Result<tasks::Started, DomainError> {
    let job = ProductSync::new_job(shop_id, mode)?;
    tasks::start(work, actor, shop_id, SyncKind::Products, job).await
}

/// `POST /ozon/products/{id}/sync` (Y4): sync one product now, through the sync's page pipeline.
/// Ozon's answer is the result (`{success, message}`); no pooled connection is held meanwhile.
pub async fn sync_product(
    db: &Database,
    actor: &Actor,
    ozon: &Ozon,
    product_id: i64,
) -> Result<Value, DomainError> {
    actor.require_session()?;
    let (shop_id, offer_id, title) = {
        let c = db.get().await?;
        let p = visible_product(&c, actor, product_id).await?;
        tenancy::editable_shop(&c, actor, p.0).await?;
        p
    };
    Ok(
        match product_sync::sync_offer(db, ozon, shop_id, &offer_id).await {
            Ok(true) => {
                let c = db.get().await?;
                let title: String = c
                    .maybe_row(
                        "SELECT title FROM ozon_products WHERE id = $1",
                        &[&product_id],
                    )
                    .await?
                    .map_or(title, |r| r.get(0));
                json!({"success": true, "message": format!("商品 {title} 同步成功")})
            }
            Ok(false) => {
                json!({"success": false, "message": "从Ozon获取商品信息失败：Ozon 上找不到该商品"})
            }
            Err(SyncError::Db(e)) => return Err(e.into()),
            Err(e) => {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default();
                json!({"success": false, "message": format!("同步失败: {first}")})
            }
        },
    )
}
