//! Ozon postings into the mirror (contract §3.2, §4.2 steps 1–7, §4.3): one batch of Ozon posting
//! objects of one shop written in the caller's transaction — by the sync jobs (a list page) and
//! by the single-posting sync (one `/v3/posting/fbs/get` answer).
//!
//! Rules, and where they differ from the original:
//! - upsert by `posting_number` (unique at Ozon and here). A number already stored for another
//!   shop is never overwritten by this shop's answer (it is skipped and logged).
//! - `is_cancelled` only for a real cancellation: status `cancelled` or a cancellation reason —
//!   Ozon sends a zero-valued `cancellation` on every posting (§7 C1, the original's lost fix).
//! - a posting's products become rows of `ozon_posting_products`; `order_total_price` is
//!   Σ price·quantity, `product_skus` the distinct SKUs, `currency_code` the products' currency.
//! - the posting's own `tracking_number` is kept as its package (v3 has no `packages` array; the
//!   original's per-posting detail call found nothing, §7 C7); packages Ozon does list are kept too.
//! - `operation_status` follows §4.3 (no regression, `cancelled` terminal and always applied).
//! - sales counters: a posting inserted by this write and not cancelled adds its quantities to
//!   the shop's products (matched by SKU) once; an existing posting that becomes cancelled takes
//!   them back (never below 0), one that is un-cancelled adds them again. "Inserted" is what
//!   PostgreSQL says about the row (`xmax = 0`), so two writers racing on one new posting count
//!   it once.
//! - a value Ozon did not send (no products, no status) keeps the stored one.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::client::{Money, Posting};
use crate::db::DbError;
use crate::db::sql::Sql;

/// `operation_status` values and their priority (§4.3).
const OPERATION_PRIORITY: [(&str, u8); 8] = [
    ("awaiting_stock", 0),
    ("allocating", 1),
    ("allocated", 2),
    ("tracking_confirmed", 3),
    ("printed", 4),
    ("shipping", 5),
    ("delivered", 6),
    ("cancelled", 99),
];

fn priority(s: &str) -> Option<u8> {
    OPERATION_PRIORITY
        .iter()
        .find(|(k, _)| *k == s)
        .map(|(_, p)| *p)
}

/// The `operation_status` Ozon's status implies, if it implies one.
fn implied_operation(status: &str, has_tracking: bool, has_domestic: bool) -> Option<&'static str> {
    match status {
        "awaiting_packaging" => Some("awaiting_stock"),
        "awaiting_deliver" => Some(match (has_tracking, has_domestic) {
            (false, _) => "allocating",
            (true, false) => "allocated",
            (true, true) => "tracking_confirmed",
        }),
        "delivering" => Some("shipping"),
        "delivered" => Some("delivered"),
        "cancelled" => Some("cancelled"),
        _ => None,
    }
}

/// The next `operation_status` (§4.3 with `preserve_manual`): `cancelled` always wins and never
/// changes; otherwise only a step forward is taken. `current = None` is a new posting.
pub fn next_operation_status(
    current: Option<&str>,
    status: &str,
    has_tracking: bool,
    has_domestic: bool,
) -> String {
    let implied = implied_operation(status, has_tracking, has_domestic);
    match (current, implied) {
        (_, Some("cancelled")) => "cancelled".to_owned(),
        (Some("cancelled"), _) => "cancelled".to_owned(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => "awaiting_stock".to_owned(),
        (Some(c), None) => c.to_owned(),
        (Some(c), Some(t)) => match (priority(c), priority(t)) {
            (Some(pc), Some(pt)) if pt <= pc => c.to_owned(),
            _ => t.to_owned(),
        },
    }
}

/// What a write changed, for the realtime fan-out and the run's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostingEvent {
    pub shop_id: i64,
    pub posting_number: String,
    /// `posting.created`, `posting.status_changed`, `posting.cancelled`, `posting.delivered`.
    pub kind: &'static str,
    pub status: String,
    /// The status before the write (`None` for a new posting).
    pub old_status: Option<String>,
    /// Σ quantity of the posting's products as written (0 when Ozon sent none).
    pub product_count: u32,
}

