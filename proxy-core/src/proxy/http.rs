//! Routing one HTTP request: decide by the caller's scope, apply the rule's filters,
//! and forward to a backend endpoint (or answer locally).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;

use super::access_log::{request_id, HttpRecord, LoggedBody};
use super::deadline;
use super::body::{self, Body};
use super::connection::ConnContext;
use super::cors_reply::{self, CorsStep};
use super::idle;
use super::caller::Caller;
use super::mesh_path::MeshPath;
use super::headers::{is_grpc, is_upgrade_request, strip_hop_by_hop};
use super::local_reply::{self, LocalReply};
use super::mirror_body::{self, BodyCopy, MIRROR_BODY_LIMIT};
use super::upstream::{UpstreamError, UpstreamVersion};
use super::Proxy;
use crate::config::{AppProtocol, Decision, EndpointSet, ProxyConfig};
use crate::limits::Permit;
use crate::metrics::{ProxyMetrics, RequestLabelsRef, RequestRecord, StatusClass};
use crate::routes::{
    normalize_path, BackendTarget, HeaderModifier, MatchedRule, RequestView, RetryPolicy, RuleAction, Timeouts,
};

/// Where a request is sent once routing is done.
pub(super) struct Target<'a> {
    /// The caller's source of upstream connections.
    pub source: &'a Caller,
    pub endpoints: &'a EndpointSet,
    pub protocol: AppProtocol,
    /// `namespace/name:port` of the backend (built with the configuration).
    pub label: &'a Arc<str>,
}

/// Facts about the routing outcome, for the metrics and the access log. The labels
/// are the ones built with the configuration ("" when none applied).
pub(super) struct Routed<'a> {
    pub route: &'a Arc<str>,
    pub rule: &'a Arc<str>,
    pub backend: &'a Arc<str>,
    pub endpoint: Option<SocketAddr>,
    /// From sending to the backend to its response head (the last attempt's).
    pub backend_elapsed: Option<Duration>,
}

/// The shared empty label.
fn no_label() -> &'static Arc<str> {
    static EMPTY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));
    &EMPTY
}

impl Default for Routed<'_> {
    fn default() -> Self {
        Self { route: no_label(), rule: no_label(), backend: no_label(), endpoint: None, backend_elapsed: None }
    }
}

/// A request's answer, and the caller's request permit, which the connection keeps
/// with the response body until the body is sent in full or dropped (so the permit
/// rides in the connection's own body wrapper, not in a box of its own).
pub struct Answer {
    pub response: Response<Body>,
    pub permit: Option<Permit>,
}

pub async fn handle(proxy: Arc<Proxy>, ctx: Arc<ConnContext>, request: Request<Incoming>) -> Answer {
    let started = Instant::now();
    let grpc = is_grpc(request.headers());
    // Access-log facts are gathered only for the requests that will be logged.
    let logged = proxy.access_log.should_log().then(|| {
        let request_bytes = http_body::Body::size_hint(request.body()).exact();
        let path = request.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
        (request_id(request.headers()), request.method().to_string(), path, request_bytes)
    });
    // One snapshot of the configuration for the request head, borrowed.
    let config = proxy.config.current();
    let mut routed = Routed::default();
    let (response, permit) = match proxy.budgets.request(&ctx.budget) {
        Ok(permit) => (route(&proxy, &config, &ctx, request, grpc, &mut routed).await, Some(permit)),
        Err(limit) => {
            let namespace = ctx.caller.as_ref().map_or_else(|| Arc::from(""), |w| w.namespace.clone());
            proxy.refused(limit, &namespace, ctx.caller_name().as_deref().unwrap_or(""));
            (LocalReply::Limited(limit).response(grpc), None)
        }
    };
    let head_elapsed = started.elapsed();
    if let Some(metrics) = &proxy.metrics {
        record_metrics(metrics, &ctx, &routed, response.status().as_u16(), head_elapsed);
    }
    let Some((request_id, method, path, request_bytes)) = logged else {
        return Answer { response, permit };
    };
    let caller = ctx.caller_of(&config);
    let mesh_path = routed.endpoint.map(|e| MeshPath::of(&config, e));
    let record = HttpRecord {
        request_id,
        caller_namespace: caller.map(|w| w.namespace.to_string()).unwrap_or_default(),
        caller_pod: caller.map(|w| w.name.to_string()).unwrap_or_default(),
        caller_workload: caller.map(|w| w.workload.to_string()).unwrap_or_default(),
        client: ctx.peer.to_string(),
        service: ctx.service_label().to_owned(),
        dialled: ctx.origin.destination.to_string(),
        method,
        path,
        grpc,
        route: routed.route.to_string(),
        rule: routed.rule.to_string(),
        backend: routed.backend.to_string(),
        endpoint: routed.endpoint.map(|e| e.to_string()).unwrap_or_default(),
        source_identity: ctx.source.identity().map(|id| id.to_string()).unwrap_or_default(),
        destination_identity: mesh_path.as_ref().and_then(|p| p.destination_identity()).map(|id| id.to_string()).unwrap_or_default(),
        tunnel: mesh_path.as_ref().map_or("none", |p| p.tunnel()),
        status: response.status().as_u16(),
        request_bytes,
        head_ms: head_elapsed.as_secs_f64() * 1000.0,
        backend_ms: routed.backend_elapsed.map(|d| d.as_secs_f64() * 1000.0),
        started,
    };
    let (parts, body) = response.into_parts();
    Answer { response: Response::from_parts(parts, body::boxed(LoggedBody::new(body, record))), permit }
}

