//! Accepting connections and serving HTTP/1.1 and HTTP/2 on them.
//!
//! The accept loop only accepts: each connection is spawned at once and the TLS handshake runs in
//! its own task under `EF__TLS_HANDSHAKE_TIMEOUT`, so one slow or silent client never delays the
//! next. Open connections are capped (`EF__MAX_CONNECTIONS`); past the cap the loop stops
//! accepting and further clients wait in the kernel's listen backlog instead of being refused.
//! So that a slot always comes free again, every way of holding one is bounded:
//! - request headers must arrive within `EF__HTTP_HEADER_TIMEOUT` (slowloris) and fit in 32 KiB
//!   (100 lines; one line at most 8 KiB, see `middleware::header_limit`), nginx's
//!   `large_client_header_buffers 4 8k`;
//! - a connection with no request in progress is closed after `EF__KEEPALIVE_TIMEOUT`, whatever
//!   the protocol, also one that completed its TLS handshake and never said anything (`idle`);
//! - a connection that cannot send any of its response for `EF__SEND_TIMEOUT` is closed
//!   (`send_timeout`): a client that asks for a large download and stops reading.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::idle::Activity;
use super::send_timeout::{SendWatch, Watched, WatchedBody};
use crate::api::realtime::ConnectionHold;
use crate::config::HttpConfig;
use crate::state::AppState;

/// Which listener a connection came in on. Some answers depend on it (HSTS only on HTTPS; metrics
/// and health details only on the loopback plain listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Https,
    Http,
}

impl ListenerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Https => "https",
            ListenerKind::Http => "http",
        }
    }
}

/// Per-connection facts, put into every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub kind: ListenerKind,
}

/// Headers a reverse proxy adds: a request carrying one came from somewhere else.
const FORWARDING_HEADERS: [&str; 3] = ["x-forwarded-for", "x-real-ip", "forwarded"];

impl ConnInfo {
    /// A request made on this machine, on the plain loopback listener: the local operator (health
    /// details, metrics, status, no rate limit). The TCP peer alone is not enough: a local nginx
    /// (the CDN-origin role) proxying to 127.0.0.1:8000 is a loopback peer too, so a request that
    /// carries a proxy's forwarding header is someone else's and gets no such trust.
    pub fn is_local_operator(&self, headers: &http::HeaderMap) -> bool {
        self.kind == ListenerKind::Http
            && crate::config::value::canonical_ip(self.peer.ip()).is_loopback()
            && !FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h))
    }
}

/// HTTP/2 pings find dead peers behind NAT; streams per connection are bounded.
const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
const H2_MAX_STREAMS: u32 = 256;
/// Request heads at most this large (nginx: 4 buffers of 8 KiB). hyper's HTTP/1 read buffer is
/// bounded by it too (its default, ~400 KB, let 1 000 unfinished heads hold 400 MB), and so is
/// the buffer of response bytes it keeps before writing them.
const MAX_REQUEST_HEAD: usize = 32 * 1024;
const H2_MAX_HEADER_LIST: u32 = MAX_REQUEST_HEAD as u32;
const H1_MAX_HEADERS: usize = 100;
/// Pause after an accept error such as "too many open files", instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// When the drain begins, an HTTP/1 connection gets this long to send one more request, which is
/// answered with `Connection: close`; only a connection still idle after it is closed. Its client
/// already chose this server, and a request may be on the wire: a keep-alive client that sent its
/// next request just as the stop began, or a new connection accepted just before it. Closing such a
/// connection at once fails that request (seen as resets and empty replies across
/// `systemctl restart`); told to close after an answer, the client opens a new connection, which
/// waits in the listen backlog (held by systemd) for the next process. HTTP/2 needs no grace: its
/// GOAWAY tells the client which requests were taken, and it retries the rest.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How often a draining connection looks whether its grace is over.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Shared by both listeners: the route table, the limits, and the open connections.
pub struct HttpServer {
    router: Router,
    state: AppState,
    builder: auto::Builder<TokioExecutor>,
    connection_slots: Arc<Semaphore>,
    handshake_timeout: Duration,
    keepalive_timeout: Duration,
    send_timeout: Duration,
    /// Every connection's task, so the drain can wait for them.
    connections: tokio_util::task::TaskTracker,
    /// Cancelled when the drain begins: connections finish their current request and close.
    draining: CancellationToken,
    /// Cancelled when the drain bound has passed: connections still open are closed.
    force_close: CancellationToken,
}

