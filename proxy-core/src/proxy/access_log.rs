//! Access logs: one structured event per request or TCP connection, written through
//! `tracing` with target `ambit::access`. Off by default, switchable at run time, and
//! optionally sampled.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The run-time switch and sampling rate of access logs.
#[derive(Debug)]
pub struct AccessLog {
    enabled: AtomicBool,
    /// The fraction of events logged, as `f64` bits (1.0 = every event).
    sample: AtomicU64,
}

impl Default for AccessLog {
    fn default() -> Self {
        Self { enabled: AtomicBool::new(false), sample: AtomicU64::new(1.0f64.to_bits()) }
    }
}

/// A sampling rate outside `[0, 1]`.
#[derive(Debug, thiserror::Error)]
#[error("sample rate must be a number between 0 and 1, got {0}")]
pub struct InvalidSample(pub f64);

impl AccessLog {
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Sets the fraction of requests and connections logged (0 to 1).
    pub fn set_sample(&self, rate: f64) -> Result<(), InvalidSample> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(InvalidSample(rate));
        }
        self.sample.store(rate.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    pub fn sample(&self) -> f64 {
        f64::from_bits(self.sample.load(Ordering::Relaxed))
    }

    /// Whether this event is to be logged: enabled and picked by the sampling rate.
    pub fn should_log(&self) -> bool {
        if !self.enabled() {
            return false;
        }
        let rate = self.sample();
        rate >= 1.0 || (rate > 0.0 && rand::random::<f64>() < rate)
    }
}

/// A request id: the caller's `x-request-id` when it sent a usable one, else 128 random
/// bits in hex.
pub fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()))
}

/// The facts of one HTTP request's access log line, known once its response head is
/// ready; the line is written when the response body ends (or is dropped), with the
/// response's byte count and the total duration.
#[derive(Debug)]
pub struct HttpRecord {
    pub request_id: String,
    pub caller_namespace: String,
    pub caller_pod: String,
    pub caller_workload: String,
    pub client: String,
    pub service: String,
    pub dialled: String,
    pub method: String,
    pub path: String,
    pub grpc: bool,
    pub route: String,
    pub rule: String,
    pub backend: String,
    pub endpoint: String,
    /// The caller's SPIFFE ID ("" when unknown).
    pub source_identity: String,
    /// The endpoint pod's SPIFFE ID ("" outside the mesh).
    pub destination_identity: String,
    /// How the endpoint was reached: `hbone`, `local` or `none`.
    pub tunnel: &'static str,
    pub status: u16,
    /// Request body bytes (None when the request's framing did not say and it was
    /// streamed).
    pub request_bytes: Option<u64>,
    /// From the request head to the response head.
    pub head_ms: f64,
    /// From sending to the backend to its response head.
    pub backend_ms: Option<f64>,
    pub started: std::time::Instant,
}

impl HttpRecord {
    fn emit(&self, response_bytes: u64) {
        tracing::info!(
            target: "ambit::access",
            kind = "http",
            request_id = %self.request_id,
            caller_namespace = %self.caller_namespace,
            caller_pod = %self.caller_pod,
            caller_workload = %self.caller_workload,
            client = %self.client,
            service = %self.service,
            dialled = %self.dialled,
            method = %self.method,
            path = %self.path,
            grpc = self.grpc,
            route = %self.route,
            rule = %self.rule,
            backend = %self.backend,
            endpoint = %self.endpoint,
            source_identity = %self.source_identity,
            destination_identity = %self.destination_identity,
            tunnel = self.tunnel,
            status = self.status,
            request_bytes = self.request_bytes,
            response_bytes,
            response_head_ms = self.head_ms,
            backend_ms = self.backend_ms,
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
        );
    }
}

/// A response body that counts its bytes and writes the access log line when it ends.
pub struct LoggedBody {
    inner: super::body::Body,
    bytes: u64,
    record: Option<HttpRecord>,
}

impl LoggedBody {
    pub fn new(inner: super::body::Body, record: HttpRecord) -> Self {
        Self { inner, bytes: 0, record: Some(record) }
    }

    fn finish(&mut self) {
        if let Some(record) = self.record.take() {
            record.emit(self.bytes);
        }
    }
}

impl http_body::Body for LoggedBody {
    type Data = bytes::Bytes;
    type Error = super::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            std::task::Poll::Ready(None) | std::task::Poll::Ready(Some(Err(_))) => self.finish(),
            std::task::Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_and_switch() {
        let log = AccessLog::default();
        assert!(!log.should_log());
        log.set_enabled(true);
        assert!(log.should_log());
        log.set_sample(0.0).unwrap();
        assert!(!(0..100).any(|_| log.should_log()));
        log.set_sample(0.5).unwrap();
        let n = (0..2000).filter(|_| log.should_log()).count();
        assert!((700..1300).contains(&n), "{n}");
        assert!(log.set_sample(1.5).is_err());
        assert!(log.set_sample(f64::NAN).is_err());
    }

    #[test]
    fn request_id_is_taken_or_generated() {
        let mut headers = http::HeaderMap::new();
        let generated = request_id(&headers);
        assert_eq!(generated.len(), 32);
        assert_ne!(generated, request_id(&headers));
        headers.insert("x-request-id", "abc-123".parse().unwrap());
        assert_eq!(request_id(&headers), "abc-123");
    }
}
