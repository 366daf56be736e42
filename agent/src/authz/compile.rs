//! Checking an AuthorizationPolicy's spec and compiling it into proxy-core's model.
//!
//! Parsing is strict: a field the schema does not know, a wrong type, or any value that
//! [`super::names`] or [`super::selector`] refuses makes the whole policy invalid
//! (`Accepted=False`, reason `Invalid`), with a message naming the field.

use std::sync::Arc;

use ambit_proxy_core::authz::{Action, HttpConditions, PathMatch, Policy, PolicyName, Rule, Source};
use serde_json::Value;

use super::names;
use super::resource::{ActionSpec, AuthorizationPolicySpec, PathType, RuleSpec, SourceSpec, SourceType};
use super::selector::Selector;

/// A valid policy: which pods of its namespace it selects, and what it decides.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledPolicy {
    pub selector: Selector,
    pub policy: Arc<Policy>,
}

/// Checks the spec of the policy `name` and compiles it.
pub fn compile(name: &PolicyName, spec: &Value) -> Result<CompiledPolicy, String> {
    let typed: AuthorizationPolicySpec = serde_json::from_value(spec.clone()).map_err(|e| format!("spec: {e}"))?;
    let known = serde_json::to_value(&typed).map_err(|e| format!("spec: {e}"))?;
    if let Some(field) = unknown_field(spec, &known, "spec") {
        return Err(format!("{field}: unknown field"));
    }
    let selector = target(&typed)?;
    let rules = typed
        .rules
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, rule)| compile_rule(rule, &name.namespace).map_err(|e| format!("spec.rules[{i}].{e}")))
        .collect::<Result<Vec<Rule>, String>>()?;
    let action = match typed.action {
        ActionSpec::Allow => Action::Allow,
        ActionSpec::Deny => Action::Deny,
    };
    Ok(CompiledPolicy { selector, policy: Arc::new(Policy { name: name.clone(), action, rules }) })
}

/// The first field of `input` that the typed spec dropped (so unknown to the schema).
fn unknown_field(input: &Value, known: &Value, at: &str) -> Option<String> {
    match (input, known) {
        (Value::Object(input), Value::Object(known)) => input.iter().find_map(|(key, value)| match known.get(key) {
            None if value.is_null() => None,
            None => Some(format!("{at}.{key}")),
            Some(k) => unknown_field(value, k, &format!("{at}.{key}")),
        }),
        (Value::Array(input), Value::Array(known)) => {
            input.iter().zip(known).enumerate().find_map(|(i, (v, k))| unknown_field(v, k, &format!("{at}[{i}]")))
        }
        _ => None,
    }
}

/// Exactly one targetRef: kind Pod, group "" (or "core"), no name, a selector.
fn target(spec: &AuthorizationPolicySpec) -> Result<Selector, String> {
    let [target] = spec.target_refs.as_slice() else {
        return Err(format!("spec.targetRefs: exactly one Pod reference is supported, found {}", spec.target_refs.len()));
    };
    if !(target.group.is_empty() || target.group == "core") || target.kind != "Pod" {
        return Err(format!("spec.targetRefs[0]: only kind Pod of group \"\" is supported, found {:?}/{:?}", target.group, target.kind));
    }
    if target.name.as_deref().is_some_and(|n| !n.is_empty()) {
        return Err("spec.targetRefs[0].name: pods are selected by `selector`, not by name".into());
    }
    let selector = target.selector.as_ref().ok_or("spec.targetRefs[0].selector: required (`{}` selects every pod of the namespace)")?;
    Selector::new(selector).map_err(|e| format!("spec.targetRefs[0].selector: {e}"))
}

