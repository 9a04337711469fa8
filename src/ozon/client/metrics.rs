//! Metrics of outbound Ozon calls: one counter by endpoint and outcome, one latency histogram by
//! endpoint. Every HTTP attempt is counted (a retried call counts each try), so a storm of 429s
//! or 5xx is visible even when the call finally succeeds.
//!
//! Labels stay bounded: `endpoint` is one of [`Endpoint::ALL`], `status` an HTTP status code or
//! `timeout`/`network`.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use super::endpoint::Endpoint;

/// Seconds; Ozon usually answers in 50–500 ms, the client gives up at its timeout (30 s).
const LATENCY_BUCKETS: &[f64] = &[0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Clone)]
pub struct OzonMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl std::fmt::Debug for OzonMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OzonMetrics")
    }
}

impl OzonMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "ef_ozon_requests_total",
                "Requests sent to the Ozon Seller API, by endpoint and HTTP status \
                 (or timeout/network); each retry counts",
            ),
            &["endpoint", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "ef_ozon_request_duration_seconds",
                "Time from sending a request to Ozon to having its whole answer, by endpoint",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["endpoint"],
        )?;
        Ok(OzonMetrics { requests, duration })
    }

    /// Add both collectors to `registry` (the process's `/metrics` registry).
    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.duration.clone()))?;
        Ok(())
    }

    pub(crate) fn observe(&self, endpoint: Endpoint, status: &str, latency: Duration) {
        self.requests
            .with_label_values(&[endpoint.path(), status])
            .inc();
        self.duration
            .with_label_values(&[endpoint.path()])
            .observe(latency.as_secs_f64());
    }

    /// The counter's value for one label pair (for tests and `euraflow status`).
    pub fn requests(&self, endpoint: Endpoint, status: &str) -> u64 {
        self.requests
            .with_label_values(&[endpoint.path(), status])
            .get()
    }

    /// How many latencies were observed for `endpoint`.
    pub fn observed(&self, endpoint: Endpoint) -> u64 {
        self.duration
            .with_label_values(&[endpoint.path()])
            .get_sample_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_show_in_the_exposition() {
        let m = OzonMetrics::new().unwrap();
        let registry = Registry::new();
        m.register(&registry).unwrap();
        m.observe(Endpoint::ProductList, "200", Duration::from_millis(40));
        m.observe(Endpoint::ProductList, "429", Duration::from_millis(5));
        assert_eq!(m.requests(Endpoint::ProductList, "200"), 1);
        assert_eq!(m.observed(Endpoint::ProductList), 2);
        let mut out = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(r#"ef_ozon_requests_total{endpoint="/v3/product/list",status="429"} 1"#)
        );
        assert!(text.contains("ef_ozon_request_duration_seconds_bucket"));
        assert!(
            m.register(&registry).is_err(),
            "a second registration is refused"
        );
    }
}
