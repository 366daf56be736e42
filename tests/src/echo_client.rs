//! The request side of `ambit-pod client`: runs requests from inside a pod
//! and reports every outcome, including the socket addresses of the
//! connection (what getsockname/getpeername returned).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http::{HeaderMap, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{ClientOutput, RequestResult};
use crate::grpc_wire;
use crate::resolve::Hosts;

/// Options of `ambit-pod client`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientOpts {
    /// HTTP(S) URL to request.
    #[arg(long, conflicts_with_all = ["grpc", "tcp"])]
    pub url: Option<String>,
    /// gRPC target `host:port` (calls /proto.EchoTestService/Echo over h2c).
    #[arg(long, conflicts_with = "tcp")]
    pub grpc: Option<String>,
    /// TCP target `host:port`.
    #[arg(long)]
    pub tcp: Option<String>,
    /// Bytes to send over TCP.
    #[arg(long, default_value = "ping")]
    pub send: String,
    /// gRPC request message.
    #[arg(long, default_value = "")]
    pub message: String,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Header `Name:value` (repeatable). `Host` sets the authority.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Number of requests.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Parallel workers.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Open a new connection for each request.
    #[arg(long)]
    pub new_connection_per_request: bool,
    /// HTTP/2 with prior knowledge.
    #[arg(long)]
    pub h2c: bool,
    /// Prefer IPv6 when resolving names.
    #[arg(long)]
    pub ipv6: bool,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Namespace of the pod (for the search path).
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Hosts file mapping service names to cluster IPs.
    #[arg(long)]
    pub hosts: Option<PathBuf>,
    /// HTTP request body (with --websocket: the bytes sent after the upgrade).
    #[arg(long)]
    pub body: Option<String>,
    /// HTTP: upgrade to WebSocket, send the body raw and expect it echoed.
    #[arg(long)]
    pub websocket: bool,
    /// TCP: read the server's banner line before sending (server-first protocols).
    #[arg(long)]
    pub banner: bool,
    /// TCP: after sending, read until the server closes (status 200 when it did).
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Https,
    Grpc,
    Tcp,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::Grpc => "grpc",
            Kind::Tcp => "tcp",
        }
    }
}

/// Everything a worker needs, resolved once.
struct Plan {
    kind: Kind,
    addr: SocketAddr,
    authority: String,
    path: String,
    method: http::Method,
    headers: Vec<(String, String)>,
    h2: bool,
    new_conn: bool,
    timeout: Duration,
    send: String,
    message: String,
    body: Option<String>,
    websocket: bool,
    banner: bool,
    raw: bool,
}

/// Runs the requests and returns the report (errors are inside the report).
pub async fn run(opts: ClientOpts) -> ClientOutput {
    let (kind, target) = match (&opts.url, &opts.grpc, &opts.tcp) {
        (Some(u), _, _) if u.starts_with("https://") => (Kind::Https, u.clone()),
        (Some(u), _, _) => (Kind::Http, u.clone()),
        (_, Some(g), _) => (Kind::Grpc, g.clone()),
        (_, _, Some(t)) => (Kind::Tcp, t.clone()),
        _ => (Kind::Http, String::new()),
    };
    let mut out = ClientOutput {
        protocol: kind.name().to_string(),
        target: target.clone(),
        resolved: None,
        results: Vec::new(),
        error: None,
    };
    let plan = match plan(&opts, kind, &target) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            out.error = Some(format!("{e:#}"));
            return out;
        }
    };
    out.resolved = Some(plan.addr.to_string());
    let workers = opts.concurrency.clamp(1, opts.count.max(1));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let plan = plan.clone();
        let indices: Vec<usize> = (w..opts.count).step_by(workers).collect();
        tasks.push(tokio::spawn(worker(plan, indices)));
    }
    for t in tasks {
        match t.await {
            Ok(rs) => out.results.extend(rs),
            Err(e) => out.error = Some(format!("worker failed: {e}")),
        }
    }
    out.results.sort_by_key(|r| r.index);
    out
}

