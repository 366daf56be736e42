//! AuthorizationPolicies from manifests: the table per local pod IP, statuses of bad
//! policies (the others keep working), `explain authz`, and namespace isolation
//! (a property test).

use std::net::IpAddr;

use ambit_agent::authz::explain::{explain_authz, AuthzQuestion};
use ambit_agent::cluster::{ClusterObject, ClusterState};
use ambit_agent::manifests::parse_text;
use ambit_agent::translate::{translate, NodeView, Translation};
use ambit_proxy_core::authz::{decide, Attempt, Decision, HttpAttempt, WorkloadPolicies};
use ambit_proxy_core::identity::{SpiffeId, TrustDomain};
use proptest::prelude::*;
use serde_json::{json, Value};

const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: web, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: checkout-1, namespace: shop, uid: u1, labels: {app: checkout}}
spec: {nodeName: n1, serviceAccountName: checkout, containers: []}
status: {podIP: 10.244.1.5, podIPs: [{ip: 10.244.1.5}, {ip: "fd00::5"}], phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: checkout-2, namespace: shop, uid: u2, labels: {app: checkout}}
spec: {nodeName: n2, serviceAccountName: checkout, containers: []}
status: {podIP: 10.244.2.5, phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: cart-1, namespace: shop, uid: u3, labels: {app: cart}}
spec: {nodeName: n1, containers: []}
status: {podIP: 10.244.1.6, phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend-1, namespace: web, uid: u4, labels: {app: frontend}}
spec: {nodeName: n1, serviceAccountName: frontend, containers: []}
status: {podIP: 10.244.1.7, phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: checkout-host, namespace: shop, uid: u5, labels: {app: checkout}}
spec: {nodeName: n1, hostNetwork: true, containers: []}
status: {podIP: 10.77.0.1, phase: Running}
---
apiVersion: v1
kind: Pod
metadata: {name: checkout-out, namespace: shop, uid: u6, labels: {app: checkout}, annotations: {ambit.dev/mesh: disabled}}
spec: {nodeName: n1, containers: []}
status: {podIP: 10.244.1.8, phase: Running}
---
apiVersion: ambit.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: allow-frontend, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Pod, selector: {matchLabels: {app: checkout}}}]
  action: ALLOW
  rules:
  - sources: [{type: ServiceAccount, serviceAccount: {namespace: web, name: frontend}}]
    networkAttributes: {ports: [8080]}
  - sources: [{type: Namespace, namespace: ops}]
    httpAttributes: {methods: [GET], paths: [{type: PathPrefix, value: /api}]}
---
apiVersion: ambit.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-debug, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Pod, selector: {}}]
  action: DENY
  rules:
  - httpAttributes: {paths: [{type: PathPrefix, value: /debug}]}
---
apiVersion: ambit.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: broken, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Pod, selector: {matchLabels: {app: checkout}}}]
  action: ALLOW
  rules:
  - httpAttributes: {paths: [{type: Exact, value: "/a/../b"}]}
---
apiVersion: ambit.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: typo, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Pod, selector: {}}]
  action: ALLOW
  rulez: []
"#;

fn load(text: &str) -> ClusterState {
    let parsed = parse_text(std::path::Path::new("fixture.yaml"), text);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let mut state = ClusterState::new();
    for object in parsed.objects {
        state.insert(object).unwrap();
    }
    state
}

