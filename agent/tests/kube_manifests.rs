//! The DaemonSet manifests: each parses strictly as its Kubernetes type (a field the type
//! does not know would be dropped by the round trip and fail the comparison), and the
//! ClusterRole grants exactly the permissions the agent's code uses.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ambit_agent::kubernetes::rbac;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
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
        "Role" => drop(strict_value::<Role>(&what, value)),
        "RoleBinding" => drop(strict_value::<RoleBinding>(&what, value)),
        "ConfigMap" => drop(strict_value::<ConfigMap>(&what, value)),
        "DaemonSet" => drop(strict_value::<DaemonSet>(&what, value)),
        "CustomResourceDefinition" => drop(strict_value::<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        >(&what, value)),
        "Deployment" => drop(strict_value::<Deployment>(&what, value)),
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
    let role: Role = strict("role.yaml");
    let role_binding: RoleBinding = strict("rolebinding.yaml");
    let ds: DaemonSet = strict("daemonset.yaml");
    let ns_name = ns.metadata.name.unwrap();
    assert_eq!(sa.metadata.namespace.as_deref(), Some(ns_name.as_str()));
    assert_eq!(ds.metadata.namespace.as_deref(), Some(ns_name.as_str()));
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!((subject.name.as_str(), subject.namespace.as_deref()), (sa.metadata.name.as_deref().unwrap(), Some(ns_name.as_str())));
    assert_eq!(binding.role_ref.name, "ambit-agent");
    // The Lease Role lives in the agent's namespace and is bound to its ServiceAccount there.
    assert_eq!(role.metadata.namespace.as_deref(), Some(ns_name.as_str()));
    assert_eq!(role_binding.metadata.namespace.as_deref(), Some(ns_name.as_str()));
    assert_eq!((role_binding.role_ref.kind.as_str(), role_binding.role_ref.name.as_str()), ("Role", "ambit-agent"));
    let subject = &role_binding.subjects.unwrap()[0];
    assert_eq!((subject.name.as_str(), subject.namespace.as_deref()), (sa.metadata.name.as_deref().unwrap(), Some(ns_name.as_str())));

    let spec = ds.spec.unwrap();
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name, sa.metadata.name);
    assert_eq!(pod.host_network, Some(true));
    // The node's pids and /proc: pods' network namespaces are found through their processes.
    assert_eq!(pod.host_pid, Some(true));
    let agent = &pod.containers[0];
    let env: BTreeSet<&str> = agent.env.iter().flatten().map(|e| e.name.as_str()).collect();
    for needed in ["NODE_NAME", "NODE_IP", "HOST_IP", "POD_NAME", "POD_NAMESPACE"] {
        assert!(env.contains(needed), "missing env {needed}");
    }
    // Every node address (both families), not only the primary one.
    let field = |name: &str| {
        let var = agent.env.iter().flatten().find(|e| e.name == name).unwrap();
        var.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path.clone()
    };
    assert_eq!(field("NODE_IP"), "status.hostIPs");
    assert_eq!(field("HOST_IP"), "status.hostIP");
    let caps = agent.security_context.as_ref().unwrap().capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    let added: BTreeSet<&str> = caps.add.iter().flatten().map(String::as_str).collect();
    // The smallest set that works (tests/e2e/image.rs runs the image with exactly it).
    assert_eq!(added, BTreeSet::from(["SYS_ADMIN", "SYS_PTRACE"]));
    let seccomp = agent.security_context.as_ref().unwrap().seccomp_profile.as_ref().unwrap();
    assert_eq!(seccomp.type_, "Unconfined");
    let bpf = agent.volume_mounts.iter().flatten().find(|m| m.mount_path == "/sys/fs/bpf").unwrap();
    assert_eq!(bpf.mount_propagation.as_deref(), Some("Bidirectional"));
    // The admin API stays on loopback (its default); Prometheus scrapes the read-only
    // metrics listener on the node IP; the probes ask this pod's own agent over its unix
    // socket in a per-pod emptyDir, since two agents share the node's ports during a
    // surge rollout.
    let args: Vec<&str> = agent.args.iter().flatten().map(String::as_str).collect();
    assert!(!args.iter().any(|a| a.starts_with("--admin-addr") || a.starts_with("--admin-allow-remote")), "{args:?}");
    assert!(args.contains(&"--metrics-addr=$(HOST_IP):15090"), "{args:?}");
    let socket = "--admin-socket=/run/ambit-pod/admin.sock";
    assert!(args.contains(&socket), "{args:?}");
    for (probe, path) in [(&agent.liveness_probe, "--path=/healthz"), (&agent.readiness_probe, "--path=/ready")] {
        let command = probe.as_ref().unwrap().exec.as_ref().unwrap().command.clone().unwrap();
        assert_eq!(command, ["/usr/local/bin/ambit-agent", "probe", socket, path]);
    }
    let run = agent.volume_mounts.iter().flatten().find(|m| m.mount_path == "/run/ambit-pod").unwrap();
    let volume = pod.volumes.iter().flatten().find(|v| v.name == run.name).unwrap();
    assert!(volume.empty_dir.is_some(), "the admin socket must be per pod");
    // Surge rollout: the new agent is ready beside the old one before the old one stops;
    // no declared ports, which with hostNetwork would be hostPorts that block the surge pod.
    let rolling = spec.update_strategy.unwrap().rolling_update.unwrap();
    assert_eq!(serde_json::to_value(&rolling.max_surge).unwrap(), 1);
    assert_eq!(serde_json::to_value(&rolling.max_unavailable).unwrap(), 0);
    assert!(agent.ports.as_ref().is_none_or(|p| p.is_empty()), "declared ports block the surge pod");
}

