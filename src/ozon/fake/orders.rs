//! The fake's FBS postings and warehouses of one shop, generated from indices like the catalogue.
//!
//! Posting `i` started processing at `anchor − 30 days + i·step` (plus jitter inside its step),
//! so index order is time order and a list sorted by `in_process_at` is a walk over indices.
//! Statuses follow a realistic mix, recent postings being mostly not yet shipped. Every posting
//! carries a `cancellation` object, zero-valued unless cancelled, as Ozon documents.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::catalog::{self, ID_STRIDE, WAREHOUSE_BASE, mix};

const ORDER_BASE: i64 = 10_000_000;
const ORDER_ID_BASE: i64 = 3_000_000_000;
const WAREHOUSES: &[&str] = &["Склад Москва FBS", "深圳仓 rFBS"];

pub(crate) fn warehouse_name(k: usize) -> &'static str {
    WAREHOUSES[k % WAREHOUSES.len()]
}

/// (status, substatus), by weight, for postings older than two days.
const MIX: &[(&str, &str, u64)] = &[
    ("awaiting_packaging", "posting_created", 12),
    ("awaiting_deliver", "posting_transferring_to_delivery", 13),
    ("sent_by_seller", "sent_by_seller", 5),
    ("driver_pickup", "posting_driver_pick_up", 3),
    ("delivering", "posting_on_way_to_city", 15),
    ("delivered", "posting_received", 40),
    ("arbitration", "posting_in_arbitration", 2),
    ("cancelled", "posting_canceled", 10),
];

fn substatus(status: &str) -> &'static str {
    MIX.iter()
        .find(|(s, _, _)| *s == status)
        .map_or("", |(_, sub, _)| sub)
}

#[derive(Debug)]
pub(crate) struct Orders {
    shop: usize,
    anchor: DateTime<Utc>,
    base_count: usize,
    /// Processing start of postings added at run time (indices from `base_count` on).
    added: Vec<DateTime<Utc>>,
    /// Status changes made at run time: (status, when).
    patches: HashMap<usize, (String, DateTime<Utc>)>,
    products: usize,
}