/// Counts one request in the metrics (lock-free: see `crate::metrics`; the labels
/// are shared, not built per request).
fn record_metrics(metrics: &ProxyMetrics, ctx: &ConnContext, routed: &Routed<'_>, status: u16, elapsed: Duration) {
    let (caller_namespace, caller_workload) = match &ctx.caller {
        Some(w) => (&*w.namespace, &*w.workload),
        None => ("", ""),
    };
    metrics.request(RequestRecord {
        // Borrowed: no label is cloned per request (see `metrics::LabelKey`).
        labels: RequestLabelsRef {
            caller_namespace,
            caller_workload,
            service: ctx.service_arc(),
            route: routed.route,
            rule: routed.rule,
            backend: routed.backend,
            status_class: StatusClass::of(status).label(),
        },
        duration_seconds: elapsed.as_secs_f64(),
        backend_seconds: routed.backend_elapsed.map(|d| d.as_secs_f64()),
    });
}

/// Routes one request with `config`, the snapshot current when it arrived (so changes
/// apply to open connections).
async fn route<'a>(
    proxy: &Arc<Proxy>,
    config: &'a ProxyConfig,
    ctx: &'a ConnContext,
    request: Request<Incoming>,
    grpc: bool,
    routed: &mut Routed<'a>,
) -> Response<Body> {
    let Some(service) = config.service(ctx.origin.destination) else {
        return LocalReply::ServiceGone.response(grpc);
    };
    let caller_namespace = ctx.caller_of(config).map_or("", |w| &*w.namespace);
    let (mut parts, body) = request.into_parts();
    if let Err(error) = normalize_request_path(&mut parts) {
        tracing::debug!(%error, path = parts.uri.path(), "refused request path");
        return LocalReply::InvalidPath.response(grpc);
    }
    let decision = service.routes.decide(caller_namespace, &RequestView::from_parts(&parts));
    match decision {
        Decision::NoRoutes => {
            // The dialled Service port is the backend (its label is the connection's).
            let target = Target {
                source: &ctx.source,
                endpoints: &service.endpoints,
                protocol: service.protocol,
                label: ctx.service_arc(),
            };
            routed.backend = target.label;
            forward(proxy, config, parts, body::boxed(body), &target, Timeouts::default(), None, grpc, routed).await
        }
        Decision::NoMatch => LocalReply::NoRouteMatched.response(grpc),
        Decision::Matched(matched) => {
            routed.route = &matched.labels.route;
            routed.rule = &matched.labels.rule;
            let cors = match cors_reply::before(matched.rule, &parts) {
                CorsStep::Answer(response) => return response,
                CorsStep::Forward(cors) => cors,
            };
            let response = apply_rule(proxy, config, &ctx.source, &mut parts, body, matched, grpc, routed).await;
            cors_reply::after(response, cors)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn apply_rule<'a>(
    proxy: &Arc<Proxy>,
    config: &'a ProxyConfig,
    source: &Caller,
    parts: &mut http::request::Parts,
    body: Incoming,
    matched: MatchedRule<'a>,
    grpc: bool,
    routed: &mut Routed<'a>,
) -> Response<Body> {
    let rule = matched.rule;
    if let Some(modifier) = &rule.filters.request_headers {
        modifier.apply(&mut parts.headers);
    }
    let response = match &rule.action {
        RuleAction::Redirect(redirect) => {
            let authority = request_authority(parts).unwrap_or_default();
            let location = redirect.location(
                "http",
                &authority,
                parts.uri.path(),
                parts.uri.query(),
                matched.path_match(),
            );
            local_reply::redirect(redirect.status.status(), &location)
        }
        RuleAction::Forward(forward_action) => {
            let Some((backend, backend_label)) = forward_action.backends.pick_labelled() else {
                return finish(LocalReply::NoBackend.response(grpc), &rule.filters.response_headers, None);
            };
            let BackendTarget::Service(service_backend) = &backend.target else {
                return finish(LocalReply::NoBackend.response(grpc), &rule.filters.response_headers, None);
            };
            if let Some(rewrite) = &forward_action.rewrite {
                if let Some(hostname) = &rewrite.hostname {
                    set_authority(parts, hostname);
                }
                if let Some(path) = &rewrite.path {
                    let new_path = path.apply(parts.uri.path(), matched.path_match());
                    set_path(parts, &new_path);
                }
            }
            if let Some(modifier) = &backend.filters.request_headers {
                modifier.apply(&mut parts.headers);
            }
            let mirrors: Vec<&BackendTarget> =
                rule.filters.mirrors.iter().filter(|m| m.sampled()).map(|m| &m.backend).collect();
            let (body, copies) = mirror_body::tee(body::boxed(body), MIRROR_BODY_LIMIT, mirrors.len());
            for (mirror, copy) in mirrors.into_iter().zip(copies) {
                spawn_mirror(proxy, source.clone(), parts, mirror, copy);
            }
            let target = Target {
                source,
                endpoints: &service_backend.endpoints,
                protocol: service_backend.protocol,
                label: backend_label,
            };
            routed.backend = backend_label;
            let parts_owned = take_parts(parts);
            let retry = rule.retry.as_ref();
            let response = forward(proxy, config, parts_owned, body, &target, rule.timeouts, retry, grpc, routed).await;
            return finish(response, &rule.filters.response_headers, backend.filters.response_headers.as_ref());
        }
    };
    finish(response, &rule.filters.response_headers, None)
}

/// Applies the rule's, then the backend's, response header modifiers.
fn finish(mut response: Response<Body>, rule: &Option<HeaderModifier>, backend: Option<&HeaderModifier>) -> Response<Body> {
    if let Some(modifier) = rule {
        modifier.apply(response.headers_mut());
    }
    if let Some(modifier) = backend {
        modifier.apply(response.headers_mut());
    }
    response
}

fn take_parts(parts: &mut http::request::Parts) -> http::request::Parts {
    let (mut empty, _) = Request::new(()).into_parts();
    std::mem::swap(&mut empty, parts);
    empty
}

/// The authority the client addressed: `:authority` for HTTP/2, `Host` for HTTP/1.1.
fn request_authority(parts: &http::request::Parts) -> Option<String> {
    if let Some(authority) = parts.uri.authority() {
        return Some(authority.to_string());
    }
    parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned)
}

fn set_authority(parts: &mut http::request::Parts, host: &str) {
    if let Ok(value) = HeaderValue::from_str(host) {
        parts.headers.insert(header::HOST, value);
    }
    if parts.uri.authority().is_some() {
        if let Ok(authority) = host.parse::<Authority>() {
            let mut uri_parts = parts.uri.clone().into_parts();
            uri_parts.authority = Some(authority);
            if let Ok(uri) = Uri::from_parts(uri_parts) {
                parts.uri = uri;
            }
        }
    }
}

/// Rewrites the request's path to its normalised form (see `routes::normalize_path`), so
/// that routing and the backend see the same path. CONNECT (authority-form) and `*`
/// have no origin path and are left alone; so are an absolute-form target's scheme and
/// authority.
fn normalize_request_path(parts: &mut http::request::Parts) -> Result<(), crate::routes::InvalidPath> {
    if parts.method == http::Method::CONNECT {
        return Ok(());
    }
    let normalized = match normalize_path(parts.uri.path())? {
        std::borrow::Cow::Borrowed(_) => return Ok(()),
        std::borrow::Cow::Owned(path) => path,
    };
    set_path(parts, &normalized);
    if parts.uri.path() != normalized {
        // Unreachable for a path the server accepted; refuse rather than route on the old path.
        return Err(crate::routes::InvalidPath { offset: 0 });
    }
    Ok(())
}

fn set_path(parts: &mut http::request::Parts, path: &str) {
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let Ok(pq) = path_and_query.parse::<PathAndQuery>() else { return };
    let mut uri_parts = parts.uri.clone().into_parts();
    uri_parts.path_and_query = Some(pq);
    if let Ok(uri) = Uri::from_parts(uri_parts) {
        parts.uri = uri;
    }
}

pub(super) fn upstream_version(protocol: AppProtocol, downstream: Version) -> UpstreamVersion {
    match protocol {
        AppProtocol::H2c => UpstreamVersion::Http2,
        // HTTP/2 with prior knowledge (h2c, e.g. gRPC) stays HTTP/2 on `appProtocol:
        // http` ports too: a client only sends it to a server that speaks it.
        AppProtocol::Http | AppProtocol::Tcp | AppProtocol::Detect => {
            if downstream == Version::HTTP_2 {
                UpstreamVersion::Http2
            } else {
                UpstreamVersion::Http1
            }
        }
    }
}

/// `Host` for an HTTP/1.1 request: the URI's authority when it has one (HTTP/2 or
/// absolute-form downstream), else the first `Host` value (kept as it is when it is the
/// only one, as for nearly every HTTP/1.1 request: nothing to copy).
fn set_host_from_authority(parts: &mut http::request::Parts) {
    let value = match parts.uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => {
            let mut hosts = parts.headers.get_all(header::HOST).iter();
            let first = hosts.next().cloned();
            if hosts.next().is_none() {
                return;
            }
            first
        }
    };
    if let Some(value) = value {
        parts.headers.insert(header::HOST, value);
    }
}

