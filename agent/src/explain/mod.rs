//! `ambit-agent explain`: what the proxy would do with one request from one pod, computed
//! from manifests alone (no cgroups, no eBPF).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use ambit_proxy_core::config::{Decision, ServicePort};
use ambit_proxy_core::routes::{
    normalize_path, BackendTarget, HeaderModifier, PathMatch, RequestView, RouteMatch, Rule, RuleAction, StringMatch,
};
use anyhow::{anyhow, bail, Context};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::cluster::{ClusterState, ObjectKey};
use crate::translate::{self, NodeView};

mod wire;

pub use wire::{EndpointWire, Wire};

/// Which routes governed the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeUsed {
    /// Routes in the caller's own namespace attached to a Service elsewhere.
    Consumer,
    /// Routes in the Service's namespace.
    Producer,
}

/// What happened to the request.
#[derive(Debug)]
pub enum Outcome {
    /// The caller is not enrolled: its connection is not redirected to the proxy.
    NotRedirected,
    /// No routes apply to this caller: forwarded to the Service's own endpoints.
    NoRoutes,
    /// Routes apply but none matches: the proxy answers 404.
    NoMatch { scope: ScopeUsed },
    Matched { scope: ScopeUsed, rule: Arc<Rule>, match_index: Option<usize> },
    /// TLSRoutes or TCPRoutes govern the connection (no request is looked at): the
    /// routes in precedence order.
    Connection { scope: ScopeUsed, routes: Arc<ambit_proxy_core::routes::L4Routes> },
}

/// The answer of [`explain`].
#[derive(Debug)]
pub struct Explanation {
    pub service: Arc<ServicePort>,
    pub dialled: SocketAddr,
    pub caller_namespace: String,
    pub caller_pod: String,
    pub caller_enrolled: bool,
    /// Why the caller is or is not enrolled.
    pub caller_note: String,
    pub method: Method,
    pub path: String,
    pub outcome: Outcome,
    /// How each endpoint the request may reach is reached, if the mesh is on.
    pub wires: Vec<EndpointWire>,
}

fn resolve_target(state: &ClusterState, caller_ns: &str, to: &str) -> anyhow::Result<(String, String, Option<u16>)> {
    let (host, port) = match to.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
            (h, Some(p.parse::<u16>().with_context(|| format!("invalid port in {to:?}"))?))
        }
        _ => (to, None),
    };
    let mut parts = host.split('.');
    let name = parts.next().filter(|n| !n.is_empty()).ok_or_else(|| anyhow!("no Service name in {to:?}"))?;
    let ns = parts.next().filter(|n| !n.is_empty()).unwrap_or(caller_ns);
    if state.service(ns, name).is_none() {
        bail!("Service {ns}/{name} not found");
    }
    Ok((ns.to_string(), name.to_string(), port))
}

/// [`explain_in`] for the default trust domain (`cluster.local`).
pub fn explain(
    state: &ClusterState,
    from: (&str, &str),
    to: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
) -> anyhow::Result<Explanation> {
    let trust_domain = ambit_proxy_core::identity::TrustDomain::new("cluster.local")?;
    explain_in(state, from, to, method, path, headers, &trust_domain)
}