impl HttpServer {
    pub fn new(router: Router, state: AppState, cfg: &HttpConfig) -> Arc<Self> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(cfg.header_timeout)
            .max_headers(H1_MAX_HEADERS)
            .max_buf_size(MAX_REQUEST_HEAD)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
            .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT)
            .max_concurrent_streams(H2_MAX_STREAMS)
            .max_header_list_size(H2_MAX_HEADER_LIST)
            // RFC 8441: a websocket as one stream of an HTTP/2 connection (extended CONNECT with
            // `:protocol websocket`). A browser that loaded the web app over HTTP/2 then opens
            // its websocket on that connection instead of a new TLS connection of its own.
            .enable_connect_protocol();
        Arc::new(HttpServer {
            router,
            state,
            builder,
            connection_slots: Arc::new(Semaphore::new(cfg.max_connections)),
            handshake_timeout: cfg.tls_handshake_timeout,
            keepalive_timeout: cfg.keepalive_timeout,
            send_timeout: cfg.send_timeout,
            connections: tokio_util::task::TaskTracker::new(),
            draining: CancellationToken::new(),
            force_close: CancellationToken::new(),
        })
    }

    /// Accept until `stop` is cancelled. `tls` is `Some` on the HTTPS listener.
    pub async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        kind: ListenerKind,
        tls: Option<TlsAcceptor>,
        stop: CancellationToken,
    ) {
        // While this loop runs the drain cannot finish: no connection is spawned after the drain
        // saw none left.
        let _accepting = self.connections.token();
        loop {
            // Biased: once the stop has begun nothing more is accepted, and what waits in the
            // backlog is the next process's.
            let accepted = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = self.draining.cancelled() => break,
                r = listener.accept() => r,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Per-connection errors (the peer reset before accept) are routine;
                    // descriptor exhaustion (EMFILE 24 / ENFILE 23) needs an operator and a pause.
                    if matches!(e.raw_os_error(), Some(23 | 24)) {
                        tracing::error!(error = %e, listener = kind.as_str(), "cannot accept: out of file descriptors; raise LimitNOFILE or lower EF__MAX_CONNECTIONS");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    } else {
                        tracing::debug!(error = %e, "accept failed");
                    }
                    continue;
                }
            };
            // At the cap this loop waits here, holding the one connection it accepted; everyone
            // after it waits in the listen backlog until a connection closes. A connection once
            // accepted is served even when the stop begins meanwhile (dropping it would fail its
            // client's request); only the drain deadline gives up on it.
            let permit = tokio::select! {
                biased;
                p = self.connection_slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = self.force_close.cancelled() => break,
            };
            let _ = stream.set_nodelay(true);
            let info = ConnInfo { peer, kind };
            let server = self.clone();
            let tls = tls.clone();
            self.connections.spawn(async move {
                let _slot = permit;
                let _open = server.state.stats().open_connection();
                server.serve_connection(stream, info, tls).await;
            });
        }
        tracing::debug!(listener = kind.as_str(), "accept loop stopped");
    }

    async fn serve_connection(&self, stream: TcpStream, info: ConnInfo, tls: Option<TlsAcceptor>) {
        let router = self.router.clone();
        let http2 = Arc::new(AtomicBool::new(false));
        let seen_http2 = http2.clone();
        let answered_http2 = http2.clone();
        let draining = self.draining.clone();
        let activity = Activity::new();
        let tracked = activity.clone();
        let watch = SendWatch::new();
        let bodies = watch.clone();
        let slots = ConnectionHold::Slots(self.connection_slots.clone());
        let stream_hold = ConnectionHold::Stream(activity.clone());
        let service = TowerToHyperService::new(
            router
                .map_request(move |mut req: Request<Incoming>| {
                    let hold = if req.version() == http::Version::HTTP_2 {
                        seen_http2.store(true, Ordering::Relaxed);
                        stream_hold.clone()
                    } else {
                        slots.clone()
                    };
                    req.extensions_mut().insert(info);
                    req.extensions_mut().insert(hold);
                    req
                })
                .map_future(move |response| {
                    let in_flight = tracked.begin();
                    let bodies = bodies.clone();
                    let draining = draining.clone();
                    let http2 = answered_http2.load(Ordering::Relaxed);
                    async move {
                        let r = response.await;
                        drop(in_flight);
                        r.map(|mut resp| {
                            // Answered during the drain: this is the connection's last request
                            // (hyper closes after a response that says so), and the client knows
                            // to open a new connection for its next one.
                            if draining.is_cancelled() && !http2 {
                                resp.headers_mut().insert(
                                    http::header::CONNECTION,
                                    http::HeaderValue::from_static("close"),
                                );
                            }
                            resp.map(|body| WatchedBody::wrap(body, bodies))
                        })
                    }
                }),
        );
        let stream = Watched::new(stream, watch.clone());
        let io = match tls {
            Some(acceptor) => {
                let handshake = tokio::select! {
                    r = tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream)) => r,
                    _ = self.force_close.cancelled() => return,
                };
                match handshake {
                    Ok(Ok(s)) => Either::Left(s),
                    Ok(Err(e)) => {
                        self.state.stats().count_tls_failure();
                        tracing::debug!(peer = %info.peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        self.state.stats().count_tls_failure();
                        tracing::debug!(peer = %info.peer, "TLS handshake timed out");
                        return;
                    }
                }
            }
            None => Either::Right(stream),
        };
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::select! {
            () = self.drive(conn, &info, &activity, &http2) => {}
            () = watch.stalled_for(self.send_timeout) => {
                // Dropping the connection closes the socket and frees the slot.
                self.state.stats().count_send_timeout();
                tracing::debug!(
                    peer = %info.peer,
                    send_timeout_s = self.send_timeout.as_secs_f64(),
                    "closing a connection that took nothing of its response for EF__SEND_TIMEOUT"
                );
            }
        }
    }

    /// Serve `conn` until it ends, stays idle too long, or the drain closes it.
    async fn drive<C>(&self, conn: C, info: &ConnInfo, activity: &Activity, http2: &AtomicBool)
    where
        C: GracefulConnection<Error = Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut conn = std::pin::pin!(conn);

        // Serve until the connection ends, stays idle too long, or the drain begins.
        let result = tokio::select! {
            r = conn.as_mut() => Some(r),
            _ = activity.idle_for(self.keepalive_timeout) => {
                tracing::debug!(peer = %info.peer, "closing an idle connection");
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    r = conn.as_mut() => Some(r),
                    _ = self.force_close.cancelled() => return,
                }
            }
            _ = self.draining.cancelled() => None,
            _ = self.force_close.cancelled() => return,
        };
        let result = match result {
            Some(r) => r,
            None => {
                // Draining (see DRAIN_GRACE): HTTP/2 gets its GOAWAY now; an HTTP/1 connection
                // is answered once more with `Connection: close` if its client sends a request
                // within the grace, and is shut down if it is still idle after it. A request in
                // progress always completes.
                let grace_over = tokio::time::Instant::now() + DRAIN_GRACE;
                while !http2.load(Ordering::Relaxed)
                    && (tokio::time::Instant::now() < grace_over || activity.in_progress())
                {
                    tokio::select! {
                        r = conn.as_mut() => {
                            log_end(info, r);
                            return;
                        }
                        _ = tokio::time::sleep(DRAIN_POLL) => {}
                        _ = self.force_close.cancelled() => return,
                    }
                }
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    r = conn.as_mut() => r,
                    _ = self.force_close.cancelled() => {
                        tracing::debug!(peer = %info.peer, "connection closed at the drain deadline");
                        return;
                    }
                }
            }
        };
        log_end(info, result);
    }

    /// Stop taking connections, let open ones finish their in-flight requests (HTTP/1 closes after
    /// the current response, HTTP/2 sends GOAWAY), and close whatever is left after `bound`.
    /// Returns the number of connections that had to be closed.
    pub async fn drain(&self, bound: Duration) -> usize {
        self.connections.close();
        let open = self.state.stats().open_connections();
        self.draining.cancel();
        let left = match tokio::time::timeout(bound, self.connections.wait()).await {
            Ok(()) => 0,
            Err(_) => self.state.stats().open_connections() as usize,
        };
        self.force_close.cancel();
        if left > 0 {
            // Give the cut connections' tasks a moment to notice and drop their sockets.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.connections.wait()).await;
        }
        tracing::info!(
            connections = open,
            closed_at_deadline = left,
            "connections drained"
        );
        left
    }
}

fn log_end(info: &ConnInfo, result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = result {
        tracing::debug!(peer = %info.peer, error = %e, "connection ended with an error");
    }
}
