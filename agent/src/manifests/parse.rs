//! Splitting a file into documents and turning each document into a store object.

use serde_json::Value;

use crate::cluster::ClusterObject;

/// What one manifest document holds.
#[derive(Debug)]
pub enum Parsed {
    Object(Box<ClusterObject>),
    /// A kind the agent does not use (apiVersion, kind).
    Ignored { api_version: String, kind: String },
    /// A `kind: List`: its items, each to be parsed in turn.
    List(Vec<Value>),
}

/// Why a document could not be turned into an object: the kind and name when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub message: String,
}

/// Splits YAML text into its documents (on `---` lines), keeping only those that hold
/// something other than blank lines and comments.
pub fn yaml_documents(text: &str) -> Vec<String> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t") || line.trim_end() == "---";
        if is_marker {
            docs.push(std::mem::take(&mut current));
            // Content after the marker on the same line belongs to the new document.
            let rest = line[3..].trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                current.push_str(rest);
                current.push('\n');
            }
        } else if line == "..." {
            docs.push(std::mem::take(&mut current));
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs.push(current);
    docs.retain(|d| d.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')));
    docs
}

/// Parses every document of a file's text. YAML (and so JSON, which is YAML) is
/// accepted; each entry is the document's value or why it is not valid YAML.
pub fn parse_documents(text: &str) -> Vec<Result<Value, String>> {
    yaml_documents(text)
        .into_iter()
        .map(|doc| {
            let yaml: serde_yaml::Value = serde_yaml::from_str(&doc).map_err(|e| format!("invalid YAML: {e}"))?;
            serde_json::to_value(&yaml).map_err(|e| format!("unsupported YAML value: {e}"))
        })
        .collect()
}

fn str_field<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get(field).and_then(Value::as_str)
}

