//! `ambit-load steady`: constant mixed traffic for a fixed time, counting every failed
//! request and the longest gap between successful ones, per kind of traffic:
//!
//! - `keepalive`: HTTP/1.1 GETs over a pool of keep-alive connections;
//! - `new_conn`: one HTTP/1.1 GET per new connection (a refused connect is a failure);
//! - `h2c`: HTTP/2 (prior knowledge) GETs multiplexed on one shared connection;
//! - `tcp`: a new connection per exchange; 32 bytes written, the same read back.
//!
//! A request on a reused connection (keep-alive or HTTP/2) that fails before any
//! response arrived, because the server closed that connection (idle close, GOAWAY), is
//! retried once on a new connection, as RFC 9112 §9.3.1 allows for idempotent requests
//! and as common clients do. Such retries are counted apart (`retried`); a retry that
//! fails counts as a failure. New-connection and TCP exchanges are never retried.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::{h1_connect, percentiles, RequestTemplate, Target};

/// Longest run accepted (the soak bench's 30 minutes, with room).
const MAX_SECS: u64 = 4 * 3600;
/// Requests of one kind in flight at most; further ticks wait for a slot.
const MAX_IN_FLIGHT: usize = 256;
/// Failures kept verbatim in the report.
const ERROR_SAMPLES: usize = 20;

#[derive(clap::Args, Clone)]
pub struct SteadyArgs {
    /// The HTTP/1.1 target (keep-alive and new-connection requests).
    #[command(flatten)]
    pub target: Target,
    /// HTTP/2 prior-knowledge target (IP:port).
    #[arg(long)]
    pub h2c_addr: Option<SocketAddr>,
    /// TCP echo target (IP:port).
    #[arg(long)]
    pub tcp_addr: Option<SocketAddr>,
    /// Keep-alive HTTP/1.1 requests per second.
    #[arg(long, default_value_t = 0)]
    pub keepalive_rate: u64,
    /// Keep-alive connections kept at most.
    #[arg(long, default_value_t = 16)]
    pub keepalive_conns: usize,
    /// New-connection HTTP/1.1 requests per second.
    #[arg(long, default_value_t = 0)]
    pub new_conn_rate: u64,
    /// HTTP/2 requests per second (needs --h2c-addr).
    #[arg(long, default_value_t = 0)]
    pub h2c_rate: u64,
    /// TCP echo exchanges per second (needs --tcp-addr).
    #[arg(long, default_value_t = 0)]
    pub tcp_rate: u64,
    /// How long to run.
    #[arg(long)]
    pub secs: u64,
    /// Per-request time limit.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
}

impl SteadyArgs {
    /// The wall-clock bound of the whole run.
    pub fn limit(&self) -> Duration {
        Duration::from_secs(self.secs.min(MAX_SECS)) + Duration::from_millis(self.timeout_ms.saturating_mul(2)) + Duration::from_secs(10)
    }

    fn validate(&self) -> Result<()> {
        if self.secs == 0 || self.secs > MAX_SECS {
            bail!("--secs must be 1..={MAX_SECS}");
        }
        if self.keepalive_rate + self.new_conn_rate + self.h2c_rate + self.tcp_rate == 0 {
            bail!("give at least one of --keepalive-rate, --new-conn-rate, --h2c-rate, --tcp-rate");
        }
        if self.h2c_rate > 0 && self.h2c_addr.is_none() {
            bail!("--h2c-rate needs --h2c-addr");
        }
        if self.tcp_rate > 0 && self.tcp_addr.is_none() {
            bail!("--tcp-rate needs --tcp-addr");
        }
        if self.keepalive_conns == 0 {
            bail!("--keepalive-conns must be positive");
        }
        Ok(())
    }
}

/// How one request ended.
enum Outcome {
    Ok { retried: bool },
    Failed(String),
}

/// A failure on a reused connection: whether any response had arrived.
enum Failure {
    /// Nothing came back: the server had closed the connection; safe to retry.
    NoResponse(String),
    Failed(String),
}

#[derive(Default)]
struct KindStats {
    ok: u64,
    errors: u64,
    retried: u64,
    latency_ns: Vec<u64>,
    last_ok: Option<Instant>,
    longest_gap: Duration,
}

struct Stats {
    start: Instant,
    kinds: BTreeMap<&'static str, KindStats>,
    samples: Vec<serde_json::Value>,
}

impl Stats {
    fn record(&mut self, kind: &'static str, began: Instant, outcome: Outcome) {
        let now = Instant::now();
        let start = self.start;
        let k = self.kinds.entry(kind).or_default();
        match outcome {
            Outcome::Ok { retried } => {
                k.ok += 1;
                k.retried += u64::from(retried);
                k.latency_ns.push(now.duration_since(began).as_nanos() as u64);
                k.longest_gap = k.longest_gap.max(now.duration_since(k.last_ok.unwrap_or(start)));
                k.last_ok = Some(now);
            }
            Outcome::Failed(error) => {
                k.errors += 1;
                if self.samples.len() < ERROR_SAMPLES {
                    let at = began.duration_since(start).as_secs_f64();
                    self.samples.push(json!({"kind": kind, "at_s": at, "error": error}));
                }
            }
        }
    }

