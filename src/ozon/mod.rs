//! The sellers' business on Ozon (DESIGN.md §3 `src/ozon/`).
//!
//! - `client`: the Ozon Seller API client every Ozon job and route goes through — typed requests
//!   and answers, typed errors, retries, one shared rate budget per shop.
//! - `fake`: a fake Ozon Seller API over real HTTP, for tests, the demo mode and by hand
//!   (`euraflow-dev fake-ozon`). It lives in the library so integration tests start it in-process.

pub mod client;
pub mod fake;