/// Turns one document into a store object, dispatching on apiVersion and kind.
pub fn parse_object(mut value: Value) -> Result<Parsed, ParseError> {
    let kind = str_field(&value, "kind").map(str::to_string);
    let meta = value.get("metadata");
    let name = meta.and_then(|m| str_field(m, "name")).map(|n| match meta.and_then(|m| str_field(m, "namespace")) {
        Some(ns) => format!("{ns}/{n}"),
        None => n.to_string(),
    });
    let fail = |message: String| ParseError { kind: kind.clone(), name: name.clone(), message };
    if !value.is_object() {
        return Err(fail(format!("expected a mapping with apiVersion and kind, found {}", type_name(&value))));
    }
    let api_version = str_field(&value, "apiVersion").ok_or_else(|| fail("missing apiVersion".into()))?.to_string();
    let kind_str = kind.clone().ok_or_else(|| fail("missing kind".into()))?;
    let (group, _version) = api_version.rsplit_once('/').unwrap_or(("", api_version.as_str()));

    if kind_str == "List" || kind_str.ends_with("List") && group.is_empty() {
        let items = value.get_mut("items").map(Value::take).unwrap_or(Value::Array(vec![]));
        return match items {
            Value::Array(items) => Ok(Parsed::List(items)),
            other => Err(fail(format!("items must be a list, found {}", type_name(&other)))),
        };
    }

    let has_name = value.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    let known = matches!(
        (api_version.as_str(), kind_str.as_str()),
        ("v1", "Namespace" | "Pod" | "Service")
            | ("discovery.k8s.io/v1", "EndpointSlice")
            | ("gateway.networking.k8s.io/v1" | "gateway.networking.k8s.io/v1beta1", "HTTPRoute")
            | ("gateway.networking.k8s.io/v1" | "gateway.networking.k8s.io/v1alpha2", "GRPCRoute")
            | ("gateway.networking.k8s.io/v1alpha2" | "gateway.networking.k8s.io/v1alpha3", "TLSRoute")
            | ("gateway.networking.k8s.io/v1alpha2", "TCPRoute")
            | ("ambit.dev/v1alpha1", "MeshNode" | "AuthorizationPolicy")
    );
    if !known {
        return Ok(Parsed::Ignored { api_version, kind: kind_str });
    }
    if !has_name {
        return Err(fail("missing metadata.name".into()));
    }
    let de = |e: serde_json::Error| fail(format!("invalid {kind_str}: {e}"));
    let object = match kind_str.as_str() {
        "Namespace" => ClusterObject::Namespace(serde_json::from_value(value).map_err(de)?),
        "Pod" => ClusterObject::Pod(serde_json::from_value(value).map_err(de)?),
        "Service" => ClusterObject::service(serde_json::from_value(value).map_err(de)?),
        "EndpointSlice" => ClusterObject::endpoint_slice(serde_json::from_value(value).map_err(de)?),
        "HTTPRoute" => {
            // v1beta1 has the same schema as v1 for everything we read.
            value["apiVersion"] = Value::String("gateway.networking.k8s.io/v1".into());
            ClusterObject::HttpRoute(serde_json::from_value(value).map_err(de)?)
        }
        "GRPCRoute" => {
            value["apiVersion"] = Value::String("gateway.networking.k8s.io/v1".into());
            ClusterObject::GrpcRoute(serde_json::from_value(value).map_err(de)?)
        }
        "TLSRoute" => {
            // v1alpha3 has the same schema as v1alpha2 for everything we read.
            value["apiVersion"] = Value::String("gateway.networking.k8s.io/v1alpha2".into());
            // v1alpha2 makes `hostnames` optional (absent: every server name).
            if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
                spec.entry("hostnames").or_insert_with(|| Value::Array(vec![]));
            }
            ClusterObject::TlsRoute(serde_json::from_value(value).map_err(de)?)
        }
        "TCPRoute" => ClusterObject::TcpRoute(serde_json::from_value(value).map_err(de)?),
        "MeshNode" => ClusterObject::mesh_node(serde_json::from_value(value).map_err(de)?),
        "AuthorizationPolicy" => ClusterObject::AuthorizationPolicy(serde_json::from_value(value).map_err(de)?),
        _ => unreachable!("kinds are checked above"),
    };
    Ok(Parsed::Object(Box::new(object)))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_skips_empty_ones() {
        let docs = yaml_documents("---\na: 1\n---\n# only a comment\n---\nb: 2\n...\n");
        assert_eq!(docs, ["a: 1\n", "b: 2\n"]);
    }

    #[test]
    fn dispatches_on_api_version_and_kind() {
        let v: Value = serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "n"}});
        assert!(matches!(parse_object(v).unwrap(), Parsed::Object(o) if matches!(*o, ClusterObject::Service(_))));
        let v: Value = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}});
        assert!(matches!(parse_object(v).unwrap(), Parsed::Ignored { kind, .. } if kind == "Deployment"));
        let v: Value = serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "HTTPRoute", "metadata": {"name": "r"}, "spec": {}});
        assert!(matches!(parse_object(v).unwrap(), Parsed::Object(o) if matches!(*o, ClusterObject::HttpRoute(_))));
        let v: Value = serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1alpha2", "kind": "TCPRoute", "metadata": {"name": "t"},
            "spec": {"parentRefs": [{"kind": "Service", "group": "", "name": "s", "port": 9090}], "rules": [{"backendRefs": [{"name": "b", "port": 9090}]}]}});
        assert!(matches!(parse_object(v).unwrap(), Parsed::Object(o) if matches!(*o, ClusterObject::TcpRoute(_))));
        let v: Value = serde_json::json!({"apiVersion": "gateway.networking.k8s.io/v1alpha3", "kind": "TLSRoute", "metadata": {"name": "t"},
            "spec": {"hostnames": ["*.example"], "rules": [{"backendRefs": [{"name": "b", "port": 443}]}]}});
        assert!(matches!(parse_object(v).unwrap(), Parsed::Object(o) if matches!(*o, ClusterObject::TlsRoute(_))));
    }

    #[test]
    fn experimental_rule_fields_survive_in_v1_and_v1beta1() {
        for version in ["v1", "v1beta1"] {
            let v: Value = serde_json::json!({"apiVersion": format!("gateway.networking.k8s.io/{version}"), "kind": "HTTPRoute",
                "metadata": {"name": "r", "namespace": "n"},
                "spec": {"rules": [{"retry": {"attempts": 2, "codes": [503], "backoff": "10ms"}}]}});
            let Parsed::Object(object) = parse_object(v).unwrap() else { panic!("{version}: not an object") };
            let ClusterObject::HttpRoute(route) = *object else { panic!("{version}: not an HTTPRoute") };
            let rules = route.spec.rules.unwrap_or_default();
            let retry = rules.first().and_then(|r| r.retry.clone()).unwrap_or_default();
            assert_eq!((retry.attempts, retry.codes, retry.backoff.as_deref()), (Some(2), Some(vec![503]), Some("10ms")), "{version}");
        }
    }

    #[test]
    fn wrong_field_types_name_the_object() {
        let v: Value = serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "n"},
            "spec": {"ports": [{"port": "eighty"}]}});
        let err = parse_object(v).unwrap_err();
        assert_eq!(err.kind.as_deref(), Some("Service"));
        assert_eq!(err.name.as_deref(), Some("n/s"));
        assert!(err.message.contains("invalid Service"), "{}", err.message);
    }
}
