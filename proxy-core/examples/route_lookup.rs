//! What one per-request route lookup costs, and where (bench scenario 7's lookup, in
//! proxy-core alone): a table shaped like the scenario's (10,000 Services in namespaces
//! of 100, each with two HTTPRoutes of two rules: a header + path-prefix match with a
//! header modifier, and an exact-path match), then lookups as the proxy does them per
//! request, each on a different Service spread over all of them (cold caches) or
//! confined to 100 (hot). The lookup is also timed in stages, so that their
//! differences say what each step adds:
//! - `service`: the Service port by dialled address (the hash map);
//! - `scope`: then the caller scope's route list;
//! - `decide`: then the first matching rule (the whole lookup).
//!
//! To read the cold figures in cache misses (this machine's virtual CPUs expose no
//! hardware counters to `perf stat`), it also times one dependent load from memory:
//! a pointer chase through 128 MiB, one cache line per hop in random order. A cold
//! lookup costs about that many hops as its longest chain of loads that each need
//! the one before.
//!
//! ```sh
//! cargo build --release -p ambit-proxy-core --example route_lookup
//! target/release/examples/route_lookup [services] [lookups]
//! ```

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use ambit_proxy_core::config::{AppProtocol, Decision, EndpointSet, ProxyConfig, RouteSet, ServiceMap, ServicePort, ServiceRef};
use ambit_proxy_core::routes::{
    BackendFilters, BackendSet, BackendTarget, Forward, HeaderMatch, HeaderModifier, PathMatch, RequestView, RouteKind,
    RouteList, RouteMatch, RouteMeta, RouteRef, Rule, RuleAction, RuleFilters, ServiceBackend, StringMatch, Timeouts,
    WeightedBackend,
};

fn backend(namespace: &str, name: &str, endpoint: SocketAddr) -> BackendSet {
    BackendSet::new(vec![WeightedBackend {
        weight: 1,
        target: BackendTarget::Service(ServiceBackend {
            service: ServiceRef::new(namespace, name),
            port: 80,
            protocol: AppProtocol::Http,
            endpoints: Arc::new(EndpointSet::new(vec![endpoint])),
        }),
        filters: BackendFilters::default(),
    }])
}

fn rule(route: &Arc<RouteRef>, index: usize, matched: RouteMatch, filters: RuleFilters, backends: BackendSet) -> Arc<Rule> {
    Arc::new(Rule {
        meta: RouteMeta { route: route.clone(), created: Some(0) },
        index,
        name: None,
        matches: vec![matched],
        filters,
        action: RuleAction::Forward(Forward { rewrite: None, backends }),
        timeouts: Timeouts::default(),
        retry: None,
    })
}

/// Route `r` of Service `i`: the scenario's two rules.
fn route_rules(namespace: &str, i: usize, r: usize, endpoint: SocketAddr) -> Vec<Arc<Rule>> {
    let route = Arc::new(RouteRef { kind: RouteKind::Http, namespace: namespace.into(), name: format!("route-{i}-{r}").into() });
    let service = format!("svc-{i}");
    let api = RouteMatch {
        path: Some(PathMatch::Prefix(format!("/r{r}/api"))),
        headers: vec![HeaderMatch { name: "x-tenant".parse().expect("name"), value: StringMatch::Exact(format!("t{r}")) }],
        ..RouteMatch::default()
    };
    let modifier = HeaderModifier { set: vec![("x-route".parse().expect("name"), format!("r{r}").parse().expect("value"))], ..Default::default() };
    let filters = RuleFilters { request_headers: Some(modifier), ..Default::default() };
    let health = RouteMatch { path: Some(PathMatch::Exact(format!("/r{r}/health"))), ..RouteMatch::default() };
    vec![
        rule(&route, 0, api, filters, backend(namespace, &service, endpoint)),
        rule(&route, 1, health, RuleFilters::default(), backend(namespace, &service, endpoint)),
    ]
}

