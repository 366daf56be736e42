//! Translation of the real GAMMA conformance manifests (shared/conformance), with fake
//! cluster IPs, EndpointSlices and pods added as a cluster would.

use std::net::SocketAddr;
use std::path::PathBuf;

use ambit_agent::cgroups::PodCgroup;
use ambit_agent::cluster::ClusterState;
use ambit_agent::manifests::load_dir;
use ambit_agent::translate::{translate, ConditionType, NodeView, Translation};
use ambit_proxy_core::config::{Decision, ServicePort};
use ambit_proxy_core::identity::CgroupId;
use ambit_proxy_core::routes::{BackendTarget, RequestView, RouteKind, RuleAction};
use http::{HeaderMap, Method};

const MESH: &str = "gateway-conformance-mesh";
const CONSUMER: &str = "gateway-conformance-mesh-consumer";

fn conformance_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
}

fn case_manifests(name: &str) -> String {
    let text = std::fs::read_to_string(conformance_dir().join(format!("{name}.yaml"))).unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    v["manifests"].as_str().unwrap_or("").to_string()
}

const FIXTURES: &str = r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-v1-abc, namespace: gateway-conformance-mesh, labels: {kubernetes.io/service-name: echo-v1}}
addressType: IPv4
endpoints:
- addresses: ["10.244.0.11"]
- addresses: ["10.244.0.99"]
  conditions: {ready: false}
