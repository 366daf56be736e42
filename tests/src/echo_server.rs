//! The echo server a bed pod runs (`ambit-pod serve`): HTTP/1.1 + h2c on 8080,
//! HTTP over TLS on 8443, TCP echo on 9090 and gRPC (h2c) on 7070, all on
//! every address of the pod (IPv4 and IPv6), plus a server-first "banner" port 2525.
//!
//! Test-only extras on the HTTP port: `Upgrade: websocket` is answered with `101` and
//! the upgraded connection echoes raw bytes; `GET /__requests` returns the requests
//! this pod received (method, path, headers, body), newest last.
//!
//! Request headers that shape the answer (HTTP and gRPC ports):
//! - `x-echo-delay-ms: <ms>`: answer that much later (at most 60 s);
//! - `x-echo-status: <code>`: answer HTTP requests with that status;
//! - `x-echo-fail-key: <key>` with `x-echo-fail-times: <n>` (default 1): the first `n`
//!   requests carrying that key fail, later ones are answered normally. A failure is
//!   `x-echo-fail-status` (default 503) for HTTP, and for gRPC a trailers-only answer
//!   with that gRPC status (default 14, UNAVAILABLE). The count is per pod and key, so
//!   a test that wants a fresh count sends a fresh key (the conformance harness's
//!   `{unique}` placeholder). `x-echo-fail-delay-ms: <ms>` delays only the failures
//!   (e.g. past a route's `backendRequest` timeout). Failed requests are logged like
//!   any other.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::grpc_wire;

/// Echo ports, as the conformance echo containers listen.
pub const HTTP_PORT: u16 = 8080;
/// TLS port.
pub const TLS_PORT: u16 = 8443;
/// TCP echo port.
pub const TCP_PORT: u16 = 9090;
/// gRPC port.
pub const GRPC_PORT: u16 = 7070;
/// Server-first port: sends `220 <pod> ready\r\n` on connect, then echoes.
pub const BANNER_PORT: u16 = 2525;
/// Test-only path on the HTTP ports: the log of received requests (JSON array).
pub const REQUEST_LOG_PATH: &str = "/__requests";
/// Most requests kept in the request log (oldest dropped first).
const REQUEST_LOG_CAPACITY: usize = 2000;
/// Most body bytes kept per logged request.
const REQUEST_LOG_BODY_BYTES: usize = 128 * 1024;

/// Request header: sleep this many milliseconds before answering.
pub const DELAY_HEADER: &str = "x-echo-delay-ms";
/// Request header: answer with this status code.
pub const STATUS_HEADER: &str = "x-echo-status";
/// Request header: the key whose first requests fail (see the module documentation).
pub const FAIL_KEY_HEADER: &str = "x-echo-fail-key";
/// Request header: how many requests of the key fail (default 1).
pub const FAIL_TIMES_HEADER: &str = "x-echo-fail-times";
/// Request header: the failures' HTTP status (default 503) or gRPC status (default 14).
pub const FAIL_STATUS_HEADER: &str = "x-echo-fail-status";
/// Request header: delay only the failing requests by this many milliseconds.
pub const FAIL_DELAY_HEADER: &str = "x-echo-fail-delay-ms";
/// Most fail keys counted at once (all are forgotten when more come).
const FAIL_KEYS_CAPACITY: usize = 10_000;
/// Response header carrying the pod name.
pub const POD_HEADER: &str = "x-echo-pod";
/// Response header carrying the namespace.
pub const NAMESPACE_HEADER: &str = "x-echo-namespace";
/// Response header carrying the server port that answered.
pub const PORT_HEADER: &str = "x-echo-port";

/// Identity of the pod the server runs in.
#[derive(Debug, Clone)]
pub struct EchoIdentity {
    /// Pod name (reported as `pod` / `Hostname=`).
    pub pod: String,
    /// Namespace.
    pub namespace: String,
}

type Body = BoxBody<Bytes, Infallible>;

/// One request as kept in the request log.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, Vec<String>>,
    /// Body bytes received.
    pub body_len: usize,
    /// The body (lossy UTF-8, at most 128 KiB).
    pub body: String,
}

/// The requests a server received (bounded).
#[derive(Default)]
struct RequestLog(std::sync::Mutex<std::collections::VecDeque<LoggedRequest>>);

impl RequestLog {
    fn push(&self, entry: LoggedRequest) {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= REQUEST_LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(entry);
    }
    fn json(&self) -> String {
        let log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::to_string(&*log).unwrap_or_else(|_| "[]".into())
    }
}

/// Requests counted per fail key (see [`FAIL_KEY_HEADER`]).
#[derive(Default)]
struct FailCounts(std::sync::Mutex<std::collections::HashMap<String, u64>>);

impl FailCounts {
    /// Counts a request with `key`: true while it is among the first `times`.
    fn fails(&self, key: &str, times: u64) -> bool {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() >= FAIL_KEYS_CAPACITY && !counts.contains_key(key) {
            counts.clear();
        }
        let seen = counts.entry(key.to_owned()).or_insert(0);
        *seen += 1;
        *seen <= times
    }
}

