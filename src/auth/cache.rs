//! The caller of a request from memory: an authenticated request normally costs no Redis round
//! trip and no database query.
//!
//! Two short-lived tables per server process:
//!
//! - **tokens**: an access token (by its `jti`) that passed every check of
//!   `sessions::AuthStore::check` (not revoked, its session active and bound to its user), with its
//!   user's account state;
//! - **profiles**: a user's `GET /auth/me` answer (record, shops, level, settings), serialised once.
//!
//! An entry lives [`TTL`] at most. Sooner, every change that makes one wrong — a session ended, a
//! token revoked, a user, their settings, shops or level changed (`domain::Effects`) — is
//! published on the Redis channel `<EF__REDIS_PREFIX>auth` by whichever process made it (a
//! server, the worker, the `euraflow` CLI), applied to this process's own tables at once, and
//! dropped by every server that hears it.
//!
//! The tables are trusted only while this process hears the channel: before the subscription
//! stands, after it is lost (Redis down, restarted), every lookup misses and the request takes the
//! full path (Redis, or PostgreSQL while Redis is down), so a missed message can never keep a
//! revoked token alive. Each (re)subscription starts from empty tables.
//!
//! A lookup that missed reads the truth and then offers it with the [`Generation`] it saw before
//! reading; an offer made after any invalidation in between is refused, so a read that raced
//! with a change is never kept.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::roles::AccountState;
use crate::redis::Redis;

/// How long an entry may be used without a fresh check. It bounds what a lost invalidation could
/// cost; normal changes arrive within milliseconds.
pub const TTL: Duration = Duration::from_secs(5);
/// Entries per table at most (see [`make_room`]).
const CAPACITY: usize = 20_000;
/// Between attempts to (re)subscribe.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_secs(1);
/// Names per published message at most; larger changes are sent as "everyone".
const MAX_NAMES_PER_MESSAGE: usize = 500;

/// What a change made stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// A user's tokens and profile.
    User(i64),
    /// One access token (revoked).
    Token(String),
    /// Every entry (a change that touches many users: an account level, a shop's bindings).
    Everyone,
}

impl Stale {
    fn encode(&self) -> String {
        match self {
            Stale::User(id) => format!("u:{id}"),
            Stale::Token(jti) => format!("j:{jti}"),
            Stale::Everyone => "*".to_owned(),
        }
    }

    fn decode(word: &str) -> Option<Stale> {
        if word == "*" {
            return Some(Stale::Everyone);
        }
        if let Some(id) = word.strip_prefix("u:") {
            return id.parse().ok().map(Stale::User);
        }
        word.strip_prefix("j:")
            .filter(|j| !j.is_empty() && j.len() <= 128)
            .map(|j| Stale::Token(j.to_owned()))
    }
}