/// Explains a request from pod `from = (namespace, pod)` to `to` (`svc[.ns][:port]`, or
/// `clusterIP:port`). `path` may carry a `?query`. The caller counts as enrolled when its
/// namespace is enrolled and the pod (if it is in the store) does not opt out. The
/// wire to each endpoint is told for a mesh with identities in `trust_domain`.
pub fn explain_in(
    state: &ClusterState,
    from: (&str, &str),
    to: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    trust_domain: &ambit_proxy_core::identity::TrustDomain,
) -> anyhow::Result<Explanation> {
    let (caller_ns, caller_pod) = from;
    let method = Method::from_str(method).with_context(|| format!("invalid method {method:?}"))?;
    let mut header_map = HeaderMap::new();
    for (name, value) in headers {
        let n = HeaderName::from_str(name).with_context(|| format!("invalid header name {name:?}"))?;
        let v = HeaderValue::from_str(value).with_context(|| format!("invalid value for header {name:?}"))?;
        header_map.append(n, v);
    }
    let no_cgroups = |_: &str, _: Option<&str>| None;
    let translation = translate::translate(state, &NodeView { node_name: None, cgroups: &no_cgroups });
    let config = translation.config;

    let (dialled, service) = if let Ok(addr) = to.parse::<SocketAddr>() {
        let sp = config.service(addr).ok_or_else(|| anyhow!("no Service port at {addr}"))?;
        (addr, sp.clone())
    } else {
        let (ns, name, port) = resolve_target(state, caller_ns, to)?;
        let mut candidates: Vec<(SocketAddr, &Arc<ServicePort>)> = config
            .services
            .iter()
            .filter(|(_, sp)| &*sp.service.namespace == ns.as_str() && &*sp.service.name == name.as_str())
            .map(|(a, sp)| (*a, sp))
            .collect();
        candidates.sort_by_key(|(a, _)| (a.is_ipv6(), *a));
        if candidates.is_empty() {
            bail!("Service {ns}/{name} has no cluster IP and TCP port: it is not redirected");
        }
        let port = match port {
            Some(p) => p,
            None => {
                let mut ports: Vec<u16> = candidates.iter().map(|(a, _)| a.port()).collect();
                ports.dedup();
                if ports.len() == 1 {
                    ports[0]
                } else if ports.contains(&80) {
                    80
                } else {
                    bail!("Service {ns}/{name} has several ports {ports:?}: say which one (svc:port)");
                }
            }
        };
        let (addr, sp) = candidates
            .into_iter()
            .find(|(a, _)| a.port() == port)
            .ok_or_else(|| anyhow!("Service {ns}/{name} has no TCP port {port}"))?;
        (addr, sp.clone())
    };

    let pod = state.pods.get(&ObjectKey::new(caller_ns, caller_pod));
    let ns_enrolled = state.namespace_enrolled(caller_ns);
    let (caller_enrolled, caller_note) = match pod {
        _ if !ns_enrolled => (false, format!("namespace {caller_ns} is not labelled {}={}", crate::MESH_LABEL, crate::MESH_ENABLED)),
        Some(p) if translate::pod_opted_out(p) => (false, format!("pod is annotated {}=disabled", crate::MESH_POD_ANNOTATION)),
        Some(p) if !translate::pod_in_mesh(state, p) => (false, "pod has finished".to_string()),
        Some(_) => (true, format!("namespace {caller_ns} is enrolled")),
        None => (true, format!("namespace {caller_ns} is enrolled (pod not in the manifests: assumed enrolled)")),
    };

    let (path_only, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let path_only = if path_only.is_empty() { "/" } else { path_only };
    // Routed as the proxy routes it: on the normalised path.
    let path_only = normalize_path(path_only).map_err(|e| anyhow!("{e} (the proxy answers 400)"))?;
    let outcome = if !caller_enrolled {
        Outcome::NotRedirected
    } else {
        let request = RequestView { method: &method, path: &path_only, query, headers: &header_map };
        let consumer = service.routes.consumers.contains_key(caller_ns) || service.routes.l4_consumers.contains_key(caller_ns);
        let scope = if consumer { ScopeUsed::Consumer } else { ScopeUsed::Producer };
        if let Some(routes) = service.routes.l4_for_caller(caller_ns) {
            Outcome::Connection { scope, routes: routes.clone() }
        } else {
        match service.routes.decide(caller_ns, &request) {
            Decision::NoRoutes => Outcome::NoRoutes,
            Decision::NoMatch => Outcome::NoMatch { scope },
            Decision::Matched(m) => {
                Outcome::Matched { scope, rule: m.rule.clone(), match_index: m.match_index() }
            }
        }
        }
    };
    let endpoints = reachable_endpoints(&outcome, &service);
    let wires = wire::wires(state, &ObjectKey::new(caller_ns, caller_pod), &endpoints, trust_domain);
    Ok(Explanation {
        wires,
        service,
        dialled,
        caller_namespace: caller_ns.to_string(),
        caller_pod: caller_pod.to_string(),
        caller_enrolled,
        caller_note,
        method,
        path: path.to_string(),
        outcome,
    })
}

/// The endpoints the outcome may send the request to (none when it is answered by the
/// proxy or not redirected).
fn reachable_endpoints(outcome: &Outcome, service: &ServicePort) -> Vec<SocketAddr> {
    let of_target = |t: &BackendTarget| match t {
        BackendTarget::Service(s) => s.endpoints.addrs().to_vec(),
        BackendTarget::Invalid { .. } => Vec::new(),
    };
    let mut endpoints: Vec<SocketAddr> = match outcome {
        Outcome::NotRedirected | Outcome::NoMatch { .. } => Vec::new(),
        Outcome::NoRoutes => service.endpoints.addrs().to_vec(),
        Outcome::Connection { routes, .. } => {
            routes.routes().into_iter().flat_map(|(_, r)| r.backends.backends().iter().flat_map(|b| of_target(&b.target))).collect()
        }
        Outcome::Matched { rule, .. } => match &rule.action {
            RuleAction::Redirect(_) => Vec::new(),
            RuleAction::Forward(fw) => fw.backends.backends().iter().flat_map(|b| of_target(&b.target)).collect(),
        },
    };
    endpoints.sort();
    endpoints.dedup();
    endpoints
}

fn string_match(m: &StringMatch) -> String {
    match m {
        StringMatch::Exact(v) => format!("= {v:?}"),
        StringMatch::Regex(r) => format!("~ /{}/", r.as_str()),
    }
}

fn describe_match(m: &RouteMatch) -> String {
    let mut parts = Vec::new();
    match &m.path {
        None => parts.push("any path".to_string()),
        Some(PathMatch::Exact(p)) => parts.push(format!("path = {p:?}")),
        Some(PathMatch::Prefix(p)) => parts.push(format!("path prefix {p:?}")),
        Some(PathMatch::Regex(r)) => parts.push(format!("path ~ /{}/", r.as_str())),
    }
    if let Some(method) = &m.method {
        parts.push(format!("method {method}"));
    }
    for h in &m.headers {
        parts.push(format!("header {} {}", h.name, string_match(&h.value)));
    }
    for q in &m.query {
        parts.push(format!("query {} {}", q.name, string_match(&q.value)));
    }
    parts.join(", ")
}

fn describe_headers(what: &str, m: &HeaderModifier) -> String {
    let pairs = |v: &[(HeaderName, HeaderValue)]| {
        v.iter().map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v.as_bytes()))).collect::<Vec<_>>().join(", ")
    };
    let mut out = format!("{what}:");
    if !m.set.is_empty() {
        out.push_str(&format!(" set [{}]", pairs(&m.set)));
    }
    if !m.add.is_empty() {
        out.push_str(&format!(" add [{}]", pairs(&m.add)));
    }
    if !m.remove.is_empty() {
        out.push_str(&format!(" remove [{}]", m.remove.iter().map(HeaderName::as_str).collect::<Vec<_>>().join(", ")));
    }
    out
}

