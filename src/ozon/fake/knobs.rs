//! The fake's fault injection and call log: what tests turn to make Ozon misbehave, and what
//! they read to count calls.
//!
//! Faults are per shop, consumed in order: a fault matches calls to its endpoint (or any), lets
//! its first `skip` matching calls through, then answers the next `times` calls itself. The log
//! keeps exact counts per (Client-Id, endpoint) forever and the most recent calls in full (a
//! bounded ring, so a long memory test does not grow the fake).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::ozon::client::Endpoint;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this HTTP status and an Ozon error body (`{code, message, details}`).
    Status(u16),
    /// 429, with `Retry-After: <seconds>` when `Some`.
    RateLimited { retry_after: Option<u64> },
    /// 200 with a truncated JSON body.
    Malformed,
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: FaultKind,
    pub times: u32,
    pub skip: u32,
    pub endpoint: Option<Endpoint>,
}

impl Fault {
    pub fn new(kind: FaultKind, times: u32) -> Self {
        Fault {
            kind,
            times,
            skip: 0,
            endpoint: None,
        }
    }

    /// HTTP `status` (e.g. 500, 503, 401, 403) for the next `times` calls.
    pub fn status(status: u16, times: u32) -> Self {
        Fault::new(FaultKind::Status(status), times)
    }

    /// 429 for the next `times` calls.
    pub fn rate_limited(times: u32, retry_after: Option<u64>) -> Self {
        Fault::new(FaultKind::RateLimited { retry_after }, times)
    }

    /// A malformed 200 body for the next `times` calls.
    pub fn malformed(times: u32) -> Self {
        Fault::new(FaultKind::Malformed, times)
    }

    /// Only calls to `endpoint` count.
    pub fn on(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Let the first `calls` matching calls through first ("mid-paging").
    pub fn after(mut self, calls: u32) -> Self {
        self.skip = calls;
        self
    }
}

/// Per-shop knobs.
#[derive(Debug, Default)]
pub(crate) struct Knobs {
    /// Answer every call with this status (401/403) until cleared.
    pub auth_failure: Option<u16>,
    /// Wait this long before answering each call.
    pub delay: Duration,
    pub faults: Vec<Fault>,
}

impl Knobs {
    /// The fault that answers this call, if any (and consume it).
    pub(crate) fn take_fault(&mut self, endpoint: Endpoint) -> Option<FaultKind> {
        let mut hit = None;
        for f in self.faults.iter_mut() {
            if f.times == 0 || f.endpoint.is_some_and(|e| e != endpoint) {
                continue;
            }
            if f.skip > 0 {
                f.skip -= 1;
                continue;
            }
            f.times -= 1;
            hit = Some(f.kind);
            break;
        }
        self.faults.retain(|f| f.times > 0);
        hit
    }
}

/// One call as the fake received it.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// When the request arrived (before any delay knob).
    pub at: Instant,
    pub path: String,
    pub client_id: String,
    pub request_id: String,
    /// The status the fake answered with.
    pub status: u16,
    /// The JSON body (`Null` when it was not JSON).
    pub body: serde_json::Value,
}

#[derive(Debug)]
pub(crate) struct CallLog {
    recent: VecDeque<CallRecord>,
    capacity: usize,
    counts: HashMap<(String, String), u64>,
}

impl CallLog {
    pub(crate) fn new(capacity: usize) -> Self {
        CallLog {
            recent: VecDeque::new(),
            capacity,
            counts: HashMap::new(),
        }
    }

    pub(crate) fn record(&mut self, call: CallRecord) {
        *self
            .counts
            .entry((call.client_id.clone(), call.path.clone()))
            .or_default() += 1;
        if self.capacity == 0 {
            return;
        }
        if self.recent.len() >= self.capacity {
            self.recent.pop_front();
        }
        self.recent.push_back(call);
    }

    pub(crate) fn recent(&self) -> Vec<CallRecord> {
        self.recent.iter().cloned().collect()
    }

    pub(crate) fn count(&self, client_id: &str, path: &str) -> u64 {
        self.counts
            .get(&(client_id.to_owned(), path.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn clear(&mut self) {
        self.recent.clear();
        self.counts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_skip_then_fire_then_expire_per_endpoint() {
        let mut k = Knobs::default();
        k.faults.push(
            Fault::rate_limited(2, Some(1))
                .on(Endpoint::ProductList)
                .after(1),
        );
        k.faults.push(Fault::status(500, 1));
        // The first list call passes the 429 fault and hits the catch-all 500.
        assert_eq!(
            k.take_fault(Endpoint::ProductList),
            Some(FaultKind::Status(500))
        );
        assert_eq!(
            k.take_fault(Endpoint::ProductList),
            Some(FaultKind::RateLimited {
                retry_after: Some(1)
            })
        );
        assert_eq!(k.take_fault(Endpoint::ProductInfoList), None);
        assert!(k.take_fault(Endpoint::ProductList).is_some());
        assert_eq!(k.take_fault(Endpoint::ProductList), None);
        assert!(k.faults.is_empty());
    }

    #[test]
    fn the_log_counts_everything_and_keeps_only_the_recent() {
        let mut log = CallLog::new(2);
        for i in 0..5 {
            log.record(CallRecord {
                at: Instant::now(),
                path: "/v3/product/list".into(),
                client_id: "1".into(),
                request_id: i.to_string(),
                status: 200,
                body: serde_json::Value::Null,
            });
        }
        assert_eq!(log.count("1", "/v3/product/list"), 5);
        let recent = log.recent();
        assert_eq!(recent.len(), 2);
        assert_eq!(recent[1].request_id, "4");
    }
}
