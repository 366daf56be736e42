//! Turning the cluster store into proxy-core's configuration, the eBPF maps' contents
//! (enrolled pod cgroups, Service addresses) and route status.
//!
//! - Workloads: pods of namespaces labelled `ambit.dev/mesh: enabled` (unless annotated
//!   `ambit.dev/mesh: disabled`) running on this node, whose pod cgroup is found.
//! - Services: one [`ServicePort`] per cluster IP and TCP port, with the ready endpoints
//!   of the matching EndpointSlice ports.
//! - Routes: HTTPRoutes and GRPCRoutes whose parentRef is a core Service (GEP-1426):
//!   a producer route (same namespace as the Service) applies to every caller, a
//!   consumer route (other namespace) only to callers in the route's namespace. All
//!   accepted routes of one kind for one Service port and scope merge into one
//!   [`RouteList`] (HTTPRoute, GRPCRoute) or [`L4Routes`] (TLSRoute, TCPRoute; see
//!   [`l4`]). One kind owns a Service port and scope, by precedence GRPCRoute >
//!   HTTPRoute > TLSRoute > TCPRoute; a route of a losing kind reports
//!   `Accepted=False` with reason `Conflicted` (or `Accepted=True` with a message when
//!   it loses only some of its ports).
//! - Validation: see [`rules`] (invalid rules are dropped, `PartiallyInvalid`).
//! - AuthorizationPolicies: see [`authz`] (the policies of this node's pods, by pod IP).

pub mod authz;
mod backends;
mod cors;
mod fields;
#[cfg(test)]
mod field_coverage;
mod l4;
pub mod mesh;
pub mod mesh_mode;
mod owner;
mod retry;
mod reuse;
mod rules;
mod services;
mod spec;
mod status;

pub use authz::{allow_selected_pods, PolicyStatus};
pub use backends::RefProblem;
pub use reuse::{Reuse, ReuseCounts};
pub use rules::{DroppedRule, RuleError};
pub use services::{PortInfo, ServiceIndex, ServiceInfo};
pub use status::{Condition, ConditionType, ParentRef, ParentStatus, Reason, RouteStatus};

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use ambit_proxy_core::config::{ProxyConfig, RouteSet, ServicePort};
use ambit_proxy_core::identity::{CgroupId, Workload};
use ambit_proxy_core::routes::{
    L4Route, L4Routes, RegexBudget, RouteKind, RouteList, RouteMeta, RouteRef, Rule, TlsRoute,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::cgroups::{PodCgroup, PodCgroupResolver};
use crate::cluster::{ClusterState, ObjectKey};
use crate::{CONTROLLER_NAME, MESH_POD_ANNOTATION};
use rules::{compile_route, CompiledRoute, RuleCtx};
use spec::{mirror, GrpcMatchSpec, HttpMatchSpec, PathSpec, RuleSpec};

/// Finds a pod's cgroup on this node (fake it in tests with a closure).
pub trait CgroupLookup {
    fn find(&self, pod_uid: &str, qos: Option<&str>) -> Option<PodCgroup>;
}

impl CgroupLookup for PodCgroupResolver {
    fn find(&self, pod_uid: &str, qos: Option<&str>) -> Option<PodCgroup> {
        PodCgroupResolver::find(self, pod_uid, qos)
    }
}

impl<F: Fn(&str, Option<&str>) -> Option<PodCgroup>> CgroupLookup for F {
    fn find(&self, pod_uid: &str, qos: Option<&str>) -> Option<PodCgroup> {
        self(pod_uid, qos)
    }
}

/// What translation needs to know about the node it runs for.
pub struct NodeView<'a> {
    /// This node's name: pods scheduled elsewhere are not enrolled (None: every pod is local).
    pub node_name: Option<&'a str>,
    pub cgroups: &'a dyn CgroupLookup,
}

