//! The fake's product catalogue of one shop, generated from (shop index, product index) on the
//! fly: nothing per product is stored except the few that tests changed (`patches`), so 100 000
//! products cost a few bytes each only when asked for. Every value is a pure function of the
//! indices and the server's start time, hence the same on every run.
//!
//! The mix, per shop: about 70 % VISIBLE, 18 % INVISIBLE (no stock; a third of them with
//! validation errors), 12 % ARCHIVED; names in Russian, Chinese and English; prices as decimal
//! strings (v3) and numbers (v5), as Ozon sends them.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::ozon::client::Visibility;

const PRODUCT_ID_BASE: i64 = 800_000_000;
const SKU_BASE: i64 = 1_500_000_000;
/// Id ranges of different shops never overlap below this many products per shop.
pub(crate) const ID_STRIDE: i64 = 10_000_000;
pub(crate) const WAREHOUSE_BASE: i64 = 1_020_000_000_000;

const NAMES: &[&str] = &[
    "Чехол для смартфона",
    "Беспроводные наушники",
    "手机支架 铝合金",
    "Кружка керамическая 350 мл",
    "蓝牙耳机 降噪",
    "USB-C cable 2 m",
    "Набор отвёрток 24 в 1",
    "儿童保温杯 500ml",
    "LED desk lamp",
    "Коврик для йоги",
];
const COLOURS: &[&str] = &["чёрный", "白色", "blue", "красный", "灰色"];

/// splitmix64: a cheap, well-spread hash, so neighbouring indices get unrelated values.
pub(crate) fn mix(shop: usize, idx: usize, salt: u64) -> u64 {
    let mut z =
        ((shop as u64) << 48 ^ (idx as u64) << 8 ^ salt).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn offer_id(shop: usize, idx: usize) -> String {
    format!("EF{shop}-{idx:06}")
}

pub(crate) fn product_id(shop: usize, idx: usize) -> i64 {
    PRODUCT_ID_BASE + shop as i64 * ID_STRIDE + idx as i64
}

pub(crate) fn sku(shop: usize, idx: usize) -> i64 {
    SKU_BASE + shop as i64 * ID_STRIDE + idx as i64
}

pub(crate) fn name(shop: usize, idx: usize) -> String {
    let h = mix(shop, idx, 1);
    let base = NAMES[(h % NAMES.len() as u64) as usize];
    let colour = COLOURS[((h >> 8) % COLOURS.len() as u64) as usize];
    format!("{base}, {colour} #{idx}")
}

/// 5.00 ..= 4999.99 in the shop's currency.
pub(crate) fn price_cents(shop: usize, idx: usize) -> u64 {
    500 + mix(shop, idx, 2) % 499_500
}

pub(crate) fn currency(shop: usize) -> &'static str {
    if shop.is_multiple_of(2) { "CNY" } else { "RUB" }
}

pub(crate) fn decimal(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Ozon-style opaque cursor over a product index.
pub(crate) fn cursor(idx: usize) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("[{idx}]"))
}

pub(crate) fn parse_cursor(s: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Visible,
    Invisible,
    Archived,
}

#[derive(Debug, Clone)]
struct Patch {
    archived: Option<bool>,
    changed_at: DateTime<Utc>,
    created_at: Option<DateTime<Utc>>,
}

#[derive(Debug)]
pub(crate) struct Catalog {
    shop: usize,
    anchor: DateTime<Utc>,
    count: usize,
    patches: HashMap<usize, Patch>,
    /// Totals per (visibility, changed-since) filter: counting 100 000 products for every page
    /// would make a full sync quadratic. Cleared on every change.
    totals: Mutex<HashMap<(Visibility, Option<i64>), usize>>,
}