/// What the fail switch asks of one request: the status to fail it with, if it fails.
fn planned_failure(headers: &HeaderMap, counts: &FailCounts, grpc: bool) -> Option<u64> {
    let key = headers.get(FAIL_KEY_HEADER)?.to_str().ok()?;
    let times = header_num(headers, FAIL_TIMES_HEADER).unwrap_or(1);
    let default = if grpc { 14 } else { 503 };
    counts.fails(key, times).then(|| header_num(headers, FAIL_STATUS_HEADER).unwrap_or(default))
}

/// The shared state of a pod's HTTP servers.
#[derive(Default)]
struct State {
    log: RequestLog,
    fails: FailCounts,
}

/// Binds every port, prints `READY` on stdout, then serves forever.
pub async fn serve(id: EchoIdentity) -> Result<()> {
    let id = Arc::new(id);
    let http = bind(HTTP_PORT)?;
    let tls = bind(TLS_PORT)?;
    let tcp = bind(TCP_PORT)?;
    let grpc = bind(GRPC_PORT)?;
    let banner = bind(BANNER_PORT)?;
    let state = Arc::new(State::default());
    let acceptor = tls_acceptor(&id.pod)?;
    {
        use std::io::Write;
        let mut out = std::io::stdout();
        writeln!(out, "READY")?;
        out.flush()?;
    }
    let a = tokio::spawn(serve_http(http, id.clone(), None, state.clone()));
    let b = tokio::spawn(serve_http(tls, id.clone(), Some(acceptor), state.clone()));
    let c = tokio::spawn(serve_tcp(tcp, None));
    let d = tokio::spawn(serve_http(grpc, id.clone(), None, state));
    let e = tokio::spawn(serve_tcp(banner, Some(format!("220 {} ready\r\n", id.pod))));
    let _ = tokio::join!(a, b, c, d, e);
    Ok(())
}

/// A dual-stack listener on `[::]:port`.
fn bind(port: u16) -> Result<TcpListener> {
    let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None)?;
    s.set_only_v6(false)?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)).into())
        .with_context(|| format!("binding port {port}"))?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(TcpListener::from_std(s.into())?)
}

fn tls_acceptor(pod: &str) -> Result<tokio_rustls::TlsAcceptor> {
    let cert = rcgen::generate_simple_self_signed(vec![pod.to_string(), "localhost".to_string()])?;
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key.into())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn serve_http(
    listener: TcpListener,
    id: Arc<EchoIdentity>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        let local = stream.local_addr().map(|a| a.port()).unwrap_or(0);
        let id = id.clone();
        let tls = tls.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(req, id.clone(), peer, local, state.clone()));
            let builder = auto::Builder::new(TokioExecutor::new());
            match tls {
                None => {
                    let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
                }
                Some(acceptor) => {
                    if let Ok(s) = acceptor.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                    }
                }
            }
        });
    }
}

