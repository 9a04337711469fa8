//! `ef_ws_connections`, `ef_ws_messages_sent_total`, `ef_ws_closed_total{reason}`.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct WsMetrics {
    pub connections: IntGauge,
    pub messages_sent: IntCounter,
    pub closed: IntCounterVec,
}

impl WsMetrics {
    pub fn new() -> anyhow::Result<Self> {
        Ok(WsMetrics {
            connections: IntGauge::new("ef_ws_connections", "Open websockets of this process")?,
            messages_sent: IntCounter::new(
                "ef_ws_messages_sent_total",
                "Messages sent to websocket clients",
            )?,
            closed: IntCounterVec::new(
                Opts::new("ef_ws_closed_total", "Websockets closed, by reason"),
                &["reason"],
            )?,
        })
    }

    pub fn register(&self, registry: &Registry) -> anyhow::Result<()> {
        registry.register(Box::new(self.connections.clone()))?;
        registry.register(Box::new(self.messages_sent.clone()))?;
        registry.register(Box::new(self.closed.clone()))?;
        Ok(())
    }

    /// Count a close; `reason` is one of a fixed set of words (bounded label values).
    pub fn closed(&self, reason: &'static str) {
        self.closed.with_label_values(&[reason]).inc();
    }
}