fn describe_target(t: &BackendTarget) -> String {
    match t {
        BackendTarget::Service(s) => {
            let eps: Vec<String> = s.endpoints.addrs().iter().map(ToString::to_string).collect();
            format!("Service {}:{} ({:?}), endpoints [{}]", s.service, s.port, s.protocol, eps.join(", "))
        }
        BackendTarget::Invalid { reason } => format!("INVALID ({reason}): answers 500"),
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_outcome(f)?;
        if !self.wires.is_empty() {
            writeln!(f, "Wire (with the mesh on; without a certificate source every call is plaintext):")?;
            for wire in &self.wires {
                writeln!(f, "  {wire}")?;
            }
        }
        Ok(())
    }
}

impl Explanation {
    fn fmt_outcome(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sp = &self.service;
        writeln!(
            f,
            "Service:  {} port {}{} ({:?}) dialled at {}",
            sp.service,
            sp.port,
            sp.port_name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default(),
            sp.protocol,
            self.dialled
        )?;
        writeln!(f, "Caller:   {}/{} — {}", self.caller_namespace, self.caller_pod, self.caller_note)?;
        writeln!(f, "Request:  {} {}", self.method, self.path)?;
        let scope_text = |s: &ScopeUsed| match s {
            ScopeUsed::Consumer => format!("consumer routes of namespace {}", self.caller_namespace),
            ScopeUsed::Producer => format!("producer routes of namespace {}", sp.service.namespace),
        };
        let endpoints: Vec<String> = sp.endpoints.addrs().iter().map(ToString::to_string).collect();
        match &self.outcome {
            Outcome::NotRedirected => {
                writeln!(f, "Outcome:  not redirected (caller not enrolled): the connection goes straight to the Service")
            }
            Outcome::NoRoutes => writeln!(
                f,
                "Outcome:  no routes apply: forwarded to the Service's endpoints [{}]",
                endpoints.join(", ")
            ),
            Outcome::Connection { scope, routes } => {
                writeln!(f, "Scope:    {}", scope_text(scope))?;
                writeln!(f, "Outcome:  routed per connection by {}s (the request is not looked at); bytes pass through unchanged", routes.kind())?;
                if routes.needs_server_name() {
                    writeln!(f, "  the ClientHello's server name picks the route (exact, then longest wildcard); no match or no server name: reset")?;
                } else {
                    writeln!(f, "  the first route carries every connection")?;
                }
                for (hostnames, route) in routes.routes() {
                    let hosts: Vec<String> = hostnames.iter().map(ToString::to_string).collect();
                    writeln!(f, "  {} rule {} hostnames [{}]", route.route(), route.index, hosts.join(", "))?;
                    if route.backends.backends().is_empty() {
                        writeln!(f, "    no backendRefs: connections are reset")?;
                    }
                    for b in route.backends.backends() {
                        writeln!(f, "    backend weight {}: {}", b.weight, describe_target(&b.target))?;
                    }
                }
                Ok(())
            }
            Outcome::NoMatch { scope } => {
                writeln!(f, "Scope:    {}", scope_text(scope))?;
                writeln!(f, "Outcome:  NoMatch: no rule matches, the proxy answers 404")
            }
            Outcome::Matched { scope, rule, match_index } => {
                writeln!(f, "Scope:    {}", scope_text(scope))?;
                write!(f, "Matched:  {} rule {}", rule.route(), rule.index)?;
                if let Some(name) = &rule.name {
                    write!(f, " ({name})")?;
                }
                writeln!(f)?;
                match match_index {
                    Some(i) => writeln!(f, "  because match {i}: {}", describe_match(&rule.matches[*i]))?,
                    None => writeln!(f, "  because the rule has no matches (matches everything)")?,
                }
                if let Some(m) = &rule.filters.request_headers {
                    writeln!(f, "  {}", describe_headers("request headers", m))?;
                }
                if let Some(m) = &rule.filters.response_headers {
                    writeln!(f, "  {}", describe_headers("response headers", m))?;
                }
                if let Some(cors) = &rule.filters.cors {
                    let origins: Vec<String> = cors.origins().iter().map(ToString::to_string).collect();
                    let credentials = if cors.allows_credentials() { ", credentials allowed" } else { "" };
                    writeln!(f, "  CORS: origins [{}]{credentials}; preflights answered by the proxy", origins.join(", "))?;
                }
                for mirror in &rule.filters.mirrors {
                    writeln!(f, "  mirror {:.0}% to {}", mirror.fraction * 100.0, describe_target(&mirror.backend))?;
                }
                if rule.timeouts.request.is_some() || rule.timeouts.backend_request.is_some() {
                    writeln!(f, "  timeouts: request {:?}, backendRequest {:?}", rule.timeouts.request, rule.timeouts.backend_request)?;
                }
                if let Some(retry) = &rule.retry {
                    let codes: Vec<u16> = retry.codes.iter().collect();
                    writeln!(f, "  retry: {} attempts, backoff {:?}, codes {codes:?}", retry.attempts, retry.backoff)?;
                }
                match &rule.action {
                    RuleAction::Redirect(r) => writeln!(
                        f,
                        "  redirect {}: scheme {:?} hostname {:?} port {:?} path {:?}",
                        r.status.status().as_u16(),
                        r.scheme,
                        r.hostname,
                        r.port,
                        r.path
                    ),
                    RuleAction::Forward(fw) => {
                        if let Some(rw) = &fw.rewrite {
                            writeln!(f, "  rewrite: hostname {:?} path {:?}", rw.hostname, rw.path)?;
                        }
                        if fw.backends.backends().is_empty() {
                            writeln!(f, "  no backendRefs: answers 500")?;
                        }
                        for b in fw.backends.backends() {
                            writeln!(f, "  backend weight {}: {}", b.weight, describe_target(&b.target))?;
                            if let Some(m) = &b.filters.request_headers {
                                writeln!(f, "    {}", describe_headers("request headers", m))?;
                            }
                            if let Some(m) = &b.filters.response_headers {
                                writeln!(f, "    {}", describe_headers("response headers", m))?;
                            }
                        }
                        Ok(())
                    }
                }
            }
        }
    }
}
