//! GAMMA routing end to end, for what the conformance cases do not cover: consumer
//! over producer routes, route-type conflicts, live updates under load, h2c, WebSocket,
//! server-first TCP, GEP-1742 timeouts, RequestMirror with bodies, gRPC no-match, bad
//! routes, malformed HTTP and spoofed identity. Real agent, real eBPF, in the test bed.
//! Needs root; fails (never skips) without it.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ambit_e2e::{AgentOptions, ClientRequest, Pod, RequestResult};
use support::{access_log_agent, condition, route_status, settled, version, wait_until, World};

/// Two versions of an echo Deployment behind one Service (`echo`) and one Service each.
const ROUTING_WORLD: &str = r#"
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
      - name: echo
        image: echo
        ports: [{containerPort: 8080}, {containerPort: 9090}, {containerPort: 7070}, {containerPort: 2525}]
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
      - name: echo
        image: echo
        ports: [{containerPort: 8080}, {containerPort: 9090}, {containerPort: 7070}, {containerPort: 2525}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: server}
spec:
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
  - {name: h2c, port: 8081, targetPort: 8080, appProtocol: kubernetes.io/h2c}
  - {name: grpc, port: 7070, appProtocol: kubernetes.io/h2c}
  - {name: banner, port: 25, targetPort: 2525}
---
apiVersion: v1
kind: Service
metadata: {name: echo-v1, namespace: server}
spec:
  selector: {app: echo, version: v1}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
  - {name: grpc, port: 7070, appProtocol: kubernetes.io/h2c}
---
apiVersion: v1
kind: Service
metadata: {name: echo-v2, namespace: server}
spec:
  selector: {app: echo, version: v2}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
  - {name: grpc, port: 7070, appProtocol: kubernetes.io/h2c}
"#;

/// A producer HTTPRoute `name` on `echo` port 80 sending everything to `backends`
/// (`(service, weight)`).
fn producer_route(name: &str, backends: &[(&str, u32)]) -> String {
    let refs: Vec<String> =
        backends.iter().map(|(svc, w)| format!("{{name: {svc}, port: 80, weight: {w}}}")).collect();
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: server}}
spec:
  parentRefs: [{{group: "", kind: Service, name: echo, port: 80}}]
  rules:
  - backendRefs: [{}]
"#,
        refs.join(", ")
    )
}

fn one(pod: &Pod, request: ClientRequest) -> RequestResult {
    let out = pod.run_client(&request.timeout(Duration::from_secs(5))).unwrap();
    assert!(out.error.is_none(), "{out:?}");
    out.only().clone()
}

/// Waits (up to 5 s) until `f` holds for a fresh request.
fn eventually(what: &str, world: &World, mut f: impl FnMut() -> bool) {
    if wait_until(Duration::from_secs(5), &mut f).is_none() {
        panic!("{what}: not true after 5 s\nagent log:\n{}", world.agent.log_tail(30));
    }
}

#[test]
fn consumer_route_replaces_the_producer_route_only_for_its_namespace_and_spoofing_changes_nothing() {
    let world = World::start_with(ROUTING_WORLD, access_log_agent()).unwrap();
    let a = world.client("mesh-a", "caller-a").unwrap();
    let b = world.client("mesh-b", "caller-b").unwrap();
    world.bed.apply_yaml(&producer_route("producer", &[("echo-v1", 1)])).unwrap();
    world
        .bed
        .apply_yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: consumer, namespace: mesh-a}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, namespace: server, port: 80}]
  rules:
  - filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {add: [{name: x-consumer, value: mesh-a}]}}
    backendRefs: [{name: echo-v2, namespace: server, port: 80}]
