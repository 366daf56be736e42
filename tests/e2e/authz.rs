//! AuthorizationPolicy on the multi-node bed, standalone mode with a mesh CA, policies
//! as manifests: the callee's node (node 2) allows named callers and refuses others, by
//! L4 rules (the connection is reset or closed) and by HTTP rules (403); a
//! namespace-wide rule; a policy added while a connection is open closes it; a bad
//! policy gets a status and a log line while the others keep working. Needs root;
//! fails (never skips) without it.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ambit_e2e::long_stream::Exchange;
use ambit_e2e::{AgentOptions, ClientRequest, MeshCa, Pod, PodSpec, RunningAgent, TestBed};
use support::mesh::{spiffe, wait_for_certificates};
use support::{multi_node_bed, poll, wait_until};

const PROBE: &str = env!("CARGO_BIN_EXE_ambit-tls-probe");
const ECHO_TCP_PORT: u16 = ambit_e2e::echo_server::TCP_PORT;

const SERVICES: &str = r#"
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
kind: Service
metadata: {name: echo, namespace: server}
spec:
  selector: {app: echo}
  ports:
  - {name: http, port: 80, targetPort: 8080, appProtocol: http}
  - {name: tcp, port: 9090}
"#;

/// ALLOW on the echo pods, L4 only: `mesh-a/web` on both ports.
const ECHO_L4: &str = r#"
apiVersion: ambit.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: echo-callers, namespace: server}
spec:
  targetRefs: [{group: "", kind: Pod, selector: {matchLabels: {app: echo}}}]
  action: ALLOW
  rules:
  - sources: [{type: ServiceAccount, serviceAccount: {namespace: mesh-a, name: web}}]
    networkAttributes: {ports: [9090, 8080]}
"#;

/// The same policy with an HTTP rule: `mesh-a/web` anything on both ports, every
/// account of mesh-a only GET under /public on the HTTP port. Only streams to the HTTP
/// port are parsed as HTTP; the raw TCP port is still decided per connection.
const ECHO_HTTP: &str = r#"
apiVersion: ambit.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: echo-callers, namespace: server}
spec:
  targetRefs: [{group: "", kind: Pod, selector: {matchLabels: {app: echo}}}]
  action: ALLOW
  rules:
  - sources: [{type: ServiceAccount, serviceAccount: {namespace: mesh-a, name: web}}]
    networkAttributes: {ports: [9090, 8080]}
  - sources: [{type: ServiceAccount, serviceAccount: {namespace: mesh-a, name: "*"}}]
    networkAttributes: {ports: [8080]}
    httpAttributes: {methods: [GET], paths: [{type: PathPrefix, value: /public}]}
"#;

/// The mesh up on two nodes: echo on node 2, callers on node 1 (`mesh-a/web`,
/// `mesh-a/other`, `mesh-b/web`), certificates held.
struct Mesh {
    bed: TestBed,
    agents: Vec<RunningAgent>,
    web: Pod,
    other: Pod,
    foreign: Pod,
}

fn mesh() -> Mesh {
    let bed = multi_node_bed(2);
    let ca = MeshCa::create(&bed.scratch_dir().join("mesh-ca")).unwrap();
    bed.apply_yaml(SERVICES).unwrap();
    bed.add_pod(PodSpec::new("server", "echo-0").label("app", "echo").service_account("echo").on_node(2)).unwrap();
    let options = AgentOptions { access_log: true, extra_args: ca.agent_args(), ..AgentOptions::default() };
    let agents = RunningAgent::start_all(&bed, &options).unwrap();
    let caller = |ns: &str, name: &str, sa: &str| bed.add_pod(PodSpec::new(ns, name).serve(false).service_account(sa).on_node(1)).unwrap();
    let (web, other, foreign) = (caller("mesh-a", "web-1", "web"), caller("mesh-a", "other-1", "other"), caller("mesh-b", "web-b", "web"));
    for pod in [&web, &other, &foreign] {
        agents[0].wait_enrolled(&pod.namespace, &pod.name, Duration::from_secs(5)).unwrap();
    }
    let callers = [spiffe("mesh-a", "web"), spiffe("mesh-a", "other"), spiffe("mesh-b", "web")];
    wait_for_certificates(&agents[0], &callers, Duration::from_secs(10));
    wait_for_certificates(&agents[1], &[spiffe("server", "echo")], Duration::from_secs(10));
    Mesh { bed, agents, web, other, foreign }
}

