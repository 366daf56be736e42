//! Route status for invalid input: each rejection reason, dropped rules, conflicts.

use ambit_agent::cluster::ClusterState;
use ambit_agent::manifests::load_dir;
use ambit_agent::translate::{translate, ConditionType, NodeView, Reason, RouteStatus, Translation};
use ambit_proxy_core::routes::{BackendTarget, RouteKind, RuleAction};

const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: app, labels: {ambit.dev/mesh: enabled}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: app}
spec:
  clusterIP: 10.96.1.1
  ports: [{name: http, port: 80, appProtocol: http}, {name: grpc, port: 7070, appProtocol: kubernetes.io/h2c}]
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

fn route(name: &str, parent: &str, rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: app}}\nspec:\n  parentRefs: [{parent}]\n  rules:\n{rules}\n---\n"
    )
}

fn status<'a>(t: &'a Translation, name: &str) -> &'a RouteStatus {
    t.route_status.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no status for {name}: {:#?}", t.route_status))
}

fn cond(s: &RouteStatus, type_: ConditionType) -> (bool, Reason, String) {
    let c = s.parents[0].condition(type_).unwrap_or_else(|| panic!("no {type_} in {s:#?}"));
    (c.status, c.reason, c.message.clone())
}

const OK_RULE: &str = "  - backendRefs: [{name: web, port: 80}]";

#[test]
fn parent_problems_give_no_matching_parent() {
    let t = translate_yaml(&[
        route("missing", "{kind: Service, group: \"\", name: nope}", OK_RULE),
        route("badport", "{kind: Service, name: web, port: 81}", OK_RULE),
        route("badsection", "{kind: Service, name: web, sectionName: nope}", OK_RULE),
        route("section", "{kind: Service, group: core, name: web, sectionName: grpc}", OK_RULE),
        route("gateway", "{name: some-gateway}", OK_RULE),
    ]
    .concat());
    for name in ["missing", "badport", "badsection"] {
        let (ok, reason, _) = cond(status(&t, name), ConditionType::Accepted);
        assert_eq!((ok, reason), (false, Reason::NoMatchingParent), "{name}");
    }
    assert!(status(&t, "section").ok());
    assert!(t.route_status.iter().all(|s| s.name != "gateway"), "Gateway parents are not ours");
    let sp = t.config.service("10.96.1.1:7070".parse().unwrap()).unwrap();
    assert!(sp.routes.producer.is_some());
    assert!(t.config.service("10.96.1.1:80".parse().unwrap()).unwrap().routes.is_empty());
}