fn plan(opts: &ClientOpts, kind: Kind, target: &str) -> Result<Plan> {
    let hosts = match &opts.hosts {
        Some(p) => Hosts::load(p)?,
        None => Hosts::default(),
    };
    let mut headers = Vec::new();
    let mut host_override = None;
    for h in &opts.headers {
        let (n, v) = h.split_once(':').ok_or_else(|| anyhow!("bad header {h:?}, want Name:value"))?;
        if n.trim().eq_ignore_ascii_case("host") {
            host_override = Some(v.trim().to_string());
        } else {
            headers.push((n.trim().to_string(), v.trim_start().to_string()));
        }
    }
    let (host, port, path, authority) = match kind {
        Kind::Http | Kind::Https => {
            let uri: Uri = target.parse().with_context(|| format!("bad URL {target:?}"))?;
            let host = uri.host().ok_or_else(|| anyhow!("URL {target:?} has no host"))?.to_string();
            let default_port = if kind == Kind::Https { 443 } else { 80 };
            let port = uri.port_u16().unwrap_or(default_port);
            let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
            let path = uri.path_and_query().map(|p| p.to_string()).unwrap_or_else(|| "/".into());
            (host, port, path, authority)
        }
        Kind::Grpc | Kind::Tcp => {
            let (h, p) = split_host_port(target)?;
            (h, p, grpc_wire::ECHO_METHOD_PATH.to_string(), target.to_string())
        }
    };
    let ip: IpAddr = hosts.resolve(&host, &opts.namespace, opts.ipv6)?;
    Ok(Plan {
        kind,
        addr: SocketAddr::new(ip, port),
        authority: host_override.unwrap_or(authority),
        path,
        method: opts.method.parse().with_context(|| format!("bad method {:?}", opts.method))?,
        headers,
        h2: opts.h2c || kind == Kind::Grpc,
        new_conn: opts.new_connection_per_request,
        timeout: Duration::from_millis(opts.timeout_ms),
        send: opts.send.clone(),
        message: opts.message.clone(),
        body: opts.body.clone(),
        websocket: opts.websocket,
        banner: opts.banner,
        raw: opts.raw,
    })
}

fn split_host_port(s: &str) -> Result<(String, u16)> {
    let (h, p) = s.rsplit_once(':').ok_or_else(|| anyhow!("{s:?} is not host:port"))?;
    let port = p.parse().with_context(|| format!("bad port in {s:?}"))?;
    Ok((h.trim_start_matches('[').trim_end_matches(']').to_string(), port))
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

struct Conn {
    sender: Sender,
    local: SocketAddr,
    peer: SocketAddr,
    number: usize,
}

async fn worker(plan: Arc<Plan>, indices: Vec<usize>) -> Vec<RequestResult> {
    let mut results = Vec::new();
    let mut conn: Option<Conn> = None;
    let mut conn_count = 0usize;
    for index in indices {
        let start = Instant::now();
        let mut r = RequestResult { index, ..Default::default() };
        r.started_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or_default();
        let outcome = tokio::time::timeout(plan.timeout, async {
            if plan.kind == Kind::Tcp {
                conn_count += 1;
                r.connection = conn_count;
                return tcp_exchange(&plan, &mut r).await;
            }
            if plan.websocket {
                conn_count += 1;
                r.connection = conn_count;
                return websocket_exchange(&plan, &mut r).await;
            }
            let stale = match &conn {
                None => true,
                Some(c) => match &c.sender {
                    Sender::H1(s) => s.is_closed(),
                    Sender::H2(s) => s.is_closed(),
                },
            };
            if stale || plan.new_conn {
                conn_count += 1;
                conn = Some(connect(&plan, conn_count).await?);
            }
            let c = conn.as_mut().expect("connected");
            r.connection = c.number;
            r.local_addr = Some(c.local.to_string());
            r.peer_addr = Some(c.peer.to_string());
            exchange(&plan, c, &mut r).await
        })
        .await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                r.error = Some(format!("{e:#}"));
                conn = None;
            }
            Err(_) => {
                r.error = Some(format!("timed out after {:?}", plan.timeout));
                conn = None;
            }
        }
        r.duration_ms = start.elapsed().as_secs_f64() * 1000.0;
        results.push(r);
    }
    results
}

