//! The posting mirror's sync (issue 13 item 1, contract §4.2, §2.3 Y2/Y3): Ozon's FBS postings of
//! one shop into `ozon_postings` (through `posting_mirror`), as jobs of the durable queue.
//!
//! - `ef.ozon.orders.sync` `{shop_id, mode}`: one shop, `incremental` or `full`; started by the
//!   order page's buttons (`postings::start_sync`, exclusive per shop) and by the hourly pull.
//! - `ef.ozon.orders.pull` (cron `15 * * * *`): one incremental `ef.ozon.orders.sync` per active
//!   shop; a shop whose sync still runs is not doubled (the exclusive key).
//!
//! How one run goes, and where it differs from the original (§7 C4, C5):
//! - `full`: every posting processed in the last 360 days.
//! - `incremental`: since the last successful run's start (less an overlap, kept per shop in
//!   `ozon_sync_state`), two passes: postings *processed* since then (new orders), and postings
//!   whose *status changed* since then (`last_changed_status_date`) — so a posting of last week
//!   that is delivered today is refreshed too, not only those created in the last 6 h. A shop's
//!   first run is full.
//! - each pass pages `/v3/posting/fbs/list` by offset while `has_next`, [`PAGE`] postings at a
//!   time, oldest first, up to the run's start (so new postings arriving meanwhile do not shift the
//!   pages); each page is written and committed in its own transaction, so memory holds one page.
//! - every Ozon call is retried by the client; a call that still fails ends the run as
//!   **failed** (in both modes — the original ended an incremental run "completed"), the pages
//!   already written stay, nothing is deleted, and the high-water mark does not move, so the
//!   next run asks again from the same point.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Ozon;
use super::client::{OzonError, PostingFilter, PostingWith, SortDir, TimeRange};
use super::posting_events;
use super::posting_mirror::{self, PostingEvent};
use super::product_sync::{Mode, Progress, SyncError, load_shop, shop_client};
use super::tasks::{SyncKind, exclusive_key};
use crate::db::sql::Sql;
use crate::db::{Database, DbError};
use crate::domain::DomainError;
use crate::jobs::{
    Enqueued, Job, JobContext, JobError, JobResult, NewJob, Queue, Registry, RetryPolicy,
    TimeLimits, enqueue,
};

/// Postings per list page (Ozon allows up to 1000).
pub const PAGE: u32 = 500;
/// Incremental runs look back this much further than the last run's start.
const OVERLAP: chrono::Duration = chrono::Duration::minutes(15);
/// How far back a full run (and the status-change pass) reaches.
const HORIZON: chrono::Duration = chrono::Duration::days(360);

const WITH: PostingWith = PostingWith {
    analytics_data: true,
    financial_data: true,
};

pub fn register(r: &mut Registry) {
    r.register::<OrdersSync>();
    r.register::<OrdersPull>();
}

/// One shop's posting sync.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrdersSync {
    pub shop_id: i64,
    #[serde(default)]
    pub mode: Mode,
}

impl OrdersSync {
    /// The job, holding the shop's exclusive order-sync key.
    pub fn new_job(shop_id: i64, mode: Mode) -> Result<NewJob, DomainError> {
        NewJob::of(&OrdersSync { shop_id, mode })
            .map(|j| j.exclusive(exclusive_key(SyncKind::Orders, shop_id)))
            .map_err(|e| DomainError::Internal(anyhow::anyhow!("{e}")))
    }
}

impl Job for OrdersSync {
    const NAME: &'static str = "ef.ozon.orders.sync";
    const QUEUE: Queue = Queue::Sync;
    const DESCRIPTION: &'static str = "OZON 订单同步（单个店铺）";

    fn limits() -> TimeLimits {
        TimeLimits {
            soft: Duration::from_secs(3600),
            hard: Duration::from_secs(3720),
        }
    }

    fn retry() -> RetryPolicy {
        // As the product sync: Ozon failures are final for the run, further attempts are for a
        // worker or database that failed mid-run.
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_secs(30),
            cap: Duration::from_secs(300),
        }
    }

    async fn run(self, ctx: JobContext) -> JobResult {
        let ozon = ctx.ozon()?.clone();
        let progress = Progress { ctx: Some(&ctx) };
        match sync_shop(ctx.db(), &ozon, self.shop_id, self.mode, &progress).await {
            Ok(summary) => {
                if summary.events.total > 0 {
                    match crate::realtime::Realtime::publisher(ctx.config(), ctx.redis().clone()) {
                        Ok(rt) => {
                            posting_events::publish_collected(&rt, self.shop_id, &summary.events)
                                .await;
                        }
                        Err(e) => tracing::warn!(
                            error = format!("{e:#}"),
                            "the sync's posting changes were not published to the web app"
                        ),
                    }
                }
                Ok(summary.to_json())
            }
            Err(e) => {
                let message = e.to_string();
                note_failure(ctx.db(), self.shop_id, &message).await;
                Err(match e {
                    SyncError::Db(_) | SyncError::Stopped => JobError::Failed(message),
                    _ => JobError::Permanent(message),
                })
            }
        }
    }
}

