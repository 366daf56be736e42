//! The caller's address is kept: the proxy makes each upstream connection from the
//! calling pod's own network namespace, so the backend (and NetworkPolicy) sees the
//! caller pod's IP, never the node's. Pooled upstream connections are never shared
//! between callers. Real agent, real eBPF, in the test bed. Needs root; fails (never
//! skips) without it.

mod support;

use std::time::Duration;

use ambit_e2e::{AgentOptions, ClientRequest, Pod, PodSpec, RequestResult};
use support::{settled, World};

const WORLD: &str = r#"
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
apiVersion: v1
kind: Namespace
metadata: {name: backends}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: server}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: echo
        image: echo
        ports: [{containerPort: 8080}, {containerPort: 7070}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: server}
spec:
  ipFamilyPolicy: PreferDualStack
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
  - {name: grpc, port: 7070, appProtocol: kubernetes.io/h2c}
  - {name: opaque, port: 8082, targetPort: 8080, appProtocol: example.com/opaque}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: target, namespace: backends}
spec:
  replicas: 1
  selector: {matchLabels: {app: target}}
  template:
    metadata: {labels: {app: target}}
    spec:
      containers:
      - name: echo
        image: echo
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: target, namespace: backends}
spec:
  selector: {app: target}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo-to-target, namespace: mesh-b}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, namespace: server, port: 80}]
  rules:
  - backendRefs: [{name: target, namespace: backends, port: 80}]
"#;

/// Runs `request` from `pod` and checks that every answer came with one of `pod`'s own
/// addresses as the address the backend saw: its IPv4 or IPv6 address, by the family
/// of the endpoint the proxy chose (the Service is dual-stack).
fn seen_as_itself(world: &World, pod: &Pod, request: ClientRequest) -> Vec<RequestResult> {
    let out = pod.run_client(&request.timeout(Duration::from_secs(5))).unwrap();
    assert!(out.error.is_none() && !out.results.is_empty(), "{out:?}");
    let own = [pod.ipv4.to_string(), pod.ipv6.to_string()];
    for r in &out.results {
        assert_eq!(r.status, Some(200), "{r:?}\nagent log:\n{}", world.agent.log_tail(30));
        assert!(
            r.echo_caller_ip().is_some_and(|ip| own.iter().any(|o| o == ip)),
            "the backend must see {}/{}'s own address ({own:?}): {r:?}",
            pod.namespace,
            pod.name
        );
    }
    out.results
}