impl Mesh {
    fn logs(&self) -> String {
        format!("node 1:\n{}\nnode 2:\n{}", self.agents[0].log_tail(20), self.agents[1].log_tail(30))
    }

    /// Waits (at most 10 s) until `check` holds, else fails with both logs.
    fn settle(&self, what: &str, mut check: impl FnMut() -> bool) {
        if wait_until(Duration::from_secs(10), &mut check).is_none() {
            panic!("not settled after 10 s: {what}\n{}", self.logs());
        }
    }
}

/// One TCP exchange with echo:9090: true when the echo came back whole.
fn tcp_ok(pod: &Pod) -> bool {
    let marker = format!("authz-{}-{}", pod.name, std::process::id());
    let out = pod.run_client(&ClientRequest::tcp("echo.server:9090", marker.clone()).timeout(Duration::from_secs(3))).unwrap();
    out.results.first().is_some_and(|r| r.status == Some(200) && r.body_text == marker)
}

/// One HTTP request to the echo Service: its status (None when the request failed).
fn http_status(pod: &Pod, method: &str, path: &str) -> Option<u16> {
    let request = ClientRequest::http(format!("http://echo.server{path}")).method(method).timeout(Duration::from_secs(3));
    pod.run_client(&request).ok()?.results.first()?.status
}

#[test]
fn named_callers_get_through_and_others_are_refused_by_l4_and_http_rules() {
    let m = mesh();
    // No policy yet: everyone gets through.
    m.settle("open before any policy", || tcp_ok(&m.other) && http_status(&m.other, "GET", "/private") == Some(200));

    m.bed.apply_yaml(ECHO_L4).unwrap();
    // L4: only mesh-a/web has a rule: the others' connections are refused (TCP reset or
    // closed; an HTTP client gets 403 from its own node's proxy).
    m.settle("mesh-a/other refused on the TCP port", || !tcp_ok(&m.other));
    assert!(tcp_ok(&m.web), "mesh-a/web was refused on the TCP port\n{}", m.logs());
    assert_eq!(http_status(&m.web, "POST", "/private"), Some(200), "{}", m.logs());
    assert_eq!(http_status(&m.other, "GET", "/public/page"), Some(403), "{}", m.logs());
    // mesh-b/web: same account name, another namespace: nothing matches.
    assert!(!tcp_ok(&m.foreign), "mesh-b/web got through on TCP\n{}", m.logs());

    // HTTP: mesh-a/other may GET /public only; others get 403.
    m.bed.apply_yaml(ECHO_HTTP).unwrap();
    m.settle("mesh-a/other may GET /public", || http_status(&m.other, "GET", "/public/page") == Some(200));
    assert_eq!(http_status(&m.other, "GET", "/private"), Some(403), "{}", m.logs());
    assert_eq!(http_status(&m.other, "POST", "/public/page"), Some(403), "{}", m.logs());
    assert_eq!(http_status(&m.other, "GET", "/x/../public/page"), Some(200), "matched after normalisation\n{}", m.logs());
    assert_eq!(http_status(&m.web, "POST", "/private"), Some(200), "{}", m.logs());
    assert_eq!(http_status(&m.foreign, "GET", "/public/page"), Some(403), "mesh-b/web got through on HTTP\n{}", m.logs());
    // The raw TCP port of the same pod is not parsed as HTTP: L4 rules decide it.
    assert!(tcp_ok(&m.web), "mesh-a/web's raw TCP was refused while the pod has HTTP rules\n{}", m.logs());
    assert!(!tcp_ok(&m.other), "mesh-a/other got through on TCP\n{}", m.logs());
}

#[test]
fn a_namespace_wide_rule_admits_every_account_of_the_namespace() {
    let m = mesh();
    m.bed
        .apply_yaml(
            r#"
apiVersion: ambit.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: from-mesh-a, namespace: server}
spec:
  targetRefs: [{group: "", kind: Pod, selector: {}}]
  action: ALLOW
  rules:
  - sources: [{type: Namespace, namespace: mesh-a}]
"#,
        )
        .unwrap();
    m.settle("mesh-b refused", || !tcp_ok(&m.foreign));
    assert!(tcp_ok(&m.web) && tcp_ok(&m.other), "an account of mesh-a was refused\n{}", m.logs());
    assert_eq!(http_status(&m.other, "GET", "/anything"), Some(200), "{}", m.logs());
}

