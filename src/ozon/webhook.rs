//! Ozon push notifications (issue 13 item 4; contract §2.9, §3.4, §4.4; ozon-push-auth.md).
//!
//! **Authentication.** Ozon signs nothing a receiver can check and lets the seller configure only
//! a URL, so each shop gets a random push secret (32 bytes, URL-safe) inside its push URL,
//! `POST /api/ef/v1/ozon/webhook/{shop_id}/{secret}`. Only the secret's SHA-256 is stored and it
//! is compared in constant time; the secret is shown once, when it is made
//! ([`rotate_secret`]). A wrong secret, a shop without one and an unknown shop get the same
//! answer ([`Answer::Refused`]), so the answer does not say which part was wrong. The push's
//! `seller_id` must also be the shop's Client-Id (otherwise the row is kept as ignored).
//!
//! **A push is a hint.** Nothing in a push body is written to the mirror: each handled push
//! becomes a job (`ef.ozon.webhook.process`) that re-reads the posting from the Seller API with
//! the shop's credentials (`/v3/posting/fbs/get`) and upserts it through `posting_mirror`, then
//! publishes what changed (`posting_events`). A forged push therefore costs one API call and
//! changes nothing Ozon does not confirm. The answer is sent before any of that (Ozon pauses a
//! receiver slower than 5 s).
//!
//! **Idempotency.** Ozon sends no event id; [`idempotency_key`] hashes the shop, the type, the
//! posting number and the changed state/time. The key is UNIQUE in `ozon_webhook_events`: the same
//! push twice is one row (`received_count` counts the copies) and one job. The original's key
//! never matched, so every push ran its backfill four times (§7 C8).
//!
//! **The legacy URL** `POST /api/ef/v1/ozon/webhook` (one URL for all shops, as the original told
//! sellers) answers `TYPE_PING` so Ozon's URL check passes, and stores every other push as an
//! ignored row (`reason = 'unauthenticated'`) without acting on it: sellers see in the push log
//! that Ozon still uses it, and switch to their shop's URL.
//!
//! **Admin push log**: [`list_events`] and [`retry_event`], admins only (the original had them
//! public, §7 S5). Rows older than [`RETENTION_DAYS`] are deleted by the daily `ef.core.cleanup`.

use std::time::{Duration, Instant};

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::posting_events;
use super::posting_sync;
use super::product_sync::SyncError;
use super::tenancy;
use crate::auth::Actor;
use crate::auth::audit::{self, Entry};
use crate::db::Database;
use crate::db::sql::Sql;
use crate::domain::{DomainError, Work};
use crate::jobs::{Job, JobContext, JobError, JobResult, NewJob, Queue, Registry, RetryPolicy};

/// Push rows are kept this long (`ef.core.cleanup`).
pub const RETENTION_DAYS: i32 = 30;
/// The API path of the shops' push URLs, under the server's base URL.
pub const PATH: &str = "/api/ef/v1/ozon/webhook";

/// Ozon's push types this slice acts on, with their internal names and what they mean.
pub const HANDLED: [(&str, &str, &str); 5] = [
    ("TYPE_NEW_POSTING", "posting.created", "新订单"),
    ("TYPE_POSTING_CANCELLED", "posting.cancelled", "订单取消"),
    (
        "TYPE_STATE_CHANGED",
        "posting.status_changed",
        "订单状态变更",
    ),
    (
        "TYPE_CUTOFF_DATE_CHANGED",
        "posting.cutoff_date_changed",
        "发货截止时间变更",
    ),
    (
        "TYPE_DELIVERY_DATE_CHANGED",
        "posting.delivery_date_changed",
        "配送日期变更",
    ),
];

pub fn register(r: &mut Registry) {
    r.register::<WebhookProcess>();
}

/// The internal name of a handled Ozon type.
fn internal_type(message_type: &str) -> Option<&'static str> {
    HANDLED
        .iter()
        .find(|(t, _, _)| *t == message_type)
        .map(|(_, internal, _)| *internal)
}