fn table(services: usize) -> (ProxyConfig, Vec<(SocketAddr, String)>) {
    let mut map = ServiceMap::default();
    let mut addrs = Vec::new();
    for i in 0..services {
        let namespace = format!("scale-{}", i / 100);
        let ip = Ipv4Addr::from(0x0a60_0000 + i as u32);
        let vip = SocketAddr::from((ip, 80));
        let endpoint = SocketAddr::from((Ipv4Addr::from(0x0af4_0000 + i as u32), 8080));
        let rules: Vec<Arc<Rule>> = (0..2).flat_map(|r| route_rules(&namespace, i, r, endpoint)).collect();
        let routes = RouteSet { producer: Some(Arc::new(RouteList::new(RouteKind::Http, rules))), ..Default::default() };
        let port = ServicePort {
            service: ServiceRef::new(namespace.as_str(), format!("svc-{i}")),
            port: 80,
            port_name: Some("http".into()),
            protocol: AppProtocol::Http,
            endpoints: Arc::new(EndpointSet::new(vec![endpoint])),
            routes,
        };
        map.insert(vip, Arc::new(port));
        addrs.push((vip, namespace));
    }
    (ProxyConfig { services: map, version: 1, ..ProxyConfig::default() }, addrs)
}

#[derive(Clone, Copy)]
enum Stage {
    Service,
    Scope,
    Decide,
}

/// Nanoseconds per lookup of `stage`, over `lookups` lookups spread over `spread` Services.
fn time(config: &ProxyConfig, addrs: &[(SocketAddr, String)], stage: Stage, spread: usize, lookups: usize) -> f64 {
    let mut headers = http::HeaderMap::new();
    headers.insert("x-tenant", http::HeaderValue::from_static("t1"));
    let method = http::Method::GET;
    let mut matched = 0usize;
    let started = Instant::now();
    for i in 0..lookups {
        let (addr, namespace) = &addrs[i.wrapping_mul(7919) % spread];
        let Some(port) = config.service(black_box(*addr)) else { panic!("Service missing") };
        match stage {
            Stage::Service => matched += usize::from(black_box(port.port) == 80),
            Stage::Scope => matched += usize::from(black_box(port.routes.for_caller(namespace)).is_some()),
            Stage::Decide => {
                let view = RequestView { method: &method, path: "/r1/api/items", query: None, headers: &headers };
                if let Decision::Matched(m) = port.routes.decide(namespace, &view) {
                    black_box(&m);
                    matched += 1;
                }
            }
        }
    }
    let ns = started.elapsed().as_nanos() as f64 / lookups as f64;
    assert_eq!(matched, lookups, "every lookup finds its Service and rule");
    ns
}

/// Nanoseconds per hop of a random pointer chase through `lines` cache lines (one
/// dependent load each, missing every cache level and mostly the TLB).
fn chase_ns(lines: usize, hops: usize) -> f64 {
    const WORDS: usize = 8; // 64-byte lines
    let mut next = vec![0usize; lines * WORDS];
    // Sattolo's algorithm: one cycle through every line, in random order.
    let mut order: Vec<usize> = (0..lines).collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..lines).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % i as u64) as usize);
    }
    for (from, to) in order.iter().zip(order.iter().cycle().skip(1)) {
        next[from * WORDS] = to * WORDS;
    }
    let mut at = 0;
    let started = Instant::now();
    for _ in 0..hops {
        at = next[at];
    }
    black_box(at);
    started.elapsed().as_nanos() as f64 / hops as f64
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("numeric arguments"));
    let services = args.next().unwrap_or(10_000);
    let lookups = args.next().unwrap_or(1_000_000);
    let (config, addrs) = table(services);
    println!("{services} Services; ns per lookup in three rounds, the stages interleaved (cold: spread over all; hot: 100 Services)");
    let stages = [("service", Stage::Service), ("scope", Stage::Scope), ("decide", Stage::Decide)];
    let mut cold = vec![Vec::new(); stages.len()];
    let mut hot = vec![Vec::new(); stages.len()];
    for _ in 0..3 {
        for (s, (_, stage)) in stages.iter().enumerate() {
            cold[s].push(time(&config, &addrs, *stage, addrs.len(), lookups));
            hot[s].push(time(&config, &addrs, *stage, addrs.len().min(100), lookups));
        }
    }
    let show = |v: &[f64]| v.iter().map(|x| format!("{x:6.0}")).collect::<Vec<_>>().join(" ");
    for (s, (name, _)) in stages.iter().enumerate() {
        println!("{name:>8}: cold {}   hot {}", show(&cold[s]), show(&hot[s]));
    }
    let chase: Vec<f64> = (0..3).map(|_| chase_ns(2 << 20, lookups)).collect();
    println!(
        "sizes: Service port {} bytes, route list {} bytes (a short list's entries and literals inline)",
        std::mem::size_of::<ServicePort>(),
        std::mem::size_of::<RouteList>()
    );
    println!("one dependent load from memory (pointer chase, 128 MiB): {} ns", show(&chase));
}
