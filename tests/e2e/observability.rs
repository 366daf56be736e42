//! Observability end to end: after a scripted mix of requests (successes, 404s, 5xx,
//! redirects, TCP), every metric equals what was sent, per label set; every metric the
//! Grafana dashboard queries exists; `/config_dump` follows a manifest change within
//! 1 s; access logs are JSON with every field, switchable and sampled at run time; trace
//! context headers pass through untouched. Needs root; fails (never skips) without it.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use ambit_e2e::{AgentOptions, ClientRequest, Pod};
use support::*;

const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo-routes, namespace: server}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - name: ok
    matches: [{path: {type: PathPrefix, value: /ok}}]
    backendRefs: [{name: echo, port: 80}]
  - name: old
    matches: [{path: {type: PathPrefix, value: /old}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: moved.example, statusCode: 302}}]
  - name: broken
    matches: [{path: {type: PathPrefix, value: /broken}}]
    backendRefs: [{name: missing, port: 80}]
"#;

/// One sample of the OpenMetrics text: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("bad labels in {line:?}"));
                let mut labels = BTreeMap::new();
                let mut rest = body;
                while !rest.is_empty() {
                    let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line:?}"));
                    let end = after.find('"').unwrap_or_else(|| panic!("unterminated label in {line:?}"));
                    labels.insert(key.to_string(), after[..end].to_string());
                    rest = after[end + 1..].trim_start_matches(',');
                }
                (name.to_string(), labels)
            }
        };
        samples.push(Sample { name, labels, value });
    }
    samples
}

/// The value of the sample with exactly these labels (None when absent).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    samples.iter().find(|s| s.name == name && s.labels == want).map(|s| s.value)
}

fn scrape(world: &World) -> (String, Vec<Sample>) {
    let (status, body) = world.agent.admin("GET", "/metrics").unwrap();
    assert_eq!(status, 200, "{body}");
    let samples = parse_metrics(&body);
    (body, samples)
}

fn requests(pod: &Pod, path: &str, n: usize) -> Vec<u16> {
    let out = pod
        .run_client(
            &ClientRequest::http(format!("http://echo.server{path}"))
                .count(n)
                .new_connection_per_request()
                .timeout(Duration::from_secs(2)),
        )
        .unwrap();
    out.results.iter().map(|r| r.status.unwrap_or(0)).collect()
}

fn request_labels<'a>(route: &'a str, rule: &'a str, backend: &'a str, class: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("caller_namespace", "mesh-a"),
        ("caller_workload", "web"),
        ("service", "server/echo:80"),
        ("route", route),
        ("rule", rule),
        ("backend", backend),
        ("status_class", class),
    ]
}

