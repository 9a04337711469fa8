//! Prices and FBS stock (contract §5.2 P3, P4), in the documented shapes: `/v5/product/info/prices`
//! answers top-level `{cursor, items, total}` with a nested `price{}` of JSON numbers (the
//! original read `result.items` and so never had a price); FBS stock rows are keyed by `sku`
//! (the original expected an `offer_id` the documentation does not list).

use serde::{Deserialize, Serialize};

use super::de::{self, Money};
use super::error::OzonError;
use super::paging::{CursorEndpoint, CursorPager};
use super::products::Visibility;
use super::{Endpoint, ShopClient};

// ---- P3 /v5/product/info/prices ---------------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize)]
pub struct PricesFilter {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub offer_id: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub product_id: Vec<i64>,
    pub visibility: Visibility,
}

#[derive(Debug, Clone, Serialize)]
pub struct PricesRequest {
    pub cursor: String,
    pub filter: PricesFilter,
    pub limit: u32,
}

/// The documented top-level shape `{cursor, items, total}` (the original read `result.items`
/// and so never had a price, §5.2 P3).
#[derive(Debug, Deserialize)]
pub struct PricesResponse {
    #[serde(default, deserialize_with = "de::nullable")]
    pub cursor: String,
    #[serde(default, deserialize_with = "de::nullable")]
    pub items: Vec<PriceItem>,
    #[serde(default)]
    pub total: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PriceItem {
    pub offer_id: String,
    #[serde(default)]
    pub product_id: i64,
    #[serde(default, deserialize_with = "de::nullable")]
    pub price: Price,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Price {
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
}

impl CursorEndpoint for PricesRequest {
    type Item = PriceItem;
    type Response = PricesResponse;
    const ENDPOINT: Endpoint = Endpoint::ProductPrices;
    fn set_cursor(&mut self, cursor: &str) {
        cursor.clone_into(&mut self.cursor);
    }
    fn split(r: PricesResponse) -> (Vec<PriceItem>, String, Option<i64>) {
        (r.items, r.cursor, Some(r.total))
    }
}

// ---- P4 /v1/product/info/stocks-by-warehouse/fbs ----------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct FbsStocksRequest {
    /// Up to [`super::FBS_STOCKS_MAX_SKUS`].
    pub sku: Vec<i64>,
}

#[derive(Debug, Deserialize)]
pub struct FbsStocksResponse {
    #[serde(deserialize_with = "de::nullable")]
    pub result: Vec<WarehouseStock>,
}

/// One SKU at one warehouse. Map to products by `sku` (the documented key; `offer_id` is filled
/// only when Ozon happens to send it).
#[derive(Debug, Clone, Deserialize)]
pub struct WarehouseStock {
    pub sku: i64,
    #[serde(default)]
    pub product_id: i64,
    #[serde(default, deserialize_with = "de::nullable")]
    pub offer_id: String,
    #[serde(default)]
    pub present: i64,
    #[serde(default)]
    pub reserved: i64,
    #[serde(default)]
    pub warehouse_id: i64,
    #[serde(default, deserialize_with = "de::nullable")]
    pub warehouse_name: String,
}

impl ShopClient {
    /// One page of `/v5/product/info/prices`.
    pub async fn product_prices(
        &self,
        request: &PricesRequest,
    ) -> Result<PricesResponse, OzonError> {
        self.call(Endpoint::ProductPrices, request).await
    }

    pub fn price_pages(&self, filter: PricesFilter, limit: u32) -> CursorPager<PricesRequest> {
        let request = PricesRequest {
            cursor: String::new(),
            filter,
            limit,
        };
        CursorPager::new(self.clone(), request)
    }

    /// FBS stock per warehouse for up to [`super::FBS_STOCKS_MAX_SKUS`] SKUs.
    pub async fn fbs_stocks(&self, skus: &[i64]) -> Result<Vec<WarehouseStock>, OzonError> {
        let request = FbsStocksRequest { sku: skus.to_vec() };
        let r: FbsStocksResponse = self.call(Endpoint::FbsStocks, &request).await?;
        Ok(r.result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_and_stock_read_the_documented_shapes() {
        let prices: PricesResponse = serde_json::from_str(
            r#"{"cursor":"c2","items":[{"offer_id":"A-1","product_id":7,
                "price":{"price":1390.5,"old_price":"1500","currency_code":"CNY","vat":0.2}}],"total":1}"#,
        )
        .unwrap();
        assert_eq!(
            prices.items[0].price.price.as_ref().unwrap().as_str(),
            "1390.5"
        );
        assert_eq!(prices.items[0].price.vat.as_ref().unwrap().as_str(), "0.2");
        assert!(serde_json::from_str::<FbsStocksResponse>(r#"{"items":[]}"#).is_err());
    }
}