/// A new push secret: 32 random bytes, URL-safe base64 (43 characters).
pub fn new_secret() -> String {
    let mut b = [0u8; 32];
    rand::fill(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A shop's push URL under `base` (`https://host`, no trailing slash).
pub fn push_url(base: &str, shop_id: i64, secret: &str) -> String {
    format!("{}{PATH}/{shop_id}/{secret}", base.trim_end_matches('/'))
}

/// What the receiver answers; the HTTP adapter renders it as Ozon expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `TYPE_PING`: 200 `{version, name, time}`.
    Ping,
    /// Stored (new, duplicate or ignored): 200 `{"result": true}`.
    Accepted,
    /// Unknown shop, no secret, wrong secret: one answer for all.
    Refused,
    /// The body is not a push: 400 with the reason.
    BadRequest(&'static str),
}

/// One push as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub body: &'a [u8],
    pub user_agent: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub signature: Option<&'a str>,
}

impl Incoming<'_> {
    fn headers(&self) -> Value {
        json!({"user-agent": self.user_agent, "content-type": self.content_type})
    }

    fn signature(&self) -> Option<String> {
        self.signature.map(|s| s.chars().take(500).collect())
    }
}

/// A parsed push: the body object and its `message_type`.
fn parse(body: &[u8]) -> Result<(Value, String), Answer> {
    let v: Value =
        serde_json::from_slice(body).map_err(|_| Answer::BadRequest("Invalid JSON payload"))?;
    if !v.is_object() {
        return Err(Answer::BadRequest("The payload must be a JSON object"));
    }
    let t = v
        .get("message_type")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(Answer::BadRequest("Missing message_type"))?
        .to_owned();
    Ok((v, t))
}

fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The content key of a push: what makes two pushes "the same" (ozon-push-auth.md §7 rule 6).
/// `scope` is the shop (`shop:<id>`) or, for the legacy URL, the claimed seller.
pub fn idempotency_key(scope: &str, message_type: &str, payload: &Value) -> String {
    let mut h = Sha256::new();
    let mut part = |s: &str| {
        h.update(s.as_bytes());
        h.update([0u8]);
    };
    part(scope);
    part(message_type);
    match text(payload, "posting_number") {
        Some(number) if internal_type(message_type).is_some() => {
            part(&number);
            // The changed state and when it changed; absent fields hash as empty.
            for key in [
                "new_state",
                "changed_state_date",
                "in_process_at",
                "new_cutoff_date",
                "new_delivery_date_begin",
                "new_delivery_date_end",
            ] {
                part(&text(payload, key).unwrap_or_default());
            }
        }
        // Other types: the whole body (serde_json's maps are ordered, so equal bodies hash
        // equally).
        _ => part(&payload.to_string()),
    }
    format!("ozon:{}", hex(&h.finalize()))
}

/// A row to store.
struct NewEvent<'a> {
    shop_id: Option<i64>,
    message_type: &'a str,
    payload: &'a Value,
    verified: bool,
    ignored: Option<&'static str>,
    key: String,
}

