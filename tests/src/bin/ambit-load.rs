//! `ambit-load`: the load generator of `cargo xtask bench`, for what h2load cannot do.
//!
//! Runs inside a pod (started through `ambit-pod exec`), targets IP addresses only,
//! and prints one JSON object on stdout. Every mode is bounded in requests (or bytes,
//! or connections) and in time.
//!
//! - `rate`: open-loop fixed-rate HTTP/1.1 over keep-alive connections, free of
//!   coordinated omission: request `i` is due at `start + i / rate`, a dispatcher
//!   thread releases it at that instant (nanosleep, 1 ns timer slack), and its latency
//!   is measured from when it was due, so a slow answer also charges the requests
//!   queued behind it.
//! - `connect`: sequential new connections (optionally one HTTP request each),
//!   closed with RST so no TIME_WAIT builds up; times connect() and the whole exchange.
//! - `tcp`: one connection to a TCP echo; writes `bytes` and reads them back.
//! - `idle`: opens `connections` keep-alive HTTP connections, one request each,
//!   prints `OPEN <n>` on stderr, holds them until stdin closes or `hold_secs` pass,
//!   then closes them with RST (no TIME_WAIT left for the next run).
//! - `watch`: polls a URL until the response body contains a string; prints the
//!   wall-clock time (Unix ns) when it first did.
//! - `steady`: constant mixed traffic (keep-alive, new connections, h2c, TCP) for a
//!   fixed time; counts failures and the longest gap between successes (see `steady.rs`).

