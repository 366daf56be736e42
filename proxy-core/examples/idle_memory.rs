//! Where the proxy's memory per idle HTTP/1.1 connection goes (bench scenario 6 in
//! process): one proxy (one data-path worker thread, as the agent under `--workers 1`)
//! in front of a loopback backend; the client opens `connections` keep-alive
//! connections one after the other, makes one request on each, and keeps them all open.
//!
//! ```sh
//! cargo build --release -p ambit-proxy-core --example idle_memory
//! ulimit -n 20000; target/release/examples/idle_memory 5000
//! ```
//!
//! It prints, per idle connection: the growth of the live heap (a counting allocator:
//! every allocation of the process, bytes asked for, not the allocator's overhead), of
//! the live allocations and of the RSS; then the allocation sizes that grew, largest
//! share first (size, allocations per connection, bytes per connection). The client's
//! sockets are std's (no heap per connection) and the upstream connection is reused,
//! so the growth is the proxy's downstream side. Only loopback addresses are used.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ambit_proxy_core::config::{AppProtocol, ConfigHandle, EndpointSet, ProxyConfig, RouteSet, ServicePort, ServiceRef};
use ambit_proxy_core::identity::{CgroupId, Origin, OriginError, OriginResolver, Workload};
use ambit_proxy_core::proxy::{NodeSockets, Proxy, ProxyOptions};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

/// Live allocations by size, in steps of [`STEP`] bytes up to [`BUCKETS`] × [`STEP`]
/// (the last bucket holds everything larger).
const STEP: usize = 16;
const BUCKETS: usize = 4096;

struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_COUNT: AtomicI64 = AtomicI64::new(0);
static BY_SIZE: [AtomicI64; BUCKETS] = [const { AtomicI64::new(0) }; BUCKETS];

fn bucket(size: usize) -> usize {
    (size.div_ceil(STEP)).min(BUCKETS - 1)
}

fn counted(size: usize, sign: i64) {
    LIVE_BYTES.fetch_add(sign * size as i64, Ordering::Relaxed);
    LIVE_COUNT.fetch_add(sign, Ordering::Relaxed);
    BY_SIZE[bucket(size)].fetch_add(sign, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted(layout.size(), 1);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        counted(layout.size(), -1);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted(layout.size(), -1);
        counted(new_size, 1);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The live heap at one moment.
struct Snapshot {
    bytes: i64,
    count: i64,
    by_size: Vec<i64>,
    rss: i64,
}

fn snapshot() -> Snapshot {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    Snapshot {
        bytes: LIVE_BYTES.load(Ordering::Relaxed),
        count: LIVE_COUNT.load(Ordering::Relaxed),
        by_size: BY_SIZE.iter().map(|b| b.load(Ordering::Relaxed)).collect(),
        rss: pages * 4096,
    }
}

const VIP: &str = "10.96.0.10:80";
const CALLER: CgroupId = CgroupId(4242);

/// Every connection dialled the Service at [`VIP`], from the workload in [`CALLER`].
struct FixedOrigin;

impl OriginResolver for FixedOrigin {
    fn resolve(&self, _peer: SocketAddr, _local: SocketAddr) -> Result<Origin, OriginError> {
        Ok(Origin { destination: VIP.parse().expect("VIP"), pod_cgroup: CALLER })
    }
}

/// The Service at [`VIP`] without routes: plain load balancing to `backend`.
fn config(backend: SocketAddr) -> ProxyConfig {
    let port = ServicePort {
        service: ServiceRef::new("bench", "echo"),
        port: 80,
        port_name: Some("http".into()),
        protocol: AppProtocol::Http,
        endpoints: Arc::new(EndpointSet::new(vec![backend])),
        routes: RouteSet::default(),
    };
    let caller = Workload {
        namespace: "bench".into(),
        name: "client".into(),
        workload: "client".into(),
        uid: "uid-1".into(),
        service_account: "default".into(),
        cgroup: CALLER,
    };
    ProxyConfig {
        services: HashMap::from([(VIP.parse().expect("VIP"), Arc::new(port))]),
        workloads: HashMap::from([(CALLER, Arc::new(caller))]),
        version: 1,
        ..ProxyConfig::default()
    }
}

/// A minimal HTTP/1.1 backend answering `ok`, on a thread of its own.
fn start_backend() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("backend".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                tx.send(listener.local_addr().expect("addr")).expect("send");
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                        });
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                    });
                }
            });
        })
        .expect("backend thread");
    rx.recv().expect("backend address")
}

