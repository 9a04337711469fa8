//! Product list, details and attributes (contract §5.2 P0–P2, P5; prices and stock are in
//! `prices_stocks`): requests, and the fields of the answers the product mirror (§3.3, §4.1)
//! uses, in the documented shapes rather than the original's guesses (§7 C2: v3 details carry
//! `barcodes[]`, `statuses{}`, `sources[]`, and no `brand`/`description`/`dimensions`).
//!
//! Identity fields (`offer_id`, `product_id`/`id`) are required: an item without them is a
//! malformed answer. Everything else defaults when absent; unknown fields are ignored. Values the
//! mirror stores verbatim as JSON (`errors`, `complex_attributes`, …) stay `serde_json::Value`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::de::{self, Money};
use super::error::OzonError;
use super::paging::{CursorEndpoint, CursorPager};
use super::{Endpoint, ShopClient};

/// Product visibility classes the sync pages through (Ozon has more; these are the ones used).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Visibility {
    /// Every product except archived ones.
    #[default]
    All,
    Visible,
    Invisible,
    Archived,
}

// ---- P0/P1 /v3/product/list -------------------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize)]
pub struct ProductListFilter {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub offer_id: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub product_id: Vec<i64>,
    pub visibility: Visibility,
    /// Only products changed since then (incremental sync).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_time"
    )]
    pub last_changed_since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProductListRequest {
    pub filter: ProductListFilter,
    /// Empty on the first page (then not sent).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_id: String,
    pub limit: u32,
}

#[derive(Debug, Deserialize)]
pub struct ProductListResponse {
    pub result: ProductListResult,
}

#[derive(Debug, Default, Deserialize)]
pub struct ProductListResult {
    #[serde(default, deserialize_with = "de::nullable")]
    pub items: Vec<ProductListItem>,
    #[serde(default)]
    pub total: i64,
    #[serde(default, deserialize_with = "de::nullable")]
    pub last_id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProductListItem {
    pub product_id: i64,
    pub offer_id: String,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub has_fbo_stocks: bool,
    #[serde(default)]
    pub has_fbs_stocks: bool,
    #[serde(default)]
    pub is_discounted: bool,
}

impl CursorEndpoint for ProductListRequest {
    type Item = ProductListItem;
    type Response = ProductListResponse;
    const ENDPOINT: Endpoint = Endpoint::ProductList;
    fn set_cursor(&mut self, cursor: &str) {
        cursor.clone_into(&mut self.last_id);
    }
    fn split(r: ProductListResponse) -> (Vec<ProductListItem>, String, Option<i64>) {
        (r.result.items, r.result.last_id, Some(r.result.total))
    }
}

// ---- P2 /v3/product/info/list -----------------------------------------------------------------

/// Up to [`super::PRODUCT_INFO_MAX_IDS`] identifiers in total.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProductInfoRequest {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub offer_id: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub product_id: Vec<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sku: Vec<i64>,
}