#[path = "ambit-load/steady.rs"]
mod steady;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(name = "ambit-load", about = "Load generator of cargo xtask bench")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// Address to connect to (IP:port; never a name).
    #[arg(long)]
    addr: SocketAddr,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Extra request header `Name:value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
}

#[derive(Subcommand)]
enum Mode {
    /// Open-loop fixed-rate HTTP/1.1 requests.
    Rate {
        #[command(flatten)]
        target: Target,
        /// Requests per second.
        #[arg(long)]
        rate: u64,
        /// Number of requests (the run lasts requests / rate).
        #[arg(long)]
        requests: u64,
        /// Keep-alive connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
    /// Sequential new connections.
    Connect {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        count: u64,
        /// Make one HTTP request on each connection.
        #[arg(long)]
        http: bool,
    },
    /// A bulk transfer through a TCP echo.
    Tcp {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        bytes: u64,
    },
    /// Many idle keep-alive connections.
    Idle {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        connections: usize,
        #[arg(long, default_value_t = 30)]
        hold_secs: u64,
    },
    /// Constant mixed traffic for a fixed time; failures and the longest gap.
    Steady(steady::SteadyArgs),
    /// Poll until the body contains a string.
    Watch {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        expect: String,
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
    },
}

/// Per-mode time limit on top of the request bound.
const HARD_LIMIT: Duration = Duration::from_secs(120);

fn main() {
    raise_nofile();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let limit = match &cli.mode {
        Mode::Steady(args) => args.limit(),
        _ => HARD_LIMIT,
    };
    let result = rt.block_on(async {
        match tokio::time::timeout(limit, run(cli.mode)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow!("time limit of {limit:?} reached")),
        }
    });
    match result {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("ambit-load: {e:#}");
            std::process::exit(1);
        }
    }
}

fn raise_nofile() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

async fn run(mode: Mode) -> Result<serde_json::Value> {
    match mode {
        Mode::Rate { target, rate, requests, connections } => rate_mode(target, rate, requests, connections).await,
        Mode::Connect { target, count, http } => connect_mode(target, count, http).await,
        Mode::Tcp { addr, bytes } => tcp_mode(addr, bytes).await,
        Mode::Idle { target, connections, hold_secs } => idle_mode(target, connections, hold_secs).await,
        Mode::Steady(args) => steady::run(args).await,
        Mode::Watch { target, expect, timeout_ms } => watch_mode(target, expect, timeout_ms).await,
    }
}

/// A prepared GET request.
#[derive(Clone)]
struct RequestTemplate {
    path: String,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    host: String,
}

impl RequestTemplate {
    fn new(t: &Target) -> Result<Self> {
        let mut headers = Vec::new();
        for h in &t.headers {
            let (n, v) = h.split_once(':').ok_or_else(|| anyhow!("bad header {h:?}, want Name:value"))?;
            headers.push((n.trim().parse()?, v.trim().parse()?));
        }
        Ok(Self { path: t.path.clone(), headers, host: t.addr.to_string() })
    }

    /// The same request for HTTP/2: an absolute URI (its authority) instead of Host.
    fn build_h2(&self) -> http::Request<Empty<Bytes>> {
        let uri = format!("http://{}{}", self.host, self.path);
        let mut req = http::Request::get(uri).body(Empty::new()).expect("valid request");
        for (n, v) in &self.headers {
            req.headers_mut().insert(n.clone(), v.clone());
        }
        req
    }

    fn build(&self) -> http::Request<Empty<Bytes>> {
        let mut req = http::Request::get(&self.path).body(Empty::new()).expect("valid request");
        let h = req.headers_mut();
        h.insert(http::header::HOST, self.host.parse().expect("valid host"));
        for (n, v) in &self.headers {
            h.insert(n.clone(), v.clone());
        }
        req
    }
}

async fn h1_connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>> {
    h1_connect_closing(addr, Close::Fin).await
}

/// How a client socket is closed when dropped.
#[derive(Clone, Copy)]
enum Close {
    Fin,
    /// With RST: no TIME_WAIT (see [`close_with_rst`]).
    Rst,
}

async fn h1_connect_closing(addr: SocketAddr, close: Close) -> Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    if let Close::Rst = close {
        close_with_rst(&stream);
    }
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// Sends one request and reads the whole body; true on a 2xx.
async fn exchange(send: &mut SendRequest<Empty<Bytes>>, t: &RequestTemplate) -> Result<(bool, Bytes)> {
    send.ready().await?;
    let resp = send.send_request(t.build()).await?;
    let ok = resp.status().is_success();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((ok, body))
}

/// Latency percentiles in microseconds from samples in nanoseconds.
fn percentiles(mut ns: Vec<u64>) -> serde_json::Value {
    if ns.is_empty() {
        return json!({});
    }
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 * q).ceil() as usize).clamp(1, ns.len()) - 1] as f64 / 1000.0;
    json!({"p50_us": at(0.50), "p99_us": at(0.99), "p999_us": at(0.999), "max_us": at(1.0), "samples": ns.len()})
}

async fn rate_mode(t: Target, rate: u64, requests: u64, connections: usize) -> Result<serde_json::Value> {
    if rate == 0 || requests == 0 || connections == 0 {
        bail!("rate, requests and connections must be positive");
    }
    let tmpl = RequestTemplate::new(&t)?;
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(h1_connect(t.addr).await?);
    }
    // Warm every connection (and the proxy's upstream pool) before timing.
    for c in &mut conns {
        exchange(c, &tmpl).await?;
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, bool)>();
    for mut c in conns {
        let rx = rx.clone();
        let done = done_tx.clone();
        let tmpl = tmpl.clone();
        tokio::spawn(async move {
            loop {
                let Some(due) = rx.lock().await.recv().await else { break };
                let ok = matches!(exchange(&mut c, &tmpl).await, Ok((true, _)));
                let _ = done.send((due.elapsed().as_nanos() as u64, ok));
                if !ok {
                    // A broken connection is replaced so the run goes on.
                    match h1_connect(t.addr).await {
                        Ok(n) => c = n,
                        Err(_) => break,
                    }
                }
            }
        });
    }
    drop(done_tx);
    let period = Duration::from_nanos(1_000_000_000 / rate);
    let start = Instant::now() + Duration::from_millis(10);
    // The dispatcher: a thread that releases each request at its due time.
    let dispatcher = std::thread::spawn(move || {
        // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64) };
        for i in 0..requests {
            let due = start + period * i as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if tx.send(due).is_err() {
                break;
            }
        }
    });
    let mut lat = Vec::with_capacity(requests as usize);
    let mut errors = 0u64;
    let limit = period * requests as u32 + Duration::from_secs(10);
    let collect = async {
        while let Some((ns, ok)) = done_rx.recv().await {
            if ok {
                lat.push(ns);
            } else {
                errors += 1;
            }
            if lat.len() as u64 + errors == requests {
                break;
            }
        }
    };
    let timed_out = tokio::time::timeout(limit, collect).await.is_err();
    let elapsed = start.elapsed().as_secs_f64();
    let _ = dispatcher.join();
    let ok = lat.len() as u64;
    Ok(json!({
        "mode": "rate", "rate": rate, "requests": requests, "ok": ok, "errors": errors,
        "timed_out": timed_out, "elapsed_s": elapsed, "achieved_rps": ok as f64 / elapsed,
        "latency": percentiles(lat),
    }))
}

/// A socket closed with RST (SO_LINGER 0): no TIME_WAIT on either side.
fn close_with_rst(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

async fn connect_mode(t: Target, count: u64, http: bool) -> Result<serde_json::Value> {
    let tmpl = RequestTemplate::new(&t)?;
    let mut connect_ns = Vec::with_capacity(count as usize);
    let mut total_ns = Vec::with_capacity(count as usize);
    let mut errors = 0u64;
    let start = Instant::now();
    for _ in 0..count {
        let t0 = Instant::now();
        let stream = match TcpStream::connect(t.addr).await {
            Ok(s) => s,
            Err(_) => {
                errors += 1;
                continue;
            }
        };
        connect_ns.push(t0.elapsed().as_nanos() as u64);
        close_with_rst(&stream);
        if http {
            stream.set_nodelay(true)?;
            let result = async {
                let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                let conn = tokio::spawn(conn);
                let r = exchange(&mut send, &tmpl).await;
                drop(send);
                conn.abort();
                r
            }
            .await;
            match result {
                Ok((true, _)) => total_ns.push(t0.elapsed().as_nanos() as u64),
                _ => errors += 1,
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let done = if http { total_ns.len() } else { connect_ns.len() } as f64;
    Ok(json!({
        "mode": "connect", "count": count, "errors": errors, "elapsed_s": elapsed,
        "rate_per_s": done / elapsed, "connect": percentiles(connect_ns), "total": percentiles(total_ns),
    }))
}

async fn tcp_mode(addr: SocketAddr, bytes: u64) -> Result<serde_json::Value> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    let (mut rd, mut wr) = stream.into_split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let chunk = vec![0x5au8; 256 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            wr.write_all(&chunk[..n]).await?;
            left -= n as u64;
        }
        wr.shutdown().await?;
        anyhow::Ok(())
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    while got < bytes {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    writer.await??;
    if got != bytes {
        bail!("echoed {got} of {bytes} bytes");
    }
    Ok(json!({"mode": "tcp", "bytes": bytes, "elapsed_s": elapsed, "gbit_per_s": bytes as f64 * 8.0 / elapsed / 1e9}))
}

async fn idle_mode(t: Target, connections: usize, hold_secs: u64) -> Result<serde_json::Value> {
    let tmpl = RequestTemplate::new(&t)?;
    let mut held = Vec::with_capacity(connections);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut opened = 0usize;
    let mut errors = 0usize;
    let mut first_error: Option<String> = None;
    // 64 connections at a time.
    while opened + errors < connections {
        while tasks.len() < 64 && opened + errors + tasks.len() < connections {
            let tmpl = tmpl.clone();
            tasks.spawn(async move {
                // Closed with RST at the end: 10,000 sockets left in TIME_WAIT (60 s)
                // would hold that many of the pod's 28,232 ephemeral ports to the same
                // destination, so that a repetition within the minute could not open
                // its 10,000 (the third one opened 8,235).
                let mut s = h1_connect_closing(t.addr, Close::Rst).await?;
                let (ok, _) = exchange(&mut s, &tmpl).await?;
                if !ok {
                    bail!("non-2xx answer");
                }
                anyhow::Ok(s)
            });
        }
        match tasks.join_next().await {
            Some(Ok(Ok(s))) => {
                held.push(s);
                opened += 1;
            }
            Some(failed) => {
                errors += 1;
                if first_error.is_none() {
                    first_error = Some(match failed {
                        Ok(Err(e)) => format!("{e:#}"),
                        Err(e) => e.to_string(),
                        Ok(Ok(_)) => unreachable!("matched above"),
                    });
                }
            }
            None => break,
        }
    }
    let open_s = start.elapsed().as_secs_f64();
    match &first_error {
        None => eprintln!("OPEN {opened}"),
        Some(e) => eprintln!("OPEN {opened} (failed: {errors}, the first: {e})"),
    }
    // Hold until stdin closes (the bench has measured) or the hold time ends.
    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(hold_secs), async {
        while !matches!(stdin.read(&mut sink).await, Ok(0) | Err(_)) {}
    })
    .await;
    let alive = held.iter().filter(|s| !s.is_closed()).count();
    Ok(json!({"mode": "idle", "opened": opened, "errors": errors, "open_s": open_s, "alive_at_end": alive}))
}

async fn watch_mode(t: Target, expect: String, timeout_ms: u64) -> Result<serde_json::Value> {
    let tmpl = RequestTemplate::new(&t)?;
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let mut polls = 0u64;
    let mut conn: Option<SendRequest<Empty<Bytes>>> = None;
    while Instant::now() < deadline {
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            conn = h1_connect(t.addr).await.ok();
        }
        if let Some(c) = conn.as_mut() {
            polls += 1;
            match exchange(c, &tmpl).await {
                Ok((_, body)) if body.windows(expect.len()).any(|w| w == expect.as_bytes()) => {
                    let seen = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
                    return Ok(json!({"mode": "watch", "seen_unix_ns": seen, "polls": polls}));
                }
                Ok(_) => {}
                Err(_) => conn = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("{expect:?} not seen within {timeout_ms} ms ({polls} polls)")
}
