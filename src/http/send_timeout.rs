//! `EF__SEND_TIMEOUT`, nginx's `send_timeout`: a connection that has output waiting and has not
//! been able to send any of it for the timeout is closed, and its `EF__MAX_CONNECTIONS` slot
//! freed. The timeout runs between two successful writes, not over the whole response, so a
//! slow but steady reader is never cut.
//!
//! A client stops taking a response in one of two ways, and both are watched:
//! - it stops reading: the kernel's socket buffer fills and writes stop completing (the socket
//!   is wrapped by [`Watched`]);
//! - over HTTP/2 it stops granting flow-control window: the socket stays writable, but hyper
//!   stops asking the response body for more (the body is wrapped by [`WatchedBody`]). A body
//!   that is waiting for its own data (it returned `Pending`) is the server's business and never
//!   counts as stalled.
//!
//! Without this, 50 clients that asked for a 5 MB download and never read locked every new
//! client out for as long as they liked (issue 17).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::Frame;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// What one connection has waiting to go out, and when it last made progress.
#[derive(Debug)]
pub struct SendWatch {
    started: Instant,
    /// Milliseconds after `started` of the last write that completed or body frame taken.
    last_progress_ms: AtomicU64,
    /// The last write to the socket did not complete (the kernel's buffer is full).
    write_blocked: AtomicBool,
    /// Response bodies whose last frame was handed to hyper and not yet followed by a request
    /// for the next one: waiting for the client to take it.
    bodies_waiting: AtomicUsize,
}

impl SendWatch {
    pub fn new() -> Arc<SendWatch> {
        Arc::new(SendWatch {
            started: Instant::now(),
            last_progress_ms: AtomicU64::new(0),
            write_blocked: AtomicBool::new(false),
            bodies_waiting: AtomicUsize::new(0),
        })
    }

    fn progress(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_progress_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn waiting(&self) -> bool {
        self.write_blocked.load(Ordering::Relaxed)
            || self.bodies_waiting.load(Ordering::Relaxed) > 0
    }

    /// Returns once output has been waiting with no progress for `limit`: the client stopped
    /// taking what is sent. Detected within a quarter of `limit` after it happened.
    pub async fn stalled_for(&self, limit: Duration) {
        loop {
            let last =
                self.started + Duration::from_millis(self.last_progress_ms.load(Ordering::Relaxed));
            let now = Instant::now();
            let next = if self.waiting() {
                if now >= last + limit {
                    return;
                }
                last + limit
            } else {
                now + limit / 4
            };
            tokio::time::sleep_until(next).await;
        }
    }
}

/// The connection's socket, telling its [`SendWatch`] whether writes complete.
#[derive(Debug)]
pub struct Watched<T> {
    inner: T,
    watch: Arc<SendWatch>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, watch: Arc<SendWatch>) -> Self {
        Watched { inner, watch }
    }

    /// A write that could not complete, or `written` bytes that did.
    fn note_write(&self, r: &Poll<std::io::Result<usize>>) {
        match r {
            Poll::Pending => self.watch.write_blocked.store(true, Ordering::Relaxed),
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.watch.write_blocked.store(false, Ordering::Relaxed);
                self.watch.progress();
            }
            Poll::Ready(_) => {}
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // A socket's flush completes at once (it has no buffer of its own): only writes tell.
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body telling its connection's [`SendWatch`] when a frame it produced is waiting
/// for the client (hyper took it and has not asked for the next one).
pub struct WatchedBody {
    inner: Body,
    watch: Arc<SendWatch>,
    handed_out: bool,
}

impl WatchedBody {
    pub fn wrap(inner: Body, watch: Arc<SendWatch>) -> Body {
        Body::new(WatchedBody {
            inner,
            watch,
            handed_out: false,
        })
    }

    fn taken(&mut self) {
        if self.handed_out {
            self.handed_out = false;
            self.watch.bodies_waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        self.taken();
    }
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        // Asked for more: whatever was handed out before has been taken.
        this.taken();
        this.watch.progress();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &r {
            this.handed_out = true;
            this.watch.bodies_waiting.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn stalled_only_while_output_waits_without_progress() {
        let watch = SendWatch::new();
        let limit = Duration::from_secs(10);
        // Nothing waiting: never stalled, however long.
        let idle = tokio::time::timeout(Duration::from_secs(60), watch.stalled_for(limit)).await;
        assert!(idle.is_err(), "stalled with nothing to send");

        // A frame handed out and never taken: stalled once the limit passed since the last
        // progress.
        let mut body = Body::new(WatchedBody {
            inner: Body::from("data"),
            watch: watch.clone(),
            handed_out: false,
        });
        let frame = body.frame().await;
        assert!(frame.is_some());
        let handed = Instant::now();
        watch.stalled_for(limit).await;
        assert!(Instant::now() - handed >= limit);
        assert!(Instant::now() - handed <= limit + limit / 4 + Duration::from_millis(1));
        // Taking it (asking for more) ends the wait; dropping the body too.
        assert!(body.frame().await.is_none());
        assert_eq!(watch.bodies_waiting.load(Ordering::Relaxed), 0);
        drop(body);
        let idle = tokio::time::timeout(Duration::from_secs(60), watch.stalled_for(limit)).await;
        assert!(idle.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_waiting_for_its_own_data_is_not_stalled() {
        let watch = SendWatch::new();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, axum::Error>>(1);
        let inner = Body::new(http_body_util::StreamBody::new(tokio_stream_from(rx)));
        let mut body = Body::new(WatchedBody {
            inner,
            watch: watch.clone(),
            handed_out: false,
        });
        let polled = tokio::time::timeout(Duration::from_secs(60), body.frame()).await;
        assert!(polled.is_err(), "the body had no data");
        let stalled = tokio::time::timeout(
            Duration::from_secs(60),
            watch.stalled_for(Duration::from_secs(10)),
        )
        .await;
        assert!(
            stalled.is_err(),
            "a body waiting for its own data was called stalled"
        );
        drop(tx);
    }

    fn tokio_stream_from<T: Send + 'static>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
