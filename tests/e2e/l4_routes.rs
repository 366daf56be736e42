//! TLSRoute and TCPRoute attached to Services, end to end: TCP passthrough by route
//! (producer and consumer), TLS passthrough routed by the ClientHello's server name,
//! reset on no match, and an HTTPRoute winning over a TCPRoute on the same port.
//! Real agent, real eBPF, in the test bed. Needs root; fails (never skips) without it.

mod support;

use std::time::Duration;

use ambit_e2e::ClientRequest;
use support::{condition, settled, version, World};

/// Two versions of an echo Deployment behind one Service (`echo`) and one Service each.
/// The banner port (2525) greets with "220 <pod> ready": it tells which pod a TCP
/// connection reached.
const L4_WORLD: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: server, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: mesh-a, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: mesh-b, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo-v1, namespace: server}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo, version: v1}}
  template:
    metadata: {labels: {app: echo, version: v1}}
    spec:
      containers:
      - {name: echo, image: echo, ports: [{containerPort: 8080}, {containerPort: 8443}, {containerPort: 9090}, {containerPort: 2525}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo-v2, namespace: server}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo, version: v2}}
  template:
    metadata: {labels: {app: echo, version: v2}}
    spec:
      containers:
      - {name: echo, image: echo, ports: [{containerPort: 8080}, {containerPort: 8443}, {containerPort: 9090}, {containerPort: 2525}]}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: server}
spec:
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
  - {name: https, port: 443, targetPort: 8443}
  - {name: tcp, port: 9090}
---
apiVersion: v1
kind: Service
metadata: {name: echo-v1, namespace: server}
spec:
  selector: {app: echo, version: v1}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
  - {name: https, port: 443, targetPort: 8443}
  - {name: banner, port: 25, targetPort: 2525}
---
apiVersion: v1
kind: Service
metadata: {name: echo-v2, namespace: server}
spec:
  selector: {app: echo, version: v2}
  ports:
  - {name: https, port: 443, targetPort: 8443}
  - {name: banner, port: 25, targetPort: 2525}
"#;

/// A TCPRoute in `namespace` on `echo` (namespace server) port `port`, sending every
/// connection to `backend`'s banner port.
fn tcp_route(name: &str, namespace: &str, port: u16, backend: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: echo, namespace: server, port: {port}}}]
  rules:
  - backendRefs: [{{name: {backend}, namespace: server, port: 25}}]
"#
    )
}

/// L4 routes are chosen per connection: every request of a check opens its own.
fn banner(addr: &str) -> ClientRequest {
    ClientRequest::tcp(addr, "EHLO ambit\r\n").banner().new_connection_per_request()
}

/// An HTTPS request to `echo` port 443 with `server_name` as SNI (and Host).
fn https(server_name: &str) -> ClientRequest {
    ClientRequest::http("https://echo.server:443/").header("host", server_name).new_connection_per_request()
}

#[test]
fn tcp_route_producer_and_consumer_scopes() {
    let world = World::start_with(L4_WORLD, Default::default()).unwrap();
    let a = world.client("mesh-a", "client-a").unwrap();
    let b = world.client("mesh-b", "client-b").unwrap();
    // Without routes, port 9090 is the plain TCP echo of either pod.
    let r = a.run_client(&ClientRequest::tcp("echo.server:9090", "hello").timeout(Duration::from_secs(3))).unwrap();
    assert!(r.error.is_none() && r.only().error.is_none(), "{r:?}");

    world.bed.apply_yaml(&tcp_route("to-v2", "server", 9090, "echo-v2")).unwrap();
    settled(&world, &b, banner("echo.server:9090"), |r| r.error.is_none() && version(r) == Some("v2"));
    settled(&world, &a, banner("echo.server:9090"), |r| r.error.is_none() && version(r) == Some("v2"));

    // A consumer TCPRoute in mesh-a: replaces the producer route for mesh-a only.
    world.bed.apply_yaml(&tcp_route("mine", "mesh-a", 9090, "echo-v1")).unwrap();
    settled(&world, &a, banner("echo.server:9090"), |r| r.error.is_none() && version(r) == Some("v1"));
    settled(&world, &b, banner("echo.server:9090"), |r| r.error.is_none() && version(r) == Some("v2"));

    let dump = world.agent.config_dump().unwrap();
    assert_eq!(condition(&dump, "TCPRoute", "server", "to-v2", "Accepted"), Some(("True".into(), "Accepted".into())));
    assert_eq!(condition(&dump, "TCPRoute", "mesh-a", "mine", "Accepted"), Some(("True".into(), "Accepted".into())));
}

#[test]
fn tls_route_routes_by_server_name_and_resets_on_no_match() {
    let world = World::start_with(L4_WORLD, Default::default()).unwrap();
    let a = world.client("mesh-a", "client-a").unwrap();
    world
        .bed
        .apply_yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: v2-only, namespace: server}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 443}]
  hostnames: [v2.example]
  rules:
  - backendRefs: [{name: echo-v2, port: 443}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: wildcard, namespace: server}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 443}]
  hostnames: ["*.example"]
  rules:
  - backendRefs: [{name: echo-v1, port: 443}]
"#,
        )
        .unwrap();
    settled(&world, &a, https("v2.example"), |r| r.error.is_none() && r.status == Some(200) && version(r) == Some("v2"));
    settled(&world, &a, https("anything.example"), |r| r.error.is_none() && version(r) == Some("v1"));
    // No hostname matches: the connection is reset, never passed to a Service endpoint.
    let out = a.run_client(&https("v2.other").count(3).new_connection_per_request().timeout(Duration::from_secs(3))).unwrap();
    assert_eq!(out.results.len(), 3, "{out:?}");
    for r in &out.results {
        assert!(r.error.is_some() && r.status.is_none(), "no-match SNI must fail: {r:?}");
    }
    let dump = world.agent.config_dump().unwrap();
    assert_eq!(condition(&dump, "TLSRoute", "server", "v2-only", "Accepted"), Some(("True".into(), "Accepted".into())));
    let rendered = dump.to_string();
    assert!(rendered.contains("TLSRoute server/wildcard") && rendered.contains("*.example"), "{rendered}");
}

#[test]
fn http_route_wins_over_tcp_route_on_the_same_port() {
    let world = World::start_with(L4_WORLD, Default::default()).unwrap();
    let a = world.client("mesh-a", "client-a").unwrap();
    world
        .bed
        .apply_yaml(&format!(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: server}}
spec:
  parentRefs: [{{group: "", kind: Service, name: echo, port: 80}}]
  rules:
  - backendRefs: [{{name: echo-v1, port: 80}}]
---
{}"#,
            tcp_route("loser", "server", 80, "echo-v2")
        ))
        .unwrap();
    settled(&world, &a, ClientRequest::http("http://echo.server/").new_connection_per_request(), |r| r.status == Some(200) && version(r) == Some("v1"));
    let dump = world.agent.config_dump().unwrap();
    assert_eq!(condition(&dump, "HTTPRoute", "server", "web", "Accepted"), Some(("True".into(), "Accepted".into())));
    assert_eq!(condition(&dump, "TCPRoute", "server", "loser", "Accepted"), Some(("False".into(), "Conflicted".into())));
}
