//! HTTP enforcement for pods whose policies have HTTP rules: the inbound stream (an
//! HBONE tunnel, or a same-node hand-over) is served as HTTP (HTTP/1.1 or HTTP/2,
//! detected), every request is decided with its method and normalised path, refused
//! ones get 403 (a path that cannot be normalised 400), and allowed ones are sent, with
//! the normalised path, over one client connection to the pod per stream (HTTP/2 when
//! the caller speaks HTTP/2). Upgrades (WebSocket, CONNECT) are refused with 501.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::enforcer::{describe, Enforcer};
use super::path::normalize;
use crate::config::ConfigHandle;
use crate::identity::SpiffeId;
use crate::proxy::body::{self, Body};
use crate::proxy::AccessLog;

/// Who calls which pod on a filtered stream.
#[derive(Clone)]
pub struct FilterTarget {
    /// The caller's verified identity (never from headers).
    pub peer: SpiffeId,
    /// The pod address on this node.
    pub destination: SocketAddr,
    /// Read for every request: decisions follow the current policies.
    pub config: ConfigHandle,
    pub enforcer: Arc<Enforcer>,
    pub access_log: Arc<AccessLog>,
}

/// The client side towards the pod, made on the first request.
enum PodConnection {
    Unused(Option<TcpStream>),
    Http1(http1::SendRequest<Incoming>),
    Http2(http2::SendRequest<Incoming>),
    /// The handshake failed: every later request fails too (one connection per stream).
    Gone,
}

struct Filter {
    target: FilterTarget,
    pod: tokio::sync::Mutex<PodConnection>,
}

/// Serves `downstream` as HTTP until it ends, forwarding allowed requests to `pod`.
pub async fn serve_filtered<S>(downstream: S, pod: TcpStream, target: FilterTarget)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let filter = Arc::new(Filter { target, pod: tokio::sync::Mutex::new(PodConnection::Unused(Some(pod))) });
    let service = hyper::service::service_fn(move |request| {
        let filter = filter.clone();
        async move { Ok::<_, Infallible>(filter.handle(request).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    if let Err(error) = builder.serve_connection(TokioIo::new(downstream), service).await {
        tracing::debug!(%error, "filtered inbound stream ended");
    }
}

fn reply(status: StatusCode, message: &'static str) -> Response<Body> {
    let mut response = Response::new(body::full(message));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

fn is_upgrade(request: &Request<Incoming>) -> bool {
    request.method() == Method::CONNECT || request.headers().contains_key(header::UPGRADE)
}

impl Filter {
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        if is_upgrade(&request) {
            return reply(StatusCode::NOT_IMPLEMENTED, "upgrades are not supported for pods with HTTP authorization rules\n");
        }
        let path = match normalize(request.uri().path()) {
            Ok(path) => path,
            Err(rejection) => {
                tracing::debug!(%rejection, peer = %self.target.peer, "request path refused");
                return reply(StatusCode::BAD_REQUEST, "invalid request path\n");
            }
        };
        let config = self.target.config.load();
        let target = &self.target;
        let decision = target.enforcer.request(&config.authorization, &target.peer, target.destination, request.method().as_str(), &path);
        let response = if decision.is_allowed() {
            match self.forward(request_with_path(request, &path)).await {
                Ok(response) => response.map(body::boxed),
                Err(error) => {
                    tracing::info!(%error, destination = %target.destination, "pod request failed on a filtered stream");
                    reply(StatusCode::BAD_GATEWAY, "upstream error\n")
                }
            }
        } else {
            reply(StatusCode::FORBIDDEN, "access denied by authorization policy\n")
        };
        if target.access_log.should_log() {
            tracing::info!(
                target: "ambit::access",
                kind = "authz_request",
                source_identity = %target.peer,
                backend = %target.destination,
                path = %path,
                status = response.status().as_u16(),
                authz = %describe(&decision),
            );
        }
        response
    }

    /// Sends `request` to the pod (the connection is made on the first request, in
    /// the version the caller speaks).
    async fn forward(&self, request: Request<Incoming>) -> Result<Response<Incoming>, ForwardError> {
        let mut pod = self.pod.lock().await;
        if let PodConnection::Unused(stream) = &mut *pod {
            let stream = stream.take().ok_or(ForwardError::Gone)?;
            *pod = PodConnection::Gone;
            *pod = handshake(stream, request.version() == Version::HTTP_2).await?;
        }
        match &mut *pod {
            PodConnection::Http1(sender) => {
                sender.ready().await?;
                let response = sender.send_request(origin_form(request));
                drop(pod);
                Ok(response.await?)
            }
            PodConnection::Http2(sender) => {
                let mut sender = sender.clone();
                drop(pod);
                sender.ready().await?;
                Ok(sender.send_request(request).await?)
            }
            PodConnection::Unused(_) | PodConnection::Gone => Err(ForwardError::Gone),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error("the connection to the pod failed earlier")]
    Gone,
}

async fn handshake(stream: TcpStream, http2: bool) -> Result<PodConnection, hyper::Error> {
    let io = TokioIo::new(stream);
    if http2 {
        let (sender, connection) = http2::Builder::new(TokioExecutor::new()).timer(TokioTimer::new()).handshake(io).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(PodConnection::Http2(sender))
    } else {
        let (sender, connection) = http1::Builder::new().handshake(io).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(PodConnection::Http1(sender))
    }
}

/// `request` with its path replaced by the normalised `path` (the query kept): the pod
/// sees exactly what was authorized.
pub fn request_with_path<B>(mut request: Request<B>, path: &str) -> Request<B> {
    if request.uri().path() == path {
        return request;
    }
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = request.uri().clone().into_parts();
    if let Ok(value) = path_and_query.parse() {
        parts.path_and_query = Some(value);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// An HTTP/1.1 request in origin form (an absolute-form target moves into `Host`).
fn origin_form(mut request: Request<Incoming>) -> Request<Incoming> {
    let Some(authority) = request.uri().authority().cloned() else { return request };
    if !request.headers().contains_key(header::HOST) {
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            request.headers_mut().insert(header::HOST, host);
        }
    }
    let path = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if let Ok(uri) = path.parse() {
        *request.uri_mut() = uri;
    }
    request
}
