//! The wake-up listener: a dedicated connection `LISTEN`s on `ef_jobs`, whose payload the
//! database sets to the queue of a job that became runnable (on commit). Wake-ups only save the
//! poll interval's wait; losing some is harmless.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::DbConfig;
use crate::jobs::Queue;

/// Forward `NOTIFY ef_jobs` (payload: the queue) to the worker loop, reconnecting with backoff;
/// polling covers the gaps. A full channel drops wake-ups: the poll tick catches up.
pub(super) async fn listen(
    db: DbConfig,
    notes: tokio::sync::mpsc::Sender<Option<Queue>>,
    stop: CancellationToken,
) {
    let mut wait = Duration::from_secs(1);
    loop {
        match crate::db::connect_listener(&db).await {
            Ok((client, mut rx)) => match client.batch_execute("LISTEN ef_jobs").await {
                Ok(()) => {
                    wait = Duration::from_secs(1);
                    // Jobs enqueued while we were not listening.
                    let _ = notes.try_send(None);
                    loop {
                        tokio::select! {
                            n = rx.recv() => match n {
                                Some(n) => {
                                    let _ = notes.try_send(Queue::parse(n.payload()));
                                }
                                None => break,
                            },
                            _ = stop.cancelled() => return,
                        }
                    }
                    tracing::debug!("job wake-up connection lost; polling until it is back");
                }
                Err(e) => tracing::debug!(error = %e, "LISTEN failed"),
            },
            Err(e) => tracing::debug!(error = %e, "cannot open the job wake-up connection"),
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}