/// A message as published: the names separated by spaces.
fn encode_message(stale: &[Stale]) -> String {
    if stale.len() > MAX_NAMES_PER_MESSAGE || stale.contains(&Stale::Everyone) {
        return Stale::Everyone.encode();
    }
    stale
        .iter()
        .map(Stale::encode)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A message as heard; anything unreadable in it is taken as "everyone" (safe, and rare).
fn decode_message(text: &str) -> Vec<Stale> {
    let mut out = Vec::new();
    for word in text.split_ascii_whitespace().take(MAX_NAMES_PER_MESSAGE) {
        match Stale::decode(word) {
            Some(s) => out.push(s),
            None => return vec![Stale::Everyone],
        }
    }
    out
}

/// The invalidation count a lookup saw before it read the truth (see the module's comment).
#[derive(Debug, Clone, Copy)]
pub struct Generation(u64);

/// A value and when it was read.
struct Entry<V> {
    at: Instant,
    value: V,
}

impl<V> Entry<V> {
    fn fresh(&self) -> bool {
        self.at.elapsed() < TTL
    }
}

struct Tables {
    /// By `jti`: the token's account state.
    tokens: HashMap<String, Entry<AccountState>>,
    /// By user id: the serialised `/auth/me` answer.
    profiles: HashMap<i64, Entry<Bytes>>,
}

struct Inner {
    redis: Arc<Redis>,
    channel: String,
    /// This process hears the channel (only then are entries used).
    live: AtomicBool,
    /// Bumped by every invalidation, before the tables change.
    generation: AtomicU64,
    tables: Mutex<Tables>,
}

/// One per process (`AuthStore` owns it); cloning shares it.
#[derive(Clone)]
pub struct AuthCache(Arc<Inner>);

impl AuthCache {
    pub fn new(redis: Arc<Redis>) -> Self {
        let channel = redis.key("auth");
        AuthCache(Arc::new(Inner {
            redis,
            channel,
            live: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            tables: Mutex::new(Tables {
                tokens: HashMap::new(),
                profiles: HashMap::new(),
            }),
        }))
    }

    /// Does this process hear the channel (and so use its tables)?
    pub fn is_live(&self) -> bool {
        self.0.live.load(Ordering::SeqCst)
    }

    pub fn generation(&self) -> Generation {
        Generation(self.0.generation.load(Ordering::SeqCst))
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock leaves only cache entries behind: still usable.
        self.0.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The account state of a token that passed its checks less than [`TTL`] ago.
    pub fn token(&self, jti: &str, user_id: i64) -> Option<AccountState> {
        if !self.is_live() {
            return None;
        }
        let t = self.tables();
        t.tokens
            .get(jti)
            .filter(|e| e.fresh() && e.value.user_id == user_id)
            .map(|e| e.value.clone())
    }

    /// Keep a token that passed its checks, read after `seen`.
    pub fn offer_token(&self, seen: Generation, jti: &str, state: &AccountState) {
        if jti.is_empty() || jti.len() > 128 {
            return;
        }
        self.keep(seen, |t| &mut t.tokens, jti.to_owned(), state.clone());
    }

    /// A user's `/auth/me` answer, serialised, if fresh.
    pub fn profile(&self, user_id: i64) -> Option<Bytes> {
        if !self.is_live() {
            return None;
        }
        let t = self.tables();
        t.profiles
            .get(&user_id)
            .filter(|e| e.fresh())
            .map(|e| e.value.clone())
    }

    /// Keep a user's `/auth/me` answer, read after `seen`.
    pub fn offer_profile(&self, seen: Generation, user_id: i64, body: Bytes) {
        self.keep(seen, |t| &mut t.profiles, user_id, body);
    }

    /// Put `value` into one of the tables, unless this process does not hear the channel or an
    /// invalidation came after `seen` (the value may predate it).
    fn keep<K: std::hash::Hash + Eq, V>(
        &self,
        seen: Generation,
        table: fn(&mut Tables) -> &mut HashMap<K, Entry<V>>,
        key: K,
        value: V,
    ) {
        if !self.is_live() {
            return;
        }
        let mut t = self.tables();
        if self.0.generation.load(Ordering::SeqCst) != seen.0 {
            return;
        }
        let table = table(&mut t);
        make_room(table, CAPACITY, Entry::fresh);
        table.insert(
            key,
            Entry {
                at: Instant::now(),
                value,
            },
        );
    }

    /// Drop what `stale` names from this process's tables.
    pub fn forget(&self, stale: &[Stale]) {
        if stale.is_empty() {
            return;
        }
        self.0.generation.fetch_add(1, Ordering::SeqCst);
        let mut t = self.tables();
        for s in stale {
            match s {
                Stale::Everyone => {
                    t.tokens.clear();
                    t.profiles.clear();
                    return;
                }
                Stale::User(id) => {
                    t.tokens.retain(|_, e| e.value.user_id != *id);
                    t.profiles.remove(id);
                }
                Stale::Token(jti) => {
                    t.tokens.remove(jti);
                }
            }
        }
    }

    /// Drop `stale` here and tell every other process. A failed publish is logged: the other
    /// servers' entries then expire within [`TTL`].
    pub async fn publish(&self, stale: &[Stale]) {
        if stale.is_empty() {
            return;
        }
        self.forget(stale);
        let message = encode_message(stale);
        let sent: Result<i64, _> = self
            .0
            .redis
            .query(redis::cmd("PUBLISH").arg(&self.0.channel).arg(&message))
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "could not tell the other processes about an account change; their cached sign-ins expire within 5 seconds");
        }
    }

    /// Hear the channel until `stop`; resubscribes after a lost connection. The tables are used
    /// only while subscribed.
    pub async fn run_subscriber(self, stop: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let result = tokio::select! {
                r = self.subscribe_once(&stop) => r,
                () = stop.cancelled() => Ok(()),
            };
            if self.0.live.swap(false, Ordering::SeqCst) {
                failures = 0; // it had worked: this loss is news
            }
            self.forget(&[Stale::Everyone]);
            if stop.is_cancelled() {
                return;
            }
            failures = failures.saturating_add(1);
            let why = result
                .err()
                .unwrap_or_else(|| "the subscription ended".to_owned());
            // The first loss is worth a line; a Redis outage says so elsewhere every few seconds.
            if failures == 1 {
                tracing::warn!(error = %why, "sign-in cache off until Redis is back: every request is checked in Redis or PostgreSQL");
            } else {
                tracing::debug!(error = %why, "sign-in cache still off");
            }
            tokio::select! {
                () = tokio::time::sleep(RESUBSCRIBE_PAUSE) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    async fn subscribe_once(&self, stop: &CancellationToken) -> Result<(), String> {
        let mut pubsub = self.0.redis.subscribe(&self.0.channel).await?;
        // Whatever was published while not subscribed is unknown: start empty.
        self.forget(&[Stale::Everyone]);
        self.0.live.store(true, Ordering::SeqCst);
        tracing::debug!(channel = %self.0.channel, "sign-in cache on");
        let mut messages = pubsub.on_message();
        loop {
            let msg = tokio::select! {
                m = messages.next() => m,
                () = stop.cancelled() => return Ok(()),
            };
            let Some(msg) = msg else {
                return Err("the connection to Redis closed".to_owned());
            };
            let stale = match msg.get_payload::<String>() {
                Ok(text) => decode_message(&text),
                Err(_) => vec![Stale::Everyone],
            };
            self.forget(&stale);
        }
    }
}

/// Make room for one more entry in a table bounded to `capacity`: when full, the entries that
/// are no longer `still_good` go first, then all (a burst of new tokens larger than the bound
/// within their lifetime is not a case worth an LRU). The sign-in cache's tables and the
/// verified-token memory (`tokens`) share this rule.
pub(super) fn make_room<K, V>(
    table: &mut HashMap<K, V>,
    capacity: usize,
    still_good: impl Fn(&V) -> bool,
) {
    if table.len() < capacity {
        return;
    }
    table.retain(|_, v| still_good(v));
    if table.len() >= capacity {
        table.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::roles::{AccountStatus, Role};
    use crate::config::RedisConfig;

    /// A cache that believes it hears the channel (nothing here talks to Redis).
    fn live_cache() -> AuthCache {
        let redis = Redis::new(&RedisConfig {
            url: None,
            host: "127.0.0.1".into(),
            port: 1,
            db: 0,
            password: Default::default(),
            max_connections: 1,
            timeout: Duration::from_millis(100),
            prefix: "unit:".into(),
        })
        .expect("a Redis handle");
        let cache = AuthCache::new(redis);
        cache.0.live.store(true, Ordering::SeqCst);
        cache
    }

    fn state(user_id: i64) -> AccountState {
        AccountState {
            user_id,
            username: format!("u{user_id}"),
            role: Role::MainAccount,
            is_active: true,
            status: AccountStatus::Active,
            expires_at: None,
            parent_user_id: None,
            inherited: None,
        }
    }

    #[test]
    fn entries_serve_only_while_live_and_for_their_own_user() {
        let cache = live_cache();
        cache.offer_token(cache.generation(), "t1", &state(1));
        cache.offer_profile(cache.generation(), 1, Bytes::from_static(b"{}"));
        assert_eq!(cache.token("t1", 1), Some(state(1)));
        assert_eq!(
            cache.token("t1", 2),
            None,
            "a jti is good only for its user"
        );
        assert!(cache.profile(1).is_some());
        cache.0.live.store(false, Ordering::SeqCst);
        assert_eq!(cache.token("t1", 1), None);
        assert!(cache.profile(1).is_none());
    }

    #[test]
    fn a_read_that_raced_with_an_invalidation_is_not_kept() {
        let cache = live_cache();
        let seen = cache.generation();
        // ...the truth is read; meanwhile a change to anyone is heard...
        cache.forget(&[Stale::User(99)]);
        cache.offer_token(seen, "t1", &state(1));
        cache.offer_profile(seen, 1, Bytes::from_static(b"{}"));
        assert_eq!(cache.token("t1", 1), None);
        assert!(cache.profile(1).is_none());
    }

    #[test]
    fn forgetting_drops_exactly_what_it_names() {
        let cache = live_cache();
        for (jti, user) in [("a", 1), ("b", 1), ("c", 2)] {
            cache.offer_token(cache.generation(), jti, &state(user));
        }
        cache.offer_profile(cache.generation(), 1, Bytes::from_static(b"1"));
        cache.offer_profile(cache.generation(), 2, Bytes::from_static(b"2"));
        cache.forget(&[Stale::User(1)]);
        assert_eq!(cache.token("a", 1), None);
        assert_eq!(cache.token("b", 1), None);
        assert_eq!(cache.token("c", 2), Some(state(2)));
        assert!(cache.profile(1).is_none());
        assert!(cache.profile(2).is_some());
        cache.forget(&[Stale::Token("c".into())]);
        assert_eq!(cache.token("c", 2), None);
        assert!(
            cache.profile(2).is_some(),
            "a revoked token leaves the profile"
        );
        cache.forget(&[Stale::Everyone]);
        assert!(cache.profile(2).is_none());
    }

    #[test]
    fn messages_round_trip_and_anything_odd_means_everyone() {
        let stale = vec![
            Stale::User(7),
            Stale::Token("abc-123".into()),
            Stale::User(9),
        ];
        assert_eq!(decode_message(&encode_message(&stale)), stale);
        assert_eq!(
            encode_message(&[Stale::User(1), Stale::Everyone]),
            "*".to_owned()
        );
        let many: Vec<Stale> = (0..=MAX_NAMES_PER_MESSAGE as i64)
            .map(Stale::User)
            .collect();
        assert_eq!(encode_message(&many), "*");
        assert_eq!(decode_message("u:1 u:x"), vec![Stale::Everyone]);
        assert_eq!(decode_message("j:"), vec![Stale::Everyone]);
        assert_eq!(decode_message("hello"), vec![Stale::Everyone]);
        assert!(decode_message("").is_empty());
    }
}
