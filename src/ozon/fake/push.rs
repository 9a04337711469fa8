//! Ozon's push sender, faked: builds pushes shaped as Ozon documents them (ozon-push-auth.md §2.2,
//! contract §5.4) and POSTs them to a receiver URL the way Ozon does (`User-Agent: ozon-push`,
//! JSON, a `signature` header nobody can check). Used by the tests and by the demo server.

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use super::FakeHandle;

/// Ozon's `seller_id`: the Client-Id, a number in the posting pushes.
fn seller_id(client_id: &str) -> Value {
    client_id
        .parse::<i64>()
        .map_or_else(|_| json!(client_id), |n| json!(n))
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `TYPE_PING`: the connection check.
pub fn ping() -> Value {
    json!({"message_type": "TYPE_PING", "time": now()})
}

/// `TYPE_NEW_POSTING` for a posting the fake has (its products, warehouse, processing time);
/// `None` when the fake does not know the number.
pub fn new_posting(fake: &FakeHandle, shop: usize, posting_number: &str) -> Option<Value> {
    let p = fake.posting_json(shop, posting_number)?;
    let client_id = fake.credentials(shop).client_id;
    let products: Vec<Value> = p["products"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|x| json!({"sku": x["sku"], "offer_id": x["offer_id"], "quantity": x["quantity"]}))
                .collect()
        })
        .unwrap_or_default();
    Some(json!({
        "message_type": "TYPE_NEW_POSTING",
        "seller_id": seller_id(&client_id),
        "posting_number": posting_number,
        "products": products,
        "in_process_at": p["in_process_at"],
        "warehouse_id": p["delivery_method"]["warehouse_id"],
        "shipment_date": p["shipment_date"],
        "tpl_integration_type": "ozon",
        "is_express": false,
        "tracking_number": p["tracking_number"],
    }))
}

/// `TYPE_STATE_CHANGED` to Ozon's push state `new_state` (`posting_…`).
pub fn state_changed(client_id: &str, posting_number: &str, new_state: &str) -> Value {
    json!({
        "message_type": "TYPE_STATE_CHANGED",
        "seller_id": seller_id(client_id),
        "posting_number": posting_number,
        "new_state": new_state,
        "changed_state_date": now(),
        "warehouse_id": 1,
    })
}

/// `TYPE_POSTING_CANCELLED`.
pub fn cancelled(client_id: &str, posting_number: &str) -> Value {
    json!({
        "message_type": "TYPE_POSTING_CANCELLED",
        "seller_id": seller_id(client_id),
        "posting_number": posting_number,
        "products": [],
        "old_state": "posting_awaiting_packaging",
        "new_state": "posting_canceled",
        "changed_state_date": now(),
        "reason": {"id": 352, "message": "Покупатель отменил заказ"},
        "warehouse_id": 1,
    })
}

/// `TYPE_CUTOFF_DATE_CHANGED`.
pub fn cutoff_changed(client_id: &str, posting_number: &str, new_cutoff: &str) -> Value {
    json!({
        "message_type": "TYPE_CUTOFF_DATE_CHANGED",
        "seller_id": seller_id(client_id),
        "posting_number": posting_number,
        "old_cutoff_date": now(),
        "new_cutoff_date": new_cutoff,
        "warehouse_id": 1,
    })
}

/// `TYPE_DELIVERY_DATE_CHANGED`.
pub fn delivery_date_changed(client_id: &str, posting_number: &str, new_begin: &str) -> Value {
    json!({
        "message_type": "TYPE_DELIVERY_DATE_CHANGED",
        "seller_id": seller_id(client_id),
        "posting_number": posting_number,
        "new_delivery_date_begin": new_begin,
        "new_delivery_date_end": new_begin,
        "old_delivery_date_begin": now(),
        "old_delivery_date_end": now(),
        "warehouse_id": 1,
    })
}

/// What the receiver answered.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub status: u16,
    pub body: Value,
    pub elapsed: Duration,
}

/// Sends pushes as Ozon does.
#[derive(Debug, Clone)]
pub struct Pusher {
    http: reqwest::Client,
}

impl Pusher {
    /// A sender; `accept_invalid_certs` for a receiver with a self-signed certificate (tests, the
    /// demo on loopback).
    pub fn new(accept_invalid_certs: bool) -> Result<Pusher, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent("ozon-push")
            .danger_accept_invalid_certs(accept_invalid_certs)
            // Ozon pauses a receiver slower than 5 s.
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Pusher { http })
    }

    /// POST `body` (any JSON value) to `url`.
    pub async fn send(&self, url: &str, body: &Value) -> Result<Delivery, reqwest::Error> {
        self.send_raw(url, body.to_string().into_bytes()).await
    }

    /// POST raw bytes (a malformed or oversized body) to `url`.
    pub async fn send_raw(&self, url: &str, body: Vec<u8>) -> Result<Delivery, reqwest::Error> {
        let started = Instant::now();
        let resp = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            // Observed on Ozon's requests; its scheme is not published (ozon-push-auth.md §2.1).
            .header(
                "signature",
                "MEUCIQDfakefakefakefakefakefakefakefakefakefakefake",
            )
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await?;
        let elapsed = started.elapsed();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Delivery {
            status,
            body,
            elapsed,
        })
    }
}
