//! The websockets of this process: who is connected, which shops each socket follows, and the
//! bounded queue each socket's task drains.
//!
//! Delivery never waits for a client: a message is put into each matching socket's queue with
//! `try_send`; a socket whose queue is full (its client reads slower than messages arrive) is
//! told to close with 1013 and everyone else carries on. The registry lock is held only to find
//! the sockets, never across an await.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::metrics::WsMetrics;
use super::protocol::close;
use super::{Envelope, Target};
use crate::config::WsConfig;

/// What a socket's task sends next.
#[derive(Debug, Clone)]
pub enum Out {
    Text(Utf8Bytes),
    /// Send this close frame, then end.
    Close(u16, &'static str),
}

/// How the hub (or a delivery) tells one socket to end at once, ahead of its queue.
#[derive(Debug, Default)]
pub struct Control {
    cancel: CancellationToken,
    reason: Mutex<Option<(u16, &'static str)>>,
}

impl Control {
    pub fn close(&self, code: u16, reason: &'static str) {
        if let Ok(mut r) = self.reason.lock()
            && r.is_none()
        {
            *r = Some((code, reason));
        }
        self.cancel.cancel();
    }

    pub async fn closed(&self) -> (u16, &'static str) {
        self.cancel.cancelled().await;
        self.reason
            .lock()
            .ok()
            .and_then(|r| *r)
            .unwrap_or((close::GOING_AWAY, "closing"))
    }
}

struct Entry {
    user_id: i64,
    /// sha256 (hex) of the login session's token: the session's name that is no secret.
    session: Option<String>,
    ip: IpAddr,
    shops: HashSet<i64>,
    tx: mpsc::Sender<Out>,
    control: Arc<Control>,
}

#[derive(Default)]
struct Registry {
    sockets: HashMap<u64, Entry>,
    by_user: HashMap<i64, HashSet<u64>>,
    by_ip: HashMap<IpAddr, usize>,
}

/// Why a socket was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ShuttingDown,
    ProcessFull,
    UserFull,
    IpFull,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::ShuttingDown => "server restarting",
            Refusal::ProcessFull => "too many connections",
            Refusal::UserFull => "too many connections for this user",
            Refusal::IpFull => "too many connections from this address",
        }
    }
}

/// Numbers for `/notifications/stats` and `euraflow status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HubStats {
    pub connections: usize,
    pub users: usize,
    /// Subscribed sockets per shop.
    pub shops: std::collections::BTreeMap<i64, usize>,
}

pub struct Hub {
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    limits: WsConfig,
    /// Cancelled at shutdown: every socket closes with 1001.
    closing: CancellationToken,
    /// Every socket's task, so shutdown can wait for them (hyper does not track upgrades).
    tasks: TaskTracker,
    /// At shutdown, each socket closes after a random delay up to this (ms), so that its client
    /// (the web app reconnects a fixed 5 s after a close) comes back spread out, not all at once.
    close_spread_ms: AtomicU64,
    /// Woken when a socket comes, goes or changes its shops: the stats publisher
    /// (`Realtime::run_stats_publisher`) then tells the other processes soon, not at its next tick.
    changed: tokio::sync::Notify,
    pub(crate) metrics: WsMetrics,
}

impl Hub {
    pub fn new(limits: WsConfig, metrics: WsMetrics) -> Self {
        Hub {
            registry: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(1),
            limits,
            closing: CancellationToken::new(),
            tasks: TaskTracker::new(),
            close_spread_ms: AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
            metrics,
        }
    }