fn compile_rule(rule: &RuleSpec, policy_ns: &str) -> Result<Rule, String> {
    let sources = match &rule.sources {
        None => None,
        Some(sources) => Some(
            sources
                .iter()
                .enumerate()
                .map(|(i, s)| source(s, policy_ns).map_err(|e| format!("sources[{i}]: {e}")))
                .collect::<Result<Vec<Source>, String>>()?,
        ),
    };
    let mut ports = Vec::new();
    for (i, port) in rule.network_attributes.iter().flat_map(|n| n.ports.iter().flatten()).enumerate() {
        let port = u16::try_from(*port).ok().filter(|p| *p != 0).ok_or_else(|| format!("networkAttributes.ports[{i}]: {port} is not a port (1-65535)"))?;
        ports.push(port);
    }
    let http = match &rule.http_attributes {
        None => None,
        Some(attributes) => {
            let methods = attributes
                .methods
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, m)| names::method(m).map_err(|e| format!("httpAttributes.methods[{i}]: {e}")))
                .collect::<Result<Vec<String>, String>>()?;
            let paths = attributes
                .paths
                .iter()
                .flatten()
                .enumerate()
                .map(|(i, p)| {
                    let value = names::path(&p.value).map_err(|e| format!("httpAttributes.paths[{i}]: {e}"))?;
                    Ok(match p.type_ {
                        PathType::Exact => PathMatch::Exact(value),
                        PathType::PathPrefix => PathMatch::Prefix(value),
                    })
                })
                .collect::<Result<Vec<PathMatch>, String>>()?;
            Some(HttpConditions { methods, paths })
        }
    };
    Ok(Rule { sources, ports, http })
}