/// Insert the push (or count a copy of it); a new handled push gets its job in the same
/// transaction. Returns the row id and whether it was new.
async fn store(
    db: &Database,
    e: NewEvent<'_>,
    incoming: &Incoming<'_>,
) -> Result<(i64, bool), DomainError> {
    let event_type = internal_type(e.message_type)
        .map(str::to_owned)
        .unwrap_or_else(|| e.message_type.to_lowercase());
    let event_type: String = event_type.chars().take(100).collect();
    let message_type: String = e.message_type.chars().take(100).collect();
    let posting: Option<String> =
        text(e.payload, "posting_number").map(|p| p.chars().take(100).collect());
    let status = if e.ignored.is_some() {
        "ignored"
    } else {
        "pending"
    };
    let mut c = db.get().await?;
    let tx = c.transaction().await?;
    let row = tx
        .row(
            "INSERT INTO ozon_webhook_events AS w
                 (event_id, event_type, message_type, shop_id, payload, headers, signature,
                  is_verified, status, reason, idempotency_key, entity_type, entity_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $1, CASE WHEN $11::text IS NULL THEN NULL ELSE 'posting' END, $11)
             ON CONFLICT (idempotency_key) DO UPDATE
                SET received_count = w.received_count + 1, last_received_at = now(), updated_at = now()
             RETURNING id, (xmax = 0) AS inserted",
            &[
                &e.key,
                &event_type,
                &message_type,
                &e.shop_id,
                e.payload,
                &incoming.headers(),
                &incoming.signature(),
                &e.verified,
                &status,
                &e.ignored,
                &posting,
            ],
        )
        .await?;
    let (id, inserted): (i64, bool) = (row.get(0), row.get(1));
    if inserted && e.ignored.is_none() {
        let job = NewJob::of(&WebhookProcess { event_id: id })
            .map_err(|x| DomainError::Internal(anyhow::anyhow!("{x}")))?;
        let job_id = crate::jobs::enqueue(&*tx, &job)
            .await
            .map_err(|x| DomainError::Internal(anyhow::anyhow!("{x}")))?
            .id();
        tx.exec(
            "UPDATE ozon_webhook_events SET job_id = $2 WHERE id = $1",
            &[&id, &job_id],
        )
        .await?;
    }
    tx.commit().await?;
    Ok((id, inserted))
}

/// `POST /ozon/webhook/{shop_id}/{secret}`.
pub async fn receive(
    db: &Database,
    shop_id: &str,
    secret: &str,
    incoming: Incoming<'_>,
) -> Result<Answer, DomainError> {
    let Ok(shop_id) = shop_id.parse::<i64>() else {
        return Ok(Answer::Refused);
    };
    let client_id = {
        let c = db.get().await?;
        let row = c
            .maybe_row(
                "SELECT client_id, webhook_secret_sha256 FROM ozon_shops WHERE id = $1",
                &[&shop_id],
            )
            .await?;
        let (client_id, stored): (Option<String>, Option<Vec<u8>>) = match row {
            Some(r) => (Some(r.get(0)), r.get(1)),
            None => (None, None),
        };
        // Always one comparison of the same length, whether or not the shop has a secret.
        let expected = stored.unwrap_or_else(|| vec![0u8; 32]);
        let matches: bool = digest(secret).as_slice().ct_eq(expected.as_slice()).into();
        match client_id {
            Some(id) if matches && expected.len() == 32 && expected.iter().any(|b| *b != 0) => id,
            _ => return Ok(Answer::Refused),
        }
    };
    let (payload, message_type) = match parse(incoming.body) {
        Ok(p) => p,
        Err(answer) => return Ok(answer),
    };
    {
        let c = db.get().await?;
        c.exec(
            "UPDATE ozon_shops SET webhook_last_received_at = now() WHERE id = $1",
            &[&shop_id],
        )
        .await?;
    }
    if message_type.eq_ignore_ascii_case("TYPE_PING") {
        return Ok(Answer::Ping);
    }
    let ignored = if internal_type(&message_type).is_none() {
        Some("unhandled_type")
    } else if text(&payload, "seller_id").as_deref() != Some(client_id.as_str()) {
        Some("seller_mismatch")
    } else if text(&payload, "posting_number").is_none() {
        Some("no_posting_number")
    } else {
        None
    };
    let key = idempotency_key(&format!("shop:{shop_id}"), &message_type, &payload);
    let (id, inserted) = store(
        db,
        NewEvent {
            shop_id: Some(shop_id),
            message_type: &message_type,
            payload: &payload,
            verified: true,
            ignored,
            key,
        },
        &incoming,
    )
    .await?;
    tracing::info!(
        shop_id,
        event = id,
        message_type = %message_type,
        duplicate = !inserted,
        ignored = ?ignored,
        "ozon push received"
    );
    Ok(Answer::Accepted)
}