/// The hourly pull: an incremental posting sync of every active shop.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OrdersPull {}

impl Job for OrdersPull {
    const NAME: &'static str = "ef.ozon.orders.pull";
    const QUEUE: Queue = Queue::Pull;
    const DESCRIPTION: &'static str = "OZON 订单同步";
    const SCHEDULE: Option<&'static str> = Some("15 * * * *");

    fn limits() -> TimeLimits {
        TimeLimits {
            soft: Duration::from_secs(60),
            hard: Duration::from_secs(90),
        }
    }

    async fn run(self, ctx: JobContext) -> JobResult {
        let client = ctx.db().get().await?;
        let shops: Vec<i64> = client
            .rows(
                "SELECT id FROM ozon_shops WHERE status = 'active' ORDER BY id",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let (mut started, mut running) = (Vec::new(), Vec::new());
        for shop_id in &shops {
            let job = OrdersSync::new_job(*shop_id, Mode::Incremental)
                .map_err(|e| JobError::permanent(e.to_string()))?;
            match enqueue(&**client, &job).await.map_err(JobError::failed)? {
                Enqueued::New(id) => started.push(json!({"shop_id": shop_id, "task_id": id})),
                Enqueued::Existing(id) => {
                    running.push(json!({"shop_id": shop_id, "task_id": id}));
                }
            }
        }
        Ok(json!({
            "records_processed": shops.len(),
            "shops": shops.len(),
            "started": started,
            "already_running": running,
        }))
    }
}

/// Counters of a run (the task's `result`).
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub mode: Mode,
    pub total_synced: u64,
    pub inserted: u64,
    pub updated: u64,
    pub pages: u64,
    /// The changes an incremental run publishes (`posting_events`); a full run collects none.
    pub events: posting_events::Collected,
}

impl Summary {
    pub fn message(&self) -> String {
        match self.mode {
            Mode::Incremental => format!("增量同步完成，共同步{}个订单", self.total_synced),
            Mode::Full => format!("全量同步完成，共同步{}个订单", self.total_synced),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "message": self.message(),
            "mode": self.mode.as_str(),
            "total_synced": self.total_synced,
            "records_processed": self.total_synced,
            "records_updated": self.updated,
            "inserted": self.inserted,
            "updated": self.updated,
            "pages": self.pages,
        })
    }
}

/// Sync one shop's postings (see the module header). Holds a pooled connection only while it
/// writes a page, never while Ozon answers.
pub async fn sync_shop(
    db: &Database,
    ozon: &Ozon,
    shop_id: i64,
    mode: Mode,
    progress: &Progress<'_>,
) -> Result<Summary, SyncError> {
    progress.report(0, "正在获取店铺信息...").await;
    let shop = load_shop(db, shop_id).await?;
    let api = shop_client(ozon, &shop)?;
    let (run_started, mark): (DateTime<Utc>, Option<DateTime<Utc>>) = {
        let c = db.get().await?;
        let now: DateTime<Utc> = c.row("SELECT now()", &[]).await?.get(0);
        let mark = c
            .maybe_row(
                "SELECT high_water_mark FROM ozon_sync_state WHERE shop_id = $1 AND kind = 'postings'",
                &[&shop_id],
            )
            .await?
            .and_then(|r| r.get::<_, Option<DateTime<Utc>>>(0));
        (now, mark)
    };
    let since = match mode {
        Mode::Full => None,
        Mode::Incremental => mark.map(|t| t - OVERLAP),
    };
    let full = since.is_none();
    let mut summary = Summary {
        mode: if full { Mode::Full } else { Mode::Incremental },
        ..Summary::default()
    };
    let horizon = run_started - HORIZON;
    let passes: Vec<(PostingFilter, &str)> = match since {
        None => vec![(
            PostingFilter {
                since: Some(horizon),
                to: Some(run_started),
                ..PostingFilter::default()
            },
            "订单",
        )],
        Some(since) => vec![
            (
                PostingFilter {
                    since: Some(since),
                    to: Some(run_started),
                    ..PostingFilter::default()
                },
                "新订单",
            ),
            (
                PostingFilter {
                    since: Some(horizon),
                    to: Some(run_started),
                    last_changed_status_date: Some(TimeRange {
                        from: since,
                        to: run_started,
                    }),
                    ..PostingFilter::default()
                },
                "状态变化的订单",
            ),
        ],
    };
    progress.report(5, "正在从 Ozon 获取订单列表...").await;
    let pass_count = passes.len();
    for (pass_no, (filter, label)) in passes.into_iter().enumerate() {
        let mut pager = api.posting_pages(filter, SortDir::Asc, PAGE, WITH);
        let mut batch: u64 = 0;
        while let Some(page) = pager.next_page().await? {
            if progress.stopped() {
                return Err(SyncError::Stopped);
            }
            batch += 1;
            let n = page.items.len() as u64;
            let written = {
                let mut c = db.get().await?;
                let tx = c.transaction().await?;
                let w = posting_mirror::write(&tx, shop_id, &page.items).await?;
                tx.commit().await?;
                w
            };
            if !full {
                summary.events.add(written.events);
            }
            summary.total_synced += n;
            summary.inserted += written.inserted;
            summary.updated += written.updated;
            summary.pages += 1;
            // Ozon does not say how many pages there are: creep towards the pass's share.
            let share = 85.0 / pass_count as f64;
            let within = 1.0 - 1.0 / (1.0 + batch as f64 / 4.0);
            let pct = 5.0 + share * (pass_no as f64 + within);
            progress
                .report(
                    pct.min(90.0) as u8,
                    &format!("正在批量同步第 {batch} 批{label}（{n} 个）..."),
                )
                .await;
        }
    }
    let mut c = db.get().await?;
    let tx = c.transaction().await?;
    tx.exec(
        "UPDATE ozon_shops SET last_sync_at = now() WHERE id = $1",
        &[&shop_id],
    )
    .await?;
    tx.exec(
        "INSERT INTO ozon_sync_state AS s (shop_id, kind, high_water_mark, last_success_at,
                                           last_full_sync_at, last_error, updated_at)
         VALUES ($1, 'postings', $2, now(), CASE WHEN $3 THEN now() END, NULL, now())
         ON CONFLICT (shop_id, kind) DO UPDATE
            SET high_water_mark = excluded.high_water_mark,
                last_success_at = excluded.last_success_at,
                last_full_sync_at = coalesce(excluded.last_full_sync_at, s.last_full_sync_at),
                last_error = NULL, updated_at = now()",
        &[&shop_id, &run_started, &full],
    )
    .await?;
    tx.commit().await?;
    progress.report(100, &summary.message()).await;
    Ok(summary)
}