fn on_node(state: &ClusterState, node: &str) -> Translation {
    let none = |_: &str, _: Option<&str>| None;
    translate(state, &NodeView { node_name: Some(node), cgroups: &none })
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn local_pods_get_their_namespace_policies_by_every_ip() {
    let t = on_node(&load(CLUSTER), "n1");
    let table = &t.config.authorization;
    let names = |ip: IpAddr| -> Vec<String> {
        table.for_pod(ip).map(|w| w.policies.iter().map(|p| p.name.to_string()).collect()).unwrap_or_default()
    };
    assert_eq!(names(ip("10.244.1.5")), ["shop/allow-frontend", "shop/deny-debug"]);
    assert_eq!(names(ip("fd00::5")), ["shop/allow-frontend", "shop/deny-debug"]);
    assert_eq!(names(ip("10.244.1.6")), ["shop/deny-debug"], "cart is selected by the namespace-wide DENY only");
    assert!(table.for_pod(ip("10.244.2.5")).is_none(), "checkout-2 runs on n2");
    assert!(table.for_pod(ip("10.244.1.7")).is_none(), "web has no policies");
    assert!(table.for_pod(ip("10.77.0.1")).is_none(), "a host-network pod shares the node's address");
    assert!(table.for_pod(ip("10.244.1.8")).is_none(), "a pod opted out of the mesh");
    assert_eq!(table.by_pod.len(), 3);
    let allow_selected: Vec<IpAddr> = t.allow_selected.iter().copied().collect();
    assert_eq!(allow_selected, [ip("10.244.1.5"), ip("fd00::5")]);
}

#[test]
fn bad_policies_get_a_status_and_a_problem_and_the_others_keep_working() {
    let t = on_node(&load(CLUSTER), "n1");
    let status = |name: &str| t.policy_status.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no status for {name}"));
    assert!(status("allow-frontend").ok());
    assert!(status("deny-debug").ok());
    let broken = status("broken");
    assert!(!broken.ok());
    assert_eq!(broken.accepted.reason.as_str(), "Invalid");
    assert!(broken.accepted.message.contains("not normalised"), "{}", broken.accepted.message);
    assert!(status("typo").accepted.message.contains("spec.rulez: unknown field"), "{:?}", status("typo"));
    let mut state = load(CLUSTER);
    let misspelt = r#"
apiVersion: ambit.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: misspelt, namespace: shop}
spce: {targetRefs: [{group: "", kind: Pod, selector: {}}], action: ALLOW}
"#;
    for object in parse_text(std::path::Path::new("misspelt.yaml"), misspelt).objects {
        state.insert(object).unwrap();
    }
    let t2 = on_node(&state, "n1");
    let misspelt = t2.policy_status.iter().find(|s| s.name == "misspelt").unwrap();
    assert_eq!(misspelt.accepted.message, "spce: unknown field");
    assert!(t.problems.iter().any(|p| p.contains("AuthorizationPolicy shop/broken is invalid")), "{:?}", t.problems);
    let dump = serde_json::to_value(&t.policy_status).unwrap();
    assert_eq!(dump.as_array().unwrap().len(), 4);
}

fn ask(state: &ClusterState, from: &str, to: &str, port: u16, method: Option<&str>, path: Option<&str>) -> (Decision, String) {
    let td = TrustDomain::new("cluster.local").unwrap();
    let e = explain_authz(state, &AuthzQuestion { from, to, port, method, path }, &td).unwrap();
    (e.decision.clone(), e.to_string())
}

#[test]
fn explain_names_the_policy_and_rule_that_decide() {
    let state = load(CLUSTER);
    let (d, text) = ask(&state, "web/frontend", "shop/checkout-1", 8080, None, None);
    assert!(matches!(d, Decision::Allowed(ref by) if by.policy.to_string() == "shop/allow-frontend" && by.rule == 0), "{text}");
    assert!(text.contains("ALLOWED by shop/allow-frontend rule 0"), "{text}");
    assert!(text.contains("note: AuthorizationPolicy shop/broken is invalid"), "{text}");

    let (d, text) = ask(&state, "web/other", "shop/checkout-1", 8080, None, None);
    assert!(matches!(d, Decision::NotAllowed { .. }), "{text}");
    assert!(text.contains("DENIED: no rule of the ALLOW policies shop/allow-frontend matches"), "{text}");

    let (d, text) = ask(&state, "spiffe://cluster.local/ns/ops/sa/admin", "shop/checkout-1", 9090, Some("GET"), Some("/api/orders?x=1"));
    assert!(matches!(d, Decision::Allowed(ref by) if by.rule == 1), "{text}");
    let (d, text) = ask(&state, "ops/admin", "shop/checkout-1", 9090, Some("POST"), Some("/api/orders"));
    assert!(matches!(d, Decision::NotAllowed { .. }), "{text}");
    let (d, text) = ask(&state, "web/frontend", "shop/cart-1", 80, Some("GET"), Some("/x/../debug/vars"));
    assert!(matches!(d, Decision::Denied(ref by) if &*by.policy.name == "deny-debug"), "{text}");
    assert!(text.contains("(GET /debug/vars)"), "the path is normalised: {text}");
    assert!(text.contains("DENIED by shop/deny-debug rule 0 (DENY)"), "{text}");

    // A caller no rule could allow on this port is refused at the connection, before any request.
    let (d, text) = ask(&state, "web/other", "shop/checkout-1", 8080, Some("GET"), Some("/api"));
    assert!(matches!(d, Decision::NotAllowed { .. }), "{text}");
    assert!(text.contains("connection DENIED"), "{text}");
    let (_, text) = ask(&state, "web/frontend", "shop/checkout-1", 8080, None, None);
    assert!(text.contains("connection ALLOWED") && text.contains("each request on the connection is decided too"), "{text}");

    let (d, text) = ask(&state, "shop/checkout", "web/frontend-1", 80, None, None);
    assert_eq!(d, Decision::Open);
    assert!(text.contains("open: no policy selects the pod"), "{text}");

    let td = TrustDomain::new("cluster.local").unwrap();
    let q = |from, to| AuthzQuestion { from, to, port: 80, method: None, path: None };
    assert!(explain_authz(&state, &q("nobody", "shop/checkout-1"), &td).is_err());
    assert!(explain_authz(&state, &q("web/frontend", "shop/missing"), &td).is_err());
    let bad_path = AuthzQuestion { from: "web/frontend", to: "shop/checkout-1", port: 80, method: Some("GET"), path: Some("/a%2Fb") };
    assert!(explain_authz(&state, &bad_path, &td).unwrap_err().to_string().contains("400"));
}