async fn connect(plan: &Plan, number: usize) -> Result<Conn> {
    let stream = TcpStream::connect(plan.addr)
        .await
        .with_context(|| format!("connecting to {}", plan.addr))?;
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let peer = stream.peer_addr()?;
    let sender = if plan.kind == Kind::Https {
        let tls = tls_connect(plan, stream).await?;
        handshake(plan.h2, TokioIo::new(tls)).await?
    } else {
        handshake(plan.h2, TokioIo::new(stream)).await?
    };
    Ok(Conn { sender, local, peer, number })
}

async fn handshake<T>(h2: bool, io: TokioIo<T>) -> Result<Sender>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if h2 {
        let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .context("HTTP/2 handshake")?;
        tokio::spawn(c);
        Ok(Sender::H2(s))
    } else {
        let (s, c) = hyper::client::conn::http1::handshake(io).await.context("HTTP/1.1 handshake")?;
        tokio::spawn(c);
        Ok(Sender::H1(s))
    }
}

async fn exchange(plan: &Plan, c: &mut Conn, r: &mut RequestResult) -> Result<()> {
    let scheme = if plan.kind == Kind::Https { "https" } else { "http" };
    let (method, body) = if plan.kind == Kind::Grpc {
        (http::Method::POST, Bytes::from(grpc_wire::encode_frame(&plan.message)))
    } else {
        (plan.method.clone(), plan.body.clone().map(Bytes::from).unwrap_or_default())
    };
    let uri: Uri = match c.sender {
        Sender::H1(_) => plan.path.parse()?,
        Sender::H2(_) => format!("{scheme}://{}{}", plan.authority, plan.path).parse()?,
    };
    let mut req = Request::builder().method(method).uri(uri);
    if let Sender::H1(_) = c.sender {
        req = req.header(http::header::HOST, &plan.authority);
    }
    if plan.kind == Kind::Grpc {
        req = req.header("content-type", "application/grpc").header("te", "trailers");
    }
    for (n, v) in &plan.headers {
        req = req.header(n.as_str(), v.as_str());
    }
    let req = req.body(Full::new(body))?;
    let resp = match &mut c.sender {
        Sender::H1(s) => {
            s.ready().await?;
            s.send_request(req).await?
        }
        Sender::H2(s) => {
            s.ready().await?;
            s.send_request(req).await?
        }
    };
    let (parts, body) = resp.into_parts();
    r.version = Some(format!("{:?}", parts.version));
    add_headers(&mut r.headers, &parts.headers);
    let collected = body.collect().await.context("reading response body")?;
    let trailers = collected.trailers().cloned();
    let bytes = collected.to_bytes();
    if let Some(t) = &trailers {
        add_headers(&mut r.headers, t);
    }
    if plan.kind == Kind::Grpc {
        let grpc_status: Option<u32> = r.header("grpc-status").and_then(|s| s.parse().ok());
        r.grpc_status = grpc_status;
        r.grpc_message = r.header("grpc-message").map(str::to_string);
        if !bytes.is_empty() {
            r.body_text = grpc_wire::decode_frame(&bytes).unwrap_or_else(|e| format!("<undecodable: {e}>"));
            r.body = Some(lines_to_json(&r.body_text));
        }
        match grpc_status {
            Some(0) => r.status = Some(200),
            other => {
                if parts.status != http::StatusCode::OK {
                    r.status = Some(parts.status.as_u16());
                }
                r.error = Some(format!(
                    "grpc-status {:?} (HTTP {}): {}",
                    other,
                    parts.status.as_u16(),
                    r.grpc_message.clone().unwrap_or_default()
                ));
            }
        }
    } else {
        r.status = Some(parts.status.as_u16());
        r.body_text = String::from_utf8_lossy(&bytes).into_owned();
        r.body = serde_json::from_slice(&bytes).ok();
    }
    Ok(())
}

