//! Translation that reuses the previous one's work (`translate_reusing`) must give
//! exactly what a fresh `translate` gives. A small world (Services, EndpointSlices,
//! HTTPRoutes, GRPCRoutes, TCPRoutes, namespaces; valid and invalid rules, regexes,
//! producer and consumer routes, missing backends) goes through a long sequence of
//! pseudo-random changes; after each, both translations are rendered and compared.
//! A change to routes alone must compile only the changed routes, and build again only
//! the Service ports they attach to.

use ambit_agent::cluster::{ClusterState, ObjectKey, ObjectKind};
use ambit_agent::manifests::parse_text;
use ambit_agent::translate::{translate, translate_reusing, NodeView, Reuse, Translation};
use ambit_proxy_core::config::RouteSet;
use serde_json::{json, Value};

const NAMESPACES: usize = 3;
const SERVICES: usize = 8;
const HTTP_ROUTES: usize = 14;
const GRPC_ROUTES: usize = 4;
const TCP_ROUTES: usize = 3;
const STEPS: usize = 250;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

fn ns(i: usize) -> String {
    format!("n{}", i % NAMESPACES)
}

fn namespace(i: usize, enrolled: bool) -> String {
    let label = if enrolled { "enabled" } else { "disabled" };
    format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: n{i}, labels: {{ambit.dev/mesh: {label}}}}}\n")
}

fn service(rng: &mut Rng, i: usize) -> String {
    let ip = if rng.chance(10) { String::new() } else { format!("clusterIP: 10.96.0.{}\n  ", 1 + i + 20 * rng.below(2)) };
    let grpc = if rng.chance(70) { ", {name: grpc, port: 7070, appProtocol: kubernetes.io/h2c}" } else { "" };
    let tcp = if rng.chance(50) { ", {name: db, port: 5432}" } else { "" };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: {}}}\nspec:\n  {ip}ports: [{{name: http, port: 80, appProtocol: http}}{grpc}{tcp}]\n",
        ns(i)
    )
}

fn slice(rng: &mut Rng, i: usize) -> String {
    let ready = rng.below(3);
    let endpoints: Vec<String> = (0..ready).map(|e| format!("{{addresses: [10.1.{i}.{}]}}", e + 1 + rng.below(5))).collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc-{i}-x, namespace: {}, labels: {{kubernetes.io/service-name: svc-{i}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}, {{name: grpc, port: 9090}}]\nendpoints: [{}]\n",
        ns(i),
        endpoints.join(", ")
    )
}

/// A parentRef to a Service, from a route in `route_ns`: mostly its own namespace's
/// Services (producer), sometimes another's (consumer), sometimes a missing one.
fn parent(rng: &mut Rng, route_ns: usize, port: u16) -> String {
    let target = rng.below(SERVICES + 1);
    let port = if rng.chance(15) { String::new() } else { format!(", port: {port}") };
    let namespace = if rng.chance(60) { format!(", namespace: {}", ns(target)) } else { String::new() };
    let _ = route_ns;
    format!("{{group: \"\", kind: Service, name: svc-{target}{namespace}{port}}}")
}

fn backend(rng: &mut Rng, port: u16) -> String {
    let weight = if rng.chance(30) { format!(", weight: {}", rng.below(4)) } else { String::new() };
    format!("{{name: svc-{}, port: {port}{weight}}}", rng.below(SERVICES + 1))
}

fn http_rule(rng: &mut Rng) -> String {
    let path = match rng.below(5) {
        0 => format!("{{type: Exact, value: /e{}}}", rng.below(3)),
        1 => format!("{{type: RegularExpression, value: \"/r[0-9]{{{}}}\"}}", 1 + rng.below(3)),
        2 => "{type: PathPrefix, value: no-slash}".to_string(),
        _ => format!("{{type: PathPrefix, value: /p{}}}", rng.below(3)),
    };
    let header = if rng.chance(40) { format!(", headers: [{{name: x-t, value: t{}}}]", rng.below(3)) } else { String::new() };
    let filter = if rng.chance(30) {
        format!("\n    filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: x-g, value: g{}}}]}}}}]", rng.below(100))
    } else {
        String::new()
    };
    let backends: Vec<String> = (0..rng.below(3)).map(|_| backend(rng, 80)).collect();
    format!("  - matches: [{{path: {path}{header}}}]{filter}\n    backendRefs: [{}]\n", backends.join(", "))
}