ports: [{name: http, port: 8080}, {name: http-alt, port: 8080}, {name: https, port: 8443}, {name: tcp, port: 9090}, {name: grpc, port: 7070}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-v2-abc, namespace: gateway-conformance-mesh, labels: {kubernetes.io/service-name: echo-v2}}
addressType: IPv4
endpoints: [{addresses: ["10.244.0.12"], conditions: {ready: true}}]
ports: [{name: http, port: 8080}, {name: http-alt, port: 8080}, {name: https, port: 8443}, {name: tcp, port: 9090}, {name: grpc, port: 7070}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: echo-abc, namespace: gateway-conformance-mesh, labels: {kubernetes.io/service-name: echo}}
addressType: IPv4
endpoints: [{addresses: ["10.244.0.11"]}, {addresses: ["10.244.0.12"]}]
ports: [{name: http, port: 8080}, {name: http-alt, port: 8080}, {name: https, port: 8443}, {name: tcp, port: 9090}, {name: grpc, port: 7070}]
---
apiVersion: v1
kind: Pod
metadata: {name: echo-v1-client, namespace: gateway-conformance-mesh, uid: uid-v1}
spec: {nodeName: node-a, containers: [{name: echo, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: echo-v2-client, namespace: gateway-conformance-mesh, uid: uid-v2}
spec: {nodeName: node-a, serviceAccountName: echo, containers: [{name: echo, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: echo-v1-consumer, namespace: gateway-conformance-mesh-consumer, uid: uid-c1}
spec: {nodeName: node-a, containers: [{name: echo, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: elsewhere, namespace: gateway-conformance-mesh, uid: uid-far}
spec: {nodeName: node-b, containers: [{name: echo, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: opted-out, namespace: gateway-conformance-mesh, uid: uid-out, annotations: {ambit.dev/mesh: disabled}}
spec: {nodeName: node-a, containers: [{name: echo, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: no-cgroup-yet, namespace: gateway-conformance-mesh, uid: uid-pending}
spec: {nodeName: node-a, containers: [{name: echo, image: x}]}
"#;

/// Base manifests + a case's manifests + fixtures, with cluster IPs and mesh labels set.
fn state_for(case: &str) -> ClusterState {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(conformance_dir().join("base-manifests.yaml"), dir.path().join("00-base.yaml")).unwrap();
    std::fs::write(dir.path().join("10-case.yaml"), case_manifests(case)).unwrap();
    std::fs::write(dir.path().join("20-fixtures.yaml"), FIXTURES).unwrap();
    let (mut state, errors) = load_dir(dir.path());
    assert!(errors.is_empty(), "{errors:?}");
    for ns in state.namespaces.make_mut().values_mut() {
        std::sync::Arc::make_mut(ns).metadata.labels.get_or_insert_default().insert("ambit.dev/mesh".into(), "enabled".into());
    }
    for (key, ip, ip6) in [("echo", "10.96.0.10", "fd00::10"), ("echo-v1", "10.96.0.11", "fd00::11"), ("echo-v2", "10.96.0.12", "fd00::12")] {
        let svc = state.services.make_mut().get_mut(&ambit_agent::cluster::ObjectKey::new(MESH, key)).unwrap();
        let ips = [ip.parse().unwrap(), ip6.parse().unwrap()];
        std::sync::Arc::make_mut(svc).cluster_ips = ambit_agent::cluster::ClusterIps::Assigned(ips.into());
    }
    state
}

fn fake_cgroup(uid: &str, _qos: Option<&str>) -> Option<PodCgroup> {
    let id = match uid {
        "uid-v1" => 101,
        "uid-v2" => 102,
        "uid-c1" => 103,
        "uid-far" => 104,
        "uid-out" => 105,
        _ => return None,
    };
    Some(PodCgroup { path: PathBuf::from(format!("/fake/{uid}")), id: CgroupId(id) })
}

fn run(state: &ClusterState) -> Translation {
    translate(state, &NodeView { node_name: Some("node-a"), cgroups: &fake_cgroup })
}

fn service<'a>(t: &'a Translation, addr: &str) -> &'a ServicePort {
    t.config.service(addr.parse::<SocketAddr>().unwrap()).unwrap_or_else(|| panic!("no service at {addr}"))
}

fn get<'a>(sp: &'a ServicePort, ns: &str, path: &str, headers: &[(&str, &str)]) -> Decision<'a> {
    let (p, q) = path.split_once('?').map(|(p, q)| (p, Some(q))).unwrap_or((path, None));
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        map.append(http::HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let method = Method::GET;
    // The HeaderMap must outlive the decision: leak it (tests only).
    let map: &'static HeaderMap = Box::leak(Box::new(map));
    let method: &'static Method = Box::leak(Box::new(method));
    sp.routes.decide(ns, &RequestView { method, path: p, query: q, headers: map })
}

fn backend_of(d: &Decision<'_>) -> (String, u16) {
    match d {
        Decision::Matched(m) => match &m.rule.action {
            RuleAction::Forward(f) => match &f.backends.backends()[0].target {
                BackendTarget::Service(s) => (s.service.name.to_string(), s.port),
                BackendTarget::Invalid { reason } => panic!("invalid backend {reason}"),
            },
            RuleAction::Redirect(r) => panic!("redirect {r:?}"),
        },
        other => panic!("not matched: {other:?}"),
    }
}

#[test]
fn every_conformance_case_translates_cleanly() {
    let mut names: Vec<String> = std::fs::read_dir(conformance_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("Mesh") && n.ends_with(".yaml"))
        .map(|n| n.trim_end_matches(".yaml").to_string())
        .collect();
    names.sort();
    assert_eq!(names.len(), 17);
    for name in names {
        let t = run(&state_for(&name));
        for status in &t.route_status {
            assert!(status.ok(), "{name}: {status:#?}");
            for parent in &status.parents {
                assert_eq!(parent.controller_name, "ambit.dev/mesh");
                assert!(parent.condition(ConditionType::ResolvedRefs).unwrap().status);
            }
        }
        assert!(t.problems.is_empty(), "{name}: {:?}", t.problems);
        let has_route = !case_manifests(&name).is_empty();
        assert_eq!(t.route_status.len(), usize::from(has_route), "{name}");
    }
}

#[test]
fn services_workloads_and_endpoints() {
    let t = run(&state_for("MeshBasic"));
    // 3 Services x 5 ports x (v4 + v6).
    assert_eq!(t.service_addrs.len(), 30);
    assert!(t.service_addrs.contains(&"[fd00::10]:7070".parse().unwrap()));
    let echo80 = service(&t, "10.96.0.10:80");
    assert_eq!(&*echo80.service.name, "echo");
    assert_eq!(echo80.port_name.as_deref(), Some("http"));
    assert_eq!(echo80.protocol, ambit_proxy_core::config::AppProtocol::Http);
    assert_eq!(echo80.endpoints.addrs(), ["10.244.0.11:8080".parse().unwrap(), "10.244.0.12:8080".parse().unwrap()]);
    assert!(echo80.routes.is_empty());
    assert_eq!(service(&t, "10.96.0.10:7070").protocol, ambit_proxy_core::config::AppProtocol::H2c);
    assert_eq!(service(&t, "10.96.0.10:9090").protocol, ambit_proxy_core::config::AppProtocol::Detect);
    // Not-ready endpoint left out.
    assert_eq!(service(&t, "10.96.0.11:443").endpoints.addrs(), ["10.244.0.11:8443".parse().unwrap()]);
    // Same ServicePort behind both address families.
    assert!(std::ptr::eq(service(&t, "10.96.0.11:80"), service(&t, "[fd00::11]:80")));

    // Enrolled: local, not opted out, cgroup found. Pending: local but no cgroup.
    assert_eq!(t.enrolled_cgroups.iter().copied().collect::<Vec<_>>(), [101, 102, 103]);
    assert_eq!(t.pending_cgroups, 1);
    let w = t.config.workload(CgroupId(102)).unwrap();
    assert_eq!((&*w.namespace, &*w.name, &*w.uid, &*w.service_account), (MESH, "echo-v2-client", "uid-v2", "echo"));
    assert_eq!(&*t.config.workload(CgroupId(101)).unwrap().service_account, "default");
}

#[test]
fn namespace_without_label_is_not_enrolled() {
    let mut state = state_for("MeshBasic");
    std::sync::Arc::make_mut(state.namespaces.make_mut().get_mut(CONSUMER).unwrap()).metadata.labels = None;
    let t = run(&state);
    assert!(!t.enrolled_cgroups.contains(&103));
    // Its Services are still redirected targets for enrolled callers.
    assert_eq!(t.service_addrs.len(), 30);
}

#[test]
fn weights_and_backend_ports() {
    let t = run(&state_for("MeshHTTPRouteWeight"));
    let echo80 = service(&t, "10.96.0.10:80");
    let list = echo80.routes.producer.as_ref().unwrap();
    assert_eq!(list.kind(), RouteKind::Http);
    let rule = list.rules().next().unwrap();
    let RuleAction::Forward(f) = &rule.action else { panic!() };
    let got: Vec<(u32, String, u16, Vec<SocketAddr>)> = f
        .backends
        .backends()
        .iter()
        .map(|b| match &b.target {
            BackendTarget::Service(s) => (b.weight, s.service.to_string(), s.port, s.endpoints.addrs().to_vec()),
            BackendTarget::Invalid { reason } => panic!("{reason}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            (70, format!("{MESH}/echo-v1"), 8080, vec!["10.244.0.11:8080".parse().unwrap()]),
            (30, format!("{MESH}/echo-v2"), 8080, vec!["10.244.0.12:8080".parse().unwrap()]),
        ]
    );
    // The route names port 80 only.
    assert!(service(&t, "10.96.0.10:8080").routes.is_empty());
}

#[test]
fn parent_without_port_attaches_to_every_port() {
    let t = run(&state_for("MeshTrafficSplit"));
    for port in [80, 8080, 443, 9090, 7070] {
        let sp = service(&t, &format!("10.96.0.10:{port}"));
        assert!(sp.routes.producer.is_some(), "port {port}");
    }
    let sp = service(&t, "10.96.0.10:80");
    assert_eq!(backend_of(&get(sp, MESH, "/v2", &[])), ("echo-v2".into(), 80));
    assert!(matches!(get(sp, MESH, "/v3", &[]), Decision::NoMatch));
}

#[test]
fn consumer_route_applies_only_to_its_namespace() {
    let t = run(&state_for("MeshConsumerRoute"));
    let sp = service(&t, "10.96.0.11:80");
    assert!(sp.routes.producer.is_none());
    assert!(sp.routes.consumers.contains_key(CONSUMER));
    let d = get(sp, CONSUMER, "/", &[]);
    assert_eq!(backend_of(&d), ("echo-v1".into(), 80));
    let Decision::Matched(m) = d else { unreachable!() };
    let set = &m.rule.filters.response_headers.as_ref().unwrap().set;
    assert_eq!(set[0].0.as_str(), "x-header-set");
    assert!(matches!(get(sp, MESH, "/", &[]), Decision::NoRoutes));
    let status = &t.route_status[0];
    assert!(status.parents[0].condition(ConditionType::Accepted).unwrap().message.contains("consumer"));
}

#[test]
fn grpc_route_on_grpc_port() {
    let t = run(&state_for("MeshGRPCRouteRequestHeaderModifier"));
    let sp = service(&t, "10.96.0.10:7070");
    let list = sp.routes.producer.as_ref().unwrap();
    assert_eq!(list.kind(), RouteKind::Grpc);
    assert_eq!(list.rules().count(), 4);
    let d = get(sp, MESH, "/grpc.examples.echo.Echo/UnaryEcho", &[("x-test-case", "multi")]);
    assert_eq!(backend_of(&d), ("echo-v2".into(), 7070));
    assert!(matches!(get(sp, MESH, "/a/b", &[]), Decision::NoMatch));
    assert!(service(&t, "10.96.0.10:80").routes.is_empty());
}

#[test]
fn query_param_precedence() {
    let t = run(&state_for("MeshHTTPRouteQueryParamMatching"));
    let sp = service(&t, "10.96.0.10:80");
    assert_eq!(backend_of(&get(sp, MESH, "/?animal=whale", &[])).0, "echo-v1");
    assert_eq!(backend_of(&get(sp, MESH, "/?animal=dolphin", &[])).0, "echo-v2");
    assert_eq!(backend_of(&get(sp, MESH, "/path5?animal=hydra", &[])).0, "echo-v1");
    assert_eq!(backend_of(&get(sp, MESH, "/path4?animal=kraken", &[("version", "three")])).0, "echo-v1");
    assert!(matches!(get(sp, MESH, "/?animal=cat", &[]), Decision::NoMatch));
}

#[test]
fn redirects_and_rewrites_and_names() {
    let t = run(&state_for("MeshHTTPRoute303Redirect"));
    let Decision::Matched(m) = get(service(&t, "10.96.0.10:80"), MESH, "/redirect", &[]) else { panic!() };
    let RuleAction::Redirect(r) = &m.rule.action else { panic!() };
    assert_eq!(r.status.status().as_u16(), 303);

    let t = run(&state_for("MeshHTTPRouteRedirectPort"));
    let Decision::Matched(m) = get(service(&t, "10.96.0.10:80"), MESH, "/port-and-host-and-status", &[]) else { panic!() };
    let RuleAction::Redirect(r) = &m.rule.action else { panic!() };
    assert_eq!((r.port, r.hostname.as_deref(), r.status.status().as_u16()), (Some(8083), Some("example.org"), 302));

    let t = run(&state_for("MeshHTTPRouteRewritePath"));
    let Decision::Matched(m) = get(service(&t, "10.96.0.10:80"), MESH, "/prefix/one/two", &[]) else { panic!() };
    let RuleAction::Forward(f) = &m.rule.action else { panic!() };
    assert_eq!(
        f.rewrite.as_ref().unwrap().path,
        Some(ambit_proxy_core::routes::PathModifier::ReplacePrefixMatch("/one".into()))
    );

    let t = run(&state_for("MeshHTTPRouteNamedRule"));
    let Decision::Matched(m) = get(service(&t, "10.96.0.10:80"), MESH, "/named", &[]) else { panic!() };
    assert_eq!(m.rule.name.as_deref(), Some("named-rule"));
    assert_eq!(m.rule.index, 0);

    let t = run(&state_for("MeshHTTPRouteBackendRequestHeaderModifier"));
    let Decision::Matched(m) = get(service(&t, "10.96.0.10:80"), MESH, "/add", &[]) else { panic!() };
    let RuleAction::Forward(f) = &m.rule.action else { panic!() };
    let add = &f.backends.backends()[0].filters.request_headers.as_ref().unwrap().add;
    assert_eq!((add[0].0.as_str(), add[0].1.to_str().unwrap()), ("x-header-add", "add-appends-values"));
    assert!(m.rule.filters.request_headers.is_none());
}

#[test]
fn explain_consumer_route() {
    let state = state_for("MeshConsumerRoute");
    let e = ambit_agent::explain::explain(&state, (CONSUMER, "echo-v1-consumer"), "echo-v1.gateway-conformance-mesh", "GET", "/", &[])
        .unwrap();
    let text = e.to_string();
    assert!(text.contains("consumer routes of namespace gateway-conformance-mesh-consumer"), "{text}");
    assert!(text.contains("HTTPRoute gateway-conformance-mesh-consumer/mesh-echo-add-header rule 0"), "{text}");
    assert!(text.contains("x-header-set"), "{text}");
    let e = ambit_agent::explain::explain(&state, (MESH, "echo-v1-client"), "echo-v1:80", "GET", "/", &[]).unwrap();
    assert!(matches!(e.outcome, ambit_agent::explain::Outcome::NoRoutes), "{e}");
    let e = ambit_agent::explain::explain(&state, (MESH, "echo-v1-client"), "10.96.0.11:80", "GET", "/", &[]).unwrap();
    assert_eq!(&*e.service.service.name, "echo-v1");
    assert!(ambit_agent::explain::explain(&state, (MESH, "x"), "nope", "GET", "/", &[]).is_err());
    let state2 = state_for("MeshHTTPRouteQueryParamMatching");
    let e = ambit_agent::explain::explain(&state2, (MESH, "p"), "echo", "GET", "/?animal=cat", &[]).unwrap();
    assert!(e.to_string().contains("NoMatch"), "{e}");
}

#[test]
fn explain_routes_the_normalised_path_as_the_proxy_does() {
    let state = state_for("MeshHTTPRouteRewritePath");
    let explain = |path| ambit_agent::explain::explain(&state, (MESH, "p"), "echo", "GET", path, &[]);
    let rule_of = |path| match explain(path).unwrap().outcome {
        ambit_agent::explain::Outcome::Matched { rule, .. } => Some(rule.index),
        _ => None,
    };
    assert_eq!(rule_of("/prefix/one/two"), Some(0));
    assert_eq!(rule_of("/strip-prefix/../prefix/one/two"), Some(0));
    assert_eq!(rule_of("/prefix/one/../..//strip-prefix/x"), Some(1));
    let error = explain("/prefix/one/%zz").unwrap_err().to_string();
    assert!(error.contains("invalid percent-encoding"), "{error}");
}