"#,
        )
        .unwrap();
    settled(&world, &a, ClientRequest::http("http://echo.server/"), |r| version(r) == Some("v2"));
    settled(&world, &b, ClientRequest::http("http://echo.server/"), |r| version(r) == Some("v1"));
    let ra = one(&a, ClientRequest::http("http://echo.server/a").count(1));
    assert_eq!(ra.echo_request_header("x-consumer"), ["mesh-a"], "{ra:?}");
    let rb = one(&b, ClientRequest::http("http://echo.server/b"));
    assert!(rb.echo_request_header("x-consumer").is_empty(), "{rb:?}");

    // A caller in mesh-b claiming to be mesh-a in every way a request can say so.
    let spoof = ClientRequest::http("http://echo.server/spoofed")
        .header("x-forwarded-for", a.ipv4.to_string())
        .header("forwarded", format!("for={}", a.ipv4))
        .header("x-real-ip", a.ipv4.to_string())
        .header("x-ambit-caller-namespace", "mesh-a")
        .header("x-ambit-namespace", "mesh-a")
        .header("x-ambit-pod", "caller-a")
        .header("x-consumer", "mesh-a-forged")
        .count(20)
        .concurrency(4);
    let out = b.run_client(&spoof).unwrap();
    for r in &out.results {
        assert_eq!(r.status, Some(200), "{r:?}");
        assert_eq!(version(r), Some("v1"), "a mesh-b caller got the mesh-a consumer route: {r:?}");
    }
    std::thread::sleep(Duration::from_millis(300));
    let events = world.agent.access_log();
    let spoofed: Vec<_> = events.iter().filter(|e| e["kind"] == "http" && e["path"] == "/spoofed").collect();
    assert_eq!(spoofed.len(), 20, "{events:?}");
    for e in spoofed {
        assert_eq!(e["caller_namespace"], "mesh-b", "{e}");
        assert_eq!(e["caller_pod"], "caller-b", "{e}");
    }
}

#[test]
fn grpcroute_wins_over_httproute_and_grpc_no_match_is_unimplemented() {
    let world = World::start_with(ROUTING_WORLD, AgentOptions::default()).unwrap();
    let a = world.client("mesh-a", "grpc-caller").unwrap();
    world
        .bed
        .apply_yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: http-on-grpc, namespace: server}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 7070}]
  rules:
  - backendRefs: [{name: echo-v1, port: 7070}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc-on-grpc, namespace: server}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 7070}]
  rules:
  - matches: [{method: {service: proto.EchoTestService}}]
    backendRefs: [{name: echo-v2, port: 7070}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: only-other-method, namespace: server}
spec:
  parentRefs: [{group: "", kind: Service, name: echo-v1, port: 7070}]
  rules:
  - matches: [{method: {service: proto.EchoTestService, method: NotEcho}}]
    backendRefs: [{name: echo-v1, port: 7070}]
"#,
        )
        .unwrap();
    settled(&world, &a, ClientRequest::grpc("echo.server:7070"), |r| r.status == Some(200) && version(r) == Some("v2"));
    let out = a.run_client(&ClientRequest::grpc("echo.server:7070").count(10).concurrency(2)).unwrap();
    assert!(out.results.iter().all(|r| r.status == Some(200) && version(r) == Some("v2")), "{out:?}");

    let dump = world.agent.config_dump().unwrap();
    assert_eq!(
        condition(&dump, "HTTPRoute", "server", "http-on-grpc", "Accepted"),
        Some(("False".into(), "Conflicted".into())),
        "{:#}",
        dump["routeStatus"]
    );
    assert_eq!(
        condition(&dump, "GRPCRoute", "server", "grpc-on-grpc", "Accepted"),
        Some(("True".into(), "Accepted".into()))
    );

    // No rule matches: UNIMPLEMENTED as a trailers-only gRPC response (HTTP 200, no message).
    eventually("the no-match GRPCRoute is applied", &world, || {
        one(&a, ClientRequest::grpc("echo-v1.server:7070")).grpc_status == Some(12)
    });
    let r = one(&a, ClientRequest::grpc("echo-v1.server:7070"));
    assert_eq!(r.grpc_status, Some(12), "{r:?}");
    assert_eq!(r.status, None, "HTTP status must be 200 (the client records only non-200): {r:?}");
    assert!(r.body_text.is_empty(), "a trailers-only response has no message: {r:?}");
    assert_eq!(r.header("content-type"), Some("application/grpc"), "{r:?}");
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

