//! The messages of the websocket, as the web app reads and sends them (web-app contract,
//! "Websocket"): every message is a JSON object with a `type`.
//!
//! Server → client: `connected` {user_id, shop_ids}, `ping`, `pong`, `subscribed` /
//! `unsubscribed` {shop_ids}, `error` {message}, `session_expired` {data: {reason, message}} and
//! the business events (`posting.*`, `chat.new_message`, `job.*`) with `shop_id`, `data`.
//! Every server message carries `timestamp` (RFC 3339).
//!
//! Client → server: `ping`, `subscribe` / `unsubscribe` {shop_ids}. Anything else is answered
//! with `error`, never with a dropped connection.

use serde_json::{Value, json};

/// A client's shop list is bounded (a subscribe names at most this many shops).
pub const MAX_SHOP_IDS: usize = 1000;

/// Close codes the web app acts on: 4001 logs the user out, everything else reconnects.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
    pub const UNAUTHENTICATED: u16 = 4001;
}

/// What a client asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientMessage {
    Ping,
    Subscribe(Vec<i64>),
    Unsubscribe(Vec<i64>),
}

/// Parse one text message; the error is the sentence sent back in an `error` message.
pub fn parse(text: &str) -> Result<ClientMessage, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|_| "messages must be JSON objects".to_owned())?;
    let Some(kind) = v.get("type").and_then(Value::as_str) else {
        return Err("a message needs a \"type\"".to_owned());
    };
    match kind {
        "ping" => Ok(ClientMessage::Ping),
        "subscribe" => shop_ids(&v).map(ClientMessage::Subscribe),
        "unsubscribe" => shop_ids(&v).map(ClientMessage::Unsubscribe),
        other => Err(format!(
            "unknown message type {:?}; use ping, subscribe or unsubscribe",
            truncate(other, 40)
        )),
    }
}

fn shop_ids(v: &Value) -> Result<Vec<i64>, String> {
    let bad = || "\"shop_ids\" must be a list of shop ids (whole numbers)".to_owned();
    let list = v
        .get("shop_ids")
        .and_then(Value::as_array)
        .ok_or_else(bad)?;
    if list.len() > MAX_SHOP_IDS {
        return Err(format!("at most {MAX_SHOP_IDS} shop ids at a time"));
    }
    let mut ids: Vec<i64> = list
        .iter()
        .map(|x| x.as_i64().filter(|n| *n > 0).ok_or_else(bad))
        .collect::<Result<_, _>>()?;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// `shop_ids=1,2,3` of the upgrade URL; `Err` names what is not a shop id.
pub fn parse_query_shop_ids(raw: &str) -> Result<Vec<i64>, String> {
    let mut ids = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<i64>() {
            Ok(n) if n > 0 => ids.push(n),
            _ => {
                return Err(format!(
                    "shop_ids: {:?} is not a shop id",
                    truncate(part, 20)
                ));
            }
        }
        if ids.len() > MAX_SHOP_IDS {
            return Err(format!("shop_ids: at most {MAX_SHOP_IDS} shops"));
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn connected(user_id: i64, shop_ids: &[i64]) -> Value {
    json!({"type": "connected", "user_id": user_id, "shop_ids": shop_ids, "timestamp": now()})
}

pub fn ping() -> Value {
    json!({"type": "ping", "timestamp": now()})
}

pub fn pong() -> Value {
    json!({"type": "pong", "timestamp": now()})
}

pub fn subscribed(kind: &str, shop_ids: &[i64]) -> Value {
    json!({"type": kind, "shop_ids": shop_ids, "timestamp": now()})
}

pub fn error(message: &str) -> Value {
    json!({"type": "error", "message": message, "timestamp": now()})
}

/// Why a session ended, as the web app names it.
pub fn session_reason(ended_because: &str) -> &'static str {
    match ended_because {
        "replaced" | "session_replaced" => "session_replaced",
        "account_disabled" | "account_deleted" | "disabled" => "account_disabled",
        "account_expired" | "expired" => "account_expired",
        "password_reset" | "password_changed" | "password_change" => "password_changed",
        _ => "logged_out",
    }
}

pub fn session_expired(reason: &'static str) -> Value {
    let message = match reason {
        "session_replaced" => "您的账号已在其他设备登录",
        "account_disabled" => "您的账号已被禁用",
        "account_expired" => "您的账号已过期",
        "password_changed" => "您的密码已修改，请重新登录",
        _ => "您已退出登录",
    };
    json!({
        "type": "session_expired",
        "data": {"reason": reason, "message": message, "timestamp": now()},
        "timestamp": now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_or_say_what_is_wrong() {
        assert_eq!(parse(r#"{"type":"ping"}"#), Ok(ClientMessage::Ping));
        assert_eq!(
            parse(r#"{"type":"subscribe","shop_ids":[3,1,3]}"#),
            Ok(ClientMessage::Subscribe(vec![1, 3]))
        );
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"type":"subscribe","shop_ids":["x"]}"#).is_err());
        assert!(parse(r#"{"type":"subscribe","shop_ids":[-1]}"#).is_err());
        assert!(parse(r#"{"type":"subscribe"}"#).is_err());
        assert!(parse(r#"{"nope":1}"#).is_err());
        let e = parse(r#"{"type":"dance"}"#).unwrap_err();
        assert!(e.contains("dance"), "{e}");
    }

    #[test]
    fn query_shop_ids_are_a_comma_list_of_positive_ids() {
        assert_eq!(parse_query_shop_ids("2,1, 2,"), Ok(vec![1, 2]));
        assert_eq!(parse_query_shop_ids(""), Ok(vec![]));
        assert!(parse_query_shop_ids("1,abc").is_err());
        assert!(parse_query_shop_ids("0").is_err());
    }

    #[test]
    fn session_reasons_use_the_web_apps_names() {
        assert_eq!(session_reason("replaced"), "session_replaced");
        assert_eq!(session_reason("logout"), "logged_out");
        assert_eq!(session_reason("password_reset"), "password_changed");
        assert_eq!(session_reason("account_disabled"), "account_disabled");
        assert_eq!(
            session_expired("account_expired")["data"]["reason"],
            "account_expired"
        );
    }
}