fn http_route(rng: &mut Rng, j: usize) -> String {
    let rules: String = (0..1 + rng.below(3)).map(|_| http_rule(rng)).collect();
    let created = format!("2024-01-0{}T00:00:00Z", 1 + rng.below(3));
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: h-{j}, namespace: {}, creationTimestamp: \"{created}\"}}\nspec:\n  parentRefs: [{}]\n  rules:\n{rules}",
        ns(j),
        parent(rng, j, 80)
    )
}

fn grpc_route(rng: &mut Rng, j: usize) -> String {
    let method = if rng.chance(20) { "{type: Exact}".to_string() } else { format!("{{service: pkg.S{}, method: M}}", rng.below(3)) };
    let port = if rng.chance(70) { 7070 } else { 80 };
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: g-{j}, namespace: {}}}\nspec:\n  parentRefs: [{}]\n  rules:\n  - matches: [{{method: {method}}}]\n    backendRefs: [{}]\n",
        ns(j),
        parent(rng, j, port),
        backend(rng, 7070)
    )
}

fn tcp_route(rng: &mut Rng, j: usize) -> String {
    let port = if rng.chance(70) { 5432 } else { 80 };
    format!(
        "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {{name: t-{j}, namespace: {}}}\nspec:\n  parentRefs: [{}]\n  rules:\n  - backendRefs: [{}]\n",
        ns(j),
        parent(rng, j, port),
        backend(rng, 5432)
    )
}

fn put(state: &mut ClusterState, yaml: &str) {
    let parsed = parse_text(std::path::Path::new("world.yaml"), yaml);
    assert!(parsed.errors.is_empty(), "{yaml}\n{:?}", parsed.errors);
    assert_eq!(parsed.objects.len(), 1, "{yaml}");
    for object in parsed.objects {
        state.insert(object).unwrap();
    }
}

fn world(rng: &mut Rng) -> ClusterState {
    let mut state = ClusterState::new();
    for i in 0..NAMESPACES {
        put(&mut state, &namespace(i, true));
    }
    for i in 0..SERVICES {
        put(&mut state, &service(rng, i));
        put(&mut state, &slice(rng, i));
    }
    for j in 0..HTTP_ROUTES {
        put(&mut state, &http_route(rng, j));
    }
    for j in 0..GRPC_ROUTES {
        put(&mut state, &grpc_route(rng, j));
    }
    for j in 0..TCP_ROUTES {
        put(&mut state, &tcp_route(rng, j));
    }
    state
}

/// One pseudo-random change; true when it touched routes only.
fn change(rng: &mut Rng, state: &mut ClusterState) -> bool {
    match rng.below(10) {
        0..=3 => {
            let j = rng.below(HTTP_ROUTES + 2);
            put(state, &http_route(rng, j));
        }
        4 => {
            let key = ObjectKey::new(ns(rng.below(NAMESPACES)), format!("h-{}", rng.below(HTTP_ROUTES)));
            state.remove_key(ObjectKind::HttpRoute, &key);
        }
        5 => {
            let j = rng.below(GRPC_ROUTES + 1);
            put(state, &grpc_route(rng, j));
        }
        6 => {
            let j = rng.below(TCP_ROUTES);
            put(state, &tcp_route(rng, j));
        }
        7 => {
            let i = rng.below(SERVICES);
            if rng.chance(20) {
                state.remove_key(ObjectKind::Service, &ObjectKey::new(ns(i), format!("svc-{i}")));
            } else {
                put(state, &service(rng, i));
            }
            return false;
        }
        8 => {
            let i = rng.below(SERVICES);
            put(state, &slice(rng, i));
            return false;
        }
        _ => {
            put(state, &namespace(rng.below(NAMESPACES), rng.chance(70)));
            return false;
        }
    }
    true
}

