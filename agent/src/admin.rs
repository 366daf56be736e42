//! The admin API: health, readiness, configuration dump, live log level and
//! access-log switches. It answers on up to three listeners ([`Surface`]):
//!
//! - the admin listener (`--admin-addr`, loopback only unless `--admin-allow-remote`):
//!   every path below;
//! - the health listener (`--health-addr`, for kubelet probes): only `/healthz` and
//!   `/ready`;
//! - the metrics listener (`--metrics-addr`, for Prometheus): only `/metrics`, which
//!   names workloads and Services but no pod UIDs or cgroups.
//!
//! | path | method | what |
//! |---|---|---|
//! | `/healthz` | GET | liveness: 200 while the agent runs |
//! | `/ready` | GET | 200 once redirection is attached and the first configuration is served, else 503 |
//! | `/config_dump` | GET | JSON: served configuration (workloads, Services, routes per scope), route status, problems |
//! | `/redirect` | GET | JSON: eBPF counters and tracked connection counts |
//! | `/logging` | GET/POST | current filter; `POST /logging?level=debug` changes it |
//! | `/metrics` | GET | Prometheus metrics, OpenMetrics text |
//! | `/access_log` | GET/POST | `POST /access_log?enabled=true&sample=0.1` switches (and samples) access logs |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;

use crate::logging::LogControl;
use crate::node::Node;

pub struct Admin {
    pub node: Arc<Node>,
    pub logs: Option<LogControl>,
}

/// Which paths one listener answers; everything else is 404 there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// Every path, including the dumps and the write endpoints.
    Admin,
    /// `/healthz` and `/ready` only.
    Health,
    /// `/metrics` only.
    Metrics,
}

impl Surface {
    fn serves(self, path: &str) -> bool {
        match self {
            Surface::Admin => true,
            Surface::Health => matches!(path, "/healthz" | "/ready"),
            Surface::Metrics => path == "/metrics",
        }
    }
}

pub async fn serve(admin: Arc<Admin>, surface: Surface, listener: TcpListener, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => { tracing::warn!(%error, "admin accept failed"); continue; }
            },
        };
        serve_connection(admin.clone(), surface, stream);
    }
}

/// Serves the whole admin API on a unix socket as well (`--admin-socket`, in the
/// agent pod's own directory; the kubelet's exec probes reach this pod's agent there,
/// see [`crate::probe`]).
pub async fn serve_unix(admin: Arc<Admin>, listener: UnixListener, shutdown: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => { tracing::warn!(%error, "admin socket accept failed"); continue; }
            },
        };
        serve_connection(admin.clone(), Surface::Admin, stream);
    }
}

/// Binds the admin unix socket at `path`, replacing a stale one, and serves it.
pub fn spawn_unix(admin: Arc<Admin>, path: &Path, shutdown: CancellationToken) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("removing the stale admin socket {}: {e}", path.display()),
    }
    let listener = UnixListener::bind(path).map_err(|e| anyhow::anyhow!("binding the admin socket {}: {e}", path.display()))?;
    tokio::spawn(serve_unix(admin, listener, shutdown));
    Ok(())
}

fn serve_connection<S>(admin: Arc<Admin>, surface: Surface, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |req| {
            let admin = admin.clone();
            async move { Ok::<_, Infallible>(handle_on(&admin, surface, req)) }
        });
        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    });
}

/// Binds the admin listener. A non-loopback address is refused unless `allow_remote`:
/// the admin API has no authentication, and whoever reaches it can switch logs and read
/// every workload's UID and cgroup.
pub async fn bind(addr: SocketAddr, allow_remote: bool) -> anyhow::Result<TcpListener> {
    if !addr.ip().is_loopback() && !allow_remote {
        anyhow::bail!(
            "refusing to serve the admin API on non-loopback {addr}: it is unauthenticated \
             (use --health-addr and --metrics-addr for probes and scraping, or --admin-allow-remote)"
        );
    }
    bind_any(addr, "the admin API").await
}

/// Binds a listener for `what` (any address) with SO_REUSEPORT, so that a successor
/// agent can start beside this one (see [`crate::handover`]).
pub async fn bind_any(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    let listener = crate::handover::bind_shared(addr).with_context(|| format!("binding {what} to {addr}"))?;
    Ok(TcpListener::from_std(listener)?)
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .unwrap_or_default()
}