fn add_headers(into: &mut BTreeMap<String, Vec<String>>, from: &HeaderMap) {
    for (n, v) in from {
        into.entry(n.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
}

/// Converts the echo's gRPC `Key=Value` reply into the HTTP echo's JSON shape.
pub fn lines_to_json(text: &str) -> serde_json::Value {
    let mut obj = serde_json::Map::new();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else { continue };
        let key = match k {
            "Hostname" => "pod",
            "Namespace" => "namespace",
            "Host" => "host",
            "Method" => "method",
            "URL" => "path",
            "Proto" => "proto",
            "IP" => "ip",
            "RequestHeader" => {
                if let Some((n, val)) = v.split_once(':') {
                    headers.entry(n.to_string()).or_default().push(val.to_string());
                }
                continue;
            }
            _ => continue,
        };
        obj.entry(key).or_insert_with(|| serde_json::Value::String(v.to_string()));
    }
    obj.insert("headers".into(), serde_json::to_value(headers).unwrap_or_default());
    serde_json::Value::Object(obj)
}

/// Reads up to and including the first `\n` (at most 4 KiB), byte by byte so that
/// nothing after the line is consumed.
async fn read_line(stream: &mut TcpStream) -> Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\n") {
        if stream.read(&mut byte).await? == 0 {
            bail!("connection closed after {:?}", String::from_utf8_lossy(&line));
        }
        line.push(byte[0]);
        if line.len() > 4096 {
            bail!("line too long");
        }
    }
    Ok(line)
}

/// An HTTP/1.1 `Upgrade: websocket` request over a raw connection; on `101` the
/// body bytes are sent raw and must come back unchanged.
async fn websocket_exchange(plan: &Plan, r: &mut RequestResult) -> Result<()> {
    let mut stream = TcpStream::connect(plan.addr)
        .await
        .with_context(|| format!("connecting to {}", plan.addr))?;
    r.local_addr = Some(stream.local_addr()?.to_string());
    r.peer_addr = Some(stream.peer_addr()?.to_string());
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        plan.path, plan.authority
    );
    for (n, v) in &plan.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    let status_line = read_line(&mut stream).await?;
    let status_line = String::from_utf8_lossy(&status_line).into_owned();
    r.version = status_line.split_whitespace().next().map(str::to_string);
    r.status = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    loop {
        let line = read_line(&mut stream).await?;
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let line = String::from_utf8_lossy(&line);
        if let Some((n, v)) = line.split_once(':') {
            r.headers.entry(n.trim().to_ascii_lowercase()).or_default().push(v.trim().to_string());
        }
    }
    if r.status != Some(101) {
        bail!("upgrade refused: {}", status_line.trim());
    }
    let send = plan.body.clone().unwrap_or_else(|| "ping".into());
    stream.write_all(send.as_bytes()).await?;
    let mut got = vec![0u8; send.len()];
    stream.read_exact(&mut got).await.context("reading the echo over the upgraded connection")?;
    r.body_text = String::from_utf8_lossy(&got).into_owned();
    if got != send.as_bytes() {
        bail!("upgraded echo mismatch: sent {send:?}, got {:?}", r.body_text);
    }
    Ok(())
}

async fn tcp_exchange(plan: &Plan, r: &mut RequestResult) -> Result<()> {
    let mut stream = TcpStream::connect(plan.addr)
        .await
        .with_context(|| format!("connecting to {}", plan.addr))?;
    r.local_addr = Some(stream.local_addr()?.to_string());
    r.peer_addr = Some(stream.peer_addr()?.to_string());
    if plan.banner {
        let connected = Instant::now();
        let line = read_line(&mut stream).await.context("waiting for the server's banner")?;
        r.banner_ms = Some(connected.elapsed().as_secs_f64() * 1000.0);
        r.banner = Some(String::from_utf8_lossy(&line).into_owned());
    }
    stream.write_all(plan.send.as_bytes()).await?;
    if plan.raw {
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await?;
        r.body_text = String::from_utf8_lossy(&got).into_owned();
        r.status = Some(200);
        return Ok(());
    }
    let want = plan.send.len();
    let mut got = Vec::with_capacity(want);
    let mut buf = [0u8; 4096];
    while got.len() < want {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    r.body_text = String::from_utf8_lossy(&got).into_owned();
    if got == plan.send.as_bytes() {
        r.status = Some(200);
    } else {
        bail!("echo mismatch: sent {} bytes, got back {:?}", want, r.body_text);
    }
    Ok(())
}

async fn tls_connect(
    plan: &Plan,
    stream: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = if plan.h2 { vec![b"h2".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    let host = plan.authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(&plan.authority);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| rustls::pki_types::ServerName::IpAddress(plan.addr.ip().into()));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector.connect(name, stream).await.context("TLS handshake")
}

/// Test-only verifier: the echo servers use throwaway self-signed certificates.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