// Namespace isolation: policies in namespace `a` never change anything for pods in `b`.

const NAMESPACES: [&str; 2] = ["a", "b"];
const APPS: [&str; 3] = ["x", "y", "z"];

fn name_pattern() -> impl Strategy<Value = String> {
    prop_oneof![Just("*".to_string()), Just("a".to_string()), Just("b".to_string()), Just("s*".to_string()), Just("*1".to_string()), Just("s1".to_string())]
}

fn source() -> impl Strategy<Value = Value> {
    prop_oneof![
        (proptest::option::of(name_pattern()), name_pattern()).prop_map(|(ns, name)| match ns {
            Some(ns) => json!({"type": "ServiceAccount", "serviceAccount": {"namespace": ns, "name": name}}),
            None => json!({"type": "ServiceAccount", "serviceAccount": {"name": name}}),
        }),
        name_pattern().prop_map(|ns| json!({"type": "Namespace", "namespace": ns})),
        (0..2usize, name_pattern()).prop_map(|(ns, sa)| {
            let sa = if sa == "*" { "*".to_string() } else { sa.replace('*', "") + "1" };
            if sa == "*" {
                json!({"type": "SPIFFE", "spiffe": format!("spiffe://cluster.local/ns/{}/*", NAMESPACES[ns])})
            } else {
                json!({"type": "SPIFFE", "spiffe": format!("spiffe://cluster.local/ns/{}/sa/{sa}", NAMESPACES[ns])})
            }
        }),
    ]
}

fn rule() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(proptest::collection::vec(source(), 0..3)),
        proptest::option::of(proptest::collection::vec(prop_oneof![Just(80), Just(8080)], 1..2)),
        proptest::option::of((prop_oneof![Just("GET"), Just("POST")], prop_oneof![Just("/api"), Just("/health")])),
    )
        .prop_map(|(sources, ports, http)| {
            let mut rule = json!({});
            if let Some(s) = sources {
                rule["sources"] = json!(s);
            }
            if let Some(p) = ports {
                rule["networkAttributes"] = json!({"ports": p});
            }
            if let Some((m, p)) = http {
                rule["httpAttributes"] = json!({"methods": [m], "paths": [{"type": "PathPrefix", "value": p}]});
            }
            rule
        })
}

fn policy() -> impl Strategy<Value = (usize, Value)> {
    (0..2usize, proptest::option::of(0..3usize), prop_oneof![Just("ALLOW"), Just("DENY")], proptest::collection::vec(rule(), 0..3), any::<bool>())
        .prop_map(|(ns, app, action, rules, broken)| {
            let selector = match app {
                Some(app) => json!({"matchLabels": {"app": APPS[app]}}),
                None => json!({}),
            };
            let mut spec = json!({"targetRefs": [{"group": "", "kind": "Pod", "selector": selector}], "action": action, "rules": rules});
            if broken {
                spec["unknown"] = json!(1);
            }
            (ns, spec)
        })
}

/// Policies keep their index in the generated list as their name.
fn state_with(pods: &[(usize, usize)], policies: &[(usize, usize, Value)]) -> ClusterState {
    let mut state = ClusterState::new();
    for ns in NAMESPACES {
        let object: Value = json!({"metadata": {"name": ns, "labels": {"ambit.dev/mesh": "enabled"}}});
        state.insert(ClusterObject::Namespace(serde_json::from_value(object).unwrap())).unwrap();
    }
    for (i, (ns, app)) in pods.iter().enumerate() {
        let pod = json!({
            "metadata": {"name": format!("p{i}"), "namespace": NAMESPACES[*ns], "uid": format!("u{i}"), "labels": {"app": APPS[*app]}},
            "spec": {"nodeName": "n1", "containers": []},
            "status": {"podIP": format!("10.0.{}.{}", i / 200, i % 200 + 1), "phase": "Running"},
        });
        state.insert(ClusterObject::Pod(serde_json::from_value(pod).unwrap())).unwrap();
    }
    for (i, ns, spec) in policies {
        let object = json!({"metadata": {"name": format!("pol{i}"), "namespace": NAMESPACES[*ns]}, "spec": spec});
        state.insert(ClusterObject::AuthorizationPolicy(serde_json::from_value(object).unwrap())).unwrap();
    }
    state
}

