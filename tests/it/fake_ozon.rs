//! The fake Ozon's data and paging through the client, over real HTTP: every product and posting
//! of a generated shop exactly once through both paging styles, the incremental filters after
//! changes made at run time, and the `euraflow-dev fake-ozon` binary.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};

use crate::common::ozon::{settings, shop0, start};
use chrono::Utc;
use euraflow::ozon::client::{
    AttributesFilter, ClientSettings, Credentials, OzonClient, OzonMetrics, PostingFilter,
    PostingWith, PricesFilter, ProductInfoRequest, ProductListFilter, SortDir, TimeRange,
    Visibility,
};

#[tokio::test]
async fn paging_returns_every_product_and_posting_exactly_once() {
    let (fake, handle) = start(250, 400).await;
    let shop = shop0(&fake, settings(&fake));

    // Products: the three visibility passes of the sync cover the shop, each product once.
    let mut all = Vec::new();
    for vis in [
        Visibility::Visible,
        Visibility::Invisible,
        Visibility::Archived,
    ] {
        let mut pager = shop.product_pages(
            ProductListFilter {
                visibility: vis,
                ..Default::default()
            },
            100,
        );
        let mut pass = Vec::new();
        while let Some(page) = pager.next_page().await.unwrap() {
            assert_eq!(page.total, Some(handle.offer_ids(0, vis).len() as i64));
            pass.extend(page.items.into_iter().map(|p| p.offer_id));
        }
        assert_eq!(pass, handle.offer_ids(0, vis), "{vis:?}");
        all.extend(pass);
    }
    assert_eq!(all.len(), 250);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 250);

    // Attributes and prices page by their own cursors.
    let mut attributes = shop.attribute_pages(AttributesFilter::default(), 60);
    let mut n = 0;
    while let Some(page) = attributes.next_page().await.unwrap() {
        assert!(
            page.items
                .iter()
                .all(|a| a.weight.is_some() && !a.attributes.is_empty())
        );
        n += page.items.len();
    }
    assert_eq!(n, handle.offer_ids(0, Visibility::All).len());
    let mut prices = shop.price_pages(PricesFilter::default(), 1000);
    let page = prices.next_page().await.unwrap().unwrap();
    assert_eq!(page.items.len(), n);
    assert!(page.items.iter().all(|p| p.price.price.is_some()));
    assert!(prices.next_page().await.unwrap().is_none());

    // Details and stock of one batch, joined by sku as documented.
    let batch: Vec<String> = handle.offer_ids(0, Visibility::Visible)[..100].to_vec();
    let info = shop
        .product_info(&ProductInfoRequest {
            offer_id: batch.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(info.len(), 100);
    assert!(
        info.iter()
            .all(|p| p.sku > 0 && p.price.is_some() && !p.images.is_empty())
    );
    let skus: Vec<i64> = info.iter().map(|p| p.sku).collect();
    let stock = shop.fbs_stocks(&skus).await.unwrap();
    let stocked: HashSet<i64> = stock.iter().map(|r| r.sku).collect();
    assert_eq!(stocked, skus.iter().copied().collect::<HashSet<_>>());

    // Postings: offset paging, newest first, every posting once.
    let now = Utc::now();
    let filter = PostingFilter {
        since: Some(now - chrono::Duration::days(31)),
        to: Some(now),
        ..Default::default()
    };
    let with = PostingWith {
        analytics_data: true,
        financial_data: true,
    };
    let mut pager = shop.posting_pages(filter, SortDir::Desc, 100, with);
    let mut postings = Vec::new();
    let mut pages = 0;
    while let Some(page) = pager.next_page().await.unwrap() {
        pages += 1;
        postings.extend(page.items);
    }
    assert_eq!(pages, 4);
    let numbers: Vec<String> = postings
        .iter()
        .map(|p| p.data.posting_number.clone())
        .collect();
    let mut expected = handle.posting_numbers(0);
    expected.reverse();
    assert_eq!(numbers, expected);
    for pair in postings.windows(2) {
        assert!(pair[0].data.in_process_at >= pair[1].data.in_process_at);
    }
    let mut cancelled = 0;
    for p in &postings {
        assert_eq!(p.raw["posting_number"], p.data.posting_number.as_str());
        assert!(p.raw["cancellation"].is_object(), "on every posting");
        assert_eq!(p.data.is_cancelled(), p.data.status == "cancelled");
        assert!(!p.data.products.is_empty() && p.raw["analytics_data"].is_object());
        cancelled += usize::from(p.data.is_cancelled());
    }
    assert!(cancelled > 0 && cancelled < 400, "{cancelled}");
    let one = shop
        .posting_get(&numbers[7], PostingWith::default())
        .await
        .unwrap();
    assert_eq!(one.data.posting_number, numbers[7]);
    assert!(one.raw["financial_data"].is_null(), "not asked for");
    assert_eq!(shop.warehouses().await.unwrap().len(), 2);
}

#[tokio::test]
async fn incremental_filters_see_only_what_changed() {
    let (fake, handle) = start(100, 50).await;
    let shop = shop0(&fake, settings(&fake));
    let since = Utc::now();
    let archived = handle.offer_ids(0, Visibility::Visible)[3].clone();
    assert!(handle.archive_product(0, &archived));
    let added = handle.add_products(0, 3);
    let changed = handle.posting_numbers(0)[10].clone();
    assert!(handle.set_posting_status(0, &changed, "delivered"));
    let new_postings = handle.add_postings(0, 2);

    let changed_products = |vis| {
        let shop = shop.clone();
        async move {
            let mut pager = shop.product_pages(
                ProductListFilter {
                    visibility: vis,
                    last_changed_since: Some(since),
                    ..Default::default()
                },
                100,
            );
            let mut ids = Vec::new();
            while let Some(page) = pager.next_page().await.unwrap() {
                ids.extend(page.items.into_iter().map(|p| p.offer_id));
            }
            ids
        }
    };
    assert_eq!(changed_products(Visibility::All).await, added);
    assert_eq!(changed_products(Visibility::Archived).await, vec![archived]);

    let window = TimeRange {
        from: since,
        to: Utc::now() + chrono::Duration::minutes(1),
    };
    let filter = PostingFilter {
        last_changed_status_date: Some(window),
        ..Default::default()
    };
    let page = shop
        .posting_pages(filter, SortDir::Asc, 1000, PostingWith::default())
        .next_page()
        .await
        .unwrap()
        .unwrap();
    let numbers: Vec<String> = page
        .items
        .iter()
        .map(|p| p.data.posting_number.clone())
        .collect();
    let mut expected = vec![changed];
    expected.extend(new_postings);
    assert_eq!(numbers, expected);
    assert_eq!(page.items[0].data.status, "delivered");
}

/// Run `tasks_per_client` callers on each client for `window` and count the calls the fake
/// received inside the window.

#[test]
fn euraflow_dev_fake_ozon_prints_working_credentials() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_euraflow-dev"))
        .args(["fake-ozon", "--listen", "127.0.0.1:0", "--shops", "3"])
        .args(["--products", "30", "--postings", "20"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut text = String::new();
    let mut base_url = None;
    let mut shops = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        text.push_str(&line);
        text.push('\n');
        if let Some(rest) = line.strip_prefix("Point the server at it: EF__OZON_API_BASE_URL=") {
            base_url = Some(rest.to_owned());
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["shop", _, "Client-Id", id, "Api-Key", key] = words[..] {
            shops.push(Credentials::new(id, key));
        }
        if line.starts_with("Ctrl-C") {
            break;
        }
    }
    let base_url = base_url.unwrap_or_else(|| panic!("no base URL in:\n{text}"));
    assert_eq!(shops.len(), 3, "{text}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        let c = OzonClient::new(
            ClientSettings {
                base_url,
                ..ClientSettings::default()
            },
            None,
            OzonMetrics::new().unwrap(),
        )
        .unwrap();
        let mut totals = Vec::new();
        for creds in &shops {
            totals.push(c.shop(creds.clone()).test_connection().await);
        }
        totals
    });
    child.kill().unwrap();
    child.wait().unwrap();
    for total in result {
        let total = total.unwrap();
        assert!(total > 0 && total <= 30, "{total}");
    }
}
