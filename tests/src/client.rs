//! The request a test asks `ambit-pod client` to make, and the JSON document
//! the client prints back (one per run).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the client talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTarget {
    /// HTTP (or HTTPS, certificate not verified) URL: `http://host[:port]/path`.
    Http(String),
    /// gRPC unary `/proto.EchoTestService/Echo` over h2c to `host:port`.
    Grpc(String),
    /// Raw TCP to `host:port`: send the bytes, read until the peer echoes them all.
    Tcp { addr: String, send: String },
}

/// A client run: target plus options, turned into `ambit-pod client` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    /// What to talk to.
    pub target: ClientTarget,
    /// HTTP method (HTTP only; default GET).
    pub method: Option<String>,
    /// Request headers (`Host` sets the authority), or gRPC metadata.
    pub headers: Vec<(String, String)>,
    /// Number of requests (default 1).
    pub count: usize,
    /// Number of parallel workers (default 1); each keeps its own connection.
    pub concurrency: usize,
    /// Open a new connection for every request instead of reusing the worker's.
    pub new_connection_per_request: bool,
    /// Speak HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    pub h2c: bool,
    /// Prefer IPv6 answers when resolving names.
    pub prefer_ipv6: bool,
    /// Per-request timeout (connect + exchange), default 5 s.
    pub timeout: Duration,
    /// Message sent in the gRPC request (field 1).
    pub grpc_message: Option<String>,
    /// HTTP request body.
    pub body: Option<String>,
    /// HTTP: upgrade to WebSocket, then send the bytes in `body` (default `ping`) raw
    /// and expect them echoed; the result's status is the upgrade answer's (101).
    pub websocket: bool,
    /// TCP: read the server's banner line before sending anything (server-first).
    pub banner: bool,
    /// TCP: after sending, read everything until the server closes (raw HTTP tests).
    pub raw: bool,
}

impl ClientRequest {
    fn new(target: ClientTarget) -> Self {
        ClientRequest {
            target,
            method: None,
            headers: Vec::new(),
            count: 1,
            concurrency: 1,
            new_connection_per_request: false,
            h2c: false,
            prefer_ipv6: false,
            timeout: Duration::from_secs(5),
            grpc_message: None,
            body: None,
            websocket: false,
            banner: false,
            raw: false,
        }
    }
    /// An HTTP request to `url` (`http://` or `https://`).
    pub fn http(url: impl Into<String>) -> Self {
        Self::new(ClientTarget::Http(url.into()))
    }
    /// A gRPC Echo call to `addr` (`host:port`).
    pub fn grpc(addr: impl Into<String>) -> Self {
        Self::new(ClientTarget::Grpc(addr.into()))
    }
    /// A TCP exchange with `addr` (`host:port`) sending `send`.
    pub fn tcp(addr: impl Into<String>, send: impl Into<String>) -> Self {
        Self::new(ClientTarget::Tcp { addr: addr.into(), send: send.into() })
    }
    /// Sets the HTTP method.
    pub fn method(mut self, m: impl Into<String>) -> Self {
        self.method = Some(m.into());
        self
    }
    /// Adds a header (repeatable).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// Sets the number of requests.
    pub fn count(mut self, n: usize) -> Self {
        self.count = n;
        self
    }
    /// Sets the number of parallel workers.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
    /// Uses a new connection for each request.
    pub fn new_connection_per_request(mut self) -> Self {
        self.new_connection_per_request = true;
        self
    }
    /// Uses HTTP/2 prior knowledge.
    pub fn h2c(mut self) -> Self {
        self.h2c = true;
        self
    }
    /// Prefers IPv6 when resolving.
    pub fn ipv6(mut self) -> Self {
        self.prefer_ipv6 = true;
        self
    }
    /// Sets the per-request timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    /// Sets the HTTP request body (or, with [`websocket`](Self::websocket), the bytes sent
    /// after the upgrade).
    pub fn body(mut self, b: impl Into<String>) -> Self {
        self.body = Some(b.into());
        self
    }
    /// HTTP: upgrade the connection to WebSocket and exchange raw bytes.
    pub fn websocket(mut self) -> Self {
        self.websocket = true;
        self
    }
    /// TCP: read the server's banner line first, then send and expect the echo.
    pub fn banner(mut self) -> Self {
        self.banner = true;
        self
    }
    /// TCP: read until the server closes instead of expecting an echo.
    pub fn raw(mut self) -> Self {
        self.raw = true;
        self
    }
    /// Sets the gRPC request message.
    pub fn grpc_message(mut self, m: impl Into<String>) -> Self {
        self.grpc_message = Some(m.into());
        self
    }

