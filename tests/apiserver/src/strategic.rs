//! Strategic merge patch (`application/strategic-merge-patch+json`) for the built-in
//! kinds served, the subset `kubectl` sends:
//!
//! - maps merge key by key, and `null` deletes a key (as in a JSON merge patch);
//! - lists of objects with a merge key merge element by element ([`merge_key`]: e.g.
//!   `containers`, `env`, `volumes` by `name`, a Service's `ports` by `port`), and an
//!   element `{"<key>": ..., "$patch": "delete"}` removes that element; other lists are
//!   replaced;
//! - directives: `$patch: replace` (the map replaces the original) and `$patch: delete`
//!   (the map is removed), `$retainKeys` (keys not listed are dropped),
//!   `$deleteFromPrimitiveList/<field>` (those values are removed from a list of
//!   scalars) and `$setElementOrder/<field>` (element order is advice: accepted, and
//!   the merged order kept).

use serde_json::{Map, Value};

/// The merge key of a list field, by the field's name and the name of the map holding
/// it, for the lists of the served built-in kinds that kubectl merges.
fn merge_key(parent: &str, field: &str) -> Option<&'static str> {
    match (parent, field) {
        (_, "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets") => Some("name"),
        (_, "volumeMounts") => Some("mountPath"),
        ("spec", "ports") => Some("port"),
        (_, "ports") => Some("containerPort"),
        _ => None,
    }
}

/// Applies `patch` to `target` (both JSON objects at the top).
pub fn apply(target: &mut Value, patch: &Value) -> Result<(), String> {
    merge_map(target, patch, "")
}

fn merge_map(target: &mut Value, patch: &Value, name: &str) -> Result<(), String> {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match fields.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = fields.clone();
            replaced.remove("$patch");
            *target = Value::Object(replaced);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) => return Err(format!("unknown $patch directive {other:?}")),
        None => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let map = target.as_object_mut().ok_or("not an object")?;
    for (key, value) in fields {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            delete_from_list(map, field, value);
        } else if key.starts_with("$setElementOrder/") || key == "$retainKeys" {
            continue;
        } else if key.starts_with('$') {
            return Err(format!("unknown patch directive {key:?}"));
        } else if value.is_null() {
            map.remove(key);
        } else {
            merge_field(map, name, key, value)?;
        }
    }
    if let Some(Value::Array(keep)) = fields.get("$retainKeys") {
        map.retain(|k, _| keep.iter().any(|v| v.as_str() == Some(k.as_str())));
    }
    Ok(())
}

fn merge_field(map: &mut Map<String, Value>, parent: &str, key: &str, value: &Value) -> Result<(), String> {
    match (value, merge_key(parent, key)) {
        (Value::Array(items), Some(merge_key)) => {
            let current = map.entry(key.to_string()).or_insert(Value::Array(Vec::new()));
            merge_list(current, items, merge_key, key)
        }
        (Value::Array(_), None) => {
            map.insert(key.to_string(), value.clone());
            Ok(())
        }
        _ => {
            let slot = map.entry(key.to_string()).or_insert(Value::Null);
            merge_map(slot, value, key)?;
            if slot.is_null() {
                map.remove(key);
            }
            Ok(())
        }
    }
}

fn merge_list(current: &mut Value, items: &[Value], merge_key: &str, name: &str) -> Result<(), String> {
    if !current.is_array() {
        *current = Value::Array(Vec::new());
    }
    let list = current.as_array_mut().ok_or("not a list")?;
    for item in items {
        let key = item.get(merge_key).ok_or_else(|| format!("an element of {name} has no merge key {merge_key:?}"))?;
        let position = list.iter().position(|e| e.get(merge_key) == Some(key));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(i), true) => {
                list.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => merge_map(&mut list[i], item, name)?,
            (None, false) => {
                let mut fresh = Value::Null;
                merge_map(&mut fresh, item, name)?;
                list.push(fresh);
            }
        }
    }
    Ok(())
}

fn delete_from_list(map: &mut Map<String, Value>, field: &str, values: &Value) {
    let (Some(Value::Array(list)), Value::Array(remove)) = (map.get_mut(field), values) else { return };
    list.retain(|v| !remove.contains(v));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patched(mut target: Value, patch: Value) -> Value {
        apply(&mut target, &patch).unwrap();
        target
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        let ns = json!({"metadata": {"name": "shop", "labels": {"a": "1", "b": "2"}}});
        let out = patched(ns, json!({"metadata": {"labels": {"a": null, "c": "3"}}}));
        assert_eq!(out["metadata"]["labels"], json!({"b": "2", "c": "3"}));
    }

    #[test]
    fn containers_merge_by_name_and_delete_by_directive() {
        let pod = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        let out = patched(
            pod,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "c"}],
                "containers": [{"name": "a", "image": "x2"}, {"name": "b", "$patch": "delete"}, {"name": "c", "image": "z"}]
            }}),
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "a", "image": "x2"}, {"name": "c", "image": "z"}]));
    }

    #[test]
    fn service_ports_merge_by_port_and_other_lists_are_replaced() {
        let svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}], "ipFamilies": ["IPv4"]}});
        let out = patched(svc, json!({"spec": {"ports": [{"port": 80, "appProtocol": "http"}], "ipFamilies": ["IPv6"]}}));
        assert_eq!(out["spec"]["ports"], json!([{"port": 80, "name": "http", "appProtocol": "http"}]));
        assert_eq!(out["spec"]["ipFamilies"], json!(["IPv6"]));
    }

    #[test]
    fn directives_replace_retain_and_delete_from_primitive_lists() {
        let obj = json!({"spec": {"a": {"x": 1, "y": 2}, "finalizers": ["f1", "f2"], "keep": 1, "drop": 2}});
        let out = patched(
            obj,
            json!({"spec": {"a": {"$patch": "replace", "z": 3}, "$deleteFromPrimitiveList/finalizers": ["f1"], "$retainKeys": ["a", "finalizers", "keep"]}}),
        );
        assert_eq!(out["spec"], json!({"a": {"z": 3}, "finalizers": ["f2"], "keep": 1}));
    }

    #[test]
    fn unknown_directives_and_missing_merge_keys_are_errors() {
        assert!(apply(&mut json!({}), &json!({"$bogus": 1})).is_err());
        assert!(apply(&mut json!({}), &json!({"a": {"$patch": "merge-ish"}})).is_err());
        assert!(apply(&mut json!({"spec": {}}), &json!({"spec": {"containers": [{"image": "x"}]}})).is_err());
    }
}