/// Everything derived from one [`ClusterState`].
#[derive(Debug, Default)]
pub struct Translation {
    /// The proxy configuration (`version` is left 0 for the caller to set).
    pub config: ProxyConfig,
    /// Pod cgroup ids to enroll in the connect hooks.
    pub enrolled_cgroups: BTreeSet<u64>,
    /// Each enrolled pod's cgroup directory and hostNetwork flag: where its processes,
    /// hence its network namespace, are found.
    pub caller_pods: HashMap<CgroupId, crate::egress::CallerPod>,
    /// Enrolled pods on this node whose cgroup was not found (yet).
    pub pending_cgroups: usize,
    /// Those pods, so that the caller can cheaply check whether a cgroup appeared
    /// before translating everything again.
    pub pending_pods: Vec<PendingPod>,
    /// Every cluster IP × TCP port of every Service: connects to these are redirected
    /// (when the caller is enrolled).
    pub service_addrs: BTreeSet<SocketAddr>,
    pub route_status: Vec<RouteStatus>,
    /// Every AuthorizationPolicy's `Accepted` condition.
    pub policy_status: Vec<PolicyStatus>,
    /// This node's pod IPs that an ALLOW policy selects (they accept mesh traffic only).
    pub allow_selected: BTreeSet<std::net::IpAddr>,
    /// Things that are wrong in the input but do not belong to a route's status.
    pub problems: Vec<String>,
}

/// An enrolled pod on this node whose cgroup was not found, with what finding it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingPod {
    pub uid: String,
    pub qos: Option<String>,
}

impl PendingPod {
    /// Whether its cgroup exists now.
    pub fn cgroup_found(&self, cgroups: &dyn CgroupLookup) -> bool {
        cgroups.find(&self.uid, self.qos.as_deref()).is_some()
    }
}

/// Which callers a route applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The route is in the Service's namespace: every caller.
    Producer,
    /// The route is in this other namespace: only callers from it.
    Consumer(Arc<str>),
}

/// The routes attached to one Service port and scope: all of the kind that owns it.
#[derive(Clone)]
struct ScopeRules {
    /// The first kind attached; routes are attached in precedence order
    /// (GRPCRoute, HTTPRoute, TLSRoute, TCPRoute), so it is the winning kind.
    owner: RouteKind,
    rules: Vec<Arc<Rule>>,
    l4: Vec<TlsRoute>,
}

impl ScopeRules {
    /// The same routes: the same rule and connection-route allocations, in the same order.
    fn same(&self, other: &ScopeRules) -> bool {
        self.owner == other.owner
            && self.rules.len() == other.rules.len()
            && self.rules.iter().zip(&other.rules).all(|(a, b)| Arc::ptr_eq(a, b))
            && self.l4.len() == other.l4.len()
            && self.l4.iter().zip(&other.l4).all(|(a, b)| Arc::ptr_eq(&a.route, &b.route) && a.hostnames == b.hostnames)
    }
}

/// The routes attached to one Service port, by scope.
type Scopes = BTreeMap<Scope, ScopeRules>;

/// What a route brings to the Service ports it attaches to.
enum Attachable {
    /// HTTPRoute/GRPCRoute rules.
    Rules(Arc<CompiledRoute>),
    /// A TLSRoute/TCPRoute.
    Connection(l4::CompiledL4),
}

impl Attachable {
    fn status(&self) -> &CompiledRoute {
        match self {
            Attachable::Rules(c) => c,
            Attachable::Connection(c) => &c.status,
        }
    }

    fn all_dropped(&self) -> bool {
        match self {
            Attachable::Rules(c) => c.all_dropped(),
            Attachable::Connection(c) => c.all_dropped(),
        }
    }

    fn add_to(&self, bucket: &mut ScopeRules) {
        match self {
            Attachable::Rules(c) => bucket.rules.extend(c.rules.iter().cloned()),
            Attachable::Connection(c) => bucket.l4.extend(c.route.iter().cloned()),
        }
    }
}

/// The parentRefs of a route of any kind: the generated types differ per kind but
/// have the same fields.
macro_rules! parent_refs {
    ($refs:expr) => {
        $refs
            .iter()
            .flatten()
            .map(|p| parent_ref(&p.group, &p.kind, &p.namespace, &p.name, p.port, &p.section_name))
            .collect::<Vec<ParentRef>>()
    };
}

