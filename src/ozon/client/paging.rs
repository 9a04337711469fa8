//! Pagers over Ozon's two paging styles, holding one page at a time so a shop with 100 000
//! products syncs in bounded memory.
//!
//! - Cursor (`/v3/product/list` `last_id`, `/v5/product/info/prices` `cursor`,
//!   `/v4/product/info/attributes` `last_id`): send the cursor of the previous answer; an empty
//!   page or an empty cursor is the end. A cursor that does not advance is a `BadResponse`
//!   (it would page forever).
//! - Offset (`/v3/posting/fbs/list`): `offset` grows by the items received while `has_next`.
//!   Offsets over a changing list can skip or repeat items when postings appear meanwhile; the
//!   caller bounds the window (`filter.to`) and upserts by posting number, which makes a repeat
//!   harmless.
//!
//! A failed `next_page` leaves the pager where it was: calling it again asks for the same page.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::OzonError;
use super::postings::{Posting, PostingListRequest, PostingListResponse};
use super::{Endpoint, ShopClient};

/// One page of items and, when the endpoint reports it, the total over all pages.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: Option<i64>,
}

/// A request type of a cursor-paged endpoint.
pub trait CursorEndpoint: Serialize {
    type Item;
    type Response: DeserializeOwned;
    const ENDPOINT: Endpoint;
    /// Put the cursor of the previous answer into the request.
    fn set_cursor(&mut self, cursor: &str);
    /// The items, the next cursor (empty at the end) and the total.
    fn split(response: Self::Response) -> (Vec<Self::Item>, String, Option<i64>);
}

#[derive(Debug)]
pub struct CursorPager<R> {
    shop: ShopClient,
    request: R,
    cursor: String,
    done: bool,
}

impl<R: CursorEndpoint> CursorPager<R> {
    /// Page from the request's start (its cursor set to empty).
    pub fn new(shop: ShopClient, mut request: R) -> Self {
        request.set_cursor("");
        CursorPager {
            shop,
            request,
            cursor: String::new(),
            done: false,
        }
    }

    /// The next page, or `None` after the last one.
    pub async fn next_page(&mut self) -> Result<Option<Page<R::Item>>, OzonError> {
        if self.done {
            return Ok(None);
        }
        let response: R::Response = self.shop.call(R::ENDPOINT, &self.request).await?;
        let (items, next, total) = R::split(response);
        if items.is_empty() || next.is_empty() {
            self.done = true;
        } else if next == self.cursor {
            self.done = true;
            return Err(OzonError::BadResponse {
                endpoint: R::ENDPOINT,
                reason: "the paging cursor did not advance".to_owned(),
            });
        } else {
            self.request.set_cursor(&next);
            self.cursor = next;
        }
        Ok((!items.is_empty()).then_some(Page { items, total }))
    }

    /// The cursor the next call will send (empty before the first page).
    pub fn cursor(&self) -> &str {
        &self.cursor
    }
}

/// Pages of `/v3/posting/fbs/list` by offset.
#[derive(Debug)]
pub struct PostingPager {
    shop: ShopClient,
    request: PostingListRequest,
    done: bool,
}

impl PostingPager {
    /// Page from the request's `offset`.
    pub fn new(shop: ShopClient, request: PostingListRequest) -> Self {
        PostingPager {
            shop,
            request,
            done: false,
        }
    }

    pub async fn next_page(&mut self) -> Result<Option<Page<Posting>>, OzonError> {
        if self.done {
            return Ok(None);
        }
        let response: PostingListResponse = self
            .shop
            .call(Endpoint::PostingFbsList, &self.request)
            .await?;
        let postings = response.result.postings;
        if response.result.has_next && postings.is_empty() {
            self.done = true;
            return Err(OzonError::BadResponse {
                endpoint: Endpoint::PostingFbsList,
                reason: "has_next with an empty page".to_owned(),
            });
        }
        self.done = !response.result.has_next;
        self.request.offset = self.request.offset.saturating_add(postings.len() as u32);
        Ok((!postings.is_empty()).then_some(Page {
            items: postings,
            total: None,
        }))
    }

    /// The offset the next call will send.
    pub fn offset(&self) -> u32 {
        self.request.offset
    }
}