/// `ambit-tls-probe stream` lines, read on a thread.
struct Stream {
    child: Child,
    lines: mpsc::Receiver<Exchange>,
}

impl Stream {
    fn start(pod: &Pod, bed: &TestBed) -> Stream {
        let service = std::net::SocketAddr::new(bed.service_ip("server", "echo").unwrap().into(), ECHO_TCP_PORT);
        let mut command = pod.command(PROBE);
        command.args(["stream", "--addr", &service.to_string(), "--interval-ms", "500", "--seconds", "120"]);
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(exchange) = serde_json::from_str(&line) {
                    if tx.send(exchange).is_err() {
                        return;
                    }
                }
            }
        });
        Stream { child, lines }
    }

    fn next(&self, limit: Duration) -> Option<Exchange> {
        self.lines.recv_timeout(limit).ok()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_policy_added_while_a_connection_is_open_closes_it() {
    let m = mesh();
    let stream = Stream::start(&m.other, &m.bed);
    let first = stream.next(Duration::from_secs(10)).expect("the stream sent nothing");
    assert!(first.ok, "the stream failed at once: {first:?}\n{}", m.logs());
    let second = stream.next(Duration::from_secs(5)).expect("the stream stopped");
    assert!(second.ok, "{second:?}\n{}", m.logs());

    // Only mesh-a/web may call echo now: the open connection of mesh-a/other must end.
    m.bed.apply_yaml(ECHO_L4).unwrap();
    let failed = poll(Duration::from_secs(15), || {
        let exchange = stream.next(Duration::from_secs(6))?;
        (!exchange.ok).then_some(exchange)
    });
    let failed = failed.unwrap_or_else(|| panic!("the open connection kept working under a policy denying it\n{}", m.logs()));
    assert!(failed.error.is_some(), "{failed:?}");
    // A new connection of the allowed caller works.
    assert!(tcp_ok(&m.web), "{}", m.logs());
}

#[test]
fn a_bad_policy_gets_a_status_and_a_log_line_and_the_others_keep_working() {
    let m = mesh();
    m.bed.apply_yaml(ECHO_L4).unwrap();
    m.bed
        .apply_yaml(
            r#"
apiVersion: ambit.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: typo, namespace: server}
spec:
  targetRefs: [{group: "", kind: Pod, selector: {matchLabels: {app: echo}}}]
  action: ALLOW
  rules:
  - sources: [{type: Namespace, namespace: mesh-b}]
    portz: [9090]
---
apiVersion: ambit.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: bad-selector, namespace: server}
spec:
  targetRefs: [{group: "", kind: Pod, selector: {matchExpressions: [{key: app, operator: Equals, values: [echo]}]}}]
  action: DENY
  rules:
  - httpAttributes: {paths: [{type: Exact, value: "/a/../b"}]}
"#,
        )
        .unwrap();
    let status = |name: &str| {
        let dump = m.agents[1].config_dump().ok()?;
        let entry = dump["policyStatus"].as_array()?.iter().find(|s| s["namespace"] == "server" && s["name"] == name)?.clone();
        Some(entry["accepted"].clone())
    };
    let typo = poll(Duration::from_secs(10), || status("typo").filter(|c| c["status"] == "False"))
        .unwrap_or_else(|| panic!("no Accepted=False for the typo\n{}", m.logs()));
    assert_eq!(typo["reason"], "Invalid", "{typo}");
    assert!(typo["message"].as_str().is_some_and(|t| t.contains("portz: unknown field")), "{typo}");
    let bad = status("bad-selector").unwrap();
    assert!(bad["status"] == "False" && bad["message"].as_str().is_some_and(|t| t.contains("unknown operator")), "{bad}");
    assert_eq!(status("echo-callers").unwrap()["status"], "True");
    let logged = m.agents[1].log().lines().any(|l| l.contains("configuration problem") && l.contains("AuthorizationPolicy server/typo is invalid"));
    assert!(logged, "no log line for the bad policy\n{}", m.logs());

    // The valid policy applies; the invalid ALLOW (which would admit mesh-b) does not.
    m.settle("mesh-a/other refused on TCP", || !tcp_ok(&m.other));
    assert!(!tcp_ok(&m.foreign), "the invalid policy admitted mesh-b\n{}", m.logs());
    assert!(tcp_ok(&m.web), "{}", m.logs());
}