fn parent_ref(
    group: &Option<String>,
    kind: &Option<String>,
    namespace: &Option<String>,
    name: &str,
    port: Option<i32>,
    section_name: &Option<String>,
) -> ParentRef {
    ParentRef {
        group: group.clone(),
        kind: kind.clone(),
        namespace: namespace.clone(),
        name: name.to_string(),
        port,
        section_name: section_name.clone(),
    }
}

type PortKey = (ObjectKey, u16);

/// Whether a pod opts out with `ambit.dev/mesh: disabled`.
pub fn pod_opted_out(pod: &Pod) -> bool {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(MESH_POD_ANNOTATION)).is_some_and(|v| v == "disabled")
}

/// Whether a pod belongs to the mesh (namespace enrolled, not opted out, not finished).
pub fn pod_in_mesh(state: &ClusterState, pod: &Pod) -> bool {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let finished = pod.status.as_ref().and_then(|s| s.phase.as_deref()).is_some_and(|p| p == "Succeeded" || p == "Failed");
    state.namespace_enrolled(ns) && !pod_opted_out(pod) && !finished
}

/// Translates the whole store for one node.
pub fn translate(state: &ClusterState, node: &NodeView<'_>) -> Translation {
    translate_reusing(state, node, &mut Reuse::default())
}

/// Translates the whole store for one node, reusing what the previous translation with
/// `reuse` derived from objects that did not change (see [`reuse`]); the result is
/// exactly [`translate`]'s.
pub fn translate_reusing(state: &ClusterState, node: &NodeView<'_>, reuse: &mut Reuse) -> Translation {
    let mut out = Translation::default();
    workloads(state, node, &mut out);
    policies(state, node, &mut out);
    let index = reuse.index(state, &mut out.problems);
    let index = &*index;

    // Routes are attached in precedence order of their kinds: GRPCRoute, HTTPRoute,
    // TLSRoute, TCPRoute.
    let mut buckets: HashMap<PortKey, BTreeMap<Scope, ScopeRules>> = HashMap::new();
    // One compiled-regex budget for the whole configuration, spent in translation order.
    let regexes = RegexBudget::default();

    for (key, route) in &state.grpc_routes {
        let parents = parent_refs!(route.spec.parent_refs);
        let compiled = reuse.route(0, key, route, &regexes, || {
            let meta = route_meta(RouteKind::Grpc, key, &route.metadata);
            let ctx = RuleCtx { kind: RouteKind::Grpc, services: index, route_ns: &key.namespace, meta: &meta, regexes: &regexes };
            let rules: Result<Vec<RuleSpec<GrpcMatchSpec>>, String> = match &route.spec.rules {
                None => Ok(vec![]),
                Some(r) => mirror(r),
            };
            compile_route(&ctx, rules)
        });
        attach(key, &route.metadata, parents, Attachable::Rules(compiled), index, &mut buckets, &mut out);
    }
    for (key, route) in &state.http_routes {
        let parents = parent_refs!(route.spec.parent_refs);
        let compiled = reuse.route(1, key, route, &regexes, || {
            let meta = route_meta(RouteKind::Http, key, &route.metadata);
            let ctx = RuleCtx { kind: RouteKind::Http, services: index, route_ns: &key.namespace, meta: &meta, regexes: &regexes };
            compile_route(&ctx, http_rules(&route.spec.rules))
        });
        attach(key, &route.metadata, parents, Attachable::Rules(compiled), index, &mut buckets, &mut out);
    }

    for (key, route) in &state.tls_routes {
        let parents = parent_refs!(route.spec.parent_refs);
        let meta = route_meta(RouteKind::Tls, key, &route.metadata);
        let compiled = l4::compile(RouteKind::Tls, &meta, index, &key.namespace, Some(&route.spec.hostnames), mirror(&route.spec.rules));
        attach(key, &route.metadata, parents, Attachable::Connection(compiled), index, &mut buckets, &mut out);
    }
    for (key, route) in &state.tcp_routes {
        let parents = parent_refs!(route.spec.parent_refs);
        let meta = route_meta(RouteKind::Tcp, key, &route.metadata);
        let compiled = l4::compile(RouteKind::Tcp, &meta, index, &key.namespace, None, mirror(&route.spec.rules));
        attach(key, &route.metadata, parents, Attachable::Connection(compiled), index, &mut buckets, &mut out);
    }

    for (key, info) in &index.services {
        if info.ips.is_empty() {
            if !info.headless {
                out.problems.push(format!("Service {key} has no cluster IP: its traffic is not redirected"));
            }
            continue;
        }
        for port in info.ports.iter().filter(|p| p.tcp) {
            let scopes = buckets.remove(&(key.clone(), port.port));
            let sp = reuse.service_port(key, port.port, scopes, |scopes| Arc::new(service_port(info, port, scopes)));
            for ip in &info.ips {
                let addr = SocketAddr::new(*ip, port.port);
                out.service_addrs.insert(addr);
                out.config.services.insert(addr, sp.clone());
            }
        }
    }
    reuse.finish();
    out
}