/// Remember why the last run failed (best effort: the job's own row has it too).
async fn note_failure(db: &Database, shop_id: i64, message: &str) {
    let message = crate::jobs::truncate(message, 1000);
    let written = async {
        let c = db.get().await?;
        c.exec(
            "INSERT INTO ozon_sync_state AS s (shop_id, kind, last_error, updated_at)
             SELECT id, 'postings', $2, now() FROM ozon_shops WHERE id = $1
             ON CONFLICT (shop_id, kind) DO UPDATE SET last_error = excluded.last_error, updated_at = now()",
            &[&shop_id, &message],
        )
        .await?;
        Ok::<_, DbError>(())
    };
    if let Err(e) = written.await {
        tracing::debug!(shop_id, error = %e, "the sync failure was not recorded in ozon_sync_state");
    }
}

/// One posting now (Y3): Ozon's `/v3/posting/fbs/get` through the same writer. `Ok(None)` when
/// Ozon does not know the number; otherwise its stored status and when it was written.
pub async fn sync_posting(
    db: &Database,
    ozon: &Ozon,
    shop_id: i64,
    posting_number: &str,
) -> Result<Option<(String, DateTime<Utc>)>, SyncError> {
    Ok(refresh_posting(db, ozon, shop_id, posting_number)
        .await?
        .map(|(stored, _)| stored))
}

/// [`sync_posting`] with the changes the write made, for a caller that publishes them (the push
/// job). `Ok(None)` when Ozon does not know the number.
pub async fn refresh_posting(
    db: &Database,
    ozon: &Ozon,
    shop_id: i64,
    posting_number: &str,
) -> Result<Option<((String, DateTime<Utc>), Vec<PostingEvent>)>, SyncError> {
    let shop = load_shop(db, shop_id).await?;
    let api = shop_client(ozon, &shop)?;
    let posting = match api.posting_get(posting_number, WITH).await {
        Ok(p) => p,
        Err(OzonError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if posting.data.posting_number != posting_number {
        return Ok(None);
    }
    let mut c = db.get().await?;
    let tx = c.transaction().await?;
    let written = posting_mirror::write(&tx, shop_id, std::slice::from_ref(&posting)).await?;
    let row = tx
        .maybe_row(
            "SELECT status, last_synced_at FROM ozon_postings
              WHERE posting_number = $1 AND shop_id = $2",
            &[&posting_number, &shop_id],
        )
        .await?;
    tx.commit().await?;
    Ok(row.map(|r| {
        (
            (
                r.get(0),
                r.get::<_, Option<DateTime<Utc>>>(1)
                    .unwrap_or_else(Utc::now),
            ),
            written.events,
        )
    }))
}
