//! A loopback harness for profiling the HTTP data path: one proxy (one data-path
//! thread, `ambit-data`, per worker, each with its own listener, as the agent runs
//! them; one worker by default) routing h2load's HTTP/1.1 keep-alive load to two loopback backends with the bench's routing (a header
//! match, a RequestHeaderModifier, two backends weighted 50/50).
//!
//! ```sh
//! cargo run --release -p ambit-proxy-core --example loopback_load -- [requests] [connections] [workers]
//! perf record -g -- target/release/examples/loopback_load 400000 64   # then: perf report --comm ambit-data
//! ```
//!
//! It prints the requests served, the proxy threads' CPU time per request (user and
//! kernel) and the heap allocations they made per request. Only loopback addresses are used.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ambit_proxy_core::config::{AppProtocol, ConfigHandle, EndpointSet, ProxyConfig, RouteSet, ServicePort, ServiceRef};
use ambit_proxy_core::identity::{CgroupId, Origin, OriginError, OriginResolver, Workload};
use ambit_proxy_core::metrics::ProxyMetrics;
use ambit_proxy_core::proxy::{NodeSockets, Proxy, ProxyOptions};
use ambit_proxy_core::routes::{
    BackendFilters, BackendSet, BackendTarget, Forward, HeaderMatch, HeaderModifier, RouteKind, RouteList, RouteMatch,
    RouteMeta, RouteRef, Rule, RuleAction, RuleFilters, ServiceBackend, StringMatch, Timeouts, WeightedBackend,
};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

/// Counts the allocations of the proxy thread, which opts in when it starts.
#[global_allocator]
static GLOBAL: ambit_alloc_count::Counting = ambit_alloc_count::Counting;

const VIP: &str = "10.96.0.10:80";
const CALLER: CgroupId = CgroupId(4242);

/// Every connection dialled the Service at [`VIP`], from the workload in [`CALLER`].
struct FixedOrigin;

impl OriginResolver for FixedOrigin {
    fn resolve(&self, _peer: SocketAddr, _local: SocketAddr) -> Result<Origin, OriginError> {
        Ok(Origin { destination: VIP.parse().expect("VIP"), pod_cgroup: CALLER })
    }
}

fn backend(name: &str, endpoint: SocketAddr) -> WeightedBackend {
    WeightedBackend {
        weight: 50,
        target: BackendTarget::Service(ServiceBackend {
            service: ServiceRef::new("bench", name),
            port: 80,
            protocol: AppProtocol::Http,
            endpoints: Arc::new(EndpointSet::new(vec![endpoint])),
        }),
        filters: BackendFilters::default(),
    }
}

/// The bench's routing: `x-bench: yes` → set `x-routed: ambit`, backends a and b 50/50.
fn config(a: SocketAddr, b: SocketAddr) -> ProxyConfig {
    let route = Arc::new(RouteRef { kind: RouteKind::Http, namespace: "bench".into(), name: "echo".into() });
    let matched = RouteMatch {
        headers: vec![HeaderMatch { name: "x-bench".parse().expect("name"), value: StringMatch::Exact("yes".into()) }],
        ..RouteMatch::default()
    };
    let modifier = HeaderModifier { set: vec![("x-routed".parse().expect("name"), "ambit".parse().expect("value"))], ..Default::default() };
    let rule = Rule {
        meta: RouteMeta { route, created: Some(0) },
        index: 0,
        name: None,
        matches: vec![matched],
        filters: RuleFilters { request_headers: Some(modifier), ..Default::default() },
        action: RuleAction::Forward(Forward { rewrite: None, backends: BackendSet::new(vec![backend("echo-a", a), backend("echo-b", b)]) }),
        timeouts: Timeouts::default(),
        retry: None,
    };
    let routes = RouteSet { producer: Some(Arc::new(RouteList::new(RouteKind::Http, vec![Arc::new(rule)]))), ..Default::default() };
    let port = ServicePort {
        service: ServiceRef::new("bench", "echo"),
        port: 80,
        port_name: Some("http".into()),
        protocol: AppProtocol::Http,
        endpoints: Arc::new(EndpointSet::new(vec![a, b])),
        routes,
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

/// A minimal HTTP/1.1 backend answering `ok` on a thread of its own.
fn start_backends() -> (SocketAddr, SocketAddr) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("backend".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let b = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                tx.send((a.local_addr().expect("addr"), b.local_addr().expect("addr"))).expect("send");
                tokio::join!(serve_backend(a), serve_backend(b));
            });
        })
        .expect("backend thread");
    rx.recv().expect("backend addresses")
}