/// `POST /ozon/webhook` (no secret): pings are answered, everything else is kept as ignored.
pub async fn receive_legacy(db: &Database, incoming: Incoming<'_>) -> Result<Answer, DomainError> {
    let (payload, message_type) = match parse(incoming.body) {
        Ok(p) => p,
        Err(answer) => return Ok(answer),
    };
    if message_type.eq_ignore_ascii_case("TYPE_PING") {
        return Ok(Answer::Ping);
    }
    let seller: Option<String> = text(&payload, "seller_id")
        .or_else(|| text(&payload, "company_id"))
        .or_else(|| text(&payload, "client_id"));
    let shop_id: Option<i64> = match &seller {
        Some(s) => {
            let c = db.get().await?;
            c.maybe_row("SELECT id FROM ozon_shops WHERE client_id = $1", &[s])
                .await?
                .map(|r| r.get(0))
        }
        None => None,
    };
    let key = idempotency_key(
        &format!("unauthenticated:{}", seller.as_deref().unwrap_or("")),
        &message_type,
        &payload,
    );
    store(
        db,
        NewEvent {
            shop_id,
            message_type: &message_type,
            payload: &payload,
            verified: false,
            ignored: Some("unauthenticated"),
            key,
        },
        &incoming,
    )
    .await?;
    Ok(Answer::Accepted)
}

/// The push types the receiver handles, for the shop page.
fn handled_json() -> Value {
    Value::Array(
        HANDLED
            .iter()
            .map(|(t, internal, name)| json!({"message_type": t, "event_type": internal, "description": name}))
            .collect(),
    )
}

/// `GET /ozon/shops/{id}/webhook`: whether the shop has a push URL (the secret itself is only
/// shown when it is made), which types are handled, and the last push received.
pub async fn shop_config(
    c: &impl Sql,
    actor: &Actor,
    shop_id: i64,
    base: &str,
) -> Result<Value, DomainError> {
    tenancy::visible_shop(c, actor, shop_id).await?;
    let row = c
        .row(
            "SELECT webhook_secret_sha256 IS NOT NULL, webhook_secret_created_at, webhook_last_received_at
               FROM ozon_shops WHERE id = $1",
            &[&shop_id],
        )
        .await?;
    let configured: bool = row.get(0);
    let last_event = c
        .maybe_row(
            "SELECT message_type, status, created_at FROM ozon_webhook_events
              WHERE shop_id = $1 AND is_verified ORDER BY id DESC LIMIT 1",
            &[&shop_id],
        )
        .await?
        .map(|r| {
            json!({"message_type": r.get::<_, String>(0), "status": r.get::<_, String>(1),
                   "created_at": r.get::<_, DateTime<Utc>>(2)})
        });
    Ok(json!({
        "shop_id": shop_id,
        "configured": configured,
        "webhook_url": Value::Null,
        "webhook_url_masked": configured.then(|| push_url(base, shop_id, "••••••")),
        "secret_created_at": row.get::<_, Option<DateTime<Utc>>>(1),
        "last_received_at": row.get::<_, Option<DateTime<Utc>>>(2),
        "last_event": last_event,
        "supported_events": handled_json(),
        "message": if configured {
            "推送地址只在生成时显示一次；遗失后请重新生成（旧地址随即失效）"
        } else {
            "尚未生成推送地址：点击生成，然后把地址填入 Ozon 卖家后台 → 设置 → 通知 → 推送通知"
        },
    }))
}

