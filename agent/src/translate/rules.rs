//! Compiling HTTPRoute and GRPCRoute rules into proxy-core [`Rule`]s, with validation.
//!
//! An invalid rule is dropped and reported; the route's other rules keep serving
//! (the spec's "Drop Rule(s)" option for PartiallyInvalid routes). A route whose rules
//! are all invalid is not accepted. A backendRef that cannot be resolved keeps its
//! rule (requests sent to it get 500) and sets ResolvedRefs=False. An ExtensionRef
//! filter (none is supported) must not be skipped: its rule answers 500.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;

use ambit_proxy_core::routes::{
    grpc_method_match, BackendFilters, BackendSet, BackendTarget, Forward, HeaderMatch, HeaderModifier, Mirror,
    PathMatch, PathModifier, QueryMatch, Redirect, RedirectStatus, RegexBudget, RouteKind, RouteMatch, RouteMeta, Rule,
    RuleAction, RuleFilters, StringMatch, Timeouts, UrlRewrite, WeightedBackend,
};
use ambit_proxy_core::rate_limited_log::{RateLimitedLog, DEFAULT_INTERVAL};
use http::{HeaderName, HeaderValue, Method};

use super::backends::{resolve, RefProblem};
use super::cors::cors_policy;
use super::fields::check_rule_fields;
use super::retry::retry_policy;
use super::services::ServiceIndex;
use super::spec::*;
use super::status::Reason;

/// Why a rule was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    pub reason: Reason,
    pub message: String,
}

pub(super) fn invalid(message: impl Into<String>) -> RuleError {
    RuleError { reason: Reason::UnsupportedValue, message: message.into() }
}

/// A dropped rule: its index, name and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedRule {
    pub index: usize,
    pub name: Option<String>,
    pub error: RuleError,
}

/// A route's rules, compiled once and shared by all its parents.
#[derive(Debug)]
pub struct CompiledRoute {
    pub kind: RouteKind,
    pub rules: Vec<Arc<Rule>>,
    pub dropped: Vec<DroppedRule>,
    pub ref_problems: Vec<RefProblem>,
    /// The route could not be read at all (every rule counts as dropped).
    pub unreadable: Option<String>,
}

impl CompiledRoute {
    /// The route has rules and every one of them was dropped (or it was unreadable).
    pub fn all_dropped(&self) -> bool {
        self.unreadable.is_some() || (self.rules.is_empty() && !self.dropped.is_empty())
    }
}

/// The match type of a route kind.
pub trait MatchSpec {
    /// Compiles the match; its regular expressions charge the configuration's `regexes`.
    fn compile(&self, regexes: &RegexBudget) -> Result<RouteMatch, RuleError>;
    /// The path match type for ReplacePrefixMatch validation (None: no path match).
    fn path_type(&self) -> Option<&str>;
}

fn string_match(spec: &ValueMatchSpec, what: &str, regexes: &RegexBudget) -> Result<StringMatch, RuleError> {
    match spec.type_.as_deref().unwrap_or("Exact") {
        "Exact" => Ok(StringMatch::Exact(spec.value.clone())),
        "RegularExpression" => StringMatch::regex_within(&spec.value, regexes)
            .map_err(|e| invalid(format!("{what} {:?}: invalid regular expression {:?}: {e}", spec.name, spec.value))),
        other => Err(invalid(format!("{what} {:?}: unsupported match type {other:?}", spec.name))),
    }
}

fn header_matches(specs: &[ValueMatchSpec], regexes: &RegexBudget) -> Result<Vec<HeaderMatch>, RuleError> {
    specs
        .iter()
        .map(|h| {
            let name = HeaderName::from_str(&h.name).map_err(|_| invalid(format!("invalid header name {:?}", h.name)))?;
            Ok(HeaderMatch { name, value: string_match(h, "header", regexes)? })
        })
        .collect()
}

impl MatchSpec for HttpMatchSpec {
    fn compile(&self, regexes: &RegexBudget) -> Result<RouteMatch, RuleError> {
        let path = match &self.path {
            None => None,
            Some(p) => {
                let value = p.value.clone().unwrap_or_else(|| "/".to_string());
                Some(match p.type_.as_deref().unwrap_or("PathPrefix") {
                    "Exact" | "PathPrefix" if !value.starts_with('/') => {
                        return Err(invalid(format!("path {value:?} must start with '/'")));
                    }
                    "Exact" => PathMatch::Exact(value),
                    "PathPrefix" => PathMatch::Prefix(value),
                    "RegularExpression" => PathMatch::regex_within(&value, regexes)
                        .map_err(|e| invalid(format!("path: invalid regular expression {value:?}: {e}")))?,
                    other => return Err(invalid(format!("unsupported path match type {other:?}"))),
                })
            }
        };
        let method = match &self.method {
            None => None,
            Some(m) => Some(Method::from_str(m).map_err(|_| invalid(format!("invalid method {m:?}")))?),
        };
        let query = self
            .query_params
            .iter()
            .map(|q| Ok(QueryMatch { name: q.name.clone(), value: string_match(q, "query parameter", regexes)? }))
            .collect::<Result<Vec<_>, RuleError>>()?;
        Ok(RouteMatch { path, method, headers: header_matches(&self.headers, regexes)?, query })
    }

