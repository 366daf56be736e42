//! The DaemonSet manifests: each parses strictly as its Kubernetes type (a field the type
//! does not know would be dropped by the round trip and fail the comparison), and the
//! ClusterRole grants exactly the permissions the agent's code uses.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ambit_agent::kubernetes::rbac;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../daemonset")
}

fn load(file: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_json::to_value(yaml).unwrap()
}

/// Deserializes as `T` and checks nothing was dropped or changed on the way.
fn strict<T: DeserializeOwned + Serialize>(file: &str) -> T {
    strict_value(file, load(file))
}

/// [`strict`] for an object already loaded; `what` names it in failures.
fn strict_value<T: DeserializeOwned + Serialize>(what: &str, value: Value) -> T {
    let typed: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(back, value, "{what}: fields unknown to the type or with a wrong shape");
    typed
}

/// Strictly parses one rendered object as the type of its `kind`; its kind.
fn strict_object(value: Value) -> String {
    let kind = value["kind"].as_str().unwrap_or_default().to_string();
    let what = format!("rendered {kind} {}", value["metadata"]["name"]);
    match kind.as_str() {
        "Namespace" => drop(strict_value::<Namespace>(&what, value)),
        "ServiceAccount" => drop(strict_value::<ServiceAccount>(&what, value)),
        "ClusterRole" => drop(strict_value::<ClusterRole>(&what, value)),
        "ClusterRoleBinding" => drop(strict_value::<ClusterRoleBinding>(&what, value)),
        "ConfigMap" => drop(strict_value::<ConfigMap>(&what, value)),
        "DaemonSet" => drop(strict_value::<DaemonSet>(&what, value)),
        other => panic!("{what}: unexpected kind {other:?}"),
    }
    kind
}

#[test]
fn every_manifest_is_a_valid_kubernetes_object() {
    let ns: Namespace = strict("namespace.yaml");
    let sa: ServiceAccount = strict("serviceaccount.yaml");
    let _: ClusterRole = strict("clusterrole.yaml");
    let binding: ClusterRoleBinding = strict("clusterrolebinding.yaml");
    let ds: DaemonSet = strict("daemonset.yaml");
    let ns_name = ns.metadata.name.unwrap();
    assert_eq!(sa.metadata.namespace.as_deref(), Some(ns_name.as_str()));
    assert_eq!(ds.metadata.namespace.as_deref(), Some(ns_name.as_str()));
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!((subject.name.as_str(), subject.namespace.as_deref()), (sa.metadata.name.as_deref().unwrap(), Some(ns_name.as_str())));
    assert_eq!(binding.role_ref.name, "ambit-agent");

    let spec = ds.spec.unwrap();
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name, sa.metadata.name);
    assert_eq!(pod.host_network, Some(true));
    assert_ne!(pod.host_pid, Some(true));
    let agent = &pod.containers[0];
    let env: BTreeSet<&str> = agent.env.iter().flatten().map(|e| e.name.as_str()).collect();
    for needed in ["NODE_NAME", "NODE_IP", "POD_NAME", "POD_NAMESPACE"] {
        assert!(env.contains(needed), "missing env {needed}");
    }
    let caps = agent.security_context.as_ref().unwrap().capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    let added: BTreeSet<&str> = caps.add.iter().flatten().map(String::as_str).collect();
    assert_eq!(added, BTreeSet::from(["BPF", "NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"]));
    let bpf = agent.volume_mounts.iter().flatten().find(|m| m.mount_path == "/sys/fs/bpf").unwrap();
    assert_eq!(bpf.mount_propagation.as_deref(), Some("Bidirectional"));
    // The probes reach the admin API on the node IP (hostNetwork), where --admin-addr binds it.
    assert!(agent.args.iter().flatten().any(|a| a == "--admin-addr=$(NODE_IP):15021"));
    for probe in [&agent.liveness_probe, &agent.readiness_probe] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(serde_json::to_value(&get.port).unwrap(), 15021);
    }
    assert_eq!(agent.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/healthz"));
    assert_eq!(agent.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/ready"));
}

#[test]
fn the_daemonset_arguments_are_accepted_by_the_cli() {
    let ds: DaemonSet = strict("daemonset.yaml");
    let args: Vec<String> = ds.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap()
        .into_iter()
        .map(|a| a.replace("$(NODE_IP)", "127.0.0.1"))
        .collect();
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_ambit-agent")).args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for arg in &args[1..] {
        let flag = arg.split('=').next().unwrap();
        assert!(help.contains(flag), "`ambit-agent run` has no {flag}");
    }
    assert_eq!(args[0], "run");
}

/// README's `kubectl apply -k daemonset/` sends what `kubectl kustomize daemonset/`
/// renders: every rendered object must parse strictly as its type. Needs kubectl (v1.32,
/// preinstalled); its absence fails the test.
#[test]
fn kubectl_kustomize_renders_objects_that_parse_strictly() {
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir())
        .output()
        .expect("running kubectl (is it installed?)");
    assert!(out.status.success(), "kubectl kustomize: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut kinds = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let yaml = serde_yaml::Value::deserialize(document).unwrap();
        kinds.push(strict_object(serde_json::to_value(yaml).unwrap()));
    }
    kinds.sort();
    assert_eq!(kinds, ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "Namespace", "ServiceAccount"]);
}

#[test]
fn kustomization_lists_every_manifest() {
    let k = load("kustomization.yaml");
    let listed: BTreeSet<String> = k["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
    let present: BTreeSet<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present);
}

#[test]
fn cluster_role_grants_exactly_what_the_agent_uses() {
    let role: ClusterRole = strict("clusterrole.yaml");
    let mut granted = BTreeSet::new();
    for rule in role.rules.unwrap() {
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert_ne!(verb, "*", "no wildcards");
                    granted.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    let used: BTreeSet<(String, String, String)> =
        rbac::ALL.iter().map(|p| (p.group.to_string(), p.resource.to_string(), p.verb.to_string())).collect();
    let missing: Vec<_> = used.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(missing.is_empty(), "used but not granted: {missing:?}");
    assert!(unused.is_empty(), "granted but unused: {unused:?}");
}