#[test]
fn invalid_rules_are_dropped_and_reported() {
    let parent = "{kind: Service, name: web, port: 80}";
    let cases = [
        ("regex", "  - matches: [{path: {type: RegularExpression, value: \"/(\"}}]\n    backendRefs: [{name: web, port: 80}]"),
        ("redirect-backends", "  - filters: [{type: RequestRedirect, requestRedirect: {statusCode: 301}}]\n    backendRefs: [{name: web, port: 80}]"),
        ("redirect-rewrite", "  - filters: [{type: RequestRedirect, requestRedirect: {hostname: a}}, {type: URLRewrite, urlRewrite: {hostname: b}}]"),
        ("prefix-exact", "  - matches: [{path: {type: Exact, value: /a}}]\n    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]\n    backendRefs: [{name: web, port: 80}]"),
        ("duplicate", "  - filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}]}}, {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: c, value: d}]}}]\n    backendRefs: [{name: web, port: 80}]"),
        ("cors-origin", "  - filters: [{type: CORS, cors: {allowOrigins: [\"foo.example\"]}}]\n    backendRefs: [{name: web, port: 80}]"),
        ("cors-twice", "  - filters: [{type: CORS, cors: {allowOrigins: [\"*\"]}}, {type: CORS, cors: {allowOrigins: [\"*\"]}}]\n    backendRefs: [{name: web, port: 80}]"),
        ("cors-backend", "  - backendRefs: [{name: web, port: 80, filters: [{type: CORS, cors: {allowOrigins: [\"*\"]}}]}]"),
        ("timeout", "  - timeouts: {request: forever}\n    backendRefs: [{name: web, port: 80}]"),
        ("session-persistence", "  - sessionPersistence: {sessionName: s, type: Cookie}\n    backendRefs: [{name: web, port: 80}]"),
        ("regex-bomb", "  - matches: [{path: {type: RegularExpression, value: \"/(a{1000}){1000}\"}}]\n    backendRefs: [{name: web, port: 80}]"),
        ("regex-escape", "  - matches: [{headers: [{type: RegularExpression, name: x, value: \"a)|(?:.*\"}]}]\n    backendRefs: [{name: web, port: 80}]"),
    ];
    let mut yaml = String::new();
    for (name, bad) in cases {
        // One bad rule plus one good rule: partially invalid.
        yaml.push_str(&route(&format!("partial-{name}"), parent, &format!("{bad}\n{OK_RULE}")));
        // Only the bad rule: not accepted.
        yaml.push_str(&route(&format!("all-{name}"), parent, bad));
    }
    let t = translate_yaml(&yaml);
    for (name, _) in cases {
        let s = status(&t, &format!("partial-{name}"));
        assert!(cond(s, ConditionType::Accepted).0, "{name}");
        let (pi, reason, message) = cond(s, ConditionType::PartiallyInvalid);
        assert!(pi && reason == Reason::UnsupportedValue && message.starts_with("Dropped Rule"), "{name}: {message}");
        assert!(message.contains("rule 0"), "{name}: {message}");
        assert!(!s.ok());
        let (ok, reason, message) = cond(status(&t, &format!("all-{name}")), ConditionType::Accepted);
        assert_eq!((ok, reason), (false, Reason::UnsupportedValue), "{name}: {message}");
    }
    let (_, _, message) = cond(status(&t, "partial-session-persistence"), ConditionType::PartiallyInvalid);
    assert!(message.contains("sessionPersistence (GEP-1619) is not supported"), "read from the manifest, never dropped silently: {message}");
    let (_, _, message) = cond(status(&t, "partial-regex-bomb"), ConditionType::PartiallyInvalid);
    assert!(message.contains("per-pattern limit of 1048576 bytes"), "{message}");
    // The good rules of every partial route still serve.
    let list = t.config.service("10.96.1.1:80".parse().unwrap()).unwrap().routes.producer.clone().unwrap();
    assert_eq!(list.rules().count(), cases.len());
    assert!(list.rules().all(|r| r.index == 1));
}

#[test]
fn unresolved_references() {
    let parent = "{kind: Service, name: web, port: 80}";
    let t = translate_yaml(&[
        route("missing-backend", parent, "  - backendRefs: [{name: nope, port: 80}]"),
        route("wrong-port", parent, "  - backendRefs: [{name: web, port: 81}]"),
        route("no-port", parent, "  - backendRefs: [{name: web}]"),
        route("configmap", parent, "  - backendRefs: [{name: web, kind: ConfigMap, port: 80}]"),
        route("ext", parent, "  - filters: [{type: ExtensionRef, extensionRef: {group: x.io, kind: Thing, name: t}}]\n    backendRefs: [{name: web, port: 80}]"),
        route("cross-ns", parent, "  - backendRefs: [{name: web, namespace: app, port: 80}]"),
    ]
    .concat());
    for (name, reason) in [
        ("missing-backend", Reason::BackendNotFound),
        ("wrong-port", Reason::BackendNotFound),
        ("no-port", Reason::BackendNotFound),
        ("configmap", Reason::InvalidKind),
        ("ext", Reason::InvalidKind),
    ] {
        let s = status(&t, name);
        assert!(cond(s, ConditionType::Accepted).0, "{name}");
        assert!(!cond(s, ConditionType::ResolvedRefs).0, "{name}");
        assert_eq!(cond(s, ConditionType::ResolvedRefs).1, reason, "{name}");
    }
    assert!(status(&t, "cross-ns").ok());
    // The rules stay, with invalid backends (500).
    let list = t.config.service("10.96.1.1:80".parse().unwrap()).unwrap().routes.producer.clone().unwrap();
    let invalid = list
        .rules()
        .filter(|r| match &r.action {
            RuleAction::Forward(f) => matches!(f.backends.backends()[0].target, BackendTarget::Invalid { .. }),
            RuleAction::Redirect(_) => false,
        })
        .count();
    assert_eq!(invalid, 5);
}