/// TCP echo; with a banner, a server-first protocol that greets every connection first.
async fn serve_tcp(listener: TcpListener, banner: Option<String>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let banner = banner.clone();
        tokio::spawn(async move {
            if let Some(banner) = banner {
                if stream.write_all(banner.as_bytes()).await.is_err() {
                    return;
                }
            }
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
}

/// Facts about one received request.
struct Seen {
    host: String,
    method: String,
    path: String,
    proto: String,
    caller: IpAddr,
    headers: BTreeMap<String, Vec<String>>,
}

fn seen(req: &Request<Incoming>, peer: SocketAddr) -> Seen {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in req.headers() {
        headers
            .entry(canonical_name(name.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let host = req
        .headers()
        .get(http::header::HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    Seen {
        host,
        method: req.method().to_string(),
        path: req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_else(|| "/".into()),
        proto: format!("{:?}", req.version()),
        caller: peer.ip().to_canonical(),
        headers,
    }
}

/// `x-foo-bar` → `X-Foo-Bar`, the way Go's echo servers report names.
fn canonical_name(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

async fn handle(
    req: Request<Incoming>,
    id: Arc<EchoIdentity>,
    peer: SocketAddr,
    port: u16,
    state: Arc<State>,
) -> Result<Response<Body>, Infallible> {
    if req.method() == http::Method::GET && req.uri().path() == REQUEST_LOG_PATH {
        return Ok(Response::builder()
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(state.log.json())).boxed())
            .expect("valid response"));
    }
    let mut req = req;
    let websocket = req
        .headers()
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if websocket {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut io = TokioIo::new(upgraded);
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match io.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(http::header::CONNECTION, "upgrade")
            .header(http::header::UPGRADE, "websocket")
            .header(POD_HEADER, hv(&id.pod))
            .body(Full::new(Bytes::new()).boxed())
            .expect("valid response"));
    }
    let is_grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let facts = seen(&req, peer);
    let delay = header_num(req.headers(), DELAY_HEADER);
    let status = header_num(req.headers(), STATUS_HEADER);
    let failure = planned_failure(req.headers(), &state.fails, is_grpc);
    let fail_delay = failure.and(header_num(req.headers(), FAIL_DELAY_HEADER));
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    state.log.push(LoggedRequest {
        method: facts.method.clone(),
        path: facts.path.clone(),
        headers: facts.headers.clone(),
        body_len: body.len(),
        body: String::from_utf8_lossy(&body[..body.len().min(REQUEST_LOG_BODY_BYTES)]).into_owned(),
    });
    let total_delay = delay.unwrap_or(0).saturating_add(fail_delay.unwrap_or(0));
    if total_delay > 0 {
        tokio::time::sleep(Duration::from_millis(total_delay.min(60_000))).await;
    }
    let mut resp = match (failure, is_grpc) {
        (Some(code), true) => grpc_failure(code),
        (Some(code), false) => http_reply(&facts, &id, Some(code)),
        (None, true) => grpc_reply(&facts, &id, port, &body),
        (None, false) => http_reply(&facts, &id, status),
    };
    let h = resp.headers_mut();
    h.insert(POD_HEADER, hv(&id.pod));
    h.insert(NAMESPACE_HEADER, hv(&id.namespace));
    h.insert(PORT_HEADER, hv(&port.to_string()));
    Ok(resp)
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn header_num(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn http_reply(s: &Seen, id: &EchoIdentity, status: Option<u64>) -> Response<Body> {
    let json = serde_json::json!({
        "path": s.path,
        "host": s.host,
        "method": s.method,
        "proto": s.proto,
        "headers": s.headers,
        "namespace": id.namespace,
        "pod": id.pod,
        "ip": s.caller.to_string(),
    });
    let status = status
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(json.to_string())).boxed())
        .expect("valid response")
}

/// A trailers-only gRPC answer: the status in the response head, no message.
fn grpc_failure(code: u64) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("grpc-status", code.to_string())
        .header("grpc-message", "failed by x-echo-fail-key")
        .body(Full::new(Bytes::new()).boxed())
        .expect("valid response")
}

fn grpc_reply(s: &Seen, id: &EchoIdentity, port: u16, body: &[u8]) -> Response<Body> {
    let (code, text, reply) = if s.path != grpc_wire::ECHO_METHOD_PATH {
        (12, format!("unknown method {}", s.path), None)
    } else {
        match grpc_wire::decode_frame(body) {
            Err(e) => (3, e.to_string(), None),
            Ok(message) => {
                let mut lines = Vec::new();
                if !message.is_empty() {
                    lines.push(format!("Echo={message}"));
                }
                lines.push(format!("Hostname={}", id.pod));
                lines.push(format!("Namespace={}", id.namespace));
                lines.push(format!("ServicePort={port}"));
                lines.push(format!("Host={}", s.host));
                lines.push(format!("Method={}", s.method));
                lines.push(format!("URL={}", s.path));
                lines.push("Proto=GRPC".to_string());
                lines.push(format!("IP={}", s.caller));
                for (name, values) in &s.headers {
                    for v in values {
                        lines.push(format!("RequestHeader={name}:{v}"));
                    }
                }
                lines.push("StatusCode=200".to_string());
                (0, String::new(), Some(lines.join("\n") + "\n"))
            }
        }
    };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", hv(&code.to_string()));
    if !text.is_empty() {
        trailers.insert("grpc-message", hv(&text.replace(['\r', '\n'], " ")));
    }
    let mut frames: Vec<Result<Frame<Bytes>, Infallible>> = Vec::new();
    if let Some(reply) = reply {
        frames.push(Ok(Frame::data(Bytes::from(grpc_wire::encode_frame(&reply)))));
    }
    frames.push(Ok(Frame::trailers(trailers)));
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .body(StreamBody::new(futures::stream::iter(frames)).boxed())
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_requests_of_a_key_fail_then_it_answers() {
        let counts = FailCounts::default();
        let mut headers = HeaderMap::new();
        headers.insert(FAIL_KEY_HEADER, HeaderValue::from_static("k1"));
        headers.insert(FAIL_TIMES_HEADER, HeaderValue::from_static("2"));
        let plans: Vec<Option<u64>> = (0..3).map(|_| planned_failure(&headers, &counts, false)).collect();
        assert_eq!(plans, [Some(503), Some(503), None]);
        headers.insert(FAIL_KEY_HEADER, HeaderValue::from_static("k2"));
        headers.insert(FAIL_STATUS_HEADER, HeaderValue::from_static("500"));
        assert_eq!(planned_failure(&headers, &counts, false), Some(500), "a fresh key counts afresh");
        headers.remove(FAIL_STATUS_HEADER);
        headers.insert(FAIL_KEY_HEADER, HeaderValue::from_static("k3"));
        assert_eq!(planned_failure(&headers, &counts, true), Some(14), "gRPC fails UNAVAILABLE");
        assert_eq!(planned_failure(&HeaderMap::new(), &counts, false), None);
    }
}