    pub fn limits(&self) -> &WsConfig {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admit a socket (the caps), or say why not.
    pub fn register(
        self: &Arc<Self>,
        user_id: i64,
        session: Option<String>,
        ip: IpAddr,
    ) -> Result<Registration, Refusal> {
        if self.closing.is_cancelled() {
            return Err(Refusal::ShuttingDown);
        }
        let (tx, rx) = mpsc::channel(self.limits.send_queue.max(1));
        let control = Arc::new(Control::default());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut r = self.lock();
        if r.sockets.len() >= self.limits.max_connections {
            return Err(Refusal::ProcessFull);
        }
        if r.by_user.get(&user_id).map_or(0, HashSet::len) >= self.limits.max_per_user {
            return Err(Refusal::UserFull);
        }
        if r.by_ip.get(&ip).copied().unwrap_or(0) >= self.limits.max_per_ip {
            return Err(Refusal::IpFull);
        }
        r.sockets.insert(
            id,
            Entry {
                user_id,
                session,
                ip,
                shops: HashSet::new(),
                tx,
                control: control.clone(),
            },
        );
        r.by_user.entry(user_id).or_default().insert(id);
        *r.by_ip.entry(ip).or_default() += 1;
        drop(r);
        self.metrics.connections.inc();
        self.changed.notify_one();
        Ok(Registration {
            id,
            hub: self.clone(),
            rx,
            control,
            _tracked: self.tasks.token(),
        })
    }

    fn unregister(&self, id: u64) {
        let mut r = self.lock();
        let Some(e) = r.sockets.remove(&id) else {
            return;
        };
        if let Some(set) = r.by_user.get_mut(&e.user_id) {
            set.remove(&id);
            if set.is_empty() {
                r.by_user.remove(&e.user_id);
            }
        }
        if let Some(n) = r.by_ip.get_mut(&e.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                r.by_ip.remove(&e.ip);
            }
        }
        drop(r);
        self.metrics.connections.dec();
        self.changed.notify_one();
    }

    pub fn subscribe(&self, id: u64, shops: &[i64]) {
        if let Some(e) = self.lock().sockets.get_mut(&id) {
            let room = super::protocol::MAX_SHOP_IDS.saturating_sub(e.shops.len());
            e.shops.extend(shops.iter().copied().take(room));
        }
        self.changed.notify_one();
    }

    pub fn unsubscribe(&self, id: u64, shops: &[i64]) {
        if let Some(e) = self.lock().sockets.get_mut(&id) {
            for s in shops {
                e.shops.remove(s);
            }
        }
        self.changed.notify_one();
    }

    pub fn shops_of(&self, id: u64) -> Vec<i64> {
        let mut v: Vec<i64> = self
            .lock()
            .sockets
            .get(&id)
            .map(|e| e.shops.iter().copied().collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Put the envelope's message into the queue of every socket it is for; returns how many.
    pub fn deliver(&self, env: &Envelope) -> usize {
        let Ok(text) = serde_json::to_string(&env.message) else {
            return 0;
        };
        let text = Utf8Bytes::from(text);
        let r = self.lock();
        let mut matched: Vec<(&mpsc::Sender<Out>, &Arc<Control>)> = Vec::new();
        match &env.target {
            Target::All => matched.extend(r.sockets.values().map(|e| (&e.tx, &e.control))),
            Target::User(user) => {
                if let Some(ids) = r.by_user.get(user) {
                    matched.extend(
                        ids.iter()
                            .filter_map(|id| r.sockets.get(id))
                            .map(|e| (&e.tx, &e.control)),
                    );
                }
            }
            Target::Shop(shop) => matched.extend(
                r.sockets
                    .values()
                    .filter(|e| e.shops.contains(shop))
                    .map(|e| (&e.tx, &e.control)),
            ),
            Target::Session { user_id, session } => {
                if let Some(ids) = r.by_user.get(user_id) {
                    matched.extend(
                        ids.iter()
                            .filter_map(|id| r.sockets.get(id))
                            .filter(|e| e.session.as_deref() == Some(session.as_str()))
                            .map(|e| (&e.tx, &e.control)),
                    );
                }
            }
        }
        let n = matched.len();
        for (tx, control) in matched {
            if tx.try_send(Out::Text(text.clone())).is_err() {
                control.close(close::TRY_AGAIN_LATER, "too slow: send queue full");
                continue;
            }
            if let Some(code) = env.close
                && tx.try_send(Out::Close(code, close_reason(code))).is_err()
            {
                control.close(code, close_reason(code));
            }
        }
        n
    }

    pub fn stats(&self) -> HubStats {
        let r = self.lock();
        let mut shops = std::collections::BTreeMap::new();
        for e in r.sockets.values() {
            for s in &e.shops {
                *shops.entry(*s).or_insert(0) += 1;
            }
        }
        HubStats {
            connections: r.sockets.len(),
            users: r.by_user.len(),
            shops,
        }
    }

    /// The users with a socket here (for the exact count of unique users across processes).
    pub fn user_ids(&self) -> Vec<i64> {
        self.lock().by_user.keys().copied().collect()
    }

    /// Returns at the next change of sockets or subscriptions (at once if one happened since the
    /// last call returned).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    pub fn is_closing(&self) -> bool {
        self.closing.is_cancelled()
    }

    pub fn closing(&self) -> &CancellationToken {
        &self.closing
    }

    /// How long this socket waits before its 1001 (random, below the spread).
    pub fn close_delay(&self) -> std::time::Duration {
        let spread = self.close_spread_ms.load(Ordering::Relaxed);
        if spread == 0 {
            return std::time::Duration::ZERO;
        }
        std::time::Duration::from_millis(rand::random::<u64>() % spread)
    }

    /// Close every socket with 1001 and wait (at most `bound`) until their tasks ended; returns
    /// how many were still open then.
    pub async fn close_all(&self, bound: std::time::Duration) -> usize {
        let open = self.lock().sockets.len();
        let spread = (bound / 2).min(MAX_CLOSE_SPREAD);
        self.close_spread_ms
            .store(spread.as_millis() as u64, Ordering::Relaxed);
        self.closing.cancel();
        self.tasks.close();
        let left = match tokio::time::timeout(bound, self.tasks.wait()).await {
            Ok(()) => 0,
            Err(_) => self.lock().sockets.len(),
        };
        if open > 0 {
            tracing::info!(websockets = open, still_open = left, "websockets closed");
        }
        left
    }
}

/// Closing at shutdown is spread over at most this (and half the drain bound).
const MAX_CLOSE_SPREAD: std::time::Duration = std::time::Duration::from_secs(2);

fn close_reason(code: u16) -> &'static str {
    match code {
        close::UNAUTHENTICATED => "session expired",
        close::GOING_AWAY => "server restarting",
        _ => "closing",
    }
}

