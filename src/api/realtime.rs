//! `GET /notifications/ws` (and `/ws`, the guide's nginx location): the websocket upgrade, with
//! the caller authenticated exactly as the REST API does it (`auth::current_user`: signature,
//! expiry, revocation, the single-session rule, account state). `GET /notifications/stats`
//! (admin) counts the sockets of this process and of every server sharing its Redis.
//!
//! Over HTTP/2 the same handler answers `CONNECT` with `:protocol websocket` (RFC 8441): the
//! socket is one stream of the connection, with the same authentication, caps, close codes and
//! shutdown as an HTTP/1.1 upgrade; only what it holds of its connection differs
//! ([`ConnectionHold`]).
//!
//! A browser cannot read the HTTP status of a refused upgrade, so refusals are close codes
//! after the upgrade, before any message: 4001 for missing or bad credentials (the web app logs
//! out instead of reconnecting), 1013 when a dependency or a cap says "later". The token comes
//! in the query string (`?token=`, what the web app sends) or `Authorization`; the query string
//! is never logged (`http::middleware::access_log` logs the path only).

use axum::extract::State;
use axum::extract::ws::{
    CloseFrame, Message, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use http::{HeaderMap, StatusCode, Uri};

use super::envelope::Envelope;
use super::error::ApiError;
use super::operator::Operator;
use crate::auth::credentials::Presented;
use crate::auth::{CurrentUser, Role, Via, current_user};
use crate::domain::DomainError;
use crate::http::middleware::client_ip::ClientIp;
use crate::realtime::hub::HubStats;
use crate::realtime::protocol::{self, close};
use crate::realtime::session_key;
use crate::realtime::socket::{self, Peer};
use crate::realtime::stats::ClusterStats;
use crate::state::AppState;

/// The extension `http::server` puts on every request: what an upgraded socket must hold of its
/// connection while it is open.
#[derive(Clone)]
pub enum ConnectionHold {
    /// HTTP/1.1: the upgrade takes the TCP connection away from hyper, whose task (and with it the
    /// connection's slot) ends; the socket takes a slot of `EF__MAX_CONNECTIONS` of its own, so it
    /// keeps counting against the cap.
    Slots(std::sync::Arc<tokio::sync::Semaphore>),
    /// HTTP/2 (RFC 8441): the socket is one stream of a connection that keeps its slot for as long
    /// as it is open, so it takes no second one (streams per connection are bounded by hyper, and
    /// sockets by the hub's caps). It holds the connection busy instead: without a request in
    /// progress, the connection would count as idle and be shut after `EF__KEEPALIVE_TIMEOUT`.
    Stream(std::sync::Arc<crate::http::idle::Activity>),
}

/// What a socket holds of its connection until it closes (see [`ConnectionHold`]); only ever
/// dropped.
pub enum ConnectionHeld {
    Slot {
        _permit: tokio::sync::OwnedSemaphorePermit,
    },
    Stream {
        _busy: crate::http::idle::InFlight,
    },
}

impl ConnectionHold {
    /// `None` when the process has no slot left for one more HTTP/1.1 socket.
    fn take(&self) -> Option<ConnectionHeld> {
        match self {
            ConnectionHold::Slots(s) => s
                .clone()
                .try_acquire_owned()
                .ok()
                .map(|p| ConnectionHeld::Slot { _permit: p }),
            ConnectionHold::Stream(activity) => Some(ConnectionHeld::Stream {
                _busy: activity.begin(),
            }),
        }
    }
}

/// The initial read buffer of a socket (it grows for a larger message, up to the limit).
const READ_BUFFER: usize = 4096;

/// What the upgrade URL carries.
struct Query {
    token: Option<String>,
    shop_ids: Result<Vec<i64>, String>,
    /// `?probe=1` from the local operator (`euraflow check`): `connected`, then close 1000.
    probe: bool,
}

fn parse_query(uri: &Uri) -> Query {
    let mut q = Query {
        token: None,
        shop_ids: Ok(Vec::new()),
        probe: false,
    };
    for pair in uri.query().unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(&v.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        match k {
            "token" if !v.is_empty() => q.token = Some(v),
            "shop_ids" => q.shop_ids = protocol::parse_query_shop_ids(&v),
            "probe" => q.probe = v == "1",
            _ => {}
        }
    }
    q
}

/// Why a socket is refused right after the upgrade.
struct Refused {
    code: u16,
    reason: &'static str,
    label: &'static str,
}

async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<CurrentUser, Refused> {
    let keys = &state.auth().keys;
    let presented = match token {
        Some(t) => Presented::Bearer(keys.verify_access(t)),
        None => Presented::from_headers(headers, keys),
    };
    let user = current_user::resolve(state.auth(), &presented).await;
    match user.and_then(|u| u.admit(false).map(|()| u)) {
        Ok(u) => Ok(u),
        Err(DomainError::Unauthenticated { .. } | DomainError::Denied { .. }) => Err(Refused {
            code: close::UNAUTHENTICATED,
            reason: "authentication failed",
            label: "unauthenticated",
        }),
        Err(e) => {
            tracing::warn!(error = %e, "websocket refused: cannot check the credentials now");
            Err(Refused {
                code: close::TRY_AGAIN_LATER,
                reason: "try again later",
                label: "unavailable",
            })
        }
    }
}

pub async fn ws(
    State(state): State<AppState>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    client_ip: Option<axum::Extension<ClientIp>>,
    hold: Option<axum::Extension<ConnectionHold>>,
    conn: Option<axum::Extension<crate::http::server::ConnInfo>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(_) => {
            return ApiError::new(
                StatusCode::UPGRADE_REQUIRED,
                "WEBSOCKET_REQUIRED",
                "This is a websocket endpoint: connect with a websocket client (Upgrade: websocket)",
            )
            .into_response();
        }
    };
    let limits = state.config().http.ws;
    // Small buffers: tungstenite's defaults (128 KiB each way) made an idle socket cost ~160 KiB;
    // messages are small and the send queue bounds what waits.
    let upgrade = upgrade
        .max_message_size(limits.max_message_size)
        .max_frame_size(limits.max_message_size)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0);
    let query = parse_query(&uri);
    if query.probe && conn.is_some_and(|c| c.0.is_local_operator(&headers)) {
        // The go-live check's "WebSocket 连接正常": the upgrade and the first message work.
        return upgrade.on_upgrade(|mut socket| async move {
            let hello = protocol::connected(0, &[]).to_string();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                socket.send(Message::Text(hello.into())).await?;
                socket
                    .send(Message::Close(Some(CloseFrame {
                        code: close::NORMAL,
                        reason: "probe".into(),
                    })))
                    .await
            })
            .await;
        });
    }
    let outcome = admit(&state, &headers, query, client_ip.map(|c| c.0.0), hold).await;
    let hub = state.realtime().hub().clone();
    upgrade.on_upgrade(move |mut socket| async move {
        match outcome {
            Ok((reg, peer)) => socket::run(socket, reg, peer).await,
            Err(r) => {
                hub.metrics.closed(r.label);
                let frame = Message::Close(Some(CloseFrame {
                    code: r.code,
                    reason: r.reason.into(),
                }));
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                    socket.send(frame).await?;
                    socket.close().await
                })
                .await;
            }
        }
    })
}