/// Builds the upstream request: origin-form URI and `Host` for HTTP/1.1; absolute URI
/// (which carries `:authority`) for HTTP/2.
pub(super) fn upstream_request(mut parts: http::request::Parts, body: Body, version: UpstreamVersion, upgrade: bool) -> Request<Body> {
    strip_hop_by_hop(&mut parts.headers, upgrade);
    let path_and_query = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    match version {
        UpstreamVersion::Http1 => {
            set_host_from_authority(&mut parts);
            parts.version = Version::HTTP_11;
            parts.uri = Uri::from(path_and_query);
        }
        UpstreamVersion::Http2 => {
            let authority = request_authority(&parts);
            parts.version = Version::HTTP_2;
            parts.headers.remove(header::HOST);
            let mut uri_parts = http::uri::Parts::default();
            uri_parts.scheme = Some(Scheme::HTTP);
            uri_parts.authority = authority.as_deref().and_then(|a| a.parse().ok());
            uri_parts.path_and_query = Some(path_and_query.clone());
            parts.uri = Uri::from_parts(uri_parts).unwrap_or_else(|_| Uri::from(path_and_query));
        }
    }
    Request::from_parts(parts, body)
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    proxy: &Arc<Proxy>,
    config: &ProxyConfig,
    mut parts: http::request::Parts,
    body: Body,
    target: &Target<'_>,
    timeouts: Timeouts,
    retry: Option<&RetryPolicy>,
    grpc: bool,
    routed: &mut Routed<'_>,
) -> Response<Body> {
    let upgrade = parts.version == Version::HTTP_11 && is_upgrade_request(&parts.headers);
    if let (Some(policy), false) = (retry, upgrade) {
        // Boxed, as the other rarer paths below: every request's future is moved whole
        // (hyper moves it into its connection), so it holds only the common path.
        return Box::pin(super::retry::forward(proxy, config, parts, body, target, timeouts, policy, grpc, routed)).await;
    }
    let Some(endpoint) = target.endpoints.pick() else {
        tracing::debug!(backend = %target.label, "no ready endpoints");
        return LocalReply::NoEndpoints.response(grpc);
    };
    routed.endpoint = Some(endpoint);
    if upgrade {
        return Box::pin(forward_upgrade(proxy, parts, body, target.source, endpoint)).await;
    }
    let version = upstream_version(target.protocol, parts.version);
    // The response keeps no reference to the downstream's extensions.
    parts.extensions = http::Extensions::new();
    let request = upstream_request(parts, body, version, false);
    let sent_at = tokio::time::Instant::now();
    // The route's timeouts run until the response body's end, not only its head.
    let deadline = deadline::deadline(&timeouts, sent_at);
    let attempt = proxy.upstream.send(config, target.source, endpoint, version, request);
    let result = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, attempt).await.ok(),
        None => Some(attempt.await),
    };
    routed.backend_elapsed = Some(sent_at.elapsed());
    match result {
        None => LocalReply::Timeout.response(grpc),
        Some(Ok(response)) => downstream_response(response, deadline),
        Some(Err(error)) => error_reply(&error, target.label, grpc),
    }
}

