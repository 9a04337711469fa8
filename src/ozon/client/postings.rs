//! FBS posting endpoints (contract §5.2 O1, O2): requests, the typed fields the posting mirror
//! (§3.2, §4.2) reads, and each posting's whole JSON object, which the mirror stores as
//! `raw_payload`.
//!
//! `cancellation` is on every posting, zero-valued unless it was cancelled (§7 C1): use
//! [`PostingData::is_cancelled`], never "the object is present".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::de::{self, Money};
use super::error::OzonError;
use super::paging::PostingPager;
use super::{Endpoint, ShopClient};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SortDir {
    #[default]
    Asc,
    Desc,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct TimeRange {
    #[serde(serialize_with = "de::ser_time")]
    pub from: DateTime<Utc>,
    #[serde(serialize_with = "de::ser_time")]
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PostingFilter {
    /// Processing start (`in_process_at`) from…
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_time"
    )]
    pub since: Option<DateTime<Utc>>,
    /// …to.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "de::ser_opt_time"
    )]
    pub to: Option<DateTime<Utc>>,
    /// Postings whose status changed in this window: what an incremental sync needs (§7 C4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_changed_status_date: Option<TimeRange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warehouse_id: Vec<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delivery_method_id: Vec<i64>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PostingWith {
    pub analytics_data: bool,
    pub financial_data: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PostingListRequest {
    pub dir: SortDir,
    pub filter: PostingFilter,
    /// 1..=[`super::MAX_PAGE_LIMIT`].
    pub limit: u32,
    pub offset: u32,
    pub with: PostingWith,
}

#[derive(Debug, Deserialize)]
pub struct PostingListResponse {
    pub result: PostingListResult,
}