/// `POST /ozon/shops/{id}/webhook`: a new secret (the old URL stops working); its URL is
/// returned this once.
pub async fn rotate_secret(
    work: &mut Work<'_>,
    actor: &Actor,
    shop_id: i64,
    base: &str,
) -> Result<Value, DomainError> {
    actor.require_session()?;
    tenancy::editable_shop(work.tx(), actor, shop_id).await?;
    let secret = new_secret();
    let tx = work.tx();
    let had: bool = tx
        .row(
            "SELECT webhook_secret_sha256 IS NOT NULL FROM ozon_shops WHERE id = $1 FOR UPDATE",
            &[&shop_id],
        )
        .await?
        .get(0);
    tx.exec(
        "UPDATE ozon_shops SET webhook_secret_sha256 = $2, webhook_secret_created_at = now(),
                updated_at = now()
          WHERE id = $1",
        &[&shop_id, &digest(&secret).as_slice()],
    )
    .await?;
    audit::write(
        tx,
        actor,
        Entry::new("ozon_shop", "webhook_secret", "生成店铺推送地址")
            .record("ozon_shops", shop_id)
            .changes(json!({"replaced_previous": had})),
    )
    .await?;
    Ok(json!({
        "shop_id": shop_id,
        "configured": true,
        "webhook_url": push_url(base, shop_id, &secret),
        "shown_once": true,
        "replaced_previous": had,
        "supported_events": handled_json(),
        "message": "请复制此地址并填入 Ozon 卖家后台（设置 → 通知 → 推送通知）；此地址只显示这一次",
    }))
}

/// For the demo: give a shop a secret without an actor; returns the secret.
pub(crate) async fn set_secret(c: &impl Sql, shop_id: i64) -> Result<String, DomainError> {
    let secret = new_secret();
    c.exec(
        "UPDATE ozon_shops SET webhook_secret_sha256 = $2, webhook_secret_created_at = now() WHERE id = $1",
        &[&shop_id, &digest(&secret).as_slice()],
    )
    .await?;
    Ok(secret)
}

pub(crate) fn require_admin(actor: &Actor) -> Result<(), DomainError> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(DomainError::denied(
            "PERMISSION_DENIED",
            "只有管理员可以查看和重试推送日志",
        ))
    }
}

/// Filters of the admin push log.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct EventQuery {
    pub shop_id: Option<i64>,
    pub status: Option<String>,
    /// The internal type (`posting.created`) or Ozon's (`TYPE_NEW_POSTING`).
    pub event_type: Option<String>,
    pub posting_number: Option<String>,
    pub page: Option<i64>,
    pub page_size: Option<i64>,
}

/// `GET /ozon/webhook/events`: admins only, newest first, paged.
pub async fn list_events(c: &impl Sql, actor: &Actor, q: EventQuery) -> Result<Value, DomainError> {
    require_admin(actor)?;
    let page_size = q.page_size.unwrap_or(50).clamp(1, 200);
    let page = q.page.unwrap_or(1).max(1);
    let offset = (page - 1).saturating_mul(page_size);
    let status = q.status.filter(|s| !s.is_empty());
    let event_type = q.event_type.filter(|s| !s.is_empty());
    let posting = q.posting_number.filter(|s| !s.is_empty());
    let filter = "($1::bigint IS NULL OR w.shop_id = $1)
              AND ($2::text IS NULL OR w.status = $2)
              AND ($3::text IS NULL OR w.event_type = $3 OR w.message_type = $3)
              AND ($4::text IS NULL OR w.entity_id = $4)";
    let total: i64 = c
        .row(
            &format!("SELECT count(*) FROM ozon_webhook_events w WHERE {filter}"),
            &[&q.shop_id, &status, &event_type, &posting],
        )
        .await?
        .get(0);
    let rows = c
        .rows(
            &format!(
                "SELECT {}
                   FROM ozon_webhook_events w LEFT JOIN ozon_shops s ON s.id = w.shop_id
                  WHERE {filter}
                  ORDER BY w.id DESC LIMIT $5 OFFSET $6",
                super::webhook_log::COLUMNS
            ),
            &[
                &q.shop_id,
                &status,
                &event_type,
                &posting,
                &page_size,
                &offset,
            ],
        )
        .await?;
    let items: Vec<Value> = rows.iter().map(super::webhook_log::with_receipt).collect();
    Ok(json!({
        "items": items,
        "total": total,
        "page": page,
        "page_size": page_size,
        "has_more": offset + (rows.len() as i64) < total,
    }))
}