#[test]
fn grpc_route_wins_over_http_route() {
    let grpc = "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g, namespace: app}\nspec:\n  parentRefs: [{kind: Service, name: web, port: 7070}]\n  rules:\n  - matches: [{method: {service: svc.Echo}}]\n    backendRefs: [{name: web, port: 7070}]\n---\n";
    let yaml = format!(
        "{grpc}{}{}",
        route("h-grpc-port", "{kind: Service, name: web, port: 7070}", "  - backendRefs: [{name: web, port: 7070}]"),
        route("h-all-ports", "{kind: Service, name: web}", OK_RULE)
    );
    let t = translate_yaml(&yaml);
    assert!(status(&t, "g").ok());
    let (ok, reason, _) = cond(status(&t, "h-grpc-port"), ConditionType::Accepted);
    assert_eq!((ok, reason), (false, Reason::Conflicted));
    // Attached where there is no conflict, and says so.
    let (ok, _, message) = cond(status(&t, "h-all-ports"), ConditionType::Accepted);
    assert!(ok && message.contains("GRPCRoute"), "{message}");
    let grpc_port = t.config.service("10.96.1.1:7070".parse().unwrap()).unwrap();
    assert_eq!(grpc_port.routes.producer.as_ref().unwrap().kind(), RouteKind::Grpc);
    assert_eq!(grpc_port.routes.producer.as_ref().unwrap().rules().count(), 1);
    let http_port = t.config.service("10.96.1.1:80".parse().unwrap()).unwrap();
    assert_eq!(http_port.routes.producer.as_ref().unwrap().kind(), RouteKind::Http);
}

#[test]
fn timeouts_and_mirrors_compile() {
    let t = translate_yaml(&route(
        "t",
        "{kind: Service, name: web, port: 80}",
        "  - timeouts: {request: 10s, backendRequest: 500ms}\n    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: web, port: 7070}, percent: 25}}]\n    backendRefs: [{name: web, port: 80}]",
    ));
    assert!(status(&t, "t").ok(), "{:#?}", t.route_status);
    let list = t.config.service("10.96.1.1:80".parse().unwrap()).unwrap().routes.producer.clone().unwrap();
    let rule = list.rules().next().unwrap();
    assert_eq!(rule.timeouts.request, Some(std::time::Duration::from_secs(10)));
    assert_eq!(rule.timeouts.backend_request, Some(std::time::Duration::from_millis(500)));
    assert_eq!(rule.filters.mirrors.len(), 1);
    assert!((rule.filters.mirrors[0].fraction - 0.25).abs() < 1e-9);
}