    fn report(mut self, args: &SteadyArgs) -> serde_json::Value {
        let end = Instant::now();
        let mut kinds = serde_json::Map::new();
        let (mut ok, mut errors, mut retried, mut gap) = (0, 0, 0, Duration::ZERO);
        for (name, k) in std::mem::take(&mut self.kinds) {
            let k_gap = k.longest_gap.max(end.duration_since(k.last_ok.unwrap_or(self.start)));
            ok += k.ok;
            errors += k.errors;
            retried += k.retried;
            gap = gap.max(k_gap);
            kinds.insert(
                name.to_string(),
                json!({"ok": k.ok, "errors": k.errors, "retried": k.retried,
                       "longest_gap_ms": k_gap.as_secs_f64() * 1000.0, "latency": percentiles(k.latency_ns)}),
            );
        }
        json!({
            "mode": "steady", "secs": args.secs, "elapsed_s": end.duration_since(self.start).as_secs_f64(),
            "ok": ok, "errors": errors, "retried": retried, "longest_gap_ms": gap.as_secs_f64() * 1000.0,
            "kinds": kinds, "error_samples": self.samples,
        })
    }
}

type Shared = Arc<Mutex<Stats>>;

/// Runs `request` `rate` times a second until `deadline`, recording each outcome.
async fn pace<F, Fut>(kind: &'static str, rate: u64, deadline: Instant, timeout: Duration, stats: Shared, request: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        let due = tick.tick().await;
        if due.into_std() >= deadline {
            break;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else { break };
        let fut = request();
        let stats = stats.clone();
        tokio::spawn(async move {
            let began = Instant::now();
            let outcome = match tokio::time::timeout(timeout, fut).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Failed(format!("no answer within {timeout:?}")),
            };
            stats.lock().unwrap_or_else(|p| p.into_inner()).record(kind, began, outcome);
            drop(slot);
        });
    }
    let _ = slots.acquire_many(MAX_IN_FLIGHT as u32).await;
}

/// Sends one request; a failure before the response head is `NoResponse`.
async fn h1_exchange(send: &mut http1::SendRequest<Empty<Bytes>>, t: &RequestTemplate) -> Result<(), Failure> {
    send.ready().await.map_err(|e| Failure::NoResponse(e.to_string()))?;
    let resp = send.send_request(t.build()).await.map_err(|e| Failure::NoResponse(e.to_string()))?;
    check_response(resp).await
}

async fn check_response(resp: http::Response<hyper::body::Incoming>) -> Result<(), Failure> {
    let status = resp.status();
    let body = resp.into_body().collect().await;
    match (status.is_success(), body) {
        (true, Ok(_)) => Ok(()),
        (false, _) => Err(Failure::Failed(format!("status {status}"))),
        (true, Err(e)) => Err(Failure::Failed(format!("body: {e}"))),
    }
}

fn failed(f: Failure) -> String {
    match f {
        Failure::NoResponse(e) => format!("no response: {e}"),
        Failure::Failed(e) => e,
    }
}

/// Idle keep-alive HTTP/1.1 connections.
struct Pool {
    idle: Mutex<Vec<http1::SendRequest<Empty<Bytes>>>>,
    max: usize,
}

impl Pool {
    fn take(&self) -> Option<http1::SendRequest<Empty<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if !c.is_closed() {
                return Some(c);
            }
        }
        None
    }

    fn put(&self, c: http1::SendRequest<Empty<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max {
            idle.push(c);
        }
    }
}