/// `ambit_upstream_sockets_total{netns="pod"}` from the agent's `/metrics`.
fn pod_sockets(world: &World) -> u64 {
    let (status, text) = world.agent.admin("GET", "/metrics").unwrap();
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(r#"ambit_upstream_sockets_total{netns="pod"} "#))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pod socket counter in /metrics:\n{text}"))
}

#[test]
fn backend_sees_the_caller_pod_ip() {
    let world = World::start_with(WORLD, AgentOptions::default()).unwrap();
    let a1 = world.client("mesh-a", "a1").unwrap();
    let a2 = world.client("mesh-a", "a2").unwrap();
    let b1 = world.client("mesh-b", "b1").unwrap();

    // HTTP/1.1, keep-alive: the two callers take turns on the same Service and
    // endpoint. A pooled connection of one must never carry the other's requests.
    for _round in 0..3 {
        for pod in [&a1, &a2] {
            let results = seen_as_itself(&world, pod, ClientRequest::http("http://echo.server/").count(4));
            assert!(results.iter().all(|r| r.echo_pod().is_some_and(|p| p.starts_with("echo-"))), "{results:?}");
        }
    }
    // Keep-alive still pays off per caller: 24 requests did not need 24 connections.
    let sockets = pod_sockets(&world);
    assert!((2..24).contains(&sockets), "upstream sockets made in pod namespaces: {sockets}");

    // Through the Service's IPv6 cluster IP too.
    for pod in [&a1, &a2] {
        seen_as_itself(&world, pod, ClientRequest::http("http://echo.server/v6").ipv6().count(2));
    }

    // HTTP/2 (shared, multiplexed upstream connections) and gRPC.
    for pod in [&a1, &a2, &a1] {
        seen_as_itself(&world, pod, ClientRequest::grpc("echo.server:7070").count(3));
    }

    // Opaque TCP passthrough (an HTTP request carried as bytes to the HTTP echo port).
    for pod in [&a1, &a2] {
        seen_as_itself(&world, pod, ClientRequest::http("http://echo.server:8082/raw").count(2));
    }

    // A consumer route (in mesh-b) sending mesh-b's callers to a Service in a third
    // namespace: the backend still sees the caller, so the route grants no access
    // beyond the caller's own (GEP-1294), and the backend's NetworkPolicy decides.
    settled(&world, &b1, ClientRequest::http("http://echo.server/"), |r| r.echo_namespace() == Some("backends"));
    seen_as_itself(&world, &b1, ClientRequest::http("http://echo.server/").count(3));
    // mesh-a has no consumer route: it still reaches the producer's Service.
    let results = seen_as_itself(&world, &a1, ClientRequest::http("http://echo.server/"));
    assert_eq!(results[0].echo_namespace(), Some("server"), "{results:?}");
}

#[test]
fn a_pod_sharing_another_pods_netns_is_seen_with_that_netns_address() {
    let world = World::start_with(WORLD, AgentOptions::default()).unwrap();
    let owner = world.client("mesh-a", "owner").unwrap();
    // Its own cgroup (so its own identity), the owner's network namespace; its only
    // process is the client itself.
    let guest = world.add(PodSpec::new("mesh-b", "guest").serve(false).share_netns_with("mesh-a", "owner")).unwrap();
    let out = guest.run_client(&ClientRequest::http("http://echo.server/").timeout(Duration::from_secs(5))).unwrap();
    let r = out.only();
    assert_eq!(r.status, Some(200), "{r:?}\nagent log:\n{}", world.agent.log_tail(30));
    // The consumer route of mesh-b applies: the caller is known by its cgroup.
    assert_eq!(r.echo_namespace(), Some("backends"), "{r:?}");
    let owner_ips = [owner.ipv4.to_string(), owner.ipv6.to_string()];
    assert!(r.echo_caller_ip().is_some_and(|ip| owner_ips.iter().any(|o| o == ip)), "{owner_ips:?}: {r:?}");
}

/// `ambit_upstream_socket_failures_total` from the agent's `/metrics`.
fn socket_failures(world: &World) -> u64 {
    let (_, text) = world.agent.admin("GET", "/metrics").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("ambit_upstream_socket_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no socket failure counter in /metrics:\n{text}"))
}

#[test]
fn a_caller_whose_namespace_cannot_be_found_is_refused_never_sent_from_the_node() {
    let world = World::start_with(WORLD, AgentOptions::default()).unwrap();
    let pod = world.client("mesh-a", "stray").unwrap();
    // A process in the pod's cgroup (so attributed to the pod, which is not
    // hostNetwork) but in the node's network namespace: the pod's own namespace cannot
    // be found through it, and the node's address must not stand in for the pod's.
    let mut in_node = pod.clone();
    in_node.netns = world.bed.node_netns().to_string();
    let out = in_node.run_client(&ClientRequest::http("http://echo.server/").timeout(Duration::from_secs(5))).unwrap();
    let r = out.only();
    assert_eq!(r.status, Some(503), "{r:?}\nagent log:\n{}", world.agent.log_tail(30));
    assert_eq!(r.echo_caller_ip(), None, "{r:?}");
    assert!(socket_failures(&world) >= 1);
    // The same pod from its own namespace is served, with its own address.
    seen_as_itself(&world, &pod, ClientRequest::http("http://echo.server/"));
}