/// One admitted socket; dropping it removes the socket from the hub.
pub struct Registration {
    pub id: u64,
    hub: Arc<Hub>,
    pub rx: mpsc::Receiver<Out>,
    pub control: Arc<Control>,
    /// Keeps the hub's shutdown waiting until this socket is gone.
    _tracked: tokio_util::task::task_tracker::TaskTrackerToken,
}

impl Registration {
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn limits() -> WsConfig {
        WsConfig {
            ping_interval: std::time::Duration::from_secs(30),
            max_connections: 3,
            max_per_user: 2,
            max_per_ip: 3,
            max_message_size: 65536,
            max_messages_per_second: 10,
            send_queue: 2,
        }
    }

    fn hub() -> Arc<Hub> {
        Arc::new(Hub::new(limits(), WsMetrics::new().unwrap()))
    }

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn msg(target: Target) -> Envelope {
        Envelope {
            target,
            message: serde_json::json!({"type": "x"}),
            close: None,
        }
    }

    #[tokio::test]
    async fn caps_per_user_and_process_and_cleanup_on_drop() {
        let h = hub();
        let a = h.register(1, None, IP).unwrap();
        let _b = h.register(1, None, IP).unwrap();
        assert_eq!(h.register(1, None, IP).err(), Some(Refusal::UserFull));
        let _c = h.register(2, None, IP).unwrap();
        assert_eq!(h.register(3, None, IP).err(), Some(Refusal::ProcessFull));
        drop(a);
        let _d = h.register(3, None, IP).unwrap();
        assert_eq!(h.stats().connections, 3);
        assert_eq!(h.stats().users, 3);
    }

    #[tokio::test]
    async fn delivery_by_user_shop_session_and_slow_queues_are_closed() {
        let h = hub();
        let mut a = h.register(1, Some("s1".into()), IP).unwrap();
        let mut b = h.register(2, Some("s2".into()), IP).unwrap();
        h.subscribe(b.id, &[7]);
        assert_eq!(h.deliver(&msg(Target::User(1))), 1);
        assert_eq!(h.deliver(&msg(Target::Shop(7))), 1);
        assert_eq!(h.deliver(&msg(Target::Shop(8))), 0);
        assert_eq!(
            h.deliver(&msg(Target::Session {
                user_id: 2,
                session: "s2".into()
            })),
            1
        );
        assert!(matches!(a.rx.try_recv(), Ok(Out::Text(_))));
        assert!(matches!(b.rx.try_recv(), Ok(Out::Text(_))));
        // b has one more queued (the session message); two more overflow its queue of two.
        h.deliver(&msg(Target::User(2)));
        h.deliver(&msg(Target::User(2)));
        let (code, _) = b.control.closed().await;
        assert_eq!(code, close::TRY_AGAIN_LATER);
        assert!(!a.control.cancel.is_cancelled());
    }
}
