//! The order page's realtime messages (issue 13 item 4): a posting that is new or changed status
//! becomes `posting.created` / `posting.status_changed` / `posting.cancelled` /
//! `posting.delivered` for the sockets following its shop ([`Target::Shop`]: the shop's users;
//! another tenant never follows it, `realtime::socket::check_shops`).
//!
//! The shape is the original web app's (`useNotifications.tsx`): `{type, shop_id, data, timestamp}`
//! where the toast reads `data.posting_number`, `data.product_count`, `data.new_status_display`
//! and `data.cancel_reason`, and every such message refreshes the order list.
//!
//! Who sends: the push job ([`super::webhook`]) for the postings it re-read, and the incremental
//! sync — one message per change up to [`INDIVIDUAL_MAX`] changes in a run, beyond that one
//! `postings.synced` summary per shop (a thousand toasts help nobody; the web app ignores types
//! it does not know, and the next list refresh shows the rest). The full sync sends none: it
//! rebuilds the mirror, nothing in it is news.

use serde_json::{Value, json};

use super::posting_mirror::PostingEvent;
use crate::realtime::{Realtime, Target, protocol};

/// A run with more changes than this sends one summary instead of one message per change.
pub const INDIVIDUAL_MAX: usize = 50;

/// The Chinese name of a posting status, as the order page shows it.
pub fn status_display(status: &str) -> &'static str {
    match status {
        "awaiting_registration" => "等待注册",
        "acceptance_in_progress" => "验收中",
        "awaiting_approve" => "等待确认",
        "awaiting_packaging" => "等待备货",
        "awaiting_deliver" => "等待发运",
        "awaiting_verification" => "等待验证",
        "arbitration" => "仲裁",
        "client_arbitration" => "客户仲裁",
        "delivering" => "运输中",
        "driver_pickup" => "司机取件",
        "delivered" => "已签收",
        "cancelled" => "已取消",
        "not_accepted" => "未接受",
        "sent_by_seller" => "卖家已发货",
        _ => "其他",
    }
}

/// The message of one change.
pub fn message(e: &PostingEvent) -> Value {
    let now = protocol::now();
    json!({
        "type": e.kind,
        "shop_id": e.shop_id,
        "data": {
            "shop_id": e.shop_id,
            "posting_number": e.posting_number,
            "status": e.status,
            "old_status": e.old_status,
            "new_status": e.status,
            "old_status_display": e.old_status.as_deref().map(status_display),
            "new_status_display": status_display(&e.status),
            "product_count": e.product_count,
            "timestamp": now,
        },
        "timestamp": now,
    })
}

/// Collects a run's changes with bounded memory: the first [`INDIVIDUAL_MAX`] + 1 are kept, the
/// rest only counted.
#[derive(Debug, Default, Clone)]
pub struct Collected {
    pub kept: Vec<PostingEvent>,
    pub total: u64,
    pub created: u64,
    pub status_changed: u64,
    pub cancelled: u64,
    pub delivered: u64,
}

impl Collected {
    pub fn add(&mut self, events: Vec<PostingEvent>) {
        for e in events {
            self.total += 1;
            match e.kind {
                "posting.created" => self.created += 1,
                "posting.cancelled" => self.cancelled += 1,
                "posting.delivered" => self.delivered += 1,
                _ => self.status_changed += 1,
            }
            if self.kept.len() <= INDIVIDUAL_MAX {
                self.kept.push(e);
            }
        }
    }

    /// What to send for a shop's run: one message per change, or one summary.
    pub fn messages(&self, shop_id: i64) -> Vec<Value> {
        if self.total == 0 {
            return Vec::new();
        }
        if self.total as usize <= INDIVIDUAL_MAX {
            return self.kept.iter().map(message).collect();
        }
        let now = protocol::now();
        vec![json!({
            "type": "postings.synced",
            "shop_id": shop_id,
            "data": {
                "shop_id": shop_id,
                "total": self.total,
                "created": self.created,
                "status_changed": self.status_changed,
                "cancelled": self.cancelled,
                "delivered": self.delivered,
                "timestamp": now,
            },
            "timestamp": now,
        })]
    }
}

/// Send each change to its shop's sockets.
pub async fn publish(rt: &Realtime, events: &[PostingEvent]) {
    for e in events {
        rt.notify(Target::Shop(e.shop_id), message(e)).await;
    }
}

/// Send a run's changes (individual or summary) to the shop's sockets.
pub async fn publish_collected(rt: &Realtime, shop_id: i64, c: &Collected) {
    for m in c.messages(shop_id) {
        rt.notify(Target::Shop(shop_id), m).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: usize, kind: &'static str) -> PostingEvent {
        PostingEvent {
            shop_id: 7,
            posting_number: format!("1-{n}-1"),
            kind,
            status: "awaiting_packaging".into(),
            old_status: None,
            product_count: 2,
        }
    }

    #[test]
    fn up_to_fifty_changes_are_sent_one_by_one() {
        let mut c = Collected::default();
        c.add(
            (0..INDIVIDUAL_MAX)
                .map(|n| ev(n, "posting.created"))
                .collect(),
        );
        let m = c.messages(7);
        assert_eq!(m.len(), INDIVIDUAL_MAX);
        assert_eq!(m[0]["type"], "posting.created");
        assert_eq!(m[0]["shop_id"], 7);
        assert_eq!(m[0]["data"]["posting_number"], "1-0-1");
        assert_eq!(m[0]["data"]["product_count"], 2);
        assert_eq!(m[0]["data"]["new_status_display"], "等待备货");
    }

    #[test]
    fn more_become_one_summary_and_memory_stays_bounded() {
        let mut c = Collected::default();
        c.add((0..30).map(|n| ev(n, "posting.created")).collect());
        c.add((0..500).map(|n| ev(n, "posting.cancelled")).collect());
        assert!(c.kept.len() <= INDIVIDUAL_MAX + 1);
        let m = c.messages(7);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0]["type"], "postings.synced");
        assert_eq!(m[0]["data"]["total"], 530);
        assert_eq!(m[0]["data"]["created"], 30);
        assert_eq!(m[0]["data"]["cancelled"], 500);
        assert!(Collected::default().messages(7).is_empty());
    }
}