impl Catalog {
    pub(crate) fn new(shop: usize, anchor: DateTime<Utc>, count: usize) -> Self {
        Catalog {
            shop,
            anchor,
            count,
            patches: HashMap::new(),
            totals: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn count(&self) -> usize {
        self.count
    }

    pub(crate) fn class(&self, idx: usize) -> Class {
        // Added products start visible; archiving wins over everything.
        match self.patches.get(&idx).and_then(|p| p.archived) {
            Some(true) => Class::Archived,
            Some(false) => Class::Visible,
            None => match mix(self.shop, idx, 3) % 100 {
                0..70 => Class::Visible,
                70..88 => Class::Invisible,
                _ => Class::Archived,
            },
        }
    }

    /// Validation errors: a third of the invisible products.
    pub(crate) fn has_errors(&self, idx: usize) -> bool {
        self.class(idx) == Class::Invisible && mix(self.shop, idx, 4).is_multiple_of(3)
    }

    pub(crate) fn changed_at(&self, idx: usize) -> DateTime<Utc> {
        match self.patches.get(&idx) {
            Some(p) => p.changed_at,
            None => {
                self.anchor - Duration::seconds((mix(self.shop, idx, 5) % (30 * 86_400)) as i64)
            }
        }
    }

    fn created_at(&self, idx: usize) -> DateTime<Utc> {
        match self.patches.get(&idx).and_then(|p| p.created_at) {
            Some(t) => t,
            None => {
                self.changed_at(idx)
                    - Duration::seconds((mix(self.shop, idx, 6) % (300 * 86_400)) as i64)
            }
        }
    }

    fn stock(&self, idx: usize) -> (i64, i64) {
        match self.class(idx) {
            Class::Visible => {
                let h = mix(self.shop, idx, 7);
                (1 + (h % 200) as i64, ((h >> 16) % 5) as i64)
            }
            _ => (0, 0),
        }
    }

    pub(crate) fn matches(
        &self,
        idx: usize,
        vis: Visibility,
        since: Option<DateTime<Utc>>,
    ) -> bool {
        let class = self.class(idx);
        let vis_ok = match vis {
            Visibility::All => class != Class::Archived,
            Visibility::Visible => class == Class::Visible,
            Visibility::Invisible => class == Class::Invisible,
            Visibility::Archived => class == Class::Archived,
        };
        vis_ok && since.is_none_or(|t| self.changed_at(idx) >= t)
    }

    /// The index of an `offer_id` / `product_id` / `sku` of this shop, if it exists.
    pub(crate) fn by_offer_id(&self, offer_id: &str) -> Option<usize> {
        let idx: usize = offer_id
            .strip_prefix(&format!("EF{}-", self.shop))?
            .parse()
            .ok()?;
        (idx < self.count && offer_id == self::offer_id(self.shop, idx)).then_some(idx)
    }

    pub(crate) fn by_product_id(&self, id: i64) -> Option<usize> {
        self.by_offset(id - product_id(self.shop, 0))
    }

    pub(crate) fn by_sku(&self, id: i64) -> Option<usize> {
        self.by_offset(id - sku(self.shop, 0))
    }

    fn by_offset(&self, offset: i64) -> Option<usize> {
        usize::try_from(offset).ok().filter(|&i| i < self.count)
    }

    /// Up to `limit` matching indices after `after`, and whether the page is full.
    pub(crate) fn page(
        &self,
        candidates: Option<&[usize]>,
        vis: Visibility,
        since: Option<DateTime<Utc>>,
        after: Option<usize>,
        limit: usize,
    ) -> Vec<usize> {
        let start = after.map_or(0, |a| a + 1);
        let pick = |i: &usize| *i >= start && self.matches(*i, vis, since);
        match candidates {
            Some(c) => c.iter().copied().filter(|i| pick(i)).take(limit).collect(),
            None => (start..self.count)
                .filter(|i| pick(i))
                .take(limit)
                .collect(),
        }
    }

    pub(crate) fn total(
        &self,
        candidates: Option<&[usize]>,
        vis: Visibility,
        since: Option<DateTime<Utc>>,
    ) -> usize {
        if let Some(c) = candidates {
            return c.iter().filter(|i| self.matches(**i, vis, since)).count();
        }
        let key = (vis, since.map(|t| t.timestamp_micros()));
        let mut totals = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        *totals.entry(key).or_insert_with(|| {
            (0..self.count)
                .filter(|i| self.matches(*i, vis, since))
                .count()
        })
    }

    // ---- mutations (the fake's handle) --------------------------------------------------------

    pub(crate) fn add(&mut self, n: usize, now: DateTime<Utc>) -> Vec<String> {
        let first = self.count;
        self.count += n;
        for idx in first..self.count {
            self.patches.insert(
                idx,
                Patch {
                    archived: Some(false),
                    changed_at: now,
                    created_at: Some(now),
                },
            );
        }
        self.changed();
        (first..self.count)
            .map(|i| offer_id(self.shop, i))
            .collect()
    }

    pub(crate) fn archive(&mut self, idx: usize, now: DateTime<Utc>) {
        let created_at = Some(self.created_at(idx));
        self.patches.insert(
            idx,
            Patch {
                archived: Some(true),
                changed_at: now,
                created_at,
            },
        );
        self.changed();
    }

    fn changed(&self) {
        self.totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    // ---- JSON of each endpoint ----------------------------------------------------------------

    fn images(&self, idx: usize) -> Vec<String> {
        let n = 1 + mix(self.shop, idx, 8) % 4;
        let sku = sku(self.shop, idx);
        (1..=n)
            .map(|k| format!("https://ozon-fake.invalid/multimedia/{sku}_{k}.jpg"))
            .collect()
    }

    pub(crate) fn list_item(&self, idx: usize) -> Value {
        let (present, _) = self.stock(idx);
        json!({
            "product_id": product_id(self.shop, idx),
            "offer_id": offer_id(self.shop, idx),
            "archived": self.class(idx) == Class::Archived,
            "has_fbo_stocks": false,
            "has_fbs_stocks": present > 0,
            "is_discounted": mix(self.shop, idx, 9).is_multiple_of(10),
            "quants": [],
        })
    }

    pub(crate) fn info(&self, idx: usize) -> Value {
        let (shop, class) = (self.shop, self.class(idx));
        let (present, reserved) = self.stock(idx);
        let cents = price_cents(shop, idx);
        let images = self.images(idx);
        let errors = self.has_errors(idx);
        let (status, status_name, validation) = match class {
            Class::Visible => ("price_sent", "Продается", "success"),
            Class::Invisible if errors => ("failed_validation", "Ошибка валидации", "failed"),
            Class::Invisible => ("price_sent", "Готов к продаже", "success"),
            Class::Archived => ("archived", "В архиве", "success"),
        };
        let error_list = if errors {
            json!([{
                "attribute_id": 4180, "code": "error_attribute_values_empty", "field": "",
                "level": "ERROR_LEVEL_ERROR", "state": "",
                "texts": {"attribute_name": "Название", "description": "Заполните характеристику",
                    "hint_code": "",
                    "message": "Не заполнена обязательная характеристика «Название»",
                    "params": [{"name": "attribute", "value": "Название"}],
                    "short_description": "Не заполнено название"}
            }])
        } else {
            json!([])
        };
        json!({
            "id": product_id(shop, idx),
            "offer_id": offer_id(shop, idx),
            "name": name(shop, idx),
            "sku": sku(shop, idx),
            "barcodes": [format!("OZN{}", sku(shop, idx))],
            "description_category_id": 17_028_922 + (mix(shop, idx, 10) % 5) as i64,
            "type_id": 91_565 + (mix(shop, idx, 11) % 7) as i64,
            "created_at": self.created_at(idx).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "updated_at": self.changed_at(idx).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "price": decimal(cents),
            "old_price": decimal(cents * 6 / 5),
            "min_price": decimal(cents * 9 / 10),
            "marketing_price": decimal(cents),
            "currency_code": currency(shop),
            "vat": "0",
            "images": images,
            "primary_image": [images[0].clone()],
            "color_image": [],
            "images360": [],
            "visibility_details": {"has_price": true, "has_stock": present > 0},
            "is_archived": class == Class::Archived,
            "is_autoarchived": false,
            "is_kgt": false,
            "errors": error_list,
            "statuses": {"status": status, "status_name": status_name,
                "moderate_status": "approved", "validation_status": validation,
                "status_failed": "", "is_created": true},
            "stocks": {"has_stock": present > 0, "stocks": [{"present": present,
                "reserved": reserved, "sku": sku(shop, idx), "source": "fbs"}]},
            "sources": [{"sku": sku(shop, idx), "source": "sds",
                "shipment_type": "SHIPMENT_TYPE_GENERAL"}],
            "model_info": {"model_id": 5_000_000 + idx as i64, "count": 1},
        })
    }

    pub(crate) fn price(&self, idx: usize) -> Value {
        let cents = price_cents(self.shop, idx) as f64;
        json!({
            "offer_id": offer_id(self.shop, idx),
            "product_id": product_id(self.shop, idx),
            "acquiring": 0,
            "price": {"price": cents / 100.0, "old_price": (cents * 1.2).round() / 100.0,
                "min_price": (cents * 0.9).round() / 100.0, "marketing_price": cents / 100.0,
                "marketing_seller_price": cents / 100.0, "retail_price": 0,
                "currency_code": currency(self.shop), "vat": 0.2, "auto_action_enabled": false},
            "price_indexes": {"color_index": "WITHOUT_INDEX"},
            "commissions": {"sales_percent_fbs": 15, "fbs_deliv_to_customer_amount": 0},
            "volume_weight": 0.2,
        })
    }

    /// FBS stock rows of one product: split over the shop's two warehouses.
    pub(crate) fn stock_rows(&self, idx: usize) -> Vec<Value> {
        let (present, reserved) = self.stock(idx);
        let second = present / 3;
        let split = [(0, present - second, reserved), (1, second, 0)];
        split
            .into_iter()
            .filter(|(k, p, r)| *k == 0 || p + r > 0)
            .map(|(k, p, r)| {
                json!({
                    "sku": sku(self.shop, idx), "product_id": product_id(self.shop, idx),
                    "offer_id": offer_id(self.shop, idx), "present": p, "reserved": r,
                    "warehouse_id": WAREHOUSE_BASE + self.shop as i64 * 10 + k,
                    "warehouse_name": super::orders::warehouse_name(k as usize),
                })
            })
            .collect()
    }

    pub(crate) fn attributes(&self, idx: usize) -> Value {
        let (shop, h) = (self.shop, mix(self.shop, idx, 12));
        let images = self.images(idx);
        json!({
            "id": product_id(shop, idx),
            "offer_id": offer_id(shop, idx),
            "sku": sku(shop, idx),
            "name": name(shop, idx),
            "barcode": format!("OZN{}", sku(shop, idx)),
            "barcodes": [format!("OZN{}", sku(shop, idx))],
            "description_category_id": 17_028_922 + (mix(shop, idx, 10) % 5) as i64,
            "type_id": 91_565 + (mix(shop, idx, 11) % 7) as i64,
            "height": 20 + h % 200,
            "depth": 50 + (h >> 8) % 300,
            "width": 30 + (h >> 16) % 250,
            "dimension_unit": "mm",
            "weight": 50 + (h >> 24) % 2000, "weight_unit": "g",
            "primary_image": images[0].clone(),
            "images": images,
            "color_image": "",
            "attributes": [
                attribute(85, 126_745_801, "Нет бренда"),
                attribute(9048, 0, &format!("EF-{idx}")),
                attribute(4180, 0, &name(shop, idx)),
            ],
            "complex_attributes": [],
            "model_info": {"model_id": 5_000_000 + idx as i64, "count": 1},
            "pdf_list": [],
            "attributes_with_defaults": [],
        })
    }
}

/// One attribute with one value, as `/v4/product/info/attributes` lists them.
fn attribute(id: i64, dictionary_value_id: i64, value: &str) -> Value {
    json!({"id": id, "complex_id": 0,
        "values": [{"dictionary_value_id": dictionary_value_id, "value": value}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_ids_resolve_back() {
        let anchor = Utc::now();
        let a = Catalog::new(1, anchor, 1000);
        let b = Catalog::new(1, anchor, 1000);
        assert_eq!(a.info(17), b.info(17));
        assert_ne!(a.info(17), Catalog::new(0, anchor, 1000).info(17));
        assert_eq!(a.by_offer_id(&offer_id(1, 17)), Some(17));
        assert_eq!(
            a.by_offer_id(&offer_id(0, 17)),
            None,
            "another shop's offer id"
        );
        assert_eq!(a.by_offer_id("EF1-001000"), None, "past the end");
        assert_eq!(a.by_product_id(product_id(1, 999)), Some(999));
        assert_eq!(a.by_sku(sku(1, 5)), Some(5));
        assert_eq!(parse_cursor(&cursor(42)), Some(42));
        assert_eq!(parse_cursor("garbage"), None);
    }

    #[test]
    fn the_mix_has_every_class_and_some_errors() {
        let c = Catalog::new(0, Utc::now(), 1000);
        let visible = c.total(None, Visibility::Visible, None);
        let invisible = c.total(None, Visibility::Invisible, None);
        let archived = c.total(None, Visibility::Archived, None);
        assert_eq!(visible + invisible + archived, 1000);
        assert!((600..800).contains(&visible), "{visible}");
        assert!(invisible > 100 && archived > 60, "{invisible} {archived}");
        assert_eq!(c.total(None, Visibility::All, None), visible + invisible);
        assert!((0..1000).any(|i| c.has_errors(i)));
    }

    #[test]
    fn changes_are_seen_by_the_changed_since_filter() {
        let anchor = Utc::now() - Duration::hours(1);
        let mut c = Catalog::new(0, anchor, 100);
        let since = Utc::now();
        let v = (0..100).find(|&i| c.class(i) == Class::Visible).unwrap();
        c.archive(v, Utc::now());
        let added = c.add(2, Utc::now());
        let changed: Vec<_> = c.page(None, Visibility::All, Some(since), None, 1000);
        assert_eq!(changed, vec![100, 101]);
        assert_eq!(added, vec![offer_id(0, 100), offer_id(0, 101)]);
        assert_eq!(
            c.page(None, Visibility::Archived, Some(since), None, 10),
            vec![v]
        );
    }
}