fn json(value: &serde_json::Value) -> Response<Full<Bytes>> {
    reply(StatusCode::OK, "application/json", serde_json::to_vec_pretty(value).unwrap_or_default())
}

fn query_param<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// `{"enabled": bool, "sample": rate}`.
fn access_log_state(admin: &Admin) -> Response<Full<Bytes>> {
    let log = admin.node.proxy().access_log();
    json(&serde_json::json!({"enabled": log.enabled(), "sample": log.sample()}))
}

fn handle_on(admin: &Admin, surface: Surface, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let text = "text/plain; charset=utf-8";
    match (surface, req.method(), req.uri().path()) {
        (_, _, path) if !surface.serves(path) => reply(StatusCode::NOT_FOUND, text, "not found\n"),
        // Reachable from pods: say whether, never what (errors name cgroups).
        (Surface::Health, &Method::GET, "/ready") if admin.node.is_ready() => {
            let degraded = admin.node.readiness_text() != "ready\n";
            reply(StatusCode::OK, text, if degraded { "ready, degraded\n" } else { "ready\n" })
        }
        (Surface::Health | Surface::Metrics, method, _) if method != Method::GET => {
            reply(StatusCode::METHOD_NOT_ALLOWED, text, "read-only listener\n")
        }
        _ => handle(admin, req),
    }
}

fn handle(admin: &Admin, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let text = "text/plain; charset=utf-8";
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => reply(StatusCode::OK, text, "ok\n"),
        (&Method::GET, "/ready") => {
            if admin.node.is_ready() {
                reply(StatusCode::OK, text, admin.node.readiness_text())
            } else {
                reply(StatusCode::SERVICE_UNAVAILABLE, text, "not ready\n")
            }
        }
        (&Method::GET, "/config_dump") => json(&admin.node.config_dump()),
        (&Method::GET, "/redirect") => json(&admin.node.redirect_dump()),
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            admin.node.metrics().encode(),
        ),
        (&Method::GET, "/logging") => match &admin.logs {
            Some(logs) => reply(StatusCode::OK, text, format!("{}\n", logs.current())),
            None => reply(StatusCode::NOT_FOUND, text, "log control unavailable\n"),
        },
        (&Method::POST, "/logging") => match (&admin.logs, query_param(&req, "level")) {
            (Some(logs), Some(level)) => match logs.set(level) {
                Ok(()) => reply(StatusCode::OK, text, format!("{}\n", logs.current())),
                Err(e) => reply(StatusCode::BAD_REQUEST, text, format!("invalid level: {e}\n")),
            },
            (None, _) => reply(StatusCode::NOT_FOUND, text, "log control unavailable\n"),
            (_, None) => reply(StatusCode::BAD_REQUEST, text, "missing ?level=\n"),
        },
        (&Method::GET, "/access_log") => access_log_state(admin),
        (&Method::POST, "/access_log") => {
            let log = admin.node.proxy().access_log();
            let enabled = match query_param(&req, "enabled") {
                None => None,
                Some(v @ ("true" | "false")) => Some(v == "true"),
                Some(_) => return reply(StatusCode::BAD_REQUEST, text, "use ?enabled=true or ?enabled=false\n"),
            };
            let sample = match query_param(&req, "sample").map(str::parse::<f64>) {
                None => None,
                Some(Ok(rate)) if (0.0..=1.0).contains(&rate) => Some(rate),
                Some(_) => return reply(StatusCode::BAD_REQUEST, text, "sample must be a number from 0 to 1\n"),
            };
            if enabled.is_none() && sample.is_none() {
                return reply(StatusCode::BAD_REQUEST, text, "use ?enabled=true|false and/or ?sample=0..1\n");
            }
            if let Some(rate) = sample {
                if let Err(e) = log.set_sample(rate) {
                    return reply(StatusCode::BAD_REQUEST, text, format!("{e}\n"));
                }
            }
            if let Some(on) = enabled {
                log.set_enabled(on);
            }
            access_log_state(admin)
        }
        _ => reply(StatusCode::NOT_FOUND, text, "not found\n"),
    }
}