impl Orders {
    pub(crate) fn new(shop: usize, anchor: DateTime<Utc>, count: usize, products: usize) -> Self {
        Orders {
            shop,
            anchor,
            base_count: count,
            added: Vec::new(),
            patches: HashMap::new(),
            products,
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.base_count + self.added.len()
    }

    fn step_ms(&self) -> i64 {
        (30 * 86_400_000 / self.base_count.max(1) as i64).max(1)
    }

    pub(crate) fn in_process_at(&self, idx: usize) -> DateTime<Utc> {
        if idx >= self.base_count {
            return self.added[idx - self.base_count];
        }
        let step = self.step_ms();
        let jitter = (mix(self.shop, idx, 20) % (step as u64 / 2).max(1)) as i64;
        self.anchor - Duration::days(30) + Duration::milliseconds(step * idx as i64 + jitter)
    }

    pub(crate) fn status(&self, idx: usize) -> &str {
        if let Some((s, _)) = self.patches.get(&idx) {
            return s;
        }
        if idx >= self.base_count {
            return "awaiting_packaging";
        }
        let h = mix(self.shop, idx, 21);
        if self.anchor - self.in_process_at(idx) < Duration::days(2) {
            return ["awaiting_packaging", "awaiting_deliver", "cancelled"][(h % 3) as usize];
        }
        let total: u64 = MIX.iter().map(|m| m.2).sum();
        let mut pick = h % total;
        for (status, _, weight) in MIX {
            if pick < *weight {
                return status;
            }
            pick -= weight;
        }
        "delivered"
    }

    pub(crate) fn status_changed_at(&self, idx: usize) -> DateTime<Utc> {
        if let Some((_, at)) = self.patches.get(&idx) {
            return *at;
        }
        let start = self.in_process_at(idx);
        if idx >= self.base_count || self.status(idx) == "awaiting_packaging" {
            return start;
        }
        let hours = 1 + (mix(self.shop, idx, 22) % 72) as i64;
        (start + Duration::hours(hours)).min(self.anchor)
    }

    /// The indices whose processing start lies within `[since, to]` (both optional).
    pub(crate) fn range(
        &self,
        since: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> std::ops::Range<usize> {
        let first = since.map_or(0, |t| self.partition(|i| self.in_process_at(i) < t));
        let end = to.map_or(self.count(), |t| {
            self.partition(|i| self.in_process_at(i) <= t)
        });
        first..end.max(first)
    }

    /// The first index for which `before` is false (`before` holds for a prefix).
    fn partition(&self, before: impl Fn(usize) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.count());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if before(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    pub(crate) fn posting_number(&self, idx: usize) -> String {
        format!("{}-0001-1", self.order_number_part(idx))
    }

    fn order_number_part(&self, idx: usize) -> i64 {
        ORDER_BASE + self.shop as i64 * ID_STRIDE + idx as i64
    }

    pub(crate) fn by_posting_number(&self, number: &str) -> Option<usize> {
        let first: i64 = number.split('-').next()?.parse().ok()?;
        let idx = usize::try_from(first - self.order_number_part(0)).ok()?;
        (idx < self.count() && self.posting_number(idx) == number).then_some(idx)
    }

    fn warehouse_index(&self, idx: usize) -> usize {
        (mix(self.shop, idx, 23) % WAREHOUSES.len() as u64) as usize
    }

    pub(crate) fn warehouse_id(&self, idx: usize) -> i64 {
        WAREHOUSE_BASE + self.shop as i64 * 10 + self.warehouse_index(idx) as i64
    }

    pub(crate) fn delivery_method_id(&self, idx: usize) -> i64 {
        22_000_000_000 + self.warehouse_id(idx) % 1_000_000
    }

    // ---- mutations ----------------------------------------------------------------------------

    pub(crate) fn set_status(&mut self, idx: usize, status: &str, now: DateTime<Utc>) {
        self.patches.insert(idx, (status.to_owned(), now));
    }

    pub(crate) fn add(&mut self, n: usize, now: DateTime<Utc>) -> Vec<String> {
        let first = self.count();
        // Keep index order = time order even if the clock stepped back.
        let at = self.added.last().map_or(now, |last| now.max(*last));
        self.added.extend(std::iter::repeat_n(at, n));
        (first..self.count())
            .map(|i| self.posting_number(i))
            .collect()
    }

    // ---- JSON ---------------------------------------------------------------------------------

    pub(crate) fn posting(&self, idx: usize, analytics: bool, financial: bool) -> Value {
        let shop = self.shop;
        let status = self.status(idx).to_owned();
        let start = self.in_process_at(idx);
        let h = mix(shop, idx, 23);
        let k = self.warehouse_index(idx);
        let warehouse_id = self.warehouse_id(idx);
        let shipped = !matches!(status.as_str(), "awaiting_packaging" | "cancelled");
        let delivering = matches!(status.as_str(), "delivering" | "delivered");
        let cancelled = status == "cancelled";
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let products = self.products_of(idx);
        let cancellation = if cancelled {
            json!({"cancel_reason_id": 352, "cancel_reason": "Покупатель отменил заказ",
                "cancellation_type": "client", "cancelled_after_ship": false,
                "affect_cancellation_rating": false, "cancellation_initiator": "Покупатель"})
        } else {
            json!({"cancel_reason_id": 0, "cancel_reason": "", "cancellation_type": "",
                "cancelled_after_ship": false, "affect_cancellation_rating": false,
                "cancellation_initiator": ""})
        };
        let delivery_method = json!({
            "id": self.delivery_method_id(idx), "name": "Ozon Логистика самостоятельно",
            "warehouse_id": warehouse_id, "warehouse": warehouse_name(k),
            "tpl_provider_id": 24, "tpl_provider": "Ozon Логистика",
        });
        let analytics_data = analytics.then(|| {
            json!({"region": "Москва", "city": "Москва", "delivery_type": "PVZ",
                "is_premium": false,
                "payment_type_group_name": "Карты оплаты", "warehouse_id": warehouse_id,
                "warehouse": warehouse_name(k), "tpl_provider_id": 24,
                "tpl_provider": "Ozon Логистика",
                "delivery_date_begin": time(start + Duration::days(3)),
                "delivery_date_end": time(start + Duration::days(5)), "is_legal": false})
        });
        let financial_data = financial.then(|| {
            let items: Vec<Value> = products
                .iter()
                .map(|(pidx, qty)| {
                    let cents = catalog::price_cents(shop, *pidx);
                    json!({"product_id": catalog::sku(shop, *pidx), "quantity": qty,
                    "price": cents as f64 / 100.0, "old_price": (cents * 6 / 5) as f64 / 100.0,
                    "commission_percent": 15,
                    "commission_amount": (cents * 15 / 100) as f64 / 100.0,
                    "payout": (cents * 85 / 100) as f64 / 100.0, "total_discount_value": 0,
                    "total_discount_percent": 0, "actions": [], "picking": null,
                    "client_price": "", "currency_code": catalog::currency(shop)})
                })
                .collect();
            json!({"products": items, "cluster_from": "Москва", "cluster_to": "Москва"})
        });
        let product_json: Vec<Value> = products
            .iter()
            .map(|(pidx, qty)| {
                json!({"sku": catalog::sku(shop, *pidx), "offer_id": catalog::offer_id(shop, *pidx),
                    "name": catalog::name(shop, *pidx), "quantity": qty,
                    "price": format!("{}0000", catalog::decimal(catalog::price_cents(shop, *pidx))),
                    "currency_code": catalog::currency(shop), "is_marketplace_buyout": false,
                    "imei": []})
            })
            .collect();
        let order_part = self.order_number_part(idx);
        let tracking = if shipped {
            format!("UNIM{:010}CN", h % 10_000_000_000)
        } else {
            String::new()
        };
        json!({
            "posting_number": self.posting_number(idx),
            "order_id": ORDER_ID_BASE + shop as i64 * ID_STRIDE + idx as i64,
            "order_number": format!("{order_part}-0001"),
            "parent_posting_number": "",
            "status": status,
            "substatus": substatus(&status),
            "tpl_integration_type": "ozon",
            "in_process_at": time(start),
            "shipment_date": time(start + Duration::days(2)),
            "delivering_date": delivering.then(|| time(self.status_changed_at(idx))),
            "tracking_number": tracking,
            "delivery_method": delivery_method,
            "cancellation": cancellation,
            "customer": null,
            "addressee": null,
            "products": product_json,
            "barcodes": shipped.then(|| json!({"upper_barcode": format!("%101%{order_part}"),
                "lower_barcode": format!("{}", 20_000_000_000_i64 + order_part)})),
            "analytics_data": analytics_data,
            "financial_data": financial_data,
            "is_express": false,
            "is_multibox": false,
            "multi_box_qty": 1,
            "requirements": {"products_requiring_gtd": [], "products_requiring_country": [],
                "products_requiring_mandatory_mark": [], "products_requiring_rnpt": [],
                "products_requiring_jw_uin": []},
            "available_actions": [],
            "prr_option": "",
        })
    }

    /// (product index, quantity) of one posting: one to three of the shop's starting products.
    fn products_of(&self, idx: usize) -> Vec<(usize, u64)> {
        if self.products == 0 {
            return Vec::new();
        }
        let h = mix(self.shop, idx, 24);
        let n = match h % 10 {
            0..6 => 1,
            6..9 => 2,
            _ => 3,
        };
        (0..n)
            .map(|j| {
                let p = mix(self.shop, idx, 25 + j);
                ((p % self.products as u64) as usize, 1 + (p >> 32) % 2)
            })
            .collect()
    }

    pub(crate) fn warehouses(&self) -> Vec<Value> {
        (0..WAREHOUSES.len())
            .map(|k| {
                json!({
                    "warehouse_id": WAREHOUSE_BASE + self.shop as i64 * 10 + k as i64,
                    "name": WAREHOUSES[k],
                    "is_rfbs": k == 1,
                    "status": "created",
                    "has_entrusted_acceptance": false,
                    "postings_limit": -1,
                    "min_postings_limit": 10,
                    "has_postings_limit": false,
                    "min_working_days": 5,
                    "working_days": ["1", "2", "3", "4", "5"],
                    "can_print_act_in_advance": k == 0,
                    "is_karantin": false,
                    "is_kgt": false,
                    "is_timetable_editable": true,
                    "first_mile_type": {"dropoff_point_id": "", "dropoff_timeslot_id": 0,
                        "first_mile_is_changing": false, "first_mile_type": "PickUp"},
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postings_are_in_time_order_and_numbers_resolve_back() {
        let anchor = Utc::now();
        let o = Orders::new(1, anchor, 400, 250);
        for i in 1..400 {
            assert!(o.in_process_at(i) > o.in_process_at(i - 1), "{i}");
        }
        assert!(o.in_process_at(0) >= anchor - Duration::days(30));
        assert!(o.in_process_at(399) < anchor);
        assert_eq!(o.by_posting_number(&o.posting_number(123)), Some(123));
        assert_eq!(
            o.by_posting_number("10000000-0001-1"),
            None,
            "shop 0's number"
        );
        assert_eq!(o.by_posting_number("nonsense"), None);
        assert_eq!(o.range(None, None), 0..400);
        assert_eq!(
            o.range(Some(o.in_process_at(10)), Some(o.in_process_at(20))),
            10..21
        );
        assert_eq!(o.range(Some(anchor), None), 400..400);
        assert_eq!(
            o.range(Some(anchor), Some(anchor - Duration::days(40))),
            400..400
        );
    }

    #[test]
    fn cancellation_is_on_every_posting_and_zero_unless_cancelled() {
        let o = Orders::new(0, Utc::now(), 400, 250);
        let mut statuses = std::collections::HashSet::new();
        for i in 0..400 {
            let p = o.posting(i, false, false);
            let status = p["status"].as_str().unwrap().to_owned();
            let reason = p["cancellation"]["cancel_reason_id"].as_i64().unwrap();
            assert_eq!(reason > 0, status == "cancelled", "{p}");
            assert!(p["analytics_data"].is_null());
            statuses.insert(status);
        }
        for s in [
            "awaiting_packaging",
            "awaiting_deliver",
            "delivering",
            "delivered",
            "cancelled",
        ] {
            assert!(statuses.contains(s), "{s} missing from {statuses:?}");
        }
        assert!(o.posting(5, true, true)["financial_data"]["products"].is_array());
    }

    #[test]
    fn added_postings_come_last_and_status_changes_are_dated() {
        let mut o = Orders::new(0, Utc::now() - Duration::hours(1), 10, 5);
        let added = o.add(2, Utc::now());
        assert_eq!(o.count(), 12);
        assert_eq!(o.by_posting_number(&added[1]), Some(11));
        assert_eq!(o.status(11), "awaiting_packaging");
        let now = Utc::now();
        o.set_status(3, "delivered", now);
        assert_eq!((o.status(3), o.status_changed_at(3)), ("delivered", now));
    }
}