fn source(spec: &SourceSpec, policy_ns: &str) -> Result<Source, String> {
    let extra = |field: &str| Err(format!("type {:?} takes no `{field}`", spec.type_));
    match spec.type_ {
        SourceType::ServiceAccount => {
            if spec.namespace.is_some() {
                return extra("namespace");
            }
            if spec.spiffe.is_some() {
                return extra("spiffe");
            }
            let sa = spec.service_account.as_ref().ok_or("type ServiceAccount needs `serviceAccount`")?;
            let namespace = sa.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(policy_ns);
            Ok(Source::ServiceAccount {
                namespace: names::kube_name_pattern(namespace).map_err(|e| format!("serviceAccount.namespace: {e}"))?,
                name: names::kube_name_pattern(&sa.name).map_err(|e| format!("serviceAccount.name: {e}"))?,
            })
        }
        SourceType::Namespace => {
            if spec.service_account.is_some() {
                return extra("serviceAccount");
            }
            if spec.spiffe.is_some() {
                return extra("spiffe");
            }
            let namespace = spec.namespace.as_deref().ok_or("type Namespace needs `namespace`")?;
            Ok(Source::Namespace(names::kube_name_pattern(namespace).map_err(|e| format!("namespace: {e}"))?))
        }
        SourceType::Spiffe => {
            if spec.service_account.is_some() {
                return extra("serviceAccount");
            }
            if spec.namespace.is_some() {
                return extra("namespace");
            }
            let id = spec.spiffe.as_deref().ok_or("type SPIFFE needs `spiffe`")?;
            Ok(Source::Spiffe(names::spiffe_pattern(id).map_err(|e| format!("spiffe: {e}"))?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ambit_proxy_core::authz::NamePattern;
    use serde_json::json;

    fn name() -> PolicyName {
        PolicyName { namespace: "shop".into(), name: "p".into() }
    }

    fn spec(rules: Value) -> Value {
        json!({"targetRefs": [{"group": "", "kind": "Pod", "selector": {"matchLabels": {"app": "checkout"}}}], "action": "ALLOW", "rules": rules})
    }

    #[test]
    fn compiles_sources_ports_and_http() {
        let compiled = compile(&name(), &spec(json!([{
            "sources": [
                {"type": "ServiceAccount", "serviceAccount": {"name": "frontend"}},
                {"type": "ServiceAccount", "serviceAccount": {"namespace": "web", "name": "*"}},
                {"type": "Namespace", "namespace": "ops-*"},
                {"type": "SPIFFE", "spiffe": "spiffe://cluster.local/ns/web/sa/frontend"}
            ],
            "networkAttributes": {"ports": [8080]},
            "httpAttributes": {"methods": ["GET"], "paths": [{"type": "Exact", "value": "/health"}, {"type": "PathPrefix", "value": "/api"}]}
        }]))).unwrap();
        let rule = &compiled.policy.rules[0];
        assert_eq!(compiled.policy.action, Action::Allow);
        let sources = rule.sources.as_ref().unwrap();
        assert_eq!(sources[0], Source::ServiceAccount { namespace: NamePattern::Exact("shop".into()), name: NamePattern::Exact("frontend".into()) });
        assert_eq!(sources[1], Source::ServiceAccount { namespace: NamePattern::Exact("web".into()), name: NamePattern::Any });
        assert_eq!(sources[2], Source::Namespace(NamePattern::Prefix("ops-".into())));
        assert_eq!(rule.ports, vec![8080]);
        let http = rule.http.as_ref().unwrap();
        assert_eq!(http.paths, vec![PathMatch::Exact("/health".into()), PathMatch::Prefix("/api".into())]);
    }

    #[test]
    fn omitted_and_empty_sources_differ() {
        let compiled = compile(&name(), &spec(json!([{}, {"sources": []}]))).unwrap();
        assert_eq!(compiled.policy.rules[0].sources, None);
        assert_eq!(compiled.policy.rules[1].sources, Some(vec![]));
    }

    #[test]
    fn every_kind_of_bad_input_is_named() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"targetRefs": [{"kind": "Pod", "selector": {}}], "action": "ALLOW", "rulez": []}), "spec.rulez: unknown field"),
            (spec(json!([{"sources": [{"type": "Namespace", "namespace": "a", "colour": "red"}]}])), "spec.rules[0].sources[0].colour: unknown field"),
            (json!({"targetRefs": [{"kind": "Pod", "selector": {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["x"]}]}}], "action": "ALLOW"}), "unknown operator"),
            (json!({"targetRefs": [{"kind": "Pod", "selector": {"matchLabels": {"bad key!": "x"}}}], "action": "ALLOW"}), "invalid label key"),
            (spec(json!([{"httpAttributes": {"paths": [{"type": "Exact", "value": "/a/../b"}]}}])), "not normalised"),
            (spec(json!([{"httpAttributes": {"paths": [{"type": "PathPrefix", "value": "api"}]}}])), "must start with `/`"),
            (spec(json!([{"httpAttributes": {"paths": [{"type": "Exact", "value": "/a%20b"}]}}])), "%-encodings"),
            (spec(json!([{"httpAttributes": {"methods": ["FETCH"]}}])), "unknown method"),
            (spec(json!([{"sources": [{"type": "SPIFFE", "spiffe": "spiffe://cluster.local"}]}])), "not a SPIFFE ID"),
            (spec(json!([{"networkAttributes": {"ports": [0]}}])), "0 is not a port"),
            (json!({"targetRefs": [], "action": "ALLOW"}), "exactly one Pod reference"),
            (json!({"targetRefs": [{"kind": "Service", "selector": {}}], "action": "ALLOW"}), "only kind Pod"),
            (json!({"targetRefs": [{"kind": "Pod", "name": "x", "selector": {}}], "action": "ALLOW"}), "not by name"),
            (json!({"targetRefs": [{"kind": "Pod"}], "action": "ALLOW"}), "selector: required"),
            (json!({"targetRefs": [{"kind": "Pod", "selector": {}}], "action": "AUDIT"}), "unknown variant"),
            (spec(json!([{"sources": [{"type": "Namespace", "spiffe": "spiffe://a/b"}]}])), "takes no `spiffe`"),
        ];
        for (spec, expected) in cases {
            let error = compile(&name(), &spec).expect_err(expected);
            assert!(error.contains(expected), "{expected:?} not in {error:?}");
        }
    }
}