/// `POST /ozon/webhook/events/{id}/retry`: admins only; processes the push again (a new job).
pub async fn retry_event(
    work: &mut Work<'_>,
    actor: &Actor,
    id: i64,
) -> Result<Value, DomainError> {
    actor.require_session()?;
    require_admin(actor)?;
    let tx = work.tx();
    let row = tx
        .maybe_row(
            "SELECT status, shop_id FROM ozon_webhook_events WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .ok_or_else(|| DomainError::not_found("WEBHOOK_EVENT_NOT_FOUND", "推送记录不存在"))?;
    let status: String = row.get(0);
    let shop_id: Option<i64> = row.get(1);
    if status == "ignored" || shop_id.is_none() {
        return Err(DomainError::conflict(
            "WEBHOOK_EVENT_IGNORED",
            "此推送已被忽略（未认证、类型不处理或店铺不符），不能重试",
        ));
    }
    if status == "processing" || status == "pending" {
        return Err(DomainError::conflict(
            "WEBHOOK_EVENT_BUSY",
            "此推送正在处理或等待处理，请稍后再试",
        ));
    }
    let job = NewJob::of(&WebhookProcess { event_id: id })
        .map_err(|x| DomainError::Internal(anyhow::anyhow!("{x}")))?;
    let job_id = crate::jobs::enqueue(&**tx, &job)
        .await
        .map_err(|x| DomainError::Internal(anyhow::anyhow!("{x}")))?
        .id();
    tx.exec(
        "UPDATE ozon_webhook_events SET status = 'pending', job_id = $2, error_message = NULL,
                updated_at = now() WHERE id = $1",
        &[&id, &job_id],
    )
    .await?;
    audit::write(
        tx,
        actor,
        Entry::new("ozon_webhook", "retry", "重试推送")
            .record("ozon_webhook_events", id)
            .changes(json!({"previous_status": status})),
    )
    .await?;
    Ok(json!({"id": id, "status": "pending", "task_id": job_id.to_string()}))
}

/// Process one stored push: re-read its posting from Ozon and upsert it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookProcess {
    pub event_id: i64,
}

impl Job for WebhookProcess {
    const NAME: &'static str = "ef.ozon.webhook.process";
    const QUEUE: Queue = Queue::Push;
    const DESCRIPTION: &'static str = "处理 OZON 推送（从 Ozon 重新读取订单）";

    fn retry() -> RetryPolicy {
        // A new posting may reach `/v3/posting/fbs/get` a little after its push; Ozon errors
        // are usually short.
        RetryPolicy {
            max_attempts: 4,
            base: Duration::from_secs(5),
            cap: Duration::from_secs(120),
        }
    }