fn routes(set: &RouteSet) -> Value {
    let mut consumers: Vec<String> = set.consumers.iter().map(|(ns, list)| format!("{ns}: {list:?}")).collect();
    consumers.sort();
    let mut l4_consumers: Vec<String> = set.l4_consumers.iter().map(|(ns, l4)| format!("{ns}: {l4:?}")).collect();
    l4_consumers.sort();
    json!({
        "producer": format!("{:?}", set.producer),
        "consumers": consumers,
        "l4Producer": format!("{:?}", set.l4_producer),
        "l4Consumers": l4_consumers,
    })
}

/// Everything a translation holds, in a canonical order (maps sorted).
fn rendered(t: &Translation) -> Value {
    let mut services: Vec<_> = t.config.services.iter().collect();
    services.sort_by_key(|(addr, _)| **addr);
    json!({
        "config": t.config.dump(),
        "routes": services.iter().map(|(addr, sp)| json!({"addr": addr.to_string(), "routes": routes(&sp.routes)})).collect::<Vec<_>>(),
        "authorization": format!("{:?}", t.config.authorization),
        "serviceAddrs": t.service_addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "enrolled": t.enrolled_cgroups,
        "pending": t.pending_cgroups,
        "routeStatus": t.route_status,
        "policyStatus": t.policy_status,
        "allowSelected": t.allow_selected,
        "problems": t.problems,
    })
}

/// The first part (top-level key, then item) where two renderings differ.
fn first_difference(a: &Value, b: &Value) -> Option<String> {
    let (Value::Object(a), Value::Object(b)) = (a, b) else { return (a != b).then(|| "the whole".into()) };
    a.iter().find(|(k, v)| b.get(*k) != Some(*v)).map(|(k, v)| match (v, &b[k]) {
        (Value::Array(x), Value::Array(y)) => {
            let i = x.iter().zip(y).position(|(p, q)| p != q).unwrap_or(x.len().min(y.len()));
            format!("{k}[{i}] of {} vs {}: {:?} vs {:?}", x.len(), y.len(), x.get(i), y.get(i))
        }
        (x, y) => format!("{k}: {x} vs {y}"),
    })
}

#[test]
fn reusing_translation_equals_a_fresh_one_after_every_change() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut state = world(&mut rng);
    let none = |_: &str, _: Option<&str>| None;
    let node = NodeView { node_name: None, cgroups: &none };
    let mut reuse = Reuse::default();
    let first = translate_reusing(&state, &node, &mut reuse);
    assert_eq!(first_difference(&rendered(&first), &rendered(&translate(&state, &node))), None);
    assert!(!first.route_status.is_empty() && !first.config.services.is_empty(), "the world translates to something");
    let (mut route_only, mut reused, mut ports_reused) = (0, 0, 0);
    for step in 0..STEPS {
        let before = state.clone();
        let routes_only = change(&mut rng, &mut state);
        let reusing = translate_reusing(&state, &node, &mut reuse);
        let fresh = translate(&state, &node);
        if let Some(part) = first_difference(&rendered(&reusing), &rendered(&fresh)) {
            panic!("step {step}: reusing and fresh translations differ in {part}");
        }
        let counts = reuse.last;
        reused += counts.routes_reused;
        if routes_only {
            route_only += 1;
            let changed_routes = [ObjectKind::HttpRoute, ObjectKind::GrpcRoute]
                .iter()
                .map(|k| usize::from(before.count(*k) != state.count(*k)))
                .sum::<usize>();
            assert!(counts.index_reused, "step {step}: a route change rebuilt the Service index");
            assert!(counts.routes_compiled <= 1, "step {step}: {counts:?} after a change to one route ({changed_routes})");
            // The ports its old and new versions attach to (each parentRef selects at most 3).
            assert!(counts.ports_built <= 6, "step {step}: {counts:?} after a change to one route");
            ports_reused += counts.ports_reused;
        }
    }
    assert!(route_only > STEPS / 3, "only {route_only} route-only changes");
    assert!(reused > STEPS * HTTP_ROUTES / 3, "only {reused} routes reused in {STEPS} steps");
    assert!(ports_reused > route_only * SERVICES, "only {ports_reused} Service ports reused after {route_only} route changes");
}