    fn path_type(&self) -> Option<&str> {
        self.path.as_ref().map(|p| p.type_.as_deref().unwrap_or("PathPrefix"))
    }
}

impl MatchSpec for GrpcMatchSpec {
    fn compile(&self, regexes: &RegexBudget) -> Result<RouteMatch, RuleError> {
        let path = match &self.method {
            None => None,
            Some(m) => {
                let regex = match m.type_.as_deref().unwrap_or("Exact") {
                    "Exact" => false,
                    "RegularExpression" => true,
                    other => return Err(invalid(format!("unsupported gRPC method match type {other:?}"))),
                };
                let service = m.service.as_deref().filter(|s| !s.is_empty());
                let method = m.method.as_deref().filter(|s| !s.is_empty());
                if service.is_none() && method.is_none() {
                    return Err(invalid("a gRPC method match must set service or method"));
                }
                if !regex && [service, method].into_iter().flatten().any(|p| p.contains('/')) {
                    return Err(invalid("gRPC service and method names cannot contain '/'"));
                }
                Some(
                    grpc_method_match(service, method, regex, regexes)
                        .map_err(|e| invalid(format!("gRPC method match: invalid regular expression: {e}")))?,
                )
            }
        };
        Ok(RouteMatch { path, method: None, headers: header_matches(&self.headers, regexes)?, query: vec![] })
    }

    fn path_type(&self) -> Option<&str> {
        None
    }
}

fn header_modifier(spec: &HeaderModifierSpec) -> Result<HeaderModifier, RuleError> {
    let pair = |nv: &NameValue| -> Result<(HeaderName, HeaderValue), RuleError> {
        let name = HeaderName::from_str(&nv.name).map_err(|_| invalid(format!("invalid header name {:?}", nv.name)))?;
        let value = HeaderValue::from_str(&nv.value).map_err(|_| invalid(format!("invalid value for header {:?}", nv.name)))?;
        Ok((name, value))
    };
    let remove = spec
        .remove
        .iter()
        .map(|n| HeaderName::from_str(n).map_err(|_| invalid(format!("invalid header name {n:?}"))))
        .collect::<Result<_, _>>()?;
    Ok(HeaderModifier {
        set: spec.set.iter().map(pair).collect::<Result<_, _>>()?,
        add: spec.add.iter().map(pair).collect::<Result<_, _>>()?,
        remove,
    })
}

fn path_modifier(spec: &PathModifierSpec) -> Result<PathModifier, RuleError> {
    match spec.type_.as_str() {
        "ReplaceFullPath" => match &spec.replace_full_path {
            Some(p) => Ok(PathModifier::ReplaceFullPath(p.clone())),
            None => Err(invalid("ReplaceFullPath needs replaceFullPath")),
        },
        "ReplacePrefixMatch" => match &spec.replace_prefix_match {
            Some(p) => Ok(PathModifier::ReplacePrefixMatch(p.clone())),
            None => Err(invalid("ReplacePrefixMatch needs replacePrefixMatch")),
        },
        other => Err(invalid(format!("unsupported path modifier type {other:?}"))),
    }
}

fn redirect(spec: &RedirectSpec) -> Result<Redirect, RuleError> {
    let scheme = match spec.scheme.as_deref() {
        None => None,
        Some(s @ ("http" | "https")) => Some(s.to_string()),
        Some(other) => return Err(invalid(format!("unsupported redirect scheme {other:?}"))),
    };
    let port = match spec.port {
        None => None,
        Some(p) => Some(u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| invalid(format!("invalid redirect port {p}")))?),
    };
    let code = spec.status_code.unwrap_or(302);
    let status = u16::try_from(code)
        .ok()
        .and_then(RedirectStatus::from_code)
        .ok_or_else(|| invalid(format!("unsupported redirect status code {code}")))?;
    Ok(Redirect {
        scheme,
        hostname: spec.hostname.clone().filter(|h| !h.is_empty()),
        port,
        path: spec.path.as_ref().map(path_modifier).transpose()?,
        status,
    })
}