async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    query: Query,
    ip: Option<std::net::IpAddr>,
    hold: Option<axum::Extension<ConnectionHold>>,
) -> Result<(crate::realtime::hub::Registration, Peer), Refused> {
    let later = |reason: &'static str, label: &'static str| Refused {
        code: close::TRY_AGAIN_LATER,
        reason,
        label,
    };
    let user = authenticate(state, headers, query.token.as_deref()).await?;
    let held = match hold {
        Some(h) => Some(
            h.0.take()
                .ok_or_else(|| later("too many connections", "server_full"))?,
        ),
        None => None,
    };
    let session = match &user.via {
        Via::Session {
            session_token: Some(t),
            ..
        } => Some(session_key(t)),
        _ => None,
    };
    let ip = ip.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let reg = state
        .realtime()
        .hub()
        .register(user.id, session, ip)
        .map_err(|r| later(r.reason(), "capped"))?;
    let admin = user.role == Role::Admin;
    let db = state.db().clone();
    let mut notices = Vec::new();
    let shops =
        match query.shop_ids {
            Err(why) => {
                notices.push(why);
                Vec::new()
            }
            Ok(requested) if requested.is_empty() => socket::default_shops(&db, user.id, admin)
                .await
                .map_err(|_| later("try again later", "unavailable"))?,
            Ok(requested) => {
                let (allowed, refused) = socket::check_shops(&db, user.id, admin, &requested)
                    .await
                    .map_err(|_| later("try again later", "unavailable"))?;
                if !refused.is_empty() {
                    notices.push(socket::refused_message(&refused));
                }
                allowed
            }
        };
    Ok((
        reg,
        Peer {
            user_id: user.id,
            admin,
            db,
            shops,
            notices,
            idle_timeout: state.config().http.ws_idle_timeout,
            held,
        },
    ))
}

#[derive(Debug, serde::Serialize)]
pub struct StatsView {
    /// This process (the fields the endpoint has always had).
    pub process_id: u32,
    #[serde(flatten)]
    pub hub: HubStats,
    /// `degraded` when messages do not reach other processes, or Redis could not list them.
    pub fanout: &'static str,
    /// Every server process sharing Redis (`processes`), and `total` across them.
    #[serde(flatten)]
    pub cluster: ClusterStats,
}

/// `GET /notifications/stats` — the sockets of this process and of every server process sharing
/// its Redis (admin or the local operator). Without Redis: this process only, `degraded`.
pub async fn stats(State(state): State<AppState>, _: Operator) -> Envelope<StatsView> {
    let rt = state.realtime();
    let (cluster, listed) = match rt.cluster_stats().await {
        Ok(c) => (c, true),
        Err(e) => {
            tracing::debug!(error = %e, "websocket stats: this process only");
            (ClusterStats::only(rt.process_stats()), false)
        }
    };
    Envelope(StatsView {
        process_id: std::process::id(),
        hub: rt.hub().stats(),
        fanout: if listed && rt.fanout_ok() {
            "ok"
        } else {
            "degraded"
        },
        cluster,
    })
}