async fn serve_backend(listener: tokio::net::TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// (utime, stime) of this process's threads named `name`, in seconds.
fn thread_cpu_seconds(name: &str) -> (f64, f64) {
    let ticks = 100.0; // USER_HZ on Linux
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return (0.0, 0.0) };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| {
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some((fields.get(11)?.parse::<f64>().ok()? / ticks, fields.get(12)?.parse::<f64>().ok()? / ticks))
        })
        .fold((0.0, 0.0), |(u, s), (u1, s1)| (u + u1, s + s1))
}

fn h2load(url: &str, requests: u64, connections: u64, threads: usize) -> Result<String, String> {
    let output = Command::new("h2load")
        .args(["--h1", "-t", &threads.to_string(), "-H", "x-bench: yes"])
        .args(["-n", &requests.to_string(), "-c", &connections.to_string(), url])
        .output()
        .map_err(|e| format!("h2load: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() || !text.contains(&format!("{requests} succeeded")) {
        return Err(format!("h2load did not succeed:\n{text}{}", String::from_utf8_lossy(&output.stderr)));
    }
    Ok(text)
}

/// One data-path worker as the agent runs it (`agent/src/data_runtime.rs`): a
/// current-thread runtime driven by a thread of its own, named `ambit-data`.
fn worker() -> Arc<tokio::runtime::Runtime> {
    let runtime = Arc::new(tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"));
    let driver = runtime.clone();
    std::thread::Builder::new()
        .name("ambit-data".into())
        .spawn(move || {
            ambit_alloc_count::count_allocations_on_this_thread();
            driver.block_on(std::future::pending::<()>())
        })
        .expect("data-path thread");
    runtime
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<u64>().expect("numeric arguments"));
    let requests = args.next().unwrap_or(200_000);
    let connections = args.next().unwrap_or(64);
    let workers = args.next().unwrap_or(1).max(1) as usize;
    let (a, b) = start_backends();
    let runtimes: Vec<_> = (0..workers).map(|_| worker()).collect();
    let metrics = std::env::var_os("NO_METRICS").is_none().then(|| {
        let mut registry = prometheus_client::registry::Registry::default();
        ProxyMetrics::register(&mut registry)
    });
    let shutdown = CancellationToken::new();
    let proxy = runtimes[0].block_on(async {
        let handle = ConfigHandle::new(config(a, b));
        Proxy::with_sockets(handle, Arc::new(FixedOrigin), ProxyOptions::default(), metrics, Arc::new(NodeSockets))
    });
    // One listener per worker on one address, as the agent binds them (SO_REUSEPORT).
    let first = ambit_proxy_core::proxy::bind_shared("127.0.0.1:0".parse().expect("addr"), 4096).expect("bind");
    let addr = first.local_addr().expect("addr");
    let listeners = std::iter::once(first).chain((1..workers).map(|_| ambit_proxy_core::proxy::bind_shared(addr, 4096).expect("bind")));
    for (runtime, listener) in runtimes.iter().zip(listeners) {
        let (proxy, shutdown) = (proxy.clone(), shutdown.clone());
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            proxy.serve(listener, shutdown, Duration::from_secs(1)).await
        });
    }
    let url = format!("http://{addr}/bench");
    h2load(&url, requests / 10, connections, workers).expect("warm-up");
    let (cpu_before, allocs_before) = (thread_cpu_seconds("ambit-data"), ambit_alloc_count::counted_allocations());
    let report = h2load(&url, requests, connections, workers).expect("run");
    let cpu_after = thread_cpu_seconds("ambit-data");
    let (user, system) = (cpu_after.0 - cpu_before.0, cpu_after.1 - cpu_before.1);
    let allocs = ambit_alloc_count::counted_allocations() - allocs_before;
    let rps = report.lines().find(|l| l.starts_with("finished in")).unwrap_or("?");
    let per_request = |seconds: f64| seconds * 1e6 / requests as f64;
    println!("{rps}");
    println!(
        "proxy CPU {:.2} s ({workers} workers): {:.1} µs per request ({:.1} user, {:.1} kernel), {:.0} requests per CPU-second",
        user + system,
        per_request(user + system),
        per_request(user),
        per_request(system),
        requests as f64 / (user + system)
    );
    println!("proxy-thread allocations per request: {:.2}", allocs as f64 / requests as f64);
    shutdown.cancel();
}