#[derive(Debug, Deserialize)]
pub struct PostingListResult {
    #[serde(default, deserialize_with = "de::nullable")]
    pub postings: Vec<Posting>,
    #[serde(default)]
    pub has_next: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PostingGetRequest {
    pub posting_number: String,
    pub with: PostingWith,
}

#[derive(Debug, Deserialize)]
pub struct PostingGetResponse {
    pub result: Posting,
}

/// A posting: the typed fields, and the object exactly as Ozon sent it.
#[derive(Debug, Clone)]
pub struct Posting {
    pub data: PostingData,
    pub raw: serde_json::Value,
}

impl<'de> Deserialize<'de> for Posting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(d)?;
        let data = PostingData::deserialize(&raw).map_err(serde::de::Error::custom)?;
        Ok(Posting { data, raw })
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PostingData {
    pub posting_number: String,
    #[serde(default)]
    pub order_id: i64,
    #[serde(default, deserialize_with = "de::nullable")]
    pub order_number: String,
    #[serde(default, deserialize_with = "de::nullable")]
    pub status: String,
    #[serde(default, deserialize_with = "de::nullable")]
    pub substatus: String,
    #[serde(default, deserialize_with = "de::time")]
    pub in_process_at: Option<DateTime<Utc>>,
    /// The ship-by deadline.
    #[serde(default, deserialize_with = "de::time")]
    pub shipment_date: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de::time")]
    pub delivering_date: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de::nullable")]
    pub tracking_number: String,
    #[serde(default, deserialize_with = "de::nullable")]
    pub delivery_method: DeliveryMethod,
    #[serde(default, deserialize_with = "de::nullable")]
    pub cancellation: Cancellation,
    #[serde(default, deserialize_with = "de::nullable")]
    pub products: Vec<PostingProduct>,
    #[serde(default)]
    pub is_express: bool,
}

impl PostingData {
    /// Cancelled for real: the status says so, or Ozon gave a cancellation reason.
    pub fn is_cancelled(&self) -> bool {
        self.status == "cancelled" || self.cancellation.cancel_reason_id > 0
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeliveryMethod {
    #[serde(default)]
    pub id: i64,
    #[serde(default, deserialize_with = "de::nullable")]
    pub name: String,
    #[serde(default)]
    pub warehouse_id: i64,
    #[serde(default, deserialize_with = "de::nullable")]
    pub warehouse: String,
    #[serde(default)]
    pub tpl_provider_id: i64,
    #[serde(default, deserialize_with = "de::nullable")]
    pub tpl_provider: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Cancellation {
    /// 0 when not cancelled.
    #[serde(default)]
    pub cancel_reason_id: i64,
    #[serde(default, deserialize_with = "de::nullable")]
    pub cancel_reason: String,
    #[serde(default, deserialize_with = "de::nullable")]
    pub cancellation_type: String,
    #[serde(default, deserialize_with = "de::nullable")]
    pub cancellation_initiator: String,
    #[serde(default)]
    pub cancelled_after_ship: bool,
    /// Not in the documentation, read by the original when present.
    #[serde(default, deserialize_with = "de::time")]
    pub cancelled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PostingProduct {
    pub sku: i64,
    #[serde(default, deserialize_with = "de::nullable")]
    pub offer_id: String,
    #[serde(default, deserialize_with = "de::nullable")]
    pub name: String,
    #[serde(default)]
    pub quantity: i64,
    /// Unit price in `currency_code` (the seller's currency).
    #[serde(default, deserialize_with = "de::money")]
    pub price: Option<Money>,
    #[serde(default, deserialize_with = "de::nullable")]
    pub currency_code: String,
}

impl ShopClient {
    /// One page of `/v3/posting/fbs/list`.
    pub async fn posting_list(
        &self,
        request: &PostingListRequest,
    ) -> Result<PostingListResult, OzonError> {
        let r: PostingListResponse = self.call(Endpoint::PostingFbsList, request).await?;
        Ok(r.result)
    }

    /// Every page of `/v3/posting/fbs/list` for `filter`, from offset 0.
    pub fn posting_pages(
        &self,
        filter: PostingFilter,
        dir: SortDir,
        limit: u32,
        with: PostingWith,
    ) -> PostingPager {
        let request = PostingListRequest {
            dir,
            filter,
            limit,
            offset: 0,
            with,
        };
        PostingPager::new(self.clone(), request)
    }

    /// One posting by number; [`OzonError::NotFound`] when Ozon does not know it.
    pub async fn posting_get(
        &self,
        posting_number: &str,
        with: PostingWith,
    ) -> Result<Posting, OzonError> {
        let request = PostingGetRequest {
            posting_number: posting_number.to_owned(),
            with,
        };
        let r: PostingGetResponse = self.call(Endpoint::PostingFbsGet, &request).await?;
        Ok(r.result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_posting_keeps_its_raw_object_and_reads_cancellation_by_value() {
        let json = r#"{"posting_number":"1-0001-1","status":"delivering","order_id":5,
            "cancellation":{"cancel_reason_id":0,"cancel_reason":"","cancellation_type":""},
            "products":[{"sku":11,"offer_id":"A","name":"Чехол","quantity":2,"price":"12.50",
                "currency_code":"CNY"}],
            "customer":null,"delivery_method":null,"in_process_at":"2025-12-01T10:00:00Z",
            "something_new":[1,2,3]}"#;
        let p: Posting = serde_json::from_str(json).unwrap();
        assert!(
            !p.data.is_cancelled(),
            "a zero cancellation object is not a cancellation"
        );
        assert_eq!(p.data.products[0].price.as_ref().unwrap().as_str(), "12.50");
        assert_eq!(p.raw["something_new"], serde_json::json!([1, 2, 3]));
        assert_eq!(p.data.delivery_method.id, 0);
        let cancelled: Posting = serde_json::from_str(
            r#"{"posting_number":"2","status":"awaiting_packaging",
                "cancellation":{"cancel_reason_id":352}}"#,
        )
        .unwrap();
        assert!(cancelled.data.is_cancelled());
        assert!(serde_json::from_str::<Posting>(r#"{"status":"x"}"#).is_err());
    }

    #[test]
    fn the_list_request_uses_ozon_names() {
        let t = DateTime::parse_from_rfc3339("2025-12-13T04:15:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let r = PostingListRequest {
            dir: SortDir::Desc,
            filter: PostingFilter {
                last_changed_status_date: Some(TimeRange { from: t, to: t }),
                ..Default::default()
            },
            limit: 200,
            offset: 400,
            with: PostingWith::default(),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["dir"], "DESC");
        assert_eq!(
            v["filter"]["last_changed_status_date"]["from"],
            "2025-12-13T04:15:00.000Z"
        );
        assert!(v["filter"].get("since").is_none());
        assert_eq!(v["with"]["financial_data"], false);
    }
}