#[test]
fn live_route_updates_under_load_fail_no_request_and_apply_within_a_second_on_open_connections() {
    let world = World::start_with(ROUTING_WORLD, AgentOptions::default()).unwrap();
    let a = world.client("mesh-a", "loader").unwrap();
    world.bed.apply_yaml(&producer_route("live", &[("echo-v1", 1)])).unwrap();
    settled(&world, &a, ClientRequest::http("http://echo.server/"), |r| version(r) == Some("v1"));

    // 2400 requests over 8 keep-alive connections, each answered after 20 ms: ~6 s.
    let load = ClientRequest::http("http://echo.server/load")
        .header("x-echo-delay-ms", "20")
        .count(2400)
        .concurrency(8)
        .timeout(Duration::from_secs(5));
    let (output, changes) = std::thread::scope(|s| {
        let loader = s.spawn(|| a.run_client(&load).unwrap());
        let mut changes = Vec::new();
        std::thread::sleep(Duration::from_millis(800));
        for (backends, expected) in [
            (vec![("echo-v2", 1)], &["v2"][..]),
            (vec![("echo-v1", 50), ("echo-v2", 50)], &["v1", "v2"][..]),
            (vec![("echo-v1", 1), ("echo-v2", 0)], &["v1"][..]),
        ] {
            world.bed.apply_yaml(&producer_route("live", &backends)).unwrap();
            changes.push((now_ms(), expected));
            std::thread::sleep(Duration::from_millis(1600));
        }
        (loader.join().unwrap(), changes)
    });

    assert!(output.error.is_none(), "{:?}", output.error);
    assert_eq!(output.results.len(), 2400);
    let failed: Vec<_> = output.results.iter().filter(|r| r.status != Some(200)).collect();
    assert!(failed.is_empty(), "{} failed requests, first: {:?}\n{}", failed.len(), failed[0], world.agent.log_tail(20));
    // Every worker kept its one connection through every reload.
    assert!(output.results.iter().all(|r| r.connection == 1), "a connection was reopened");
    let last = output.results.iter().map(|r| r.started_unix_ms).fold(0.0, f64::max);
    assert!(last > changes[2].0 + 1000.0, "the load ended before the last change could be checked");
    for (i, (at, expected)) in changes.iter().enumerate() {
        let until = changes.get(i + 1).map(|c| c.0).unwrap_or(f64::MAX);
        let window: Vec<_> =
            output.results.iter().filter(|r| r.started_unix_ms > at + 1000.0 && r.started_unix_ms < until).collect();
        assert!(window.len() > 50, "change {i}: only {} requests in its window", window.len());
        let seen: BTreeSet<_> = window.iter().filter_map(|r| version(r)).collect();
        let expected: BTreeSet<_> = expected.iter().copied().collect();
        assert_eq!(seen, expected, "change {i}: requests more than 1 s after it went to {seen:?}");
    }
}

#[test]
fn h2c_streams_share_one_connection_through_the_proxy() {
    let world = World::start_with(ROUTING_WORLD, AgentOptions::default()).unwrap();
    let a = world.client("mesh-a", "h2-caller").unwrap();
    let out = a.run_client(&ClientRequest::http("http://echo.server:8081/h2").h2c().count(12).concurrency(1)).unwrap();
    assert_eq!(out.results.len(), 12);
    let locals: BTreeSet<_> = out.results.iter().map(|r| r.local_addr.clone()).collect();
    assert_eq!(locals.len(), 1, "one connection expected: {locals:?}");
    for r in &out.results {
        assert_eq!(r.status, Some(200), "{r:?}\n{}", world.agent.log_tail(20));
        assert_eq!(r.version.as_deref(), Some("HTTP/2.0"), "{r:?}");
        assert_eq!(r.body.as_ref().unwrap()["proto"], "HTTP/2.0", "the backend must see HTTP/2: {r:?}");
        assert_eq!(r.body.as_ref().unwrap()["path"], "/h2");
    }
}

#[test]
fn websocket_upgrade_passes_through_after_routing() {
    let world = World::start_with(ROUTING_WORLD, AgentOptions::default()).unwrap();
    let a = world.client("mesh-a", "ws-caller").unwrap();
    world
        .bed
        .apply_yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ws, namespace: server}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /ws}}]
    backendRefs: [{name: echo-v2, port: 80}]
  - backendRefs: [{name: echo-v1, port: 80}]
"#,
        )
        .unwrap();
    settled(&world, &a, ClientRequest::http("http://echo.server/ws"), |r| version(r) == Some("v2"));
    for _ in 0..3 {
        let r = one(&a, ClientRequest::http("http://echo.server/ws/chat").websocket().body("hello over an upgraded connection"));
        assert!(r.error.is_none(), "{r:?}\n{}", world.agent.log_tail(20));
        assert_eq!(r.status, Some(101), "{r:?}");
        assert_eq!(r.body_text, "hello over an upgraded connection");
        assert_eq!(version(&r), Some("v2"), "the upgrade must be routed: {r:?}");
    }
}

#[test]
fn server_first_protocol_gets_its_banner_through_the_proxy() {
    let world = World::start_with(ROUTING_WORLD, AgentOptions::default()).unwrap();
    let a = world.client("mesh-a", "smtp-ish").unwrap();
    for _ in 0..3 {
        let r = one(&a, ClientRequest::tcp("echo.server:25", "EHLO ambit\r\n").banner());
        assert_eq!(r.status, Some(200), "{r:?}\n{}", world.agent.log_tail(20));
        let banner = r.banner.clone().unwrap();
        assert!(banner.starts_with("220 echo-v") && banner.ends_with(" ready\r\n"), "{banner:?}");
        // Detection gives up after 200 ms; the banner must not wait much longer.
        assert!(r.banner_ms.unwrap() < 1000.0, "banner after {:?} ms", r.banner_ms);
        assert_eq!(r.body_text, "EHLO ambit\r\n");
    }
}

