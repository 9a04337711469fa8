//! `/v1/warehouse/list` (contract §5.2 W): the seller's FBS/rFBS warehouses, for the optional
//! `ozon_warehouses` table (§3.7) and the names shown beside stock.

use serde::Deserialize;

use super::de;
use super::error::OzonError;
use super::{Endpoint, ShopClient};

#[derive(Debug, Deserialize)]
pub struct WarehouseListResponse {
    #[serde(deserialize_with = "de::nullable")]
    pub result: Vec<Warehouse>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Warehouse {
    pub warehouse_id: i64,
    #[serde(default, deserialize_with = "de::nullable")]
    pub name: String,
    #[serde(default)]
    pub is_rfbs: bool,
    #[serde(default, deserialize_with = "de::nullable")]
    pub status: String,
    #[serde(default)]
    pub has_entrusted_acceptance: bool,
    /// -1 when there is no limit.
    #[serde(default)]
    pub postings_limit: i64,
    #[serde(default)]
    pub min_postings_limit: Option<i64>,
    #[serde(default)]
    pub has_postings_limit: bool,
    #[serde(default)]
    pub min_working_days: Option<i64>,
    /// `"1"`..`"7"`, Monday first.
    #[serde(default, deserialize_with = "de::texts")]
    pub working_days: Vec<String>,
    #[serde(default)]
    pub can_print_act_in_advance: bool,
    #[serde(default)]
    pub is_karantin: bool,
    #[serde(default)]
    pub is_kgt: bool,
    #[serde(default)]
    pub is_timetable_editable: bool,
    /// Stored verbatim (`first_mile_type` JSON column).
    #[serde(default)]
    pub first_mile_type: serde_json::Value,
}

impl ShopClient {
    pub async fn warehouses(&self) -> Result<Vec<Warehouse>, OzonError> {
        let r: WarehouseListResponse = self
            .call(Endpoint::WarehouseList, &serde_json::json!({}))
            .await?;
        Ok(r.result)
    }
}