#[derive(Debug, Deserialize)]
pub struct ProductInfoResponse {
    #[serde(default, deserialize_with = "de::nullable")]
    pub items: Vec<ProductInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProductInfo {
    pub id: i64,
    pub offer_id: String,
    #[serde(default, deserialize_with = "de::nullable")]
    pub name: String,
    #[serde(default)]
    pub sku: i64,
    #[serde(default, deserialize_with = "de::nullable")]
    pub barcodes: Vec<String>,
    #[serde(default)]
    pub description_category_id: i64,
    #[serde(default)]
    pub type_id: i64,
    #[serde(default, deserialize_with = "de::time")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de::time")]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de::money")]
    pub price: Option<Money>,
    #[serde(default, deserialize_with = "de::money")]
    pub old_price: Option<Money>,
    #[serde(default, deserialize_with = "de::money")]
    pub min_price: Option<Money>,
    #[serde(default, deserialize_with = "de::money")]
    pub marketing_price: Option<Money>,
    #[serde(default, deserialize_with = "de::nullable")]
    pub currency_code: String,
    #[serde(default, deserialize_with = "de::money")]
    pub vat: Option<Money>,
    #[serde(default, deserialize_with = "de::strings")]
    pub images: Vec<String>,
    #[serde(default, deserialize_with = "de::strings")]
    pub primary_image: Vec<String>,
    #[serde(default, deserialize_with = "de::strings")]
    pub color_image: Vec<String>,
    #[serde(default, deserialize_with = "de::nullable")]
    pub visibility_details: VisibilityDetails,
    #[serde(default)]
    pub is_archived: bool,
    #[serde(default)]
    pub is_autoarchived: bool,
    /// Ozon's error objects, kept verbatim for `ozon_product_sync_errors.errors`.
    #[serde(default, deserialize_with = "de::nullable")]
    pub errors: Vec<serde_json::Value>,
    #[serde(default, deserialize_with = "de::nullable")]
    pub statuses: ProductStatuses,
    #[serde(default, deserialize_with = "de::nullable")]
    pub stocks: ProductStocks,
    #[serde(default, deserialize_with = "de::nullable")]
    pub sources: Vec<ProductSource>,
    #[serde(default, deserialize_with = "de::nullable")]
    pub model_info: ModelInfo,
}

impl ProductInfo {
    /// The product's SKU: the top-level `sku` when Ozon sends it, else the first source's.
    pub fn any_sku(&self) -> Option<i64> {
        Some(self.sku)
            .filter(|&s| s > 0)
            .or_else(|| self.sources.iter().map(|s| s.sku).find(|&s| s > 0))
            .or_else(|| self.stocks.stocks.iter().map(|s| s.sku).find(|&s| s > 0))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProductSource {
    #[serde(default)]
    pub sku: i64,
    #[serde(default, deserialize_with = "de::nullable")]
    pub source: String,
}

/// `None` when Ozon did not say (the mirror treats that as `true`, §4.1).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VisibilityDetails {
    #[serde(default)]
    pub has_price: Option<bool>,
    #[serde(default)]
    pub has_stock: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProductStatuses {
    #[serde(default, deserialize_with = "de::nullable")]
    pub status: String,
    #[serde(default, deserialize_with = "de::nullable")]
    pub status_name: String,
    #[serde(default, deserialize_with = "de::nullable")]
    pub moderate_status: String,
    #[serde(default, deserialize_with = "de::nullable")]
    pub validation_status: String,
    #[serde(default)]
    pub is_created: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProductStocks {
    #[serde(default)]
    pub has_stock: bool,
    #[serde(default, deserialize_with = "de::nullable")]
    pub stocks: Vec<StockBySource>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct StockBySource {
    #[serde(default)]
    pub present: i64,
    #[serde(default)]
    pub reserved: i64,
    #[serde(default)]
    pub sku: i64,
    #[serde(default, deserialize_with = "de::nullable")]
    pub source: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModelInfo {
    #[serde(default)]
    pub model_id: i64,
    #[serde(default)]
    pub count: i64,
}

// ---- P5 /v4/product/info/attributes -----------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize)]
pub struct AttributesFilter {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub offer_id: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub product_id: Vec<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sku: Vec<i64>,
    pub visibility: Visibility,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttributesRequest {
    pub filter: AttributesFilter,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub last_id: String,
    pub limit: u32,
}

#[derive(Debug, Deserialize)]
pub struct AttributesResponse {
    #[serde(default, deserialize_with = "de::nullable")]
    pub result: Vec<ProductAttributes>,
    #[serde(default, deserialize_with = "de::nullable")]
    pub last_id: String,
    #[serde(default)]
    pub total: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ProductAttributes {
    #[serde(default)]
    pub id: i64,
    pub offer_id: String,
    #[serde(default)]
    pub sku: i64,
    #[serde(default, deserialize_with = "de::nullable")]
    pub barcodes: Vec<String>,
    #[serde(default)]
    pub description_category_id: i64,
    #[serde(default)]
    pub type_id: i64,
    #[serde(default)]
    pub weight: Option<f64>,
    #[serde(default)]
    pub width: Option<f64>,
    #[serde(default)]
    pub height: Option<f64>,
    #[serde(default)]
    pub depth: Option<f64>,
    #[serde(default, deserialize_with = "de::nullable")]
    pub dimension_unit: String,
    #[serde(default, deserialize_with = "de::nullable")]
    pub weight_unit: String,
    #[serde(default, deserialize_with = "de::strings")]
    pub primary_image: Vec<String>,
    #[serde(default, deserialize_with = "de::strings")]
    pub color_image: Vec<String>,
    #[serde(default, deserialize_with = "de::nullable")]
    pub attributes: Vec<Attribute>,
    #[serde(default, deserialize_with = "de::nullable")]
    pub complex_attributes: Vec<serde_json::Value>,
    #[serde(default, deserialize_with = "de::nullable")]
    pub model_info: ModelInfo,
    #[serde(default, deserialize_with = "de::nullable")]
    pub pdf_list: Vec<serde_json::Value>,
    #[serde(default, deserialize_with = "de::nullable")]
    pub attributes_with_defaults: Vec<serde_json::Value>,
}

/// Serializable again: the mirror stores the list as `ozon_attributes` JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attribute {
    pub id: i64,
    #[serde(default)]
    pub complex_id: i64,
    #[serde(default, deserialize_with = "de::nullable")]
    pub values: Vec<AttributeValue>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttributeValue {
    #[serde(default)]
    pub dictionary_value_id: i64,
    #[serde(default, deserialize_with = "de::nullable")]
    pub value: String,
}

impl CursorEndpoint for AttributesRequest {
    type Item = ProductAttributes;
    type Response = AttributesResponse;
    const ENDPOINT: Endpoint = Endpoint::ProductAttributes;
    fn set_cursor(&mut self, cursor: &str) {
        cursor.clone_into(&mut self.last_id);
    }
    fn split(r: AttributesResponse) -> (Vec<ProductAttributes>, String, Option<i64>) {
        (r.result, r.last_id, Some(r.total))
    }
}

// ---- calls ------------------------------------------------------------------------------------

impl ShopClient {
    /// One page of `/v3/product/list`.
    pub async fn product_list(
        &self,
        request: &ProductListRequest,
    ) -> Result<ProductListResult, OzonError> {
        let r: ProductListResponse = self.call(Endpoint::ProductList, request).await?;
        Ok(r.result)
    }

    /// Every page of `/v3/product/list` for `filter`, `limit` items each.
    pub fn product_pages(
        &self,
        filter: ProductListFilter,
        limit: u32,
    ) -> CursorPager<ProductListRequest> {
        let request = ProductListRequest {
            filter,
            last_id: String::new(),
            limit,
        };
        CursorPager::new(self.clone(), request)
    }

    /// Details of the products named in `request` (only those Ozon knows come back).
    pub async fn product_info(
        &self,
        request: &ProductInfoRequest,
    ) -> Result<Vec<ProductInfo>, OzonError> {
        let r: ProductInfoResponse = self.call(Endpoint::ProductInfoList, request).await?;
        Ok(r.items)
    }

    /// One page of `/v4/product/info/attributes`.
    pub async fn product_attributes(
        &self,
        request: &AttributesRequest,
    ) -> Result<AttributesResponse, OzonError> {
        self.call(Endpoint::ProductAttributes, request).await
    }

    pub fn attribute_pages(
        &self,
        filter: AttributesFilter,
        limit: u32,
    ) -> CursorPager<AttributesRequest> {
        let request = AttributesRequest {
            filter,
            last_id: String::new(),
            limit,
        };
        CursorPager::new(self.clone(), request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_serialize_as_ozon_documents_them() {
        let r = ProductListRequest {
            filter: ProductListFilter {
                visibility: Visibility::Archived,
                last_changed_since: Some(
                    DateTime::parse_from_rfc3339("2025-12-13T04:15:00Z")
                        .unwrap()
                        .with_timezone(&Utc),
                ),
                ..Default::default()
            },
            last_id: String::new(),
            limit: 100,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"filter": {"visibility": "ARCHIVED",
                "last_changed_since": "2025-12-13T04:15:00.000Z"}, "limit": 100})
        );
        let info = ProductInfoRequest {
            sku: vec![1, 2],
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&info).unwrap(),
            serde_json::json!({"sku": [1, 2]})
        );
    }

    #[test]
    fn answers_tolerate_nulls_and_unknown_fields_but_need_identity() {
        let info: ProductInfoResponse = serde_json::from_str(
            r#"{"items":[{"id":7,"offer_id":"A-1","price":"10.50","images":null,
                "primary_image":"p.jpg","visibility_details":{"has_price":false},
                "new_field_from_ozon":{"x":1},"statuses":null}]}"#,
        )
        .unwrap();
        let p = &info.items[0];
        assert_eq!(p.price.as_ref().map(Money::as_str), Some("10.50"));
        assert_eq!(p.primary_image, vec!["p.jpg"]);
        assert!(p.images.is_empty());
        assert_eq!(p.visibility_details.has_price, Some(false));
        assert_eq!(p.visibility_details.has_stock, None);
        assert_eq!(p.any_sku(), None);
        let with_source: ProductInfo = serde_json::from_str(
            r#"{"id":1,"offer_id":"B","sources":[{"sku":55,"source":"sds"}]}"#,
        )
        .unwrap();
        assert_eq!(with_source.any_sku(), Some(55));
        assert!(serde_json::from_str::<ProductInfoResponse>(r#"{"items":[{"id":7}]}"#).is_err());
    }
}