async fn keepalive(pool: Arc<Pool>, addr: SocketAddr, t: RequestTemplate) -> Outcome {
    let mut retried = false;
    if let Some(mut c) = pool.take() {
        match h1_exchange(&mut c, &t).await {
            Ok(()) => {
                pool.put(c);
                return Outcome::Ok { retried: false };
            }
            Err(Failure::NoResponse(_)) => retried = true,
            Err(f) => return Outcome::Failed(failed(f)),
        }
    }
    let mut c = match h1_connect(addr).await {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    match h1_exchange(&mut c, &t).await {
        Ok(()) => {
            pool.put(c);
            Outcome::Ok { retried }
        }
        Err(f) => Outcome::Failed(failed(f)),
    }
}

async fn new_conn(addr: SocketAddr, t: RequestTemplate) -> Outcome {
    let mut c = match h1_connect(addr).await {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    match h1_exchange(&mut c, &t).await {
        Ok(()) => Outcome::Ok { retried: false },
        Err(f) => Outcome::Failed(failed(f)),
    }
}

type H2 = http2::SendRequest<Empty<Bytes>>;

async fn h2_connect(addr: SocketAddr) -> Result<H2> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// The shared HTTP/2 connection: reused while open, replaced when closed (or when
/// `fresh`, after it failed a request). Returns it and whether it was reused.
async fn h2_shared(shared: &tokio::sync::Mutex<Option<H2>>, addr: SocketAddr, fresh: bool) -> Result<(H2, bool)> {
    let mut slot = shared.lock().await;
    if let Some(c) = slot.as_ref().filter(|c| !fresh && !c.is_closed()) {
        return Ok((c.clone(), true));
    }
    let c = h2_connect(addr).await?;
    *slot = Some(c.clone());
    Ok((c, false))
}

async fn h2_exchange(mut send: H2, t: &RequestTemplate) -> Result<(), Failure> {
    send.ready().await.map_err(|e| Failure::NoResponse(e.to_string()))?;
    let resp = send.send_request(t.build_h2()).await.map_err(|e| Failure::NoResponse(e.to_string()))?;
    check_response(resp).await
}

async fn h2c(shared: Arc<tokio::sync::Mutex<Option<H2>>>, addr: SocketAddr, t: RequestTemplate) -> Outcome {
    let (send, reused) = match h2_shared(&shared, addr, false).await {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("connecting: {e:#}")),
    };
    match h2_exchange(send, &t).await {
        Ok(()) => return Outcome::Ok { retried: false },
        Err(Failure::NoResponse(_)) if reused => {}
        Err(f) => return Outcome::Failed(failed(f)),
    }
    let send = match h2_shared(&shared, addr, true).await {
        Ok((c, _)) => c,
        Err(e) => return Outcome::Failed(format!("reconnecting: {e:#}")),
    };
    match h2_exchange(send, &t).await {
        Ok(()) => Outcome::Ok { retried: true },
        Err(f) => Outcome::Failed(failed(f)),
    }
}

async fn tcp_echo(addr: SocketAddr, n: u64) -> Outcome {
    let result = async {
        let mut stream = TcpStream::connect(addr).await?;
        let sent = format!("ambit-steady {n:>18}\n");
        stream.write_all(sent.as_bytes()).await?;
        stream.shutdown().await?;
        let mut got = Vec::with_capacity(sent.len());
        stream.read_to_end(&mut got).await?;
        if got != sent.as_bytes() {
            bail!("echoed {:?}, sent {sent:?}", String::from_utf8_lossy(&got));
        }
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => Outcome::Ok { retried: false },
        Err(e) => Outcome::Failed(format!("tcp: {e:#}")),
    }
}

pub async fn run(args: SteadyArgs) -> Result<serde_json::Value> {
    args.validate()?;
    let t = RequestTemplate::new(&args.target)?;
    let addr = args.target.addr;
    let timeout = Duration::from_millis(args.timeout_ms);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.secs);
    let stats: Shared = Arc::new(Mutex::new(Stats { start, kinds: BTreeMap::new(), samples: Vec::new() }));
    let mut kinds = tokio::task::JoinSet::new();
    if args.keepalive_rate > 0 {
        let pool = Arc::new(Pool { idle: Mutex::new(Vec::new()), max: args.keepalive_conns });
        let (t, s) = (t.clone(), stats.clone());
        kinds.spawn(async move {
            pace("keepalive", args.keepalive_rate, deadline, timeout, s, move || keepalive(pool.clone(), addr, t.clone())).await
        });
    }
    if args.new_conn_rate > 0 {
        let (t, s) = (t.clone(), stats.clone());
        kinds.spawn(async move { pace("new_conn", args.new_conn_rate, deadline, timeout, s, move || new_conn(addr, t.clone())).await });
    }
    if let (Some(h2_addr), true) = (args.h2c_addr, args.h2c_rate > 0) {
        let shared = Arc::new(tokio::sync::Mutex::new(None));
        let mut t = t.clone();
        t.host = h2_addr.to_string();
        let s = stats.clone();
        kinds.spawn(async move { pace("h2c", args.h2c_rate, deadline, timeout, s, move || h2c(shared.clone(), h2_addr, t.clone())).await });
    }
    if let (Some(tcp_addr), true) = (args.tcp_addr, args.tcp_rate > 0) {
        let s = stats.clone();
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        kinds.spawn(async move {
            pace("tcp", args.tcp_rate, deadline, timeout, s, move || {
                tcp_echo(tcp_addr, counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
            })
            .await
        });
    }
    while kinds.join_next().await.is_some() {}
    let stats = Arc::try_unwrap(stats).map_err(|_| anyhow::anyhow!("requests still running"))?;
    Ok(stats.into_inner().unwrap_or_else(|p| p.into_inner()).report(&args))
}