#[derive(Debug, Default)]
pub struct Written {
    pub inserted: u64,
    pub updated: u64,
    /// Numbers stored for another shop, left alone.
    pub foreign: u64,
    pub events: Vec<PostingEvent>,
}

/// A price that fits `numeric(18,4)`; anything larger is dropped rather than failing the page.
fn price(m: &Option<Money>) -> Option<String> {
    let m = m.as_ref()?;
    let int = m.as_str().trim_start_matches('-').split('.').next()?;
    (int.len() <= 14).then(|| m.as_str().to_owned())
}

/// Our own `Serialize` types as JSON (they cannot fail to serialize).
fn to_json<T: Serialize + ?Sized>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn cut(s: &str, max: usize) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.chars().take(max).collect())
}

#[derive(Debug, Serialize)]
struct Row {
    posting_number: String,
    status: String,
    substatus: Option<String>,
    shipment_date: Option<DateTime<Utc>>,
    in_process_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    delivery_method_id: Option<i64>,
    delivery_method_name: Option<String>,
    warehouse_id: Option<i64>,
    warehouse_name: Option<String>,
    is_cancelled: bool,
    cancel_reason_id: Option<i32>,
    cancel_reason: Option<String>,
    cancelled_at: Option<DateTime<Utc>>,
    raw_payload: Value,
    has_tracking_number: bool,
    /// Empty: keep the stored products, total and SKUs.
    products: Vec<ProductRow>,
    product_skus: Option<Vec<String>>,
    currency_code: Option<String>,
    operation_status: String,
    operation_changed: bool,
    packages: Vec<PackageRow>,
}

#[derive(Debug, Serialize)]
struct ProductRow {
    position: i32,
    sku: i64,
    offer_id: Option<String>,
    product_id: Option<i64>,
    name: Option<String>,
    quantity: i32,
    price: Option<String>,
    currency_code: Option<String>,
}

#[derive(Debug, Serialize)]
struct PackageRow {
    package_number: String,
    tracking_number: Option<String>,
    carrier_name: Option<String>,
    carrier_code: Option<String>,
    status: Option<String>,
    status_updated_at: Option<DateTime<Utc>>,
}

struct Existing {
    shop_id: i64,
    status: String,
    is_cancelled: bool,
    operation_status: String,
    has_domestic: bool,
}