/// A backend's response as the caller gets it: hop-by-hop headers stripped, the body
/// failing at the route's deadline.
pub(super) fn downstream_response(response: Response<Body>, deadline: Option<tokio::time::Instant>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    let body = match deadline {
        Some(deadline) => deadline::bounded(body, deadline),
        None => body,
    };
    Response::from_parts(parts, body)
}

/// The local reply for a failed upstream request (logged).
pub(super) fn error_reply(error: &UpstreamError, backend: &str, grpc: bool) -> Response<Body> {
    tracing::info!(%error, %backend, "upstream request failed");
    if error.is_forbidden() {
        LocalReply::Forbidden.response(grpc)
    } else if error.is_invalid_path() {
        LocalReply::InvalidPath.response(grpc)
    } else if error.is_connect() {
        LocalReply::ConnectFailed.response(grpc)
    } else {
        LocalReply::UpstreamError.response(grpc)
    }
}

/// Forwards an HTTP/1.1 upgrade (e.g. WebSocket) and, on `101 Switching Protocols`,
/// splices the two upgraded connections together.
async fn forward_upgrade(
    proxy: &Arc<Proxy>,
    mut parts: http::request::Parts,
    body: Body,
    source: &Caller,
    endpoint: SocketAddr,
) -> Response<Body> {
    let downstream_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let request = upstream_request(parts, body, UpstreamVersion::Http1, true);
    let mut response = match proxy.upstream.send_upgrade(source, endpoint, request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(%error, "upstream upgrade request failed");
            return if error.is_forbidden() {
                LocalReply::Forbidden.response(false)
            } else if error.is_connect() {
                LocalReply::ConnectFailed.response(false)
            } else {
                LocalReply::UpstreamError.response(false)
            };
        }
    };
    if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        if let Some(downstream_upgrade) = downstream_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let idle_timeout = proxy.options.timeouts.stream_idle;
            tokio::spawn(async move {
                match tokio::try_join!(downstream_upgrade, upstream_upgrade) {
                    Ok((down, up)) => {
                        let mut down = hyper_util::rt::TokioIo::new(down);
                        let mut up = hyper_util::rt::TokioIo::new(up);
                        let copied = idle::copy_until_idle(&mut down, &mut up, idle_timeout).await;
                        tracing::debug!(ended = ?copied.ended, "upgraded connection ended");
                    }
                    Err(error) => tracing::debug!(%error, "upgrade failed"),
                }
            });
        }
        let (parts, body) = response.into_parts();
        return Response::from_parts(parts, body::boxed(body));
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    Response::from_parts(parts, body::boxed(body))
}