#[test]
fn the_daemonset_arguments_are_accepted_by_the_cli() {
    let ds: DaemonSet = strict("daemonset.yaml");
    let args: Vec<String> = ds.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap()
        .into_iter()
        .map(|a| a.replace("$(NODE_IP)", "127.0.0.1").replace("$(HOST_IP)", "127.0.0.1"))
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
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "ConfigMap",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "DaemonSet",
            "Deployment",
            "Namespace",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "ServiceAccount",
            "ServiceAccount"
        ]
    );
}

#[test]
fn kustomization_lists_every_manifest() {
    let k = load("kustomization.yaml");
    let listed: BTreeSet<String> = k["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
    let names = |sub: &str| -> Vec<String> {
        std::fs::read_dir(dir().join(sub))
            .unwrap()
            .map(|e| format!("{sub}{}", e.unwrap().file_name().to_string_lossy()))
            .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
            .collect()
    };
    let present: BTreeSet<String> = names("").into_iter().chain(names("crds/")).collect();
    assert_eq!(listed, present);
}

type Grant = (String, String, String);

/// Every (group, resource, verb) the rules grant; with `names`, only rules limited to
/// exactly those resourceNames count, otherwise only unlimited ones.
fn grants(rules: Vec<PolicyRule>, names: Option<&[&str]>) -> BTreeSet<Grant> {
    let mut granted = BTreeSet::new();
    for rule in rules {
        assert!(rule.non_resource_urls.is_none());
        let limited: Option<Vec<&str>> = rule.resource_names.as_ref().map(|n| n.iter().map(String::as_str).collect());
        if limited.as_deref() != names {
            continue;
        }
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert_ne!(verb, "*", "no wildcards");
                    granted.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    granted
}

fn exactly(granted: &BTreeSet<Grant>, used: &BTreeSet<Grant>, what: &str) {
    let missing: Vec<_> = used.difference(granted).collect();
    let unused: Vec<_> = granted.difference(used).collect();
    assert!(missing.is_empty(), "{what}: used but not granted: {missing:?}");
    assert!(unused.is_empty(), "{what}: granted but unused: {unused:?}");
}

fn grant(p: &rbac::Permission) -> Grant {
    (p.group.to_string(), p.resource.to_string(), p.verb.to_string())
}

#[test]
fn cluster_role_grants_exactly_what_the_agent_uses() {
    let role: ClusterRole = strict("clusterrole.yaml");
    let rules = role.rules.unwrap();
    assert!(rules.iter().all(|r| r.resource_names.is_none()), "the ClusterRole limits nothing by name");
    let used: BTreeSet<Grant> = rbac::ALL.iter().filter(|p| !rbac::NAMESPACED.contains(p)).map(grant).collect();
    exactly(&grants(rules, None), &used, "ClusterRole");
}

#[test]
fn the_agent_role_is_namespaced_and_limited_to_the_lease_and_bundle_names() {
    let role: Role = strict("role.yaml");
    let rules = role.rules.unwrap();
    let lease = ambit_agent::kubernetes::lease::LEASE_NAME;
    let bundle = ambit_agent::signer::TRUST_BUNDLE_CONFIGMAP;
    let by_lease = grants(rules.clone(), Some(&[lease]));
    let by_bundle = grants(rules.clone(), Some(&[bundle]));
    let unlimited = grants(rules.clone(), None);
    let named = by_lease.len() + by_bundle.len() + unlimited.len();
    assert_eq!(named, rules.iter().map(|r| r.verbs.len() * r.resources.as_ref().map_or(0, Vec::len)).sum::<usize>(), "rules limited to another name: {rules:?}");
    // create cannot be limited by name (the name is not known when a create is authorized).
    let create: BTreeSet<Grant> = [grant(&rbac::LEASE_CREATE)].into();
    exactly(&unlimited, &create, "Role without resourceNames");
    let bundle_used: BTreeSet<Grant> = rbac::TRUST_BUNDLE_NAMED.iter().map(grant).collect();
    exactly(&by_bundle, &bundle_used, "Role limited to the trust bundle");
    let lease_used: BTreeSet<Grant> = rbac::NAMESPACED
        .iter()
        .filter(|p| **p != rbac::LEASE_CREATE && !rbac::TRUST_BUNDLE_NAMED.contains(p))
        .map(grant)
        .collect();
    exactly(&by_lease, &lease_used, "Role limited to the Lease");
}

#[test]
fn the_signer_roles_grant_exactly_what_the_signer_uses() {
    use ambit_agent::signer::{self, rbac as signer_rbac};
    let role: ClusterRole = strict("signer-clusterrole.yaml");
    let rules = role.rules.unwrap();
    let set = |ps: &[rbac::Permission]| ps.iter().map(grant).collect::<BTreeSet<Grant>>();
    exactly(&grants(rules.clone(), None), &set(signer_rbac::CLUSTER), "signer ClusterRole");
    exactly(&grants(rules.clone(), Some(&[signer::SIGNER_NAME])), &set(signer_rbac::SIGNER_NAMED), "signer ClusterRole for its signerName");
    assert!(rules.iter().all(|r| r.resource_names.as_deref().is_none_or(|n| n == [signer::SIGNER_NAME])), "{rules:?}");
    let role: Role = strict("signer-role.yaml");
    assert_eq!(role.metadata.namespace.as_deref(), Some("ambit-system"));
    let rules = role.rules.unwrap();
    let create = [signer_rbac::CONFIGMAP_CREATE];
    let named: Vec<rbac::Permission> = signer_rbac::NAMESPACED.iter().copied().filter(|p| !create.contains(p)).collect();
    exactly(&grants(rules.clone(), None), &set(&create), "signer Role without resourceNames");
    exactly(&grants(rules.clone(), Some(&[signer::TRUST_BUNDLE_CONFIGMAP])), &set(&named), "signer Role limited to the bundle");
    assert!(rules.iter().all(|r| r.resource_names.as_deref().is_none_or(|n| n == [signer::TRUST_BUNDLE_CONFIGMAP])), "{rules:?}");
}

#[test]
fn the_signer_deployment_is_one_unprivileged_pod_holding_the_ca() {
    let sa: ServiceAccount = strict("signer-serviceaccount.yaml");
    let binding: ClusterRoleBinding = strict("signer-clusterrolebinding.yaml");
    let role_binding: RoleBinding = strict("signer-rolebinding.yaml");
    let deployment: Deployment = strict("signer-deployment.yaml");
    let name = sa.metadata.name.clone().unwrap();
    for subject in binding.subjects.unwrap().iter().chain(role_binding.subjects.unwrap().iter()) {
        assert_eq!((subject.name.as_str(), subject.namespace.as_deref()), (name.as_str(), Some("ambit-system")));
    }
    assert_eq!((binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()), ("ClusterRole", "ambit-signer"));
    assert_eq!((role_binding.role_ref.kind.as_str(), role_binding.role_ref.name.as_str()), ("Role", "ambit-signer"));
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"), "never two signers");
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(name.as_str()));
    assert!(pod.host_network.is_none() && pod.host_pid.is_none(), "no host access");
    let pod_security = pod.security_context.unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert!(pod_security.run_as_user.is_some_and(|u| u != 0));
    let signer = &pod.containers[0];
    let security = signer.security_context.as_ref().unwrap();
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    let caps = security.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert!(caps.add.is_none());
    // The CA comes from a Secret, mounted read-only, readable by owner and group only.
    let mount = signer.volume_mounts.iter().flatten().find(|m| m.mount_path == "/etc/ambit/ca").unwrap();
    assert_eq!(mount.read_only, Some(true));
    let volume = pod.volumes.iter().flatten().find(|v| v.name == mount.name).unwrap();
    let secret = volume.secret.as_ref().unwrap();
    assert_eq!(secret.default_mode, Some(0o440));
    // Its arguments are the signer's.
    let args: Vec<&str> = signer.args.iter().flatten().map(String::as_str).collect();
    assert_eq!(args[0], "signer");
    assert!(args.contains(&"--ca-dir=/etc/ambit/ca"), "{args:?}");
    assert!(args.contains(&"--metrics-addr=0.0.0.0:15090"), "{args:?}");
    let path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| probe.as_ref().unwrap().http_get.as_ref().unwrap().path.clone();
    assert_eq!((path(&signer.liveness_probe).as_deref(), path(&signer.readiness_probe).as_deref()), (Some("/healthz"), Some("/ready")));
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_ambit-agent")).args(["signer", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for arg in &args[1..] {
        let flag = arg.split('=').next().unwrap();
        assert!(help.contains(flag), "`ambit-agent signer` has no {flag}");
    }
    let env: Vec<&str> = signer.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert!(env.iter().all(|e| help.contains(&format!("env: {e}="))), "unknown env in {env:?}");
}
