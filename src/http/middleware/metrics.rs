//! Request metrics: count, latency to the response headers, request and response sizes (the
//! response counted as it streams, after compression, so it is what went on the wire).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use bytes::Bytes;
use http::header;
use http_body::Frame;
use prometheus::Histogram;

use crate::state::AppState;

/// What the metrics record about the request, taken before it is handed on.
pub struct Measured {
    started: Instant,
    method: String,
    endpoint: String,
    request_size: f64,
}

impl Measured {
    /// `None` when metrics are off (`EF__METRICS_ENABLED=false`).
    pub fn begin(state: &AppState, req: &Request) -> Option<Measured> {
        if !state.config().http.metrics_enabled {
            return None;
        }
        Some(Measured {
            started: Instant::now(),
            method: req.method().as_str().to_owned(),
            endpoint: endpoint_label(req),
            request_size: req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0),
        })
    }

    /// Record the response; its body is counted as it streams.
    pub fn end(self, state: &AppState, resp: Response) -> Response {
        let Measured {
            started,
            method,
            endpoint,
            request_size,
        } = self;
        let m = state.metrics();
        let status = resp.status().as_u16().to_string();
        m.http_requests
            .with_label_values(&[&method, &endpoint, &status])
            .inc();
        m.http_duration
            .with_label_values(&[&method, &endpoint])
            .observe(started.elapsed().as_secs_f64());
        m.http_request_size
            .with_label_values(&[&method, &endpoint])
            .observe(request_size);
        let size = m
            .http_response_size
            .with_label_values(&[&method, &endpoint, &status]);
        resp.map(|body| Body::new(CountingBody::new(body, size)))
    }
}

fn endpoint_label(req: &Request) -> String {
    if let Some(m) = req.extensions().get::<MatchedPath>() {
        return m.as_str().to_owned();
    }
    let path = req.uri().path();
    if path == "/api" || path.starts_with("/api/") {
        "unmatched".to_owned()
    } else {
        "static".to_owned()
    }
}

/// Passes the body through and observes its total size when it ends (or is dropped early).
struct CountingBody {
    inner: Body,
    bytes: u64,
    histogram: Option<Histogram>,
}

impl CountingBody {
    fn new(inner: Body, histogram: Histogram) -> Self {
        CountingBody {
            inner,
            bytes: 0,
            histogram: Some(histogram),
        }
    }

    fn finish(&mut self) {
        if let Some(h) = self.histogram.take() {
            h.observe(self.bytes as f64);
        }
    }
}

impl Drop for CountingBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
