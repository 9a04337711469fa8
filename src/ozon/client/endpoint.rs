//! The Seller API endpoints this slice calls (contract §5.2) and their documented batch limits.
//!
//! One closed list, shared by the client (request paths, the `endpoint` metrics label, which so
//! stays a handful of values) and the fake server (its routes and the limits it enforces), so the
//! two cannot drift apart.

/// An Ozon Seller API endpoint; every call is `POST <base_url><path>` with a JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// P0/P1 `/v3/product/list`: product ids by visibility, cursor paging (`last_id`).
    ProductList,
    /// P2 `/v3/product/info/list`: product details for up to [`PRODUCT_INFO_MAX_IDS`] ids.
    ProductInfoList,
    /// P3 `/v5/product/info/prices`: prices, cursor paging (`cursor`).
    ProductPrices,
    /// P4 `/v1/product/info/stocks-by-warehouse/fbs`: FBS stock per warehouse by SKU.
    FbsStocks,
    /// P5 `/v4/product/info/attributes`: attributes and dimensions, cursor paging (`last_id`).
    ProductAttributes,
    /// O1 `/v3/posting/fbs/list`: postings, offset paging (`has_next`).
    PostingFbsList,
    /// O2 `/v3/posting/fbs/get`: one posting by number.
    PostingFbsGet,
    /// W `/v1/warehouse/list`: the seller's warehouses.
    WarehouseList,
}

impl Endpoint {
    pub const ALL: [Endpoint; 8] = [
        Endpoint::ProductList,
        Endpoint::ProductInfoList,
        Endpoint::ProductPrices,
        Endpoint::FbsStocks,
        Endpoint::ProductAttributes,
        Endpoint::PostingFbsList,
        Endpoint::PostingFbsGet,
        Endpoint::WarehouseList,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ProductList => "/v3/product/list",
            Endpoint::ProductInfoList => "/v3/product/info/list",
            Endpoint::ProductPrices => "/v5/product/info/prices",
            Endpoint::FbsStocks => "/v1/product/info/stocks-by-warehouse/fbs",
            Endpoint::ProductAttributes => "/v4/product/info/attributes",
            Endpoint::PostingFbsList => "/v3/posting/fbs/list",
            Endpoint::PostingFbsGet => "/v3/posting/fbs/get",
            Endpoint::WarehouseList => "/v1/warehouse/list",
        }
    }

    pub fn from_path(path: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.path() == path)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.path())
    }
}

/// `limit` of `/v3/product/list`, `/v5/product/info/prices`, `/v4/product/info/attributes` and
/// `/v3/posting/fbs/list` (Ozon documents 1..=1000 for each).
pub const MAX_PAGE_LIMIT: u32 = 1000;
/// Identifiers (`offer_id` + `product_id` + `sku`) in one `/v3/product/info/list` call.
pub const PRODUCT_INFO_MAX_IDS: usize = 1000;
/// Identifiers in the filter of one `/v4/product/info/attributes` or `/v5/product/info/prices`
/// call.
pub const FILTER_MAX_IDS: usize = 1000;
/// SKUs in one `/v1/product/info/stocks-by-warehouse/fbs` call.
pub const FBS_STOCKS_MAX_SKUS: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_distinct_and_round_trip() {
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::from_path(e.path()), Some(e));
            assert!(e.path().starts_with("/v"));
        }
        let mut paths: Vec<_> = Endpoint::ALL.iter().map(|e| e.path()).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), Endpoint::ALL.len());
        assert_eq!(Endpoint::from_path("/v2/product/list"), None);
    }
}