fn packages_of(p: &Posting, tracking: Option<&str>) -> Vec<PackageRow> {
    let number = &p.data.posting_number;
    let mut out = Vec::new();
    if let Some(list) = p.raw.get("packages").and_then(Value::as_array) {
        for item in list {
            let text = |k: &str| {
                item.get(k)
                    .and_then(|v| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .and_then(|s| cut(&s, 200))
            };
            let Some(package_number) = text("package_number").or_else(|| text("id")) else {
                continue;
            };
            out.push(PackageRow {
                package_number: package_number.chars().take(100).collect(),
                tracking_number: text("tracking_number").filter(|t| t != number),
                carrier_name: text("carrier_name"),
                carrier_code: text("carrier_code").map(|s| s.chars().take(50).collect()),
                status: text("status").map(|s| s.chars().take(50).collect()),
                status_updated_at: text("status_updated_at")
                    .and_then(|s| super::client::parse_time(&s).ok().flatten()),
            });
        }
    }
    if let Some(t) = tracking
        && !out.iter().any(|p| p.package_number == *number)
    {
        out.push(PackageRow {
            package_number: number.chars().take(100).collect(),
            tracking_number: Some(t.to_owned()),
            carrier_name: None,
            carrier_code: None,
            status: None,
            status_updated_at: None,
        });
    }
    out
}

fn row_of(p: &Posting, old: Option<&Existing>) -> Row {
    let d = &p.data;
    let status = cut(&d.status, 50)
        .or_else(|| old.map(|o| o.status.clone()))
        .unwrap_or_else(|| "awaiting_packaging".to_owned());
    let tracking = cut(&d.tracking_number, 200).filter(|t| *t != d.posting_number);
    let has_tracking = tracking.is_some();
    let cancelled = status == "cancelled" || d.cancellation.cancel_reason_id > 0;
    let products: Vec<ProductRow> = d
        .products
        .iter()
        .enumerate()
        .map(|(i, x)| ProductRow {
            position: i as i32,
            sku: x.sku,
            offer_id: cut(&x.offer_id, 100),
            product_id: p
                .raw
                .get("products")
                .and_then(|ps| ps.get(i))
                .and_then(|v| v.get("product_id"))
                .and_then(Value::as_i64),
            name: cut(&x.name, 500),
            quantity: x.quantity.clamp(0, i32::MAX as i64) as i32,
            price: price(&x.price),
            currency_code: cut(&x.currency_code, 10),
        })
        .collect();
    let mut skus: Vec<String> = products.iter().map(|x| x.sku.to_string()).collect();
    skus.sort();
    skus.dedup();
    let has_domestic = old.is_some_and(|o| o.has_domestic);
    let current = old.map(|o| o.operation_status.as_str());
    let operation_status = next_operation_status(current, &status, has_tracking, has_domestic);
    Row {
        posting_number: d.posting_number.clone(),
        substatus: cut(&d.substatus, 100),
        shipment_date: d.shipment_date,
        in_process_at: d.in_process_at,
        delivered_at: d.delivering_date,
        delivery_method_id: (d.delivery_method.id != 0).then_some(d.delivery_method.id),
        delivery_method_name: cut(&d.delivery_method.name, 200),
        warehouse_id: (d.delivery_method.warehouse_id != 0)
            .then_some(d.delivery_method.warehouse_id),
        warehouse_name: cut(&d.delivery_method.warehouse, 200),
        is_cancelled: cancelled,
        cancel_reason_id: (d.cancellation.cancel_reason_id > 0)
            .then(|| i32::try_from(d.cancellation.cancel_reason_id).unwrap_or(i32::MAX)),
        cancel_reason: cancelled
            .then(|| cut(&d.cancellation.cancel_reason, 500))
            .flatten(),
        cancelled_at: if cancelled {
            d.cancellation.cancelled_at
        } else {
            None
        },
        raw_payload: p.raw.clone(),
        has_tracking_number: has_tracking,
        product_skus: (!products.is_empty()).then_some(skus),
        currency_code: products.iter().find_map(|x| x.currency_code.clone()),
        operation_changed: current != Some(operation_status.as_str()),
        operation_status,
        packages: packages_of(p, tracking.as_deref()),
        products,
        status,
    }
}

const RECORD: &str = "posting_number text, status text, substatus text,
    shipment_date timestamptz, in_process_at timestamptz, delivered_at timestamptz,
    delivery_method_id bigint, delivery_method_name text, warehouse_id bigint,
    warehouse_name text, is_cancelled boolean, cancel_reason_id integer, cancel_reason text,
    cancelled_at timestamptz, raw_payload jsonb, has_tracking_number boolean, products jsonb,
    product_skus text[], currency_code text, operation_status text, operation_changed boolean";

/// Write one batch of the shop's postings (see the module header) in the caller's transaction.
pub async fn write(tx: &impl Sql, shop_id: i64, postings: &[Posting]) -> Result<Written, DbError> {
    let mut out = Written::default();
    if postings.is_empty() {
        return Ok(out);
    }
    // One row per number: Ozon repeats an item across offset pages when the list shifts.
    let mut unique: BTreeMap<&str, &Posting> = BTreeMap::new();
    for p in postings {
        unique.insert(p.data.posting_number.as_str(), p);
    }
    let numbers: Vec<String> = unique.keys().map(|s| (*s).to_owned()).collect();
    let mut existing: HashMap<String, Existing> = HashMap::new();
    for r in tx
        .rows(
            "SELECT posting_number, shop_id, status, is_cancelled, operation_status,
                    has_domestic_tracking
               FROM ozon_postings WHERE posting_number = ANY($1)
              ORDER BY posting_number FOR UPDATE",
            &[&numbers],
        )
        .await?
    {
        existing.insert(
            r.get(0),
            Existing {
                shop_id: r.get(1),
                status: r.get(2),
                is_cancelled: r.get(3),
                operation_status: r.get(4),
                has_domestic: r.get(5),
            },
        );
    }
    let mut rows = Vec::with_capacity(unique.len());
    for (number, p) in &unique {
        let old = existing.get(*number);
        if let Some(o) = old
            && o.shop_id != shop_id
        {
            tracing::warn!(
                shop_id,
                other_shop = o.shop_id,
                posting_number = number,
                "a posting number of another shop in this shop's answer; left alone"
            );
            out.foreign += 1;
            continue;
        }
        rows.push(row_of(p, old));
    }
    if rows.is_empty() {
        return Ok(out);
    }
    let rows_json = to_json(&rows);
    let upsert = format!(
        "INSERT INTO ozon_postings AS p (
            shop_id, posting_number, ozon_posting_number, status, substatus, shipment_date,
            in_process_at, delivered_at, shipped_at, delivery_method_id, delivery_method_name,
            warehouse_id, warehouse_name, is_cancelled, cancel_reason_id, cancel_reason,
            cancelled_at, raw_payload, has_tracking_number, tracking_synced_at,
            order_total_price, product_skus, currency_code, operation_status, operation_time,
            last_synced_at, created_at, updated_at)
         SELECT $1, r.posting_number, r.posting_number, r.status, r.substatus, r.shipment_date,
                r.in_process_at, r.delivered_at,
                CASE WHEN r.status IN ('sent_by_seller', 'delivering') THEN now() END,
                r.delivery_method_id, r.delivery_method_name, r.warehouse_id, r.warehouse_name,
                r.is_cancelled, r.cancel_reason_id, r.cancel_reason,
                CASE WHEN r.is_cancelled THEN coalesce(r.cancelled_at, now()) END,
                r.raw_payload, r.has_tracking_number,
                CASE WHEN r.has_tracking_number THEN now() END,
                (SELECT sum((x->>'price')::numeric * (x->>'quantity')::numeric)
                   FROM jsonb_array_elements(r.products) x),
                r.product_skus, r.currency_code, r.operation_status, now(), now(), now(), now()
           FROM jsonb_to_recordset($2::jsonb) AS r({RECORD})
         ON CONFLICT (posting_number) DO UPDATE SET
            status = excluded.status,
            substatus = coalesce(excluded.substatus, p.substatus),
            shipment_date = coalesce(excluded.shipment_date, p.shipment_date),
            in_process_at = coalesce(excluded.in_process_at, p.in_process_at),
            delivered_at = coalesce(excluded.delivered_at, p.delivered_at),
            shipped_at = coalesce(p.shipped_at, excluded.shipped_at),
            delivery_method_id = coalesce(excluded.delivery_method_id, p.delivery_method_id),
            delivery_method_name = coalesce(excluded.delivery_method_name, p.delivery_method_name),
            warehouse_id = coalesce(excluded.warehouse_id, p.warehouse_id),
            warehouse_name = coalesce(excluded.warehouse_name, p.warehouse_name),
            is_cancelled = excluded.is_cancelled,
            cancel_reason_id = CASE WHEN excluded.is_cancelled
                THEN coalesce(excluded.cancel_reason_id, p.cancel_reason_id) END,
            cancel_reason = CASE WHEN excluded.is_cancelled
                THEN coalesce(excluded.cancel_reason, p.cancel_reason) END,
            cancelled_at = CASE WHEN excluded.is_cancelled
                THEN coalesce(p.cancelled_at, excluded.cancelled_at) END,
            raw_payload = excluded.raw_payload,
            has_tracking_number = excluded.has_tracking_number,
            tracking_synced_at = coalesce(p.tracking_synced_at, excluded.tracking_synced_at),
            order_total_price = coalesce(excluded.order_total_price, p.order_total_price),
            product_skus = coalesce(excluded.product_skus, p.product_skus),
            currency_code = coalesce(excluded.currency_code, p.currency_code),
            operation_time = CASE WHEN excluded.operation_status IS DISTINCT FROM p.operation_status
                THEN now() ELSE p.operation_time END,
            operation_status = excluded.operation_status,
            last_synced_at = now(), updated_at = now()
          WHERE p.shop_id = excluded.shop_id
         RETURNING p.id, p.posting_number, (p.xmax = 0)"
    );
    let written = tx.rows(&upsert, &[&shop_id, &rows_json]).await?;
    let mut ids: HashMap<String, (i64, bool)> = HashMap::new();
    for r in &written {
        ids.insert(r.get(1), (r.get(0), r.get(2)));
    }

    // Products (replaced when Ozon listed any) and packages.
    let mut product_rows = Vec::new();
    let mut package_rows = Vec::new();
    let mut with_products = Vec::new();
    for row in &rows {
        let Some((id, _)) = ids.get(&row.posting_number) else {
            continue;
        };
        if !row.products.is_empty() {
            with_products.push(*id);
            for x in &row.products {
                let mut v = to_json(x);
                v["posting_id"] = json!(id);
                product_rows.push(v);
            }
        }
        for x in &row.packages {
            let mut v = to_json(x);
            v["posting_id"] = json!(id);
            package_rows.push(v);
        }
    }
    if !with_products.is_empty() {
        tx.exec(
            "DELETE FROM ozon_posting_products WHERE posting_id = ANY($1)",
            &[&with_products],
        )
        .await?;
        tx.exec(
            "INSERT INTO ozon_posting_products
                    (posting_id, position, sku, offer_id, product_id, name, quantity, price, currency_code)
             SELECT x.posting_id, x.position, x.sku, x.offer_id, x.product_id, x.name, x.quantity,
                    x.price::numeric, x.currency_code
               FROM jsonb_to_recordset($1::jsonb) AS x(posting_id bigint, position integer,
                    sku bigint, offer_id text, product_id bigint, name text, quantity integer,
                    price text, currency_code text)",
            &[&Value::Array(product_rows)],
        )
        .await?;
    }
    if !package_rows.is_empty() {
        tx.exec(
            "INSERT INTO ozon_shipment_packages AS k
                    (posting_id, package_number, tracking_number, carrier_name, carrier_code,
                     status, status_updated_at)
             SELECT x.posting_id, x.package_number, x.tracking_number, x.carrier_name,
                    x.carrier_code, x.status, x.status_updated_at
               FROM jsonb_to_recordset($1::jsonb) AS x(posting_id bigint, package_number text,
                    tracking_number text, carrier_name text, carrier_code text, status text,
                    status_updated_at timestamptz)
             ON CONFLICT (posting_id, package_number) DO UPDATE SET
                tracking_number = coalesce(excluded.tracking_number, k.tracking_number),
                carrier_name = coalesce(excluded.carrier_name, k.carrier_name),
                carrier_code = coalesce(excluded.carrier_code, k.carrier_code),
                status = coalesce(excluded.status, k.status),
                status_updated_at = coalesce(excluded.status_updated_at, k.status_updated_at),
                updated_at = now()",
            &[&Value::Array(package_rows)],
        )
        .await?;
    }

    // Sales counters and events.
    let mut deltas: HashMap<i64, (i64, Option<DateTime<Utc>>)> = HashMap::new();
    for row in &rows {
        let Some((_, inserted)) = ids.get(&row.posting_number) else {
            continue;
        };
        let old = existing.get(&row.posting_number);
        let sign: i64 = match (inserted, old) {
            (true, _) if !row.is_cancelled => 1,
            (false, Some(o)) if !o.is_cancelled && row.is_cancelled => -1,
            (false, Some(o)) if o.is_cancelled && !row.is_cancelled => 1,
            _ => 0,
        };
        if sign != 0 {
            let at = row.in_process_at.or(row.shipment_date);
            for x in &row.products {
                let e = deltas.entry(x.sku).or_insert((0, None));
                e.0 += sign * i64::from(x.quantity);
                if sign > 0 {
                    e.1 = e.1.max(at);
                }
            }
        }
        if *inserted {
            out.inserted += 1;
        } else {
            out.updated += 1;
        }
        let event = |kind| PostingEvent {
            shop_id,
            posting_number: row.posting_number.clone(),
            kind,
            status: row.status.clone(),
            old_status: old.map(|o| o.status.clone()),
            product_count: row.products.iter().map(|x| x.quantity.max(0) as u32).sum(),
        };
        match old {
            None if *inserted => out.events.push(event("posting.created")),
            Some(o) if o.status != row.status => {
                out.events.push(event(match row.status.as_str() {
                    "cancelled" => "posting.cancelled",
                    "delivered" => "posting.delivered",
                    _ => "posting.status_changed",
                }));
            }
            _ => {}
        }
    }
    let deltas: Vec<Value> = deltas
        .into_iter()
        .filter(|(_, (d, _))| *d != 0)
        .map(|(sku, (delta, at))| json!({"sku": sku, "delta": delta, "at": at}))
        .collect();
    if !deltas.is_empty() {
        tx.exec(
            "UPDATE ozon_products p
                SET sales_count = greatest(0, p.sales_count::bigint + d.delta)::integer,
                    last_sale_at = CASE WHEN d.delta > 0
                        THEN greatest(p.last_sale_at, coalesce(d.at, now())) ELSE p.last_sale_at END
               FROM jsonb_to_recordset($2::jsonb) AS d(sku bigint, delta bigint, at timestamptz)
              WHERE p.shop_id = $1 AND p.ozon_sku = d.sku",
            &[&shop_id, &Value::Array(deltas)],
        )
        .await?;
    }
    // The caller publishes `out.events` (`posting_events`) once it has committed.
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_status_follows_the_contract() {
        assert_eq!(
            next_operation_status(None, "awaiting_packaging", false, false),
            "awaiting_stock"
        );
        assert_eq!(
            next_operation_status(None, "awaiting_deliver", false, false),
            "allocating"
        );
        assert_eq!(
            next_operation_status(Some("allocating"), "awaiting_deliver", true, false),
            "allocated"
        );
        assert_eq!(
            next_operation_status(Some("allocated"), "awaiting_deliver", true, true),
            "tracking_confirmed"
        );
        // No regression: printed stays printed while Ozon still says awaiting_deliver.
        assert_eq!(
            next_operation_status(Some("printed"), "awaiting_deliver", true, true),
            "printed"
        );
        assert_eq!(
            next_operation_status(Some("printed"), "delivering", true, true),
            "shipping"
        );
        assert_eq!(
            next_operation_status(Some("shipping"), "cancelled", true, true),
            "cancelled"
        );
        assert_eq!(
            next_operation_status(Some("cancelled"), "delivered", true, true),
            "cancelled"
        );
        assert_eq!(
            next_operation_status(Some("allocating"), "arbitration", false, false),
            "allocating"
        );
        assert_eq!(
            next_operation_status(None, "arbitration", false, false),
            "awaiting_stock"
        );
    }

    fn posting(v: Value) -> Posting {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_zero_cancellation_is_no_cancellation_and_sums_are_exact() {
        let p = posting(json!({
            "posting_number": "1-0001-1", "status": "awaiting_deliver",
            "tracking_number": "UNIM0000000001CN",
            "cancellation": {"cancel_reason_id": 0, "cancel_reason": ""},
            "products": [
                {"sku": 11, "offer_id": "A", "name": "x", "quantity": 2, "price": "10.10", "currency_code": "CNY"},
                {"sku": 11, "offer_id": "A", "name": "x", "quantity": 1, "price": "0.05", "currency_code": "CNY"}
            ]
        }));
        let r = row_of(&p, None);
        assert!(!r.is_cancelled);
        assert_eq!(r.cancel_reason, None);
        assert_eq!(r.product_skus, Some(vec!["11".to_owned()]));
        assert_eq!(r.operation_status, "allocated");
        assert_eq!(r.packages.len(), 1);
        assert_eq!(r.currency_code.as_deref(), Some("CNY"));
        let c = posting(json!({
            "posting_number": "2-0001-1", "status": "awaiting_packaging",
            "cancellation": {"cancel_reason_id": 352, "cancel_reason": "Покупатель"}
        }));
        let r = row_of(&c, None);
        assert!(r.is_cancelled);
        assert_eq!(r.cancel_reason_id, Some(352));
        assert_eq!(r.operation_status, "awaiting_stock");
        assert!(r.packages.is_empty());
        assert_eq!(price(&Money::parse("123456789012345.1")), None);
    }
}
