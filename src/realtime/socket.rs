//! One websocket's task: sends what the hub queued for it and the periodic `ping`, answers the
//! client's messages, and ends with the right close code — 1001 at shutdown, 1013 when it read
//! too slowly, 1009 for an oversized message, 1008 for a flood, 1000 after the idle timeout, 4001
//! after `session_expired`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;

use super::hub::{Out, Registration};
use super::protocol::{self, ClientMessage, close};
use crate::db::Database;

/// A close frame to a client that does not read gets this long, then the socket is dropped.
const CLOSE_WRITE_BOUND: Duration = Duration::from_secs(2);

/// Who is on the socket and what it asked for at the upgrade.
pub struct Peer {
    pub user_id: i64,
    pub admin: bool,
    pub db: Arc<Database>,
    /// Shops the upgrade asked for and may follow.
    pub shops: Vec<i64>,
    /// Messages to send right after `connected` (a refused shop, a malformed `shop_ids`).
    pub notices: Vec<String>,
    pub idle_timeout: Duration,
    /// The socket's slot of `EF__MAX_CONNECTIONS` (HTTP/1.1) or its HTTP/2 connection kept busy,
    /// held until it closes.
    pub held: Option<crate::api::realtime::ConnectionHeld>,
}

/// The shops of `requested` the user may follow, and those refused.
pub async fn check_shops(
    db: &Database,
    user_id: i64,
    admin: bool,
    requested: &[i64],
) -> Result<(Vec<i64>, Vec<i64>), crate::db::DbError> {
    if admin || requested.is_empty() {
        return Ok((requested.to_vec(), Vec::new()));
    }
    let client = db.get().await?;
    let mine = crate::auth::users::shops_visible_to(&client, user_id).await?;
    Ok(requested.iter().partition(|s| mine.contains(s)))
}

/// The shops a user follows when the upgrade names none: their own (an admin: none, there may
/// be thousands; admins subscribe explicitly).
pub async fn default_shops(
    db: &Database,
    user_id: i64,
    admin: bool,
) -> Result<Vec<i64>, crate::db::DbError> {
    if admin {
        return Ok(Vec::new());
    }
    let client = db.get().await?;
    let mut mine = crate::auth::users::shops_visible_to(&client, user_id).await?;
    mine.truncate(protocol::MAX_SHOP_IDS);
    Ok(mine)
}

fn text(v: &serde_json::Value) -> Message {
    Message::Text(v.to_string().into())
}

