//! Compiling TLSRoute and TCPRoute resources into proxy-core [`L4Route`]s.
//!
//! A route's first valid rule carries its connections; further rules are reported as
//! dropped (PartiallyInvalid), since a connection-level route has nothing to choose
//! between its rules by. backendRefs resolve as for HTTPRoute (core Services, `port`
//! required, weights, cross-namespace allowed); an unresolvable one stays in the rule
//! with `ResolvedRefs=False`, and connections sent to it are reset.

use std::sync::Arc;

use ambit_proxy_core::routes::{BackendFilters, BackendSet, HostnameMatch, L4Route, RouteKind, RouteMeta, TlsRoute, WeightedBackend};

use super::backends::resolve;
use super::rules::{CompiledRoute, DroppedRule, RuleError};
use super::services::ServiceIndex;
use super::spec::{HttpMatchSpec, RuleSpec};
use super::status::Reason;

/// A TLSRoute or TCPRoute compiled once and shared by all its parents.
#[derive(Debug)]
pub struct CompiledL4 {
    /// Status facts (kind, dropped rules, reference problems); `rules` stays empty.
    pub status: CompiledRoute,
    /// The route's hostnames (TLSRoute only) and the rule that carries its
    /// connections; None when no rule is valid.
    pub route: Option<TlsRoute>,
}

impl CompiledL4 {
    /// Nothing can be attached: unreadable, or every rule dropped.
    pub fn all_dropped(&self) -> bool {
        self.status.unreadable.is_some() || self.route.is_none()
    }
}

fn unsupported(message: String) -> RuleError {
    RuleError { reason: Reason::UnsupportedValue, message }
}

/// Compiles one TLSRoute (`hostnames` given) or TCPRoute (`hostnames` None).
pub fn compile(
    kind: RouteKind,
    meta: &RouteMeta,
    services: &ServiceIndex,
    route_ns: &str,
    hostnames: Option<&[String]>,
    rules: Result<Vec<RuleSpec<HttpMatchSpec>>, String>,
) -> CompiledL4 {
    let mut status = CompiledRoute { kind, rules: vec![], dropped: vec![], ref_problems: vec![], unreadable: None };
    let hosts = match hostnames.unwrap_or_default().iter().map(|h| HostnameMatch::parse(h)).collect::<Result<Vec<_>, _>>() {
        Ok(hosts) => hosts,
        Err(e) => {
            status.unreadable = Some(e.to_string());
            return CompiledL4 { status, route: None };
        }
    };
    let rules = match rules {
        Err(e) => {
            status.unreadable = Some(format!("cannot read rules: {e}"));
            return CompiledL4 { status, route: None };
        }
        Ok(rules) if rules.is_empty() => {
            status.unreadable = Some(format!("a {kind} needs at least one rule"));
            return CompiledL4 { status, route: None };
        }
        Ok(rules) => rules,
    };
    let mut chosen: Option<Arc<L4Route>> = None;
    for (index, spec) in rules.iter().enumerate() {
        if let Some(first) = &chosen {
            status.dropped.push(DroppedRule {
                index,
                name: spec.name.clone(),
                error: unsupported(format!("only one rule of a {kind} is used (rule {} carries its connections)", first.index)),
            });
            continue;
        }
        match compile_rule(meta, services, route_ns, index, spec, &mut status) {
            Ok(rule) => chosen = Some(Arc::new(rule)),
            Err(error) => status.dropped.push(DroppedRule { index, name: spec.name.clone(), error }),
        }
    }
    CompiledL4 { status, route: chosen.map(|route| TlsRoute { hostnames: hosts, route }) }
}

fn compile_rule(
    meta: &RouteMeta,
    services: &ServiceIndex,
    route_ns: &str,
    index: usize,
    spec: &RuleSpec<HttpMatchSpec>,
    status: &mut CompiledRoute,
) -> Result<L4Route, RuleError> {
    let mut backends = Vec::new();
    for backend in &spec.backend_refs {
        let weight = match backend.weight {
            None => 1,
            Some(w) => u32::try_from(w).map_err(|_| unsupported(format!("backendRef {}: invalid weight {w}", backend.name)))?,
        };
        let target = resolve(services, route_ns, backend, &mut status.ref_problems);
        backends.push(WeightedBackend { weight, target, filters: BackendFilters::default() });
    }
    Ok(L4Route {
        meta: meta.clone(),
        index,
        name: spec.name.as_deref().map(Arc::from),
        backends: BackendSet::new(backends),
    })
}
