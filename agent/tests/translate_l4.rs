//! TLSRoute and TCPRoute translation: compiled routes per scope, status, and the
//! route-kind precedence GRPCRoute > HTTPRoute > TLSRoute > TCPRoute.

use ambit_agent::cluster::ClusterState;
use ambit_agent::explain::{explain, Outcome};
use ambit_agent::manifests::load_dir;
use ambit_agent::translate::{translate, ConditionType, NodeView, Reason, RouteStatus, Translation};
use ambit_proxy_core::routes::{BackendTarget, RouteKind};

const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: app, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: app}
spec:
  clusterIP: 10.96.1.1
  ports:
  - {name: http, port: 80, appProtocol: http}
  - {name: tcp, port: 9090}
  - {name: https, port: 443}
  - {name: grpc, port: 7070, appProtocol: kubernetes.io/h2c}
---
apiVersion: v1
kind: Service
metadata: {name: v1, namespace: app}
spec:
  clusterIP: 10.96.1.2
  ports: [{name: tcp, port: 9090}, {name: https, port: 443}]
---
apiVersion: v1
kind: Service
metadata: {name: v2, namespace: app}
spec:
  clusterIP: 10.96.1.3
  ports: [{name: tcp, port: 9090}, {name: https, port: 443}]
"#;

fn translate_yaml(routes: &str) -> Translation {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), BASE).unwrap();
    std::fs::write(dir.path().join("b.yaml"), routes).unwrap();
    let (state, errors): (ClusterState, _) = load_dir(dir.path());
    assert!(errors.is_empty(), "{errors:?}");
    let none = |_: &str, _: Option<&str>| None;
    translate(&state, &NodeView { node_name: None, cgroups: &none })
}