#[test]
fn gep_1742_request_and_backend_request_timeouts_give_504() {
    let world = World::start_with(ROUTING_WORLD, AgentOptions::default()).unwrap();
    let a = world.client("mesh-a", "impatient").unwrap();
    world
        .bed
        .apply_yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: timeouts, namespace: server}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /request}}]
    timeouts: {request: 200ms}
    backendRefs: [{name: echo-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /backend}}]
    timeouts: {request: 2s, backendRequest: 200ms}
    backendRefs: [{name: echo-v1, port: 80}]
  - backendRefs: [{name: echo-v2, port: 80}]
"#,
        )
        .unwrap();
    settled(&world, &a, ClientRequest::http("http://echo.server/request"), |r| version(r) == Some("v1"));
    for path in ["/request", "/backend"] {
        let fast = one(&a, ClientRequest::http(format!("http://echo.server{path}")).header("x-echo-delay-ms", "20"));
        assert_eq!(fast.status, Some(200), "{path}: {fast:?}");
        let started = Instant::now();
        let slow = one(&a, ClientRequest::http(format!("http://echo.server{path}")).header("x-echo-delay-ms", "1500"));
        let took = started.elapsed();
        assert_eq!(slow.status, Some(504), "{path}: {slow:?}");
        assert!(slow.duration_ms >= 190.0 && slow.duration_ms < 700.0, "{path}: answered after {} ms", slow.duration_ms);
        assert!(took < Duration::from_millis(1400), "{path}: the client run took {took:?}");
    }
}

#[test]
fn request_mirror_copies_requests_with_their_bodies_up_to_64_kib() {
    let world = World::start_with(ROUTING_WORLD, AgentOptions::default()).unwrap();
    let a = world.client("mesh-a", "mirrored").unwrap();
    world
        .bed
        .apply_yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: mirror, namespace: server}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: echo-v2, port: 80}}}
    backendRefs: [{name: echo-v1, port: 80}]
"#,
        )
        .unwrap();
    settled(&world, &a, ClientRequest::http("http://echo.server/probe"), |r| version(r) == Some("v1"));
    let v1 = world.bed.first_pod("server", &[("version", "v1")]).unwrap();
    let v2 = world.bed.first_pod("server", &[("version", "v2")]).unwrap();
    let log_of = |pod: &Pod| -> Vec<serde_json::Value> {
        let r = one(&a, ClientRequest::http(format!("http://{}:8080/__requests", pod.ipv4)));
        r.body.and_then(|b| b.as_array().cloned()).unwrap_or_default()
    };
    let find = |log: &[serde_json::Value], path: &str| log.iter().find(|e| e["path"] == path).cloned();

    let r = one(&a, ClientRequest::http("http://echo.server/small").method("POST").body("mirror-me-please"));
    assert_eq!((r.status, version(&r)), (Some(200), Some("v1")), "{r:?}");
    let ok = wait_until(Duration::from_secs(3), || find(&log_of(&v2), "/small").is_some());
    assert!(ok.is_some(), "the mirror never received /small: {:?}", log_of(&v2));
    let copy = find(&log_of(&v2), "/small").unwrap();
    assert_eq!(copy["method"], "POST");
    assert_eq!(copy["body"], "mirror-me-please", "{copy}");
    assert_eq!(find(&log_of(&v1), "/small").unwrap()["body"], "mirror-me-please");

    // Over 64 KiB: the main backend gets all of it, the mirror nothing.
    let big = "b".repeat(100 * 1024);
    let r = one(&a, ClientRequest::http("http://echo.server/big").method("POST").body(big.clone()));
    assert_eq!((r.status, version(&r)), (Some(200), Some("v1")), "{r:?}");
    assert_eq!(find(&log_of(&v1), "/big").unwrap()["body_len"], big.len());
    // A request sent after the big one is mirrored; by then the big one would have been.
    let _ = one(&a, ClientRequest::http("http://echo.server/after").method("POST").body("x"));
    let ok = wait_until(Duration::from_secs(3), || find(&log_of(&v2), "/after").is_some());
    assert!(ok.is_some());
    std::thread::sleep(Duration::from_millis(200));
    assert!(find(&log_of(&v2), "/big").is_none(), "an over-limit body was mirrored");
}