fn fraction(spec: &MirrorSpec) -> Result<f64, RuleError> {
    match (spec.percent, &spec.fraction) {
        (Some(_), Some(_)) => Err(invalid("RequestMirror: set percent or fraction, not both")),
        (Some(p), None) if (0..=100).contains(&p) => Ok(p as f64 / 100.0),
        (Some(p), None) => Err(invalid(format!("RequestMirror: percent {p} is not in 0..100"))),
        (None, Some(f)) => {
            let den = f.denominator.unwrap_or(100);
            if den <= 0 || f.numerator < 0 || f.numerator > den {
                Err(invalid(format!("RequestMirror: invalid fraction {}/{den}", f.numerator)))
            } else {
                Ok(f.numerator as f64 / den as f64)
            }
        }
        (None, None) => Ok(1.0),
    }
}

fn duration(value: Option<&str>, what: &str) -> Result<Option<std::time::Duration>, RuleError> {
    let Some(text) = value else { return Ok(None) };
    let d = gateway_api::Duration::from_str(text).map_err(|e| invalid(format!("timeouts.{what} {text:?}: {e}")))?;
    // A zero timeout disables the timeout (GEP-1742).
    Ok((!d.is_zero()).then(|| std::time::Duration::new(d.as_secs(), d.subsec_nanos())))
}

/// What a route's rules need from the outside world.
pub struct RuleCtx<'a> {
    pub kind: RouteKind,
    pub services: &'a ServiceIndex,
    pub route_ns: &'a str,
    pub meta: &'a RouteMeta,
    /// The configuration's compiled-regex budget, shared by every route.
    pub regexes: &'a RegexBudget,
}

const ONCE_ONLY: [&str; 5] = ["RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite", "CORS"];