fn outcomes(policies: &WorkloadPolicies) -> Vec<Decision> {
    let td = TrustDomain::new("cluster.local").unwrap();
    let mut out = Vec::new();
    for ns in NAMESPACES {
        for sa in ["s1", "s2", "t1"] {
            let peer = SpiffeId::new(td.clone(), ns, sa).unwrap();
            for port in [80, 8080] {
                out.push(decide(policies, &Attempt { peer: &peer, port, http: None }));
                for (method, path) in [("GET", "/api/v1"), ("POST", "/health")] {
                    out.push(decide(policies, &Attempt { peer: &peer, port, http: Some(HttpAttempt { method, path }) }));
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn policies_of_one_namespace_never_change_another(
        pods in proptest::collection::vec((0..2usize, 0..3usize), 1..8),
        policies in proptest::collection::vec(policy(), 0..8),
    ) {
        let all: Vec<(usize, usize, Value)> = policies.iter().enumerate().map(|(i, (ns, spec))| (i, *ns, spec.clone())).collect();
        let only_b: Vec<(usize, usize, Value)> = all.iter().filter(|(_, ns, _)| NAMESPACES[*ns] == "b").cloned().collect();
        let with_a = on_node(&state_with(&pods, &all), "n1");
        let without_a = on_node(&state_with(&pods, &only_b), "n1");
        for (i, (ns, _)) in pods.iter().enumerate() {
            let pod_ip: IpAddr = format!("10.0.{}.{}", i / 200, i % 200 + 1).parse().unwrap();
            let both = with_a.config.authorization.for_pod(pod_ip).cloned().unwrap_or_default();
            let b_only = without_a.config.authorization.for_pod(pod_ip).cloned().unwrap_or_default();
            if NAMESPACES[*ns] == "b" {
                prop_assert_eq!(&both, &b_only);
                prop_assert_eq!(outcomes(&both), outcomes(&b_only));
                prop_assert_eq!(with_a.allow_selected.contains(&pod_ip), without_a.allow_selected.contains(&pod_ip));
            } else {
                prop_assert!(both.policies.iter().all(|p| &*p.name.namespace == "a"));
            }
        }
        let b_status = |t: &Translation| t.policy_status.iter().filter(|s| s.namespace == "b").cloned().collect::<Vec<_>>();
        prop_assert_eq!(b_status(&with_a), b_status(&without_a));
    }
}

fn agent(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ambit-agent")).args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_explain_authz_command_prints_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), CLUSTER).unwrap();
    let manifests = dir.path().to_str().unwrap();
    let (ok, out) = agent(&["explain", "authz", "--manifests", manifests, "--from", "web/frontend", "--to", "shop/checkout-1", "--port", "8080"]);
    assert!(ok, "{out}");
    assert!(out.contains("ALLOWED by shop/allow-frontend rule 0"), "{out}");
    let (ok, out) = agent(&[
        "explain", "authz", "--manifests", manifests, "--from", "spiffe://cluster.local/ns/web/sa/frontend", "--to", "shop/cart-1",
        "--port", "80", "--method", "GET", "--path", "/debug",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("DENIED by shop/deny-debug rule 0 (DENY)"), "{out}");
    let (ok, out) = agent(&["explain", "authz", "--manifests", manifests, "--from", "bad", "--to", "shop/cart-1", "--port", "80"]);
    assert!(!ok && out.contains("NAMESPACE/SERVICEACCOUNT"), "{out}");
    // The request form of explain still takes its flags without a subcommand.
    let (ok, out) = agent(&["explain", "--manifests", manifests, "--from", "web/frontend-1", "--to", "nosuch.shop:80"]);
    assert!(!ok && out.contains("Service shop/nosuch not found"), "{out}");
}

#[test]
fn check_reports_invalid_policies_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.yaml"), CLUSTER).unwrap();
    let report = ambit_agent::check::check(dir.path()).unwrap();
    assert!(!report.ok());
    let text = report.to_string();
    assert!(text.contains("OK    AuthorizationPolicy shop/allow-frontend: Accepted=True"), "{text}");
    assert!(text.contains("ERROR AuthorizationPolicy shop/broken: Accepted=False (Invalid): spec.rules[0].httpAttributes.paths[0]"), "{text}");
    let valid: String = CLUSTER.split("\n---\n").filter(|doc| !doc.contains("name: broken") && !doc.contains("name: typo")).collect::<Vec<_>>().join("\n---\n");
    std::fs::write(dir.path().join("cluster.yaml"), valid).unwrap();
    assert!(ambit_agent::check::check(dir.path()).unwrap().ok());
}