fn raw(pod: &Pod, bytes: &str) -> String {
    let r = one(pod, ClientRequest::tcp("echo.server:80", bytes).raw());
    assert_eq!(r.status, Some(200), "{r:?}");
    r.body_text
}

#[test]
fn malformed_oversized_and_ambiguous_http_from_a_pod_is_refused() {
    let world = World::start_with(ROUTING_WORLD, AgentOptions::default()).unwrap();
    let a = world.client("mesh-a", "sloppy").unwrap();
    let answer = raw(&a, "GET /\x01bad HTTP/1.1\r\nHost: echo\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    let big = format!("GET / HTTP/1.1\r\nHost: echo\r\nX-Big: {}\r\n\r\n", "a".repeat(70 * 1024));
    let answer = raw(&a, &big);
    assert!(answer.starts_with("HTTP/1.1 431"), "{:?}", &answer[..answer.len().min(100)]);
    let smuggle = "GET /first HTTP/1.1\r\nHost: echo\r\n\r\n\
                   POST / HTTP/1.1\r\nHost: echo\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n\
                   0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: echo\r\n\r\n";
    let answer = raw(&a, smuggle);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 2, "{answer:?}");
    let second = &answer[answer.rfind("HTTP/1.1 ").unwrap()..];
    assert!(second.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(second.to_ascii_lowercase().contains("connection: close"), "{answer:?}");
    assert!(!answer.contains("/smuggled"), "{answer:?}");
    // The connection-level refusals leave the proxy serving.
    assert_eq!(one(&a, ClientRequest::http("http://echo.server/")).status, Some(200));
}

#[test]
fn invalid_routes_are_rejected_with_a_reason_while_the_others_keep_serving() {
    let world = World::start_with(ROUTING_WORLD, AgentOptions::default()).unwrap();
    let a = world.client("mesh-a", "steady").unwrap();
    world.bed.apply_yaml(&producer_route("good", &[("echo-v1", 1)])).unwrap();
    settled(&world, &a, ClientRequest::http("http://echo.server/"), |r| version(r) == Some("v1"));
    world
        .bed
        .apply_yaml(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad-regex, namespace: server}
spec:
  parentRefs: [{group: "", kind: Service, name: echo-v2, port: 80}]
  rules:
  - matches: [{path: {type: RegularExpression, value: "/(unclosed"}}]
    backendRefs: [{name: echo-v1, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: redirect-and-rewrite, namespace: server}
spec:
  parentRefs: [{group: "", kind: Service, name: echo-v2, port: 80}]
  rules:
  - filters:
    - {type: RequestRedirect, requestRedirect: {hostname: elsewhere}}
    - {type: URLRewrite, urlRewrite: {hostname: other}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: no-parent, namespace: server}
spec:
  parentRefs: [{group: "", kind: Service, name: does-not-exist, port: 80}]
  rules:
  - backendRefs: [{name: echo-v2, port: 80}]
"#,
        )
        .unwrap();
    let mut dump = serde_json::Value::Null;
    eventually("the bad routes get a status", &world, || {
        dump = world.agent.config_dump().unwrap();
        ["bad-regex", "redirect-and-rewrite", "no-parent"]
            .iter()
            .all(|name| route_status(&dump, "HTTPRoute", "server", name).is_some())
    });
    for name in ["bad-regex", "redirect-and-rewrite"] {
        let accepted = condition(&dump, "HTTPRoute", "server", name, "Accepted");
        assert!(matches!(&accepted, Some((s, _)) if s == "False"), "{name}: {:#}", dump["routeStatus"]);
        let status = route_status(&dump, "HTTPRoute", "server", name).unwrap();
        let message = status["parents"][0]["conditions"][0]["message"].as_str().unwrap_or("");
        assert!(!message.is_empty(), "{name}: no reason given: {status}");
    }
    assert_eq!(
        condition(&dump, "HTTPRoute", "server", "no-parent", "Accepted"),
        Some(("False".into(), "NoMatchingParent".into()))
    );
    assert_eq!(condition(&dump, "HTTPRoute", "server", "good", "Accepted"), Some(("True".into(), "Accepted".into())));
    // Everything else keeps serving: the good route, and echo-v2 without its invalid routes.
    let out = a.run_client(&ClientRequest::http("http://echo.server/").count(20).concurrency(4)).unwrap();
    assert!(out.results.iter().all(|r| r.status == Some(200) && version(r) == Some("v1")), "{out:?}");
    let r = one(&a, ClientRequest::http("http://echo-v2.server/unclosed"));
    assert_eq!((r.status, version(&r)), (Some(200), Some("v2")), "{r:?}");
}