/// One Service port with the routes attached to it, per scope.
fn service_port(info: &ServiceInfo, port: &PortInfo, scopes: Option<Scopes>) -> ServicePort {
    let mut routes = RouteSet::default();
    for (scope, rules) in scopes.into_iter().flatten() {
        match rules.owner {
            RouteKind::Http | RouteKind::Grpc => {
                let list = Arc::new(RouteList::new(rules.owner, rules.rules));
                match scope {
                    Scope::Producer => routes.producer = Some(list),
                    Scope::Consumer(ns) => {
                        routes.consumers.insert(ns, list);
                    }
                }
            }
            RouteKind::Tls | RouteKind::Tcp => {
                let l4 = Arc::new(if rules.owner == RouteKind::Tls {
                    L4Routes::tls(rules.l4)
                } else {
                    L4Routes::tcp(rules.l4.into_iter().map(|r| r.route).collect::<Vec<Arc<L4Route>>>())
                });
                match scope {
                    Scope::Producer => routes.l4_producer = Some(l4),
                    Scope::Consumer(ns) => {
                        routes.l4_consumers.insert(ns, l4);
                    }
                }
            }
        }
    }
    ServicePort {
        service: info.service.clone(),
        port: port.port,
        port_name: port.name.clone(),
        protocol: port.protocol,
        endpoints: port.endpoints.clone(),
        routes,
    }
}

/// An HTTPRoute's rules as the mirror reads them; no rules is the API default: one rule
/// matching every path, with no backends.
fn http_rules<T: serde::Serialize>(rules: &Option<Vec<T>>) -> Result<Vec<RuleSpec<HttpMatchSpec>>, String> {
    match rules {
        None => Ok(vec![RuleSpec {
            name: None,
            matches: vec![HttpMatchSpec {
                path: Some(PathSpec { type_: Some("PathPrefix".into()), value: Some("/".into()) }),
                ..Default::default()
            }],
            filters: vec![],
            backend_refs: vec![],
            timeouts: None,
            other: Default::default(),
            retry: None,
        }]),
        Some(r) => mirror(r),
    }
}

fn route_meta(kind: RouteKind, key: &ObjectKey, meta: &ObjectMeta) -> RouteMeta {
    RouteMeta {
        route: Arc::new(RouteRef { kind, namespace: key.namespace.as_str().into(), name: key.name.as_str().into() }),
        created: meta.creation_timestamp.as_ref().map(|t| t.0.as_second()),
    }
}

fn policies(state: &ClusterState, node: &NodeView<'_>, out: &mut Translation) {
    let translated = authz::translate_policies(state, node);
    for status in translated.status.iter().filter(|s| !s.ok()) {
        out.problems.push(format!("AuthorizationPolicy {}/{} is invalid: {}", status.namespace, status.name, status.accepted.message));
    }
    out.allow_selected = allow_selected_pods(&translated.authorization);
    out.config.authorization = Arc::new(translated.authorization);
    out.policy_status = translated.status;
}