/// Compiles one rule. Backend resolution problems go to `problems` and do not fail the rule.
pub fn compile_rule<M: MatchSpec>(
    ctx: &RuleCtx<'_>,
    index: usize,
    spec: &RuleSpec<M>,
    problems: &mut Vec<RefProblem>,
) -> Result<Rule, RuleError> {
    check_rule_fields(&spec.other)?;
    let matches = spec.matches.iter().map(|m| m.compile(ctx.regexes)).collect::<Result<Vec<_>, _>>()?;

    let mut filters = RuleFilters::default();
    let mut redirect_action = None;
    let mut rewrite = None;
    let mut unresolved_extension = None;
    let mut seen = HashSet::new();
    for filter in &spec.filters {
        let t = filter.type_.as_str();
        if ONCE_ONLY.contains(&t) && !seen.insert(t) {
            return Err(invalid(format!("filter {t} may appear only once per rule")));
        }
        let grpc = ctx.kind == RouteKind::Grpc;
        let missing = || invalid(format!("filter {t} has no configuration"));
        match t {
            "RequestHeaderModifier" => {
                filters.request_headers = Some(header_modifier(filter.request_header_modifier.as_ref().ok_or_else(missing)?)?)
            }
            "ResponseHeaderModifier" => {
                filters.response_headers = Some(header_modifier(filter.response_header_modifier.as_ref().ok_or_else(missing)?)?)
            }
            "RequestRedirect" if !grpc => redirect_action = Some(redirect(filter.request_redirect.as_ref().ok_or_else(missing)?)?),
            "URLRewrite" if !grpc => {
                let spec = filter.url_rewrite.as_ref().ok_or_else(missing)?;
                rewrite = Some(UrlRewrite {
                    hostname: spec.hostname.clone().filter(|h| !h.is_empty()),
                    path: spec.path.as_ref().map(path_modifier).transpose()?,
                });
            }
            "RequestMirror" => {
                let mirror = filter.request_mirror.as_ref().ok_or_else(missing)?;
                let fraction = fraction(mirror)?;
                let backend = resolve(ctx.services, ctx.route_ns, &mirror.backend_ref, problems);
                filters.mirrors.push(Mirror { backend, fraction });
            }
            "CORS" if !grpc => filters.cors = Some(cors_policy(filter.cors.as_ref().ok_or_else(missing)?)?),
            "ExtensionRef" => {
                let ext = filter.extension_ref.clone().unwrap_or_default();
                let message = format!("ExtensionRef filter {}/{} {:?} is not supported", ext.group, ext.kind, ext.name);
                problems.push(RefProblem { reason: Reason::InvalidKind, message: message.clone() });
                unresolved_extension = Some(message);
            }
            other => return Err(invalid(format!("filter type {other:?} is not supported by {}", ctx.kind))),
        }
    }

    if redirect_action.is_some() && rewrite.is_some() {
        return Err(invalid("RequestRedirect and URLRewrite cannot be used together"));
    }
    if redirect_action.is_some() && !spec.backend_refs.is_empty() {
        return Err(invalid("RequestRedirect cannot be used with backendRefs"));
    }
    let prefix_rewrite = redirect_action.as_ref().and_then(|r| r.path.as_ref()).into_iter().chain(rewrite.as_ref().and_then(|r| r.path.as_ref()));
    let uses_prefix = prefix_rewrite.into_iter().any(|p| matches!(p, PathModifier::ReplacePrefixMatch(_)));
    if uses_prefix && spec.matches.iter().any(|m| m.path_type().is_some_and(|t| t != "PathPrefix")) {
        return Err(invalid("ReplacePrefixMatch is only allowed with a PathPrefix path match"));
    }

    let mut backends = Vec::with_capacity(spec.backend_refs.len());
    for backend in &spec.backend_refs {
        let weight = match backend.weight {
            None => 1,
            Some(w) => u32::try_from(w).map_err(|_| invalid(format!("backendRef {}: invalid weight {w}", backend.name)))?,
        };
        let mut target = resolve(ctx.services, ctx.route_ns, backend, problems);
        let mut bfilters = BackendFilters::default();
        for filter in &backend.filters {
            let t = filter.type_.as_str();
            let missing = || invalid(format!("backendRef filter {t} has no configuration"));
            match t {
                "RequestHeaderModifier" => {
                    bfilters.request_headers = Some(header_modifier(filter.request_header_modifier.as_ref().ok_or_else(missing)?)?)
                }
                "ResponseHeaderModifier" => {
                    bfilters.response_headers = Some(header_modifier(filter.response_header_modifier.as_ref().ok_or_else(missing)?)?)
                }
                "ExtensionRef" => {
                    let message = format!("backendRef {}: ExtensionRef filter is not supported", backend.name);
                    problems.push(RefProblem { reason: Reason::InvalidKind, message: message.clone() });
                    target = BackendTarget::Invalid { reason: message.into() };
                }
                other => return Err(invalid(format!("backendRef {}: filter {other:?} is not supported", backend.name))),
            }
        }
        backends.push(WeightedBackend { weight, target, filters: bfilters });
    }

    let timeouts = match &spec.timeouts {
        None => Timeouts::default(),
        Some(t) => {
            let timeouts = Timeouts {
                request: duration(t.request.as_deref(), "request")?,
                backend_request: duration(t.backend_request.as_deref(), "backendRequest")?,
            };
            if let (Some(r), Some(b)) = (timeouts.request, timeouts.backend_request) {
                if b > r {
                    return Err(invalid("timeouts.backendRequest must not be longer than timeouts.request"));
                }
            }
            timeouts
        }
    };

    let retry = retry_policy(spec.retry.as_ref())?;

    let action = match (unresolved_extension, redirect_action) {
        (Some(reason), _) => RuleAction::Forward(Forward {
            rewrite: None,
            backends: BackendSet::new(vec![WeightedBackend {
                weight: 1,
                target: BackendTarget::Invalid { reason: reason.into() },
                filters: BackendFilters::default(),
            }]),
        }),
        (None, Some(redirect)) => RuleAction::Redirect(redirect),
        (None, None) => RuleAction::Forward(Forward { rewrite, backends: BackendSet::new(backends) }),
    };

    Ok(Rule {
        meta: ctx.meta.clone(),
        index,
        name: spec.name.as_deref().filter(|n| !n.is_empty()).map(Arc::from),
        matches,
        filters,
        action,
        timeouts,
        retry,
    })
}

/// Compiles every rule of a route.
pub fn compile_route<M: MatchSpec>(ctx: &RuleCtx<'_>, rules: Result<Vec<RuleSpec<M>>, String>) -> CompiledRoute {
    let mut compiled = CompiledRoute {
        kind: ctx.kind,
        rules: vec![],
        dropped: vec![],
        ref_problems: vec![],
        unreadable: None,
    };
    match rules {
        Err(e) => compiled.unreadable = Some(format!("cannot read rules: {e}")),
        Ok(rules) => {
            for (index, spec) in rules.iter().enumerate() {
                match compile_rule(ctx, index, spec, &mut compiled.ref_problems) {
                    Ok(rule) => compiled.rules.push(Arc::new(rule)),
                    Err(error) => {
                        log_dropped(ctx.meta, index, &error);
                        compiled.dropped.push(DroppedRule { index, name: spec.name.clone(), error });
                    }
                }
            }
        }
    }
    compiled
}

/// Logs a dropped rule. Every translation drops it again, so at most one line per
/// interval (the route status always shows every dropped rule).
fn log_dropped(meta: &RouteMeta, index: usize, error: &RuleError) {
    static DROPPED: RateLimitedLog = RateLimitedLog::new(DEFAULT_INTERVAL);
    if let Some(suppressed) = DROPPED.admit() {
        tracing::warn!(route = %meta.route, rule = index, error = %error.message, suppressed, "route rule dropped");
    }
}
