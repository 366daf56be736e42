//! The signer's one listener (`--metrics-addr`, in its pod's network): `GET /metrics`
//! (Prometheus text), `GET /healthz` (the process serves) and `GET /ready` (the trust
//! bundle is published and the initial Pod list is in).

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::controller::SignerStats;

/// The metrics text.
pub fn metrics(stats: &SignerStats) -> String {
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, lines: Vec<(String, u64)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (labels, value) in lines {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    counter("ambit_signer_certificates_issued_total", "Workload certificates signed.", vec![(String::new(), SignerStats::get(&stats.issued))]);
    let by_reason = stats.denied_by_reason.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let denied = by_reason.into_iter().map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), n)).collect();
    counter("ambit_signer_requests_denied_total", "CertificateSigningRequests denied, by reason (ForgedRequest: a forged or broken PKCS#10).", denied);
    counter("ambit_signer_requests_failed_total", "Approved requests marked Failed (signing failed, or approved against the policy).", vec![(String::new(), SignerStats::get(&stats.failed))]);
    let _ = writeln!(out, "# HELP ambit_signer_ready Whether the bundle is published and the Pods are listed.\n# TYPE ambit_signer_ready gauge\nambit_signer_ready {}", u8::from(stats.ready.load(Ordering::Relaxed)));
    out
}

fn answer(stats: &SignerStats, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let ready = stats.ready.load(Ordering::Relaxed);
    let (status, body) = match (req.method() == http::Method::GET, req.uri().path()) {
        (true, "/metrics") => (StatusCode::OK, metrics(stats)),
        (true, "/healthz") => (StatusCode::OK, "ok\n".into()),
        (true, "/ready") if ready => (StatusCode::OK, "ready\n".into()),
        (true, "/ready") => (StatusCode::SERVICE_UNAVAILABLE, "not ready: publishing the trust bundle or listing Pods\n".into()),
        _ => (StatusCode::NOT_FOUND, "GET /metrics, /healthz or /ready\n".into()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// Serves until `stop`.
pub async fn serve(listener: TcpListener, stats: Arc<SignerStats>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let stats = stats.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let response = answer(&stats, &req);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
