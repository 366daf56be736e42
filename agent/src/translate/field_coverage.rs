//! Every field of the experimental HTTPRoute and GRPCRoute rules (gateway-api 0.22,
//! Gateway API v1.5), read through the experimental types the way translation reads
//! any route: each is implemented, or its rule is dropped with a message naming it.
//! README's "HTTPRoute and GRPCRoute fields" lists them.

use std::sync::Arc;

use ambit_proxy_core::routes::{RegexBudget, RouteKind, RouteMeta, RouteRef};
use gateway_api::apis::experimental::{grpcroutes::GrpcRoute, httproutes::HttpRoute};

use super::rules::{compile_route, CompiledRoute, MatchSpec, RuleCtx};
use super::services::ServiceIndex;
use super::spec::{mirror, GrpcMatchSpec, HttpMatchSpec, RuleSpec};

fn compile<M: MatchSpec>(kind: RouteKind, rules: Result<Vec<RuleSpec<M>>, String>) -> CompiledRoute {
    let meta = RouteMeta { route: Arc::new(RouteRef { kind, namespace: "app".into(), name: "r".into() }), created: None };
    let services = ServiceIndex::default();
    let regexes = RegexBudget::default();
    let ctx = RuleCtx { kind, services: &services, route_ns: "app", meta: &meta, regexes: &regexes };
    compile_route(&ctx, rules)
}

fn http(yaml: &str) -> CompiledRoute {
    let route: HttpRoute = serde_yaml::from_str(yaml).expect("an experimental HTTPRoute");
    compile::<HttpMatchSpec>(RouteKind::Http, mirror(route.spec.rules.as_ref().expect("rules")))
}

fn grpc(yaml: &str) -> CompiledRoute {
    let route: GrpcRoute = serde_yaml::from_str(yaml).expect("an experimental GRPCRoute");
    compile::<GrpcMatchSpec>(RouteKind::Grpc, mirror(route.spec.rules.as_ref().expect("rules")))
}

/// The messages of the dropped rules, by rule index.
fn dropped(compiled: &CompiledRoute) -> Vec<(usize, String)> {
    compiled.dropped.iter().map(|d| (d.index, d.error.message.clone())).collect()
}

const HEAD: &str = "apiVersion: gateway.networking.k8s.io/v1\nmetadata: {name: r, namespace: app}\nspec:\n  parentRefs: [{kind: Service, group: \"\", name: web, port: 80}]\n  rules:\n";

#[test]
fn http_rule_fields_are_served_or_reported() {
    let yaml = format!("kind: HTTPRoute\n{HEAD}{}", r#"  - name: everything-implemented
    matches: [{path: {type: PathPrefix, value: /a}, method: GET, headers: [{name: x, value: y}], queryParams: [{name: q, value: v}]}]
    filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: c, value: d}]}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: web, port: 80}, percent: 10}}
    - {type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}
    - {type: CORS, cors: {allowOrigins: ["https://*.example.com"], allowMethods: [GET], allowHeaders: [x], exposeHeaders: [y], allowCredentials: true, maxAge: 10}}
    backendRefs: [{name: web, port: 80, weight: 1, filters: [{type: RequestHeaderModifier, requestHeaderModifier: {remove: [z]}}]}]
    timeouts: {request: 10s, backendRequest: 5s}
  - name: sticky
    sessionPersistence: {sessionName: s, type: Cookie, absoluteTimeout: 1h}
    backendRefs: [{name: web, port: 80}]
  - name: external-auth
    filters: [{type: ExternalAuth, externalAuth: {protocol: HTTP, backendRef: {name: auth, port: 80}}}]
    backendRefs: [{name: web, port: 80}]
  - name: backend-cors
    backendRefs: [{name: web, port: 80, filters: [{type: CORS, cors: {allowOrigins: ["*"]}}]}]
"#);
    let compiled = http(&yaml);
    assert_eq!(compiled.rules.len(), 1, "{:?}", dropped(&compiled));
    let rule = &compiled.rules[0];
    assert!(rule.filters.cors.is_some() && rule.filters.request_headers.is_some() && rule.filters.mirrors.len() == 1);
    let dropped = dropped(&compiled);
    assert_eq!(dropped.iter().map(|d| d.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(dropped[0].1.contains("sessionPersistence (GEP-1619) is not supported"), "{}", dropped[0].1);
    assert!(dropped[1].1.contains("\"ExternalAuth\" is not supported"), "{}", dropped[1].1);
    assert!(dropped[2].1.contains("filter \"CORS\" is not supported"), "{}", dropped[2].1);
}

#[test]
fn percentage_mirrors_are_implemented() {
    let yaml = format!("kind: HTTPRoute\n{HEAD}{}", r#"  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: web, port: 80}, percent: 25}}]
  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: web, port: 80}, fraction: {numerator: 1, denominator: 8}}}]
  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: web, port: 80}, percent: 101}}]
"#);
    let compiled = http(&yaml);
    let fractions: Vec<f64> = compiled.rules.iter().map(|r| r.filters.mirrors[0].fraction).collect();
    assert_eq!(fractions, [0.25, 0.125]);
    assert_eq!(dropped(&compiled)[0].0, 2);
}

#[test]
fn grpc_rule_fields_are_served_or_reported() {
    let yaml = format!("kind: GRPCRoute\n{HEAD}{}", r#"  - name: served
    matches: [{method: {service: s, method: m}, headers: [{name: x, value: y}]}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: web, port: 80}, percent: 50}}]
    backendRefs: [{name: web, port: 80}]
  - name: sticky
    sessionPersistence: {type: Header, sessionName: s}
    backendRefs: [{name: web, port: 80}]
"#);
    let compiled = grpc(&yaml);
    assert_eq!(compiled.rules.len(), 1);
    assert_eq!(compiled.rules[0].filters.mirrors[0].fraction, 0.5);
    let dropped = dropped(&compiled);
    assert_eq!(dropped.len(), 1);
    assert!(dropped[0].1.contains("sessionPersistence"), "{}", dropped[0].1);
}