fn tcp(name: &str, ns: &str, port: u16, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: [{{kind: Service, group: \"\", name: web, namespace: app, port: {port}}}]\n  rules:\n{rules}\n---\n"
    )
}

fn tls(name: &str, hostnames: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TLSRoute\nmetadata: {{name: {name}, namespace: app}}\nspec:\n  parentRefs: [{{kind: Service, group: \"\", name: web, port: 443}}]\n  hostnames: {hostnames}\n  rules:\n{rules}\n---\n"
    )
}

fn status<'a>(t: &'a Translation, kind: RouteKind, name: &str) -> &'a RouteStatus {
    t.route_status
        .iter()
        .find(|s| s.name == name && s.kind == kind)
        .unwrap_or_else(|| panic!("no status for {kind} {name}: {:#?}", t.route_status))
}

fn cond(s: &RouteStatus, type_: ConditionType) -> (bool, Reason, String) {
    let c = s.parents[0].condition(type_).unwrap_or_else(|| panic!("no {type_} in {s:#?}"));
    (c.status, c.reason, c.message.clone())
}

fn backend_names(t: &Translation, port: u16, ns: Option<&str>, sni: Option<&str>) -> Option<Vec<String>> {
    let sp = t.config.service(format!("10.96.1.1:{port}").parse().unwrap()).unwrap();
    let routes = sp.routes.l4_for_caller(ns.unwrap_or("app"))?;
    let route = routes.select(sni)?;
    Some(
        route
            .backends
            .backends()
            .iter()
            .map(|b| match &b.target {
                BackendTarget::Service(s) => format!("{}:{}", s.service.name, b.weight),
                BackendTarget::Invalid { .. } => format!("invalid:{}", b.weight),
            })
            .collect(),
    )
}

const TO_V2: &str = "  - backendRefs: [{name: v2, port: 9090}]";

#[test]
fn tcp_route_producer_and_consumer_scopes() {
    let t = translate_yaml(&[
        tcp("all", "app", 9090, "  - name: split\n    backendRefs: [{name: v1, port: 9090, weight: 3}, {name: v2, port: 9090, weight: 1}]"),
        tcp("mine", "other", 9090, "  - backendRefs: [{name: v2, namespace: app, port: 9090}]"),
    ]
    .concat());
    assert!(status(&t, RouteKind::Tcp, "all").ok(), "{:#?}", t.route_status);
    assert!(status(&t, RouteKind::Tcp, "mine").ok());
    assert_eq!(backend_names(&t, 9090, None, None), Some(vec!["v1:3".into(), "v2:1".into()]));
    assert_eq!(backend_names(&t, 9090, Some("other"), None), Some(vec!["v2:1".into()]));
    assert_eq!(backend_names(&t, 9090, Some("elsewhere"), None), Some(vec!["v1:3".into(), "v2:1".into()]));
    // Other ports are untouched.
    assert!(backend_names(&t, 443, None, None).is_none());
    let dump = t.config.dump().to_string();
    assert!(dump.contains("\"l4Producer\"") && dump.contains("TCPRoute app/all") && dump.contains("\"split\""), "{dump}");
}

#[test]
fn tls_route_hostnames_pick_the_backend() {
    let t = translate_yaml(&[
        tls("exact", "[v2.example]", "  - backendRefs: [{name: v2, port: 443}]"),
        tls("wild", "[\"*.example\"]", "  - backendRefs: [{name: v1, port: 443}]"),
    ]
    .concat());
    assert!(status(&t, RouteKind::Tls, "exact").ok());
    assert_eq!(backend_names(&t, 443, None, Some("v2.example")), Some(vec!["v2:1".into()]));
    assert_eq!(backend_names(&t, 443, None, Some("v1.example")), Some(vec!["v1:1".into()]));
    assert_eq!(backend_names(&t, 443, None, Some("nope.test")), None);
    assert_eq!(backend_names(&t, 443, None, None), None);
}

#[test]
fn invalid_tls_and_tcp_routes_report_why() {
    let t = translate_yaml(&[
        tls("badhost", "[\"a..b\"]", "  - backendRefs: [{name: v2, port: 443}]"),
        tls("tworules", "[x.example]", "  - backendRefs: [{name: v2, port: 443}]\n  - name: second\n    backendRefs: [{name: v1, port: 443}]"),
        tcp("noport", "app", 9090, "  - backendRefs: [{name: v2}]"),
        tcp("badweight", "other", 9090, "  - backendRefs: [{name: v2, namespace: app, port: 9090, weight: -1}]"),
    ]
    .concat());
    let (ok, reason, message) = cond(status(&t, RouteKind::Tls, "badhost"), ConditionType::Accepted);
    assert_eq!((ok, reason), (false, Reason::UnsupportedValue), "{message}");
    assert!(message.contains("a..b"), "{message}");
    let two = status(&t, RouteKind::Tls, "tworules");
    assert!(cond(two, ConditionType::Accepted).0);
    let (partial, _, message) = cond(two, ConditionType::PartiallyInvalid);
    assert!(partial && message.contains("second"), "{message}");
    let (ok, reason, _) = cond(status(&t, RouteKind::Tcp, "noport"), ConditionType::ResolvedRefs);
    assert_eq!((ok, reason), (false, Reason::BackendNotFound));
    assert!(cond(status(&t, RouteKind::Tcp, "noport"), ConditionType::Accepted).0);
    assert_eq!(backend_names(&t, 9090, None, None), Some(vec!["invalid:1".into()]));
    let (ok, reason, _) = cond(status(&t, RouteKind::Tcp, "badweight"), ConditionType::Accepted);
    assert_eq!((ok, reason), (false, Reason::UnsupportedValue));
}

#[test]
fn precedence_grpc_over_http_over_tls_over_tcp() {
    let http = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: h, namespace: app}\nspec:\n  parentRefs: [{kind: Service, name: web, port: 9090}]\n  rules:\n  - backendRefs: [{name: v1, port: 9090}]\n---\n";
    let grpc = "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g, namespace: app}\nspec:\n  parentRefs: [{kind: Service, name: web, port: 7070}]\n  rules:\n  - backendRefs: [{name: web, port: 7070}]\n---\n";
    // A TLSRoute on every port of web: loses 9090 (HTTPRoute) and 7070 (GRPCRoute).
    let tls_all = "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TLSRoute\nmetadata: {name: tls-all, namespace: app}\nspec:\n  parentRefs: [{kind: Service, name: web}]\n  rules:\n  - backendRefs: [{name: v2, port: 443}]\n---\n";
    let yaml = [
        http.to_string(),
        grpc.to_string(),
        tls_all.to_string(),
        tcp("t-conflict", "app", 9090, TO_V2),
        tcp("t-443", "app", 443, TO_V2),
        // A consumer TCPRoute is a scope of its own: no conflict with the producer HTTPRoute.
        tcp("t-consumer", "other", 9090, "  - backendRefs: [{name: v2, namespace: app, port: 9090}]"),
    ]
    .concat();
    let t = translate_yaml(&yaml);
    let (ok, reason, message) = cond(status(&t, RouteKind::Tcp, "t-conflict"), ConditionType::Accepted);
    assert_eq!((ok, reason), (false, Reason::Conflicted), "{message}");
    assert!(message.contains("HTTPRoute"), "{message}");
    let (ok, reason, message) = cond(status(&t, RouteKind::Tcp, "t-443"), ConditionType::Accepted);
    assert_eq!((ok, reason), (false, Reason::Conflicted), "{message}");
    assert!(message.contains("TLSRoute"), "{message}");
    let (ok, _, message) = cond(status(&t, RouteKind::Tls, "tls-all"), ConditionType::Accepted);
    assert!(ok && message.contains("HTTPRoute or GRPCRoute") && message.contains("[80, 443]"), "{message}");
    assert!(status(&t, RouteKind::Http, "h").ok());
    assert!(status(&t, RouteKind::Tcp, "t-consumer").ok());

    let web = |port: u16| t.config.service(format!("10.96.1.1:{port}").parse().unwrap()).unwrap().clone();
    assert!(web(9090).routes.l4_producer.is_none(), "the losers are not applied");
    assert_eq!(web(9090).routes.producer.as_ref().unwrap().kind(), RouteKind::Http);
    assert_eq!(web(9090).routes.l4_for_caller("other").unwrap().kind(), RouteKind::Tcp);
    assert_eq!(web(7070).routes.producer.as_ref().unwrap().kind(), RouteKind::Grpc);
    assert_eq!(web(443).routes.l4_producer.as_ref().unwrap().kind(), RouteKind::Tls);
    assert_eq!(web(80).routes.l4_producer.as_ref().unwrap().kind(), RouteKind::Tls, "appProtocol http with only L4 routes");
}

#[test]
fn explain_shows_connection_routes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), BASE).unwrap();
    std::fs::write(dir.path().join("b.yaml"), tls("wild", "[\"*.example\"]", "  - backendRefs: [{name: v1, port: 443}]")).unwrap();
    let (state, errors): (ClusterState, _) = load_dir(dir.path());
    assert!(errors.is_empty());
    let e = explain(&state, ("app", "client"), "web.app:443", "GET", "/", &[]).unwrap();
    assert!(matches!(&e.outcome, Outcome::Connection { routes, .. } if routes.kind() == RouteKind::Tls));
    let text = e.to_string();
    assert!(text.contains("TLSRoute app/wild") && text.contains("*.example") && text.contains("server name"), "{text}");
}