/// Sends a copy of the request (its body once it has been read whole, see
/// [`mirror_body`]) to a mirror backend and discards the answer. Mirrors take a slot of
/// the node-wide cap (none free: dropped) and are abandoned after the mirror timeout.
fn spawn_mirror(
    proxy: &Arc<Proxy>,
    source: Caller,
    parts: &http::request::Parts,
    backend: &BackendTarget,
    copy: tokio::sync::oneshot::Receiver<BodyCopy>,
) {
    let Some(endpoint) = backend.pick_endpoint() else { return };
    let protocol = match backend {
        BackendTarget::Service(s) => s.protocol,
        BackendTarget::Invalid { .. } => return,
    };
    let mut head = Request::new(());
    *head.method_mut() = parts.method.clone();
    *head.uri_mut() = parts.uri.clone();
    *head.version_mut() = parts.version;
    *head.headers_mut() = parts.headers.clone();
    let (head, ()) = head.into_parts();
    let version = upstream_version(protocol, head.version);
    let Some(slot) = proxy.mirrors.try_take() else { return };
    let proxy = proxy.clone();
    tokio::spawn(async move {
        let mirror = async {
            // No copy: the body was too large (logged), failed, or was never read whole.
            let Ok(copy) = copy.await else { return };
            let request = upstream_request(head, copy.into_body(), version, false);
            let config = proxy.config.load();
            match proxy.upstream.send(&config, &source, endpoint, version, request).await {
                Ok(response) => tracing::debug!(status = %response.status(), %endpoint, "mirror answered"),
                Err(error) => tracing::debug!(%error, "mirror request failed"),
            }
        };
        if tokio::time::timeout(proxy.mirrors.timeout(), mirror).await.is_err() {
            tracing::debug!(%endpoint, "mirror request timed out");
        }
        drop(slot);
    });
}
#[cfg(test)]
mod future_size {
    use super::*;

    fn future_size<F, Fut>(_: F) -> usize
    where
        F: Fn(Arc<Proxy>, Arc<ConnContext>, Request<Incoming>) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// hyper moves each request's future whole into the connection's slot, so its size is
    /// copied on every request: retries, upgrades and upstream connects are boxed, so that
    /// the future holds only the common path (10,104 bytes before they were).
    #[test]
    fn a_request_future_holds_only_the_common_path() {
        let size = future_size(handle);
        assert!(size <= 4_608, "a request's future is {size} bytes");
    }
}