pub async fn run(socket: WebSocket, mut reg: Registration, mut peer: Peer) {
    let hub = reg.hub().clone();
    let limits = *hub.limits();
    let (mut sink, mut stream) = socket.split();
    let _held = peer.held.take();
    hub.subscribe(reg.id, &peer.shops);

    let mut greeting = vec![text(&protocol::connected(peer.user_id, &peer.shops))];
    greeting.extend(peer.notices.iter().map(|n| text(&protocol::error(n))));
    for m in greeting {
        if sink.send(m).await.is_err() {
            hub.metrics.closed("client_gone");
            return;
        }
        hub.metrics.messages_sent.inc();
    }

    let mut ping =
        tokio::time::interval_at(Instant::now() + limits.ping_interval, limits.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let mut window_start = Instant::now();
    let mut in_window: u32 = 0;
    let closing = hub.closing().clone();
    let control = reg.control.clone();

    // What ends the loop: a close to send (code, reason, metric label) or None (client gone).
    let end: Option<(u16, &'static str, &'static str)> = loop {
        let idle_at = last_heard + peer.idle_timeout;
        tokio::select! {
            biased;
            () = closing.cancelled() => {
                // Spread the reconnects: each socket closes after its own random delay.
                tokio::time::sleep(hub.close_delay()).await;
                break Some((close::GOING_AWAY, "server restarting", "shutdown"));
            }
            (code, reason) = control.closed() => {
                let label = if code == close::UNAUTHENTICATED { "session_expired" } else { "slow_reader" };
                break Some((code, reason, label));
            }
            out = reg.rx.recv() => match out {
                Some(Out::Text(t)) => {
                    let sent = tokio::select! {
                        r = sink.send(Message::Text(t)) => r.is_ok(),
                        (code, reason) = control.closed() => {
                            break Some((code, reason, "slow_reader"));
                        }
                        () = closing.cancelled() => {
                            break Some((close::GOING_AWAY, "server restarting", "shutdown"));
                        }
                    };
                    if !sent {
                        break None;
                    }
                    hub.metrics.messages_sent.inc();
                }
                Some(Out::Close(code, reason)) => {
                    let label = if code == close::UNAUTHENTICATED { "session_expired" } else { "closed_by_server" };
                    break Some((code, reason, label));
                }
                None => break Some((close::GOING_AWAY, "closing", "shutdown")),
            },
            _ = ping.tick() => {
                if sink.send(text(&protocol::ping())).await.is_err() {
                    break None;
                }
                hub.metrics.messages_sent.inc();
            }
            () = tokio::time::sleep_until(idle_at) => break Some((close::NORMAL, "idle timeout", "idle")),
            incoming = stream.next() => {
                let msg = match incoming {
                    None | Some(Ok(Message::Close(_))) => break None,
                    Some(Err(e)) => {
                        if is_too_big(e) {
                            break Some((close::TOO_BIG, "message too big", "too_big"));
                        }
                        break None;
                    }
                    Some(Ok(m)) => m,
                };
                last_heard = Instant::now();
                if window_start.elapsed() >= Duration::from_secs(1) {
                    window_start = Instant::now();
                    in_window = 0;
                }
                in_window += 1;
                if in_window > limits.max_messages_per_second {
                    break Some((close::POLICY, "too many messages", "flood"));
                }
                let reply = match msg {
                    Message::Text(t) => answer(&hub, reg.id, &peer, t.as_str()).await,
                    Message::Binary(_) => Some(protocol::error("send JSON text messages")),
                    // Protocol pings are answered by the library; pongs only prove liveness.
                    Message::Ping(_) | Message::Pong(_) | Message::Close(_) => None,
                };
                if let Some(r) = reply {
                    if sink.send(text(&r)).await.is_err() {
                        break None;
                    }
                    hub.metrics.messages_sent.inc();
                }
            }
        }
    };

    match end {
        Some((code, reason, label)) => {
            hub.metrics.closed(label);
            let frame = Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }));
            let _ = tokio::time::timeout(CLOSE_WRITE_BOUND, async {
                sink.send(frame).await?;
                sink.close().await
            })
            .await;
        }
        None => hub.metrics.closed("client_gone"),
    }
    // Dropping the registration removes the socket from the hub.
    drop(reg);
}

/// The answer to one client text message, if any.
async fn answer(
    hub: &super::hub::Hub,
    id: u64,
    peer: &Peer,
    text: &str,
) -> Option<serde_json::Value> {
    let parsed = match protocol::parse(text) {
        Ok(m) => m,
        Err(why) => return Some(protocol::error(&why)),
    };
    match parsed {
        ClientMessage::Ping => Some(protocol::pong()),
        ClientMessage::Unsubscribe(shops) => {
            hub.unsubscribe(id, &shops);
            Some(protocol::subscribed("unsubscribed", &shops))
        }
        ClientMessage::Subscribe(shops) => {
            match check_shops(&peer.db, peer.user_id, peer.admin, &shops).await {
                Err(_) => Some(protocol::error(
                    "cannot check your shops right now (database unavailable); try again",
                )),
                Ok((allowed, refused)) if refused.is_empty() => {
                    hub.subscribe(id, &allowed);
                    Some(protocol::subscribed("subscribed", &allowed))
                }
                Ok((_, refused)) => Some(protocol::error(&refused_message(&refused))),
            }
        }
    }
}

pub fn refused_message(refused: &[i64]) -> String {
    let ids: Vec<String> = refused.iter().map(ToString::to_string).collect();
    format!(
        "shop {} is not one of your shops; not subscribed",
        ids.join(", ")
    )
}

fn is_too_big(e: axum::Error) -> bool {
    let inner = e.into_inner();
    matches!(
        inner.downcast_ref::<tokio_tungstenite::tungstenite::Error>(),
        Some(tokio_tungstenite::tungstenite::Error::Capacity(_))
    )
}