#[test]
fn metrics_dashboard_config_dump_access_logs_and_trace_headers() {
    let world = World::start(AgentOptions::default()).unwrap();
    let web = world.client("mesh-a", "web").unwrap();

    // /config_dump reflects a manifest change within 1 s.
    world.bed.apply_yaml(ROUTES).unwrap();
    let took = wait_until(Duration::from_secs(3), || {
        world.agent.config_dump().map(|d| d.to_string().contains("broken")).unwrap_or(false)
    });
    let took = took.unwrap_or_else(|| panic!("route never showed in /config_dump:\n{}", world.agent.log_tail(20)));
    assert!(took < Duration::from_secs(1), "config_dump followed the manifest after {took:?}");
    let dump = world.agent.config_dump().unwrap();
    let workloads = dump["config"]["workloads"].as_array().unwrap();
    assert!(
        workloads.iter().any(|w| w["name"] == "web" && w["workload"] == "web" && w["cgroup"].as_u64().unwrap() > 0),
        "{workloads:?}"
    );
    assert!(
        workloads.iter().any(|w| w["namespace"] == "server" && w["workload"] == "echo"),
        "Deployment pods are labelled with their Deployment: {workloads:?}"
    );

    let (_, before) = scrape(&world);
    let redirected_before = value(&before, "ambit_redirect_redirected_total", &[]).unwrap();

    // The scripted mix, one connection per request.
    assert_eq!(requests(&web, "/ok", 5), vec![200; 5]);
    assert_eq!(requests(&web, "/nope", 3), vec![404; 3]);
    assert_eq!(requests(&web, "/broken", 2), vec![500; 2]);
    assert_eq!(requests(&web, "/old", 4), vec![302; 4]);
    for _ in 0..2 {
        let out = web.run_client(&ClientRequest::tcp("echo.server:9090", "hello-tcp")).unwrap();
        assert_eq!(out.only().status, Some(200), "{out:?}");
    }

    let tcp = [("caller_namespace", "mesh-a"), ("caller_workload", "web"), ("service", "server/echo:9090")];
    // TCP close is recorded when the proxy's copy ends, just after the client's.
    wait_until(Duration::from_secs(3), || value(&scrape(&world).1, "ambit_tcp_connections_closed_total", &tcp) == Some(2.0));
    let (text, after) = scrape(&world);
    let route = "HTTPRoute server/echo-routes";
    let check = |name: &str, labels: &[(&str, &str)], want: f64| {
        assert_eq!(value(&after, name, labels), Some(want), "{name} {labels:?} in\n{text}");
    };
    check("ambit_requests_total", &request_labels(route, "ok", "server/echo:80", "2xx"), 5.0);
    check("ambit_requests_total", &request_labels("", "", "", "4xx"), 3.0);
    check("ambit_requests_total", &request_labels(route, "broken", "", "5xx"), 2.0);
    check("ambit_requests_total", &request_labels(route, "old", "", "3xx"), 4.0);
    let ours = |s: &&Sample| s.name == "ambit_requests_total" && s.labels.get("caller_workload").map(String::as_str) == Some("web");
    assert_eq!(after.iter().filter(ours).count(), 4, "no other label sets for web:\n{text}");
    for (class, n) in [("2xx", 5.0), ("4xx", 3.0), ("5xx", 2.0), ("3xx", 4.0)] {
        let labels = [("caller_namespace", "mesh-a"), ("service", "server/echo:80"), ("status_class", class)];
        check("ambit_request_duration_seconds_count", &labels, n);
        let mut inf = labels.to_vec();
        inf.push(("le", "+Inf"));
        check("ambit_request_duration_seconds_bucket", &inf, n);
    }
    check("ambit_backend_request_duration_seconds_count", &[("service", "server/echo:80"), ("backend", "server/echo:80")], 5.0);
    check("ambit_tcp_connections_opened_total", &tcp, 2.0);
    check("ambit_tcp_connections_closed_total", &tcp, 2.0);
    let sent = "hello-tcp".len() as f64 * 2.0;
    check("ambit_tcp_received_bytes_total", &tcp, sent);
    check("ambit_tcp_sent_bytes_total", &tcp, sent);
    // The eBPF programs counted one redirect per connection made.
    let redirected = value(&after, "ambit_redirect_redirected_total", &[]).unwrap();
    assert_eq!(redirected - redirected_before, 16.0, "{text}");
    // The kernel counted the connect hook's runs and time (BPF run-time statistics, held
    // on by the agent): at least one run per connection made.
    let connect4 = [("program", "ambit_connect4")];
    let runs = value(&after, "ambit_ebpf_program_runs_total", &connect4).unwrap();
    assert!(runs - value(&before, "ambit_ebpf_program_runs_total", &connect4).unwrap() >= 16.0, "{text}");
    assert!(value(&after, "ambit_ebpf_program_run_seconds_total", &connect4).is_some_and(|s| s > 0.0), "{text}");
    assert!(value(&after, "ambit_redirect_skipped_total", &[("reason", "not_enrolled")]).is_some(), "{text}");
    // Configuration state.
    check("ambit_config_resources", &[("kind", "HTTPRoute")], 1.0);
    check("ambit_config_routes_rejected", &[], 0.0);
    assert!(value(&after, "ambit_config_routes_partially_invalid", &[]).unwrap() >= 1.0, "the broken backend: {text}");
    let last_sync = value(&after, "ambit_config_last_sync_timestamp_seconds", &[]).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(last_sync > now - 120.0 && last_sync <= now + 1.0, "{last_sync} vs {now}");
    check("ambit_config_watch_errors_total", &[], 0.0);

    // Every metric the dashboard queries exists in /metrics.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../daemonset/dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queried.extend(regex_lite_names(target["expr"].as_str().unwrap()));
        }
    }
    assert!(queried.len() >= 15, "{queried:?}");
    for name in &queried {
        assert!(after.iter().any(|s| &s.name == name), "dashboard queries {name}, absent from /metrics:\n{text}");
    }

    // Access logs: off by default; switched on at run time; JSON with every field;
    // trace context passes through untouched.
    assert!(world.agent.access_log().iter().all(|e| e["kind"] != "http"), "access logs are off by default");
    let (status, body) = world.agent.admin("POST", "/access_log?enabled=true").unwrap();
    assert_eq!(status, 200, "{body}");
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let b3 = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1";
    let out = web
        .run_client(
            &ClientRequest::http("http://echo.server/ok/traced")
                .header("x-request-id", "req-42")
                .header("traceparent", traceparent)
                .header("tracestate", "vendor=opaque")
                .header("b3", b3)
                .header("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        )
        .unwrap();
    let r = out.only();
    assert_eq!(r.status, Some(200), "{r:?}");
    assert_eq!(r.echo_request_header("traceparent"), vec![traceparent]);
    assert_eq!(r.echo_request_header("tracestate"), vec!["vendor=opaque"]);
    assert_eq!(r.echo_request_header("b3"), vec![b3]);
    assert_eq!(r.echo_request_header("x-b3-traceid"), vec!["80f198ee56343ba864fe8b2a57d3eff7"]);
    let found = wait_until(Duration::from_secs(2), || {
        world.agent.access_log().iter().any(|e| e["kind"] == "http" && e["request_id"] == "req-42")
    });
    assert!(found.is_some(), "no access log line:\n{}", world.agent.log_tail(20));
    let events = world.agent.access_log();
    let line = events.iter().find(|e| e["kind"] == "http" && e["request_id"] == "req-42").unwrap();
    for field in [
        "caller_namespace", "caller_pod", "caller_workload", "service", "route", "rule", "backend", "endpoint",
        "status", "duration_ms", "response_head_ms", "backend_ms", "request_bytes", "response_bytes", "request_id",
    ] {
        assert!(line.get(field).is_some(), "access log line lacks {field}: {line}");
    }
    assert_eq!(line["caller_namespace"], "mesh-a");
    assert_eq!(line["caller_pod"], "web");
    assert_eq!(line["caller_workload"], "web");
    assert_eq!(line["service"], "server/echo:80");
    assert_eq!(line["route"], route);
    assert_eq!(line["rule"], "ok");
    assert_eq!(line["backend"], "server/echo:80");
    assert_eq!(line["status"], 200);
    assert_eq!(line["request_bytes"], 0);
    assert_eq!(line["response_bytes"].as_u64(), Some(r.body_text.len() as u64), "{line}");
    assert!(line["backend_ms"].as_f64().unwrap() <= line["duration_ms"].as_f64().unwrap(), "{line}");

    // Without an x-request-id, one is generated.
    requests(&web, "/ok/generated", 1);
    wait_until(Duration::from_secs(2), || {
        world.agent.access_log().iter().any(|e| e["kind"] == "http" && e["path"] == "/ok/generated")
    });
    let events = world.agent.access_log();
    let generated = events.iter().find(|e| e["kind"] == "http" && e["path"] == "/ok/generated").unwrap();
    assert_eq!(generated["request_id"].as_str().unwrap().len(), 32, "{generated}");

    // Sampling: rate 0 logs nothing; the switch reads back.
    let (status, body) = world.agent.admin("POST", "/access_log?sample=0").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"sample\": 0.0"), "{body}");
    requests(&web, "/ok/unsampled", 3);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!world.agent.access_log().iter().any(|e| e["path"] == "/ok/unsampled"), "sampled out");
    assert_eq!(world.agent.admin("POST", "/access_log?sample=2").unwrap().0, 400);
    let (status, _) = world.agent.admin("POST", "/access_log?enabled=false&sample=1").unwrap();
    assert_eq!(status, 200);
    requests(&web, "/ok/off", 1);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!world.agent.access_log().iter().any(|e| e["path"] == "/ok/off"), "switched off");

    // /logging changes the level live.
    let (status, body) = world.agent.admin("POST", "/logging?level=debug").unwrap();
    assert_eq!((status, body.trim()), (200, "debug"));
    assert_eq!(world.agent.admin("GET", "/logging").unwrap().1.trim(), "debug");
    assert_eq!(world.agent.admin("POST", "/logging?level=info").unwrap().0, 200);
    assert_eq!(world.agent.admin("GET", "/healthz").unwrap().0, 200);
}

/// The `ambit_*` metric names in a PromQL expression.
fn regex_lite_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("ambit_") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn no_metrics_switch_records_no_data_path_metrics() {
    let options = AgentOptions { extra_args: vec!["--no-metrics".into()], ..AgentOptions::default() };
    let world = World::start(options).unwrap();
    let web = world.client("mesh-a", "web").unwrap();
    assert_eq!(requests(&web, "/", 2), vec![200; 2]);
    let (text, samples) = scrape(&world);
    assert!(!text.contains("ambit_requests"), "{text}");
    assert!(value(&samples, "ambit_redirect_redirected_total", &[]).unwrap() >= 2.0, "{text}");
}