fn workloads(state: &ClusterState, node: &NodeView<'_>, out: &mut Translation) {
    for (key, pod) in &state.pods {
        if !pod_in_mesh(state, pod) {
            continue;
        }
        let spec = pod.spec.as_ref();
        let pod_node = spec.and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty());
        if let (Some(this), Some(theirs)) = (node.node_name, pod_node) {
            if this != theirs {
                continue;
            }
        }
        let Some(uid) = pod.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
            out.problems.push(format!("pod {key} has no metadata.uid: cannot find its cgroup"));
            continue;
        };
        let qos = pod.status.as_ref().and_then(|s| s.qos_class.as_deref());
        let Some(cgroup) = node.cgroups.find(uid, qos) else {
            tracing::debug!(pod = %key, uid, "pod cgroup not found (yet)");
            out.pending_cgroups += 1;
            out.pending_pods.push(PendingPod { uid: uid.to_owned(), qos: qos.map(str::to_owned) });
            continue;
        };
        let service_account = spec.and_then(|s| s.service_account_name.as_deref()).filter(|s| !s.is_empty()).unwrap_or("default");
        out.enrolled_cgroups.insert(cgroup.id.0);
        let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
        out.caller_pods.insert(cgroup.id, crate::egress::CallerPod { cgroup_dir: cgroup.path.clone(), host_network });
        out.config.workloads.insert(
            CgroupId(cgroup.id.0),
            Arc::new(Workload {
                namespace: key.namespace.as_str().into(),
                name: key.name.as_str().into(),
                workload: owner::workload_name(pod).into(),
                uid: uid.into(),
                service_account: service_account.into(),
                cgroup: cgroup.id,
            }),
        );
    }
}

/// The Service ports a parentRef selects: `port` (that port), `sectionName` (the port
/// with that name), both (must agree), or neither (every TCP port).
fn select_ports(info: &ServiceInfo, parent: &ParentRef) -> Result<Vec<u16>, String> {
    let svc = &info.service;
    let mut ports: Vec<&PortInfo> = info.ports.iter().filter(|p| p.tcp).collect();
    if let Some(port) = parent.port {
        ports.retain(|p| i32::from(p.port) == port);
        if ports.is_empty() {
            return Err(format!("Service {svc} has no TCP port {port}"));
        }
    }
    if let Some(section) = &parent.section_name {
        ports.retain(|p| p.name.as_deref() == Some(section.as_str()));
        if ports.is_empty() {
            return Err(format!("Service {svc} has no TCP port named {section:?}{}", match parent.port {
                Some(p) => format!(" with number {p}"),
                None => String::new(),
            }));
        }
    }
    if ports.is_empty() {
        return Err(format!("Service {svc} has no TCP ports"));
    }
    Ok(ports.iter().map(|p| p.port).collect())
}

