//! A JSON view of a [`ProxyConfig`] for the admin API's `/config_dump`.

use serde_json::{json, Value};

use super::{ProxyConfig, RouteSet};
use crate::routes::{BackendSet, BackendTarget, L4Routes, RouteList, RuleAction};

impl ProxyConfig {
    /// Everything the proxy serves from: workloads, Service ports with endpoints, and
    /// the compiled routes per caller scope, in precedence order.
    pub fn dump(&self) -> Value {
        let mut workloads: Vec<_> = self.workloads.values().collect();
        workloads.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let mut services: Vec<_> = self.services.iter().collect();
        services.sort_by_key(|(addr, _)| **addr);
        let mut mesh: Vec<_> = self.mesh.iter().collect();
        mesh.sort_by_key(|(ip, _)| **ip);
        json!({
            "version": self.version,
            "workloads": workloads.iter().map(|w| json!({
                "namespace": w.namespace, "name": w.name, "workload": w.workload, "uid": w.uid,
                "serviceAccount": w.service_account, "cgroup": w.cgroup.0,
            })).collect::<Vec<_>>(),
            "services": services.iter().map(|(addr, port)| json!({
                "address": addr.to_string(),
                "service": port.service.to_string(),
                "port": port.port,
                "portName": port.port_name,
                "protocol": port.protocol,
                "endpoints": port.endpoints.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "routes": dump_route_set(&port.routes),
            })).collect::<Vec<_>>(),
            "mesh": mesh.iter().map(|(ip, pod)| json!({
                "pod": ip.to_string(), "node": pod.node.to_string(), "identity": pod.identity.to_string(),
                "onThisNode": pod.on_this_node,
                "guarded": pod.guarded,
            })).collect::<Vec<_>>(),
        })
    }
}

fn dump_route_set(set: &RouteSet) -> Value {
    let mut consumers: Vec<_> = set.consumers.iter().collect();
    consumers.sort_by(|a, b| a.0.cmp(b.0));
    let mut l4_consumers: Vec<_> = set.l4_consumers.iter().collect();
    l4_consumers.sort_by(|a, b| a.0.cmp(b.0));
    json!({
        "producer": set.producer.as_deref().map(dump_list),
        "consumers": consumers.into_iter().map(|(ns, list)| json!({"namespace": ns, "routes": dump_list(list)})).collect::<Vec<_>>(),
        "l4Producer": set.l4_producer.as_deref().map(dump_l4),
        "l4Consumers": l4_consumers.into_iter().map(|(ns, l4)| json!({"namespace": ns, "routes": dump_l4(l4)})).collect::<Vec<_>>(),
    })
}

fn dump_backends(backends: &BackendSet) -> Value {
    backends
        .backends()
        .iter()
        .map(|b| match &b.target {
            BackendTarget::Service(s) => json!({
                "service": s.service.to_string(), "port": s.port, "weight": b.weight,
                "endpoints": s.endpoints.addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            }),
            BackendTarget::Invalid { reason } => json!({"invalid": reason, "weight": b.weight}),
        })
        .collect()
}

/// TLSRoutes/TCPRoutes of one scope, in precedence order (the first TCPRoute carries
/// every connection; TLSRoutes by server name).
fn dump_l4(routes: &L4Routes) -> Value {
    let rules: Vec<Value> = routes
        .routes()
        .into_iter()
        .map(|(hostnames, route)| {
            json!({
                "route": route.route().to_string(),
                "rule": route.index,
                "name": route.name,
                "hostnames": hostnames.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
                "backends": dump_backends(&route.backends),
            })
        })
        .collect();
    json!({"kind": routes.kind(), "rules": rules})
}

fn dump_list(list: &RouteList) -> Value {
    let mut seen = std::collections::HashSet::new();
    let rules: Vec<Value> = list
        .rules()
        .filter(|rule| seen.insert(std::sync::Arc::as_ptr(rule)))
        .map(|rule| {
            let action = match &rule.action {
                RuleAction::Redirect(r) => json!({"redirect": {
                    "scheme": r.scheme, "hostname": r.hostname, "port": r.port,
                    "path": r.path.as_ref().map(|p| format!("{p:?}")), "status": r.status.status().as_u16(),
                }}),
                RuleAction::Forward(f) => json!({"forward": dump_backends(&f.backends)}),
            };
            let mut dumped = json!({
                "route": rule.route().to_string(),
                "rule": rule.index,
                "name": rule.name,
                "matches": rule.matches.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>(),
                "action": action,
                "timeouts": {
                    "request": rule.timeouts.request.map(|d| format!("{d:?}")),
                    "backendRequest": rule.timeouts.backend_request.map(|d| format!("{d:?}")),
                },
            });
            if let Some(retry) = &rule.retry {
                dumped["retry"] = json!({
                    "attempts": retry.attempts,
                    "backoff": format!("{:?}", retry.backoff),
                    "codes": retry.codes.iter().collect::<Vec<_>>(),
                });
            }
            dumped
        })
        .collect();
    json!({"kind": list.kind(), "rules": rules})
}