#[test]
fn retries_compile_and_invalid_retry_values_drop_only_their_rule() {
    let rules = [
        "  - matches: [{path: {value: /ok}}]\n    retry: {attempts: 3, codes: [503, 502], backoff: 100ms}\n    backendRefs: [{name: web, port: 80}]",
        "  - matches: [{path: {value: /code}}]\n    retry: {codes: [200]}\n    backendRefs: [{name: web, port: 80}]",
        "  - matches: [{path: {value: /backoff}}]\n    retry: {backoff: soon}\n    backendRefs: [{name: web, port: 80}]",
    ]
    .join("\n");
    let t = translate_yaml(&route("r", "{kind: Service, name: web, port: 80}", &rules));
    let s = status(&t, "r");
    let (ok, _, _) = cond(s, ConditionType::Accepted);
    assert!(ok, "{s:#?}");
    let (pi, reason, message) = cond(s, ConditionType::PartiallyInvalid);
    assert!(pi && reason == Reason::UnsupportedValue, "{message}");
    assert!(message.contains("retry code 200") && message.contains("retry.backoff \"soon\""), "{message}");
    let list = t.config.service("10.96.1.1:80".parse().unwrap()).unwrap().routes.producer.clone().unwrap();
    let kept: Vec<_> = list.rules().collect();
    assert_eq!(kept.len(), 1, "only the valid rule serves");
    let retry = kept[0].retry.expect("the rule's retry");
    assert_eq!((retry.attempts, retry.backoff), (3, std::time::Duration::from_millis(100)));
    assert_eq!(retry.codes.iter().collect::<Vec<_>>(), [502, 503]);
}

#[test]
fn check_reports_rejections_and_manifest_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), BASE).unwrap();
    std::fs::write(dir.path().join("b.yaml"), route("missing", "{kind: Service, name: nope}", OK_RULE)).unwrap();
    let report = ambit_agent::check::check(dir.path()).unwrap();
    assert!(!report.ok());
    let text = report.to_string();
    assert!(text.contains("Accepted=False (NoMatchingParent)"), "{text}");
    std::fs::write(dir.path().join("b.yaml"), route("fine", "{kind: Service, name: web, port: 80}", OK_RULE)).unwrap();
    let report = ambit_agent::check::check(dir.path()).unwrap();
    assert!(report.ok(), "{report}");
    std::fs::write(dir.path().join("c.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: 3}\n").unwrap();
    let report = ambit_agent::check::check(dir.path()).unwrap();
    assert!(!report.ok());
    assert!(report.to_string().contains("c.yaml"), "{report}");
    assert!(ambit_agent::check::check(&dir.path().join("missing")).is_err());
}

#[test]
fn the_configuration_regex_budget_drops_rules_once_spent() {
    // Each pattern is under the per-pattern limit (about 0.8 MB compiled), but 100 of
    // them are more than the configuration's 64 MiB.
    let rules: String = (0..100)
        .map(|i| format!("  - matches: [{{path: {{type: RegularExpression, value: \"/p{i}/\\\\w{{15}}\"}}}}]\n    backendRefs: [{{name: web, port: 80}}]\n"))
        .collect();
    let t = translate_yaml(&route("many", "{kind: Service, name: web, port: 80}", &rules));
    let (pi, reason, message) = cond(status(&t, "many"), ConditionType::PartiallyInvalid);
    assert!(pi && reason == Reason::UnsupportedValue, "{message}");
    assert!(message.contains("67108864-byte budget"), "{message}");
    let served = t.config.service("10.96.1.1:80".parse().unwrap()).unwrap().routes.producer.clone().unwrap().rules().count();
    assert!((40..100).contains(&served), "{served} rules served");
}

#[test]
fn cors_filters_are_accepted_and_compiled() {
    let parent = "{kind: Service, name: web, port: 80}";
    let rule = "  - filters: [{type: CORS, cors: {allowOrigins: [\"https://*.example.com\", \"*\"], allowMethods: [GET], allowCredentials: true, maxAge: 60}}]\n    backendRefs: [{name: web, port: 80}]";
    let t = translate_yaml(&route("cors", parent, rule));
    assert!(status(&t, "cors").ok(), "{:#?}", t.route_status);
    let list = t.config.service("10.96.1.1:80".parse().unwrap()).unwrap().routes.producer.clone().unwrap();
    let cors = list.rules().next().unwrap().filters.cors.clone().expect("the CORS filter");
    let origins: Vec<String> = cors.origins().iter().map(ToString::to_string).collect();
    assert_eq!(origins, ["https://*.example.com:443", "*"]);
    assert!(cors.allows_credentials());
}