/// Opens one connection to `addr` and makes one request on it (response read whole).
fn one_request(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET /idle HTTP/1.1\r\nHost: echo\r\nx-bench: yes\r\n\r\n")?;
    let mut buf = [0u8; 1024];
    let mut got = 0;
    while !buf[..got].ends_with(b"\r\n\r\nok") {
        let n = stream.read(&mut buf[got..])?;
        if n == 0 || got + n == buf.len() {
            return Err(std::io::Error::other(format!("unexpected answer: {:?}", String::from_utf8_lossy(&buf[..got + n]))));
        }
        got += n;
    }
    Ok(stream)
}

/// Waits until the live heap has not moved for a while (the proxy finished its work).
fn settle() {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = LIVE_BYTES.load(Ordering::Relaxed);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        let now = LIVE_BYTES.load(Ordering::Relaxed);
        if now == last {
            return;
        }
        last = now;
    }
}

fn report(before: &Snapshot, after: &Snapshot, connections: usize) {
    let per = |delta: i64| delta as f64 / connections as f64;
    println!("idle connections: {connections}");
    println!("live heap per connection: {:.0} bytes in {:.1} allocations", per(after.bytes - before.bytes), per(after.count - before.count));
    println!("RSS per connection: {:.0} bytes", per(after.rss - before.rss));
    let mut grown: Vec<(usize, i64)> =
        (0..BUCKETS).map(|b| (b, after.by_size[b] - before.by_size[b])).filter(|(_, d)| *d > 0).collect();
    grown.sort_by_key(|(b, d)| std::cmp::Reverse(*b as i64 * *d));
    println!("allocation sizes that grew (size up to, allocations and bytes per connection):");
    for (b, d) in grown.iter().take(16) {
        let size = b * STEP;
        let label = if *b == BUCKETS - 1 { format!("> {}", size - STEP) } else { format!("≤ {size}") };
        println!("  {label:>8} B: {:5.2} allocations, {:7.0} bytes", per(*d), per(*d * size as i64));
    }
}

/// The RSS growth once glibc has returned its free pages (`malloc_trim`): what the
/// allocator kept of the memory freed since (hyper's buffers of parked connections).
#[cfg(target_env = "gnu")]
fn print_trimmed(before: &Snapshot, connections: usize) {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: glibc's malloc_trim takes a byte count and only releases free memory.
    unsafe { malloc_trim(0) };
    let trimmed = snapshot();
    println!("RSS per connection after malloc_trim: {:.0} bytes", (trimmed.rss - before.rss) as f64 / connections as f64);
}

#[cfg(not(target_env = "gnu"))]
fn print_trimmed(_: &Snapshot, _: usize) {}

fn main() {
    let connections = std::env::args().nth(1).map_or(5_000, |a| a.parse::<usize>().expect("a number of connections"));
    let backend = start_backend();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ambit-data")
        .enable_all()
        .build()
        .expect("runtime");
    let shutdown = CancellationToken::new();
    let addr = runtime.block_on(async {
        let handle = ConfigHandle::new(config(backend));
        let proxy = Proxy::with_sockets(handle, Arc::new(FixedOrigin), ProxyOptions::default(), None, Arc::new(NodeSockets));
        let listener = ambit_proxy_core::proxy::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(proxy.serve(listener, shutdown.clone(), Duration::from_secs(1)));
        addr
    });
    // Warm up: the upstream connection, the pools and the allocator's arenas.
    let warm: Vec<TcpStream> = (0..100).map(|_| one_request(addr).expect("warm-up request")).collect();
    drop(warm);
    let mut held = Vec::with_capacity(connections);
    settle();
    let before = snapshot();
    for _ in 0..connections {
        held.push(one_request(addr).expect("request"));
    }
    // Idle connections are parked a second or so after their last request.
    std::thread::sleep(Duration::from_secs(3));
    settle();
    let after = snapshot();
    report(&before, &after, connections);
    print_trimmed(&before, connections);
    drop(held);
    shutdown.cancel();
}