    /// The `ambit-pod client` arguments (after the `client` word, without
    /// `--namespace`/`--hosts`, which the pod adds).
    pub fn to_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        match &self.target {
            ClientTarget::Http(u) => a.extend(["--url".to_string(), u.clone()]),
            ClientTarget::Grpc(t) => a.extend(["--grpc".to_string(), t.clone()]),
            ClientTarget::Tcp { addr, send } => {
                a.extend(["--tcp".to_string(), addr.clone(), "--send".to_string(), send.clone()])
            }
        }
        if let Some(m) = &self.method {
            a.extend(["--method".to_string(), m.clone()]);
        }
        for (n, v) in &self.headers {
            a.extend(["-H".to_string(), format!("{n}:{v}")]);
        }
        a.extend(["--count".to_string(), self.count.to_string()]);
        a.extend(["--concurrency".to_string(), self.concurrency.to_string()]);
        a.extend(["--timeout-ms".to_string(), self.timeout.as_millis().to_string()]);
        if self.new_connection_per_request {
            a.push("--new-connection-per-request".into());
        }
        if self.h2c {
            a.push("--h2c".into());
        }
        if self.prefer_ipv6 {
            a.push("--ipv6".into());
        }
        if let Some(m) = &self.grpc_message {
            a.extend(["--message".to_string(), m.clone()]);
        }
        if let Some(b) = &self.body {
            a.extend(["--body".to_string(), b.clone()]);
        }
        if self.websocket {
            a.push("--websocket".into());
        }
        if self.banner {
            a.push("--banner".into());
        }
        if self.raw {
            a.push("--raw".into());
        }
        a
    }
}

/// The document `ambit-pod client` prints.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientOutput {
    /// `http`, `https`, `grpc` or `tcp`.
    pub protocol: String,
    /// The host (or host:port) as given.
    pub target: String,
    /// Address the name resolved to (`ip:port`), if it resolved.
    pub resolved: Option<String>,
    /// One entry per request, in request order.
    pub results: Vec<RequestResult>,
    /// An error that prevented all requests (e.g. name resolution).
    pub error: Option<String>,
}

impl ClientOutput {
    /// Results that ended with a status (HTTP or gRPC mapped) and no error.
    pub fn successes(&self) -> impl Iterator<Item = &RequestResult> {
        self.results.iter().filter(|r| r.error.is_none())
    }
    /// The single result of a one-request run (panics with the whole output otherwise).
    pub fn only(&self) -> &RequestResult {
        assert_eq!(self.results.len(), 1, "expected exactly one result in {self:#?}");
        &self.results[0]
    }
}

/// One request's outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RequestResult {
    /// Request number (0-based).
    pub index: usize,
    /// Worker connection number the request went over (per worker, bumps on reconnect).
    pub connection: usize,
    /// HTTP status; for gRPC 200 when grpc-status is 0 (like the upstream echo client),
    /// else the HTTP status of the response; for TCP 200 when the echo came back whole.
    pub status: Option<u16>,
    /// `grpc-status` (gRPC only).
    pub grpc_status: Option<u32>,
    /// `grpc-message` (gRPC only).
    pub grpc_message: Option<String>,
    /// Response headers (lower-case names, all values in order); gRPC trailers included.
    pub headers: BTreeMap<String, Vec<String>>,
    /// Response protocol version, e.g. `HTTP/1.1`, `HTTP/2.0`.
    pub version: Option<String>,
    /// The echo server's report: the HTTP JSON body, or the gRPC `Key=Value`
    /// reply converted to the same JSON shape (`pod`, `namespace`, `host`,
    /// `method`, `path`, `proto`, `ip`, `headers`).
    pub body: Option<serde_json::Value>,
    /// The raw body (HTTP), reply message (gRPC) or bytes read back (TCP), lossily as UTF-8.
    pub body_text: String,
    /// Error text when the request failed.
    pub error: Option<String>,
    /// getsockname() of the connection.
    pub local_addr: Option<String>,
    /// getpeername() of the connection.
    pub peer_addr: Option<String>,
    /// Wall time of this request (including connecting when it connected).
    pub duration_ms: f64,
    /// When the request started, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub started_unix_ms: f64,
    /// TCP with `banner`: the banner line the server sent first.
    #[serde(default)]
    pub banner: Option<String>,
    /// TCP with `banner`: milliseconds from connected to the banner's arrival.
    #[serde(default)]
    pub banner_ms: Option<f64>,
}

impl RequestResult {
    /// Last value of response header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).and_then(|v| v.last()).map(|s| s.as_str())
    }
    /// The pod name the echo server reported.
    pub fn echo_pod(&self) -> Option<&str> {
        self.body.as_ref()?.get("pod")?.as_str()
    }
    /// The namespace the echo server reported.
    pub fn echo_namespace(&self) -> Option<&str> {
        self.body.as_ref()?.get("namespace")?.as_str()
    }
    /// The caller IP the echo server saw.
    pub fn echo_caller_ip(&self) -> Option<&str> {
        self.body.as_ref()?.get("ip")?.as_str()
    }
    /// Values of request header `name` the echo server received (case-insensitive).
    pub fn echo_request_header(&self, name: &str) -> Vec<String> {
        let Some(headers) = self.body.as_ref().and_then(|b| b.get("headers")).and_then(|h| h.as_object())
        else {
            return Vec::new();
        };
        headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }
}