fn dropped_message(compiled: &CompiledRoute) -> String {
    if let Some(e) = &compiled.unreadable {
        return e.clone();
    }
    compiled
        .dropped
        .iter()
        .map(|d| match &d.name {
            Some(name) => format!("rule {} ({name}): {}", d.index, d.error.message),
            None => format!("rule {}: {}", d.index, d.error.message),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[allow(clippy::too_many_arguments)]
fn attach(
    key: &ObjectKey,
    meta: &ObjectMeta,
    parents: Vec<ParentRef>,
    attachable: Attachable,
    index: &ServiceIndex,
    buckets: &mut HashMap<PortKey, BTreeMap<Scope, ScopeRules>>,
    out: &mut Translation,
) {
    let compiled = attachable.status();
    let kind = compiled.kind;
    let mut statuses = Vec::new();
    let mut attached_here: HashSet<(PortKey, Scope)> = HashSet::new();
    let resolved = match compiled.ref_problems.first() {
        None => Condition::new(ConditionType::ResolvedRefs, true, Reason::ResolvedRefs, "all references resolved"),
        Some(first) => Condition::new(
            ConditionType::ResolvedRefs,
            false,
            first.reason,
            compiled.ref_problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "),
        ),
    };
    for parent in parents {
        if !backends::is_service(parent.group.as_deref(), parent.kind.as_deref().or(Some("Gateway"))) {
            // Not a Service (a Gateway, ...): another controller's business.
            continue;
        }
        let svc_ns = parent.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| key.namespace.clone());
        let mut conditions = Vec::new();
        let accepted = match index.get(&svc_ns, &parent.name) {
            None => Condition::new(
                ConditionType::Accepted,
                false,
                Reason::NoMatchingParent,
                format!("Service {svc_ns}/{} not found", parent.name),
            ),
            Some(info) if info.ips.is_empty() => Condition::new(
                ConditionType::Accepted,
                false,
                Reason::NoMatchingParent,
                format!("Service {svc_ns}/{} has no cluster IP", parent.name),
            ),
            Some(info) => match select_ports(info, &parent) {
                Err(message) => Condition::new(ConditionType::Accepted, false, Reason::NoMatchingParent, message),
                Ok(_) if attachable.all_dropped() => Condition::new(
                    ConditionType::Accepted,
                    false,
                    Reason::UnsupportedValue,
                    format!("every rule is invalid: {}", dropped_message(compiled)),
                ),
                Ok(ports) => {
                    let scope = if svc_ns == key.namespace {
                        Scope::Producer
                    } else {
                        Scope::Consumer(key.namespace.as_str().into())
                    };
                    let svc_key = ObjectKey::new(svc_ns.clone(), parent.name.clone());
                    let mut conflicted = Vec::new();
                    let mut winners: Vec<RouteKind> = Vec::new();
                    let mut attached = Vec::new();
                    for port in ports {
                        let pk = (svc_key.clone(), port);
                        let bucket = buckets
                            .entry(pk.clone())
                            .or_default()
                            .entry(scope.clone())
                            .or_insert_with(|| ScopeRules { owner: kind, rules: vec![], l4: vec![] });
                        if bucket.owner != kind {
                            conflicted.push(port);
                            if !winners.contains(&bucket.owner) {
                                winners.push(bucket.owner);
                            }
                            continue;
                        }
                        attached.push(port);
                        if !attached_here.insert((pk, scope.clone())) {
                            continue;
                        }
                        attachable.add_to(bucket);
                    }
                    let winner = winners.iter().map(ToString::to_string).collect::<Vec<_>>().join(" or ");
                    let scope_text = match &scope {
                        Scope::Producer => "producer route (all callers)".to_string(),
                        Scope::Consumer(ns) => format!("consumer route (callers in namespace {ns})"),
                    };
                    if attached.is_empty() {
                        Condition::new(
                            ConditionType::Accepted,
                            false,
                            Reason::Conflicted,
                            format!("a {winner} already routes port(s) {conflicted:?} of Service {svc_key} for this scope (precedence: GRPCRoute > HTTPRoute > TLSRoute > TCPRoute)"),
                        )
                    } else if conflicted.is_empty() {
                        Condition::new(
                            ConditionType::Accepted,
                            true,
                            Reason::Accepted,
                            format!("{scope_text} on Service {svc_key} port(s) {attached:?}"),
                        )
                    } else {
                        Condition::new(
                            ConditionType::Accepted,
                            true,
                            Reason::Accepted,
                            format!("{scope_text} on Service {svc_key} port(s) {attached:?}; not on {conflicted:?}, where a {winner} takes precedence"),
                        )
                    }
                }
            },
        };
        let is_accepted = accepted.status;
        conditions.push(accepted);
        conditions.push(resolved.clone());
        if is_accepted && !compiled.dropped.is_empty() {
            conditions.push(Condition::new(
                ConditionType::PartiallyInvalid,
                true,
                Reason::UnsupportedValue,
                format!("Dropped Rule(s): {}", dropped_message(compiled)),
            ));
        }
        statuses.push(ParentStatus { parent_ref: parent, controller_name: CONTROLLER_NAME.to_string(), conditions });
    }
    if !statuses.is_empty() {
        out.route_status.push(RouteStatus {
            kind,
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            generation: meta.generation,
            parents: statuses,
        });
    }
}