    async fn run(self, ctx: JobContext) -> JobResult {
        let db = ctx.db();
        let row = {
            let c = db.get().await?;
            c.maybe_row(
                "UPDATE ozon_webhook_events
                    SET status = 'processing', job_id = $2, updated_at = now()
                  WHERE id = $1 AND status <> 'ignored' AND shop_id IS NOT NULL
              RETURNING shop_id, message_type, entity_id",
                &[&self.event_id, &ctx.job_id],
            )
            .await?
        };
        let Some(row) = row else {
            return Ok(json!({"skipped": "no such push to process (deleted or ignored)"}));
        };
        let shop_id: i64 = row.get(0);
        let message_type: String = row.get(1);
        let Some(posting_number): Option<String> = row.get(2) else {
            return Ok(json!({"skipped": "the push names no posting"}));
        };
        let ozon = ctx.ozon()?.clone();
        let started = Instant::now();
        let result = posting_sync::refresh_posting(db, &ozon, shop_id, &posting_number).await;
        let ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        let c = db.get().await?;
        match result {
            Ok(found) => {
                let (message, status, events) = match found {
                    Some(((status, _), events)) => (
                        format!("已从 Ozon 重新读取订单 {posting_number}，状态 {status}"),
                        Some(status),
                        events,
                    ),
                    None => (
                        format!("Ozon 查无订单 {posting_number}，未做修改"),
                        None,
                        Vec::new(),
                    ),
                };
                c.exec(
                    "UPDATE ozon_webhook_events
                        SET status = 'processed', processed_at = now(), error_message = NULL,
                            result_message = $2, processing_duration_ms = $3, updated_at = now()
                      WHERE id = $1",
                    &[&self.event_id, &crate::jobs::truncate(&message, 490), &ms],
                )
                .await?;
                if !events.is_empty() {
                    match crate::realtime::Realtime::publisher(ctx.config(), ctx.redis().clone()) {
                        Ok(rt) => posting_events::publish(&rt, &events).await,
                        Err(e) => tracing::warn!(
                            error = format!("{e:#}"),
                            "the push's posting changes were not published to the web app"
                        ),
                    }
                }
                Ok(json!({
                    "event_id": self.event_id,
                    "shop_id": shop_id,
                    "message_type": message_type,
                    "posting_number": posting_number,
                    "status": status,
                    "events": events.iter().map(|e| e.kind).collect::<Vec<_>>(),
                    "message": message,
                }))
            }
            Err(e) => {
                let message = e.to_string();
                c.exec(
                    "UPDATE ozon_webhook_events
                        SET status = 'failed', error_message = $2, retry_count = retry_count + 1,
                            processing_duration_ms = $3, updated_at = now()
                      WHERE id = $1",
                    &[&self.event_id, &crate::jobs::truncate(&message, 990), &ms],
                )
                .await?;
                Err(match e {
                    SyncError::ShopNotFound(_) | SyncError::Credentials(_) => {
                        JobError::Permanent(message)
                    }
                    _ => JobError::Failed(message),
                })
            }
        }
    }
}

/// The TYPE_PING answer: `{version, name, time}` (time = when processing started, UTC).
pub fn ping_answer() -> Value {
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "name": "EuraFlow",
        "time": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_push_has_the_same_key_and_a_state_change_another() {
        let a = json!({"message_type": "TYPE_STATE_CHANGED", "seller_id": 7, "posting_number": "1-2-3",
                       "new_state": "posting_delivered", "changed_state_date": "2026-01-01T00:00:00Z"});
        let mut b = a.clone();
        b["warehouse_id"] = json!(5);
        assert_eq!(
            idempotency_key("shop:1", "TYPE_STATE_CHANGED", &a),
            idempotency_key("shop:1", "TYPE_STATE_CHANGED", &b)
        );
        let mut c = a.clone();
        c["new_state"] = json!("posting_canceled");
        assert_ne!(
            idempotency_key("shop:1", "TYPE_STATE_CHANGED", &a),
            idempotency_key("shop:1", "TYPE_STATE_CHANGED", &c)
        );
        assert_ne!(
            idempotency_key("shop:1", "TYPE_STATE_CHANGED", &a),
            idempotency_key("shop:2", "TYPE_STATE_CHANGED", &a)
        );
        assert!(idempotency_key("shop:1", "X", &a).len() <= 200);
    }

    #[test]
    fn secrets_are_long_url_safe_and_different() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.len() >= 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(
            push_url("https://h/", 3, &a),
            format!("https://h/api/ef/v1/ozon/webhook/3/{a}")
        );
    }

    #[test]
    fn bodies_that_are_not_pushes_are_refused_clearly() {
        assert_eq!(
            parse(b"asdasdasd"),
            Err(Answer::BadRequest("Invalid JSON payload"))
        );
        assert_eq!(
            parse(b"[1]"),
            Err(Answer::BadRequest("The payload must be a JSON object"))
        );
        assert_eq!(
            parse(b"{}"),
            Err(Answer::BadRequest("Missing message_type"))
        );
        assert!(parse(br#"{"message_type":"TYPE_PING"}"#).is_ok());
    }
}
