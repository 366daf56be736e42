//! TLSRoute and TCPRoute attached to Services, end to end: TCP passthrough by route
//! (producer and consumer), TLS passthrough routed by the ClientHello's server name,
//! reset on no match, and an HTTPRoute winning over a TCPRoute on the same port.
//! Real agent, real eBPF, in the test bed. Needs root; fails (never skips) without it.

mod support;

use std::time::Duration;

use ambit_e2e::{AgentOptions, ClientRequest, Pod, RequestResult, RunningAgent, TestBed};
use support::{wait_until, World};

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

fn start() -> World {
    let bed = TestBed::new().unwrap();
    bed.apply_yaml(L4_WORLD).unwrap();
    let agent = RunningAgent::start(&bed, &AgentOptions::default()).unwrap();
    World { agent, bed }
}

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

/// Which Deployment answered: from the banner ("220 echo-vN-… ready") or the HTTP
/// `x-echo-pod` header.
fn version(r: &RequestResult) -> Option<&'static str> {
    let pod = r
        .banner
        .as_deref()
        .and_then(|b| b.strip_prefix("220 "))
        .or_else(|| r.echo_pod())
        .or_else(|| r.header("x-echo-pod"))?;
    if pod.starts_with("echo-v1-") {
        Some("v1")
    } else if pod.starts_with("echo-v2-") {
        Some("v2")
    } else {
        None
    }
}

/// Waits (up to 5 s) until 10 connections in a row all satisfy `f`.
fn settled(world: &World, pod: &Pod, request: ClientRequest, mut f: impl FnMut(&RequestResult) -> bool) {
    let request = request.count(10).new_connection_per_request().timeout(Duration::from_secs(3));
    let ok = wait_until(Duration::from_secs(5), || {
        pod.run_client(&request).is_ok_and(|out| out.results.len() == 10 && out.results.iter().all(&mut f))
    });
    if ok.is_none() {
        let last = pod.run_client(&request);
        panic!("{request:?}: not settled after 5 s; last: {last:?}\nagent log:\n{}", world.agent.log_tail(30));
    }
}

fn banner(addr: &str) -> ClientRequest {
    ClientRequest::tcp(addr, "EHLO ambit\r\n").banner()
}

/// An HTTPS request to `echo` port 443 with `server_name` as SNI (and Host).
fn https(server_name: &str) -> ClientRequest {
    ClientRequest::http("https://echo.server:443/").header("host", server_name)
}

fn condition(dump: &serde_json::Value, kind: &str, namespace: &str, name: &str, type_: &str) -> Option<(String, String)> {
    let status = dump["routeStatus"]
        .as_array()?
        .iter()
        .find(|r| r["kind"] == kind && r["namespace"] == namespace && r["name"] == name)?;
    let c = status["parents"][0]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?;
    Some((c["status"].as_str()?.to_owned(), c["reason"].as_str()?.to_owned()))
}

#[test]
fn tcp_route_producer_and_consumer_scopes() {
    let world = start();
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
    let world = start();
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
    let world = start();
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
    settled(&world, &a, ClientRequest::http("http://echo.server/"), |r| r.status == Some(200) && version(r) == Some("v1"));
    let dump = world.agent.config_dump().unwrap();
    assert_eq!(condition(&dump, "HTTPRoute", "server", "web", "Accepted"), Some(("True".into(), "Accepted".into())));
    assert_eq!(condition(&dump, "TCPRoute", "server", "loser", "Accepted"), Some(("False".into(), "Conflicted".into())));
}
