//! GAMMA routes compiled for the data path: matches, precedence, rules, filters and
//! weighted backends. Built by the agent from HTTPRoute/GRPCRoute resources (evaluated
//! per request) and TLSRoute/TCPRoute resources (evaluated per connection).

mod backend;
mod compact;
pub mod cors;
mod filters;
mod l4;
mod labels;
mod list;
mod matching;
mod path_normalize;
mod pattern;
mod retry;
mod rule;
#[cfg(test)]
pub(crate) mod test_support;

pub use backend::{BackendFilters, BackendSet, BackendTarget, ServiceBackend, WeightedBackend};
pub use cors::{CorsConfig, CorsOutcome, CorsPolicy, InvalidCors, ResponseCors};
pub use filters::{HeaderModifier, Mirror, PathModifier, Redirect, RedirectStatus, UrlRewrite};
pub use l4::{HostnameMatch, InvalidHostname, L4Route, L4Routes, TlsRoute, TlsTable};
pub use labels::RuleLabels;
pub use list::{MatchedRule, RouteList};
pub use matching::{
    grpc_method_match, query_param, HeaderMatch, PathMatch, QueryMatch, RequestView, RouteMatch, StringMatch,
};
pub use pattern::{
    compile_anchored, PatternError, RegexBudget, CONFIG_REGEX_BUDGET, PATTERN_DFA_LIMIT, PATTERN_SIZE_LIMIT,
};
pub use path_normalize::{normalize_path, InvalidPath};
pub use retry::{
    grpc_http_code, InvalidRetryCode, RetryCodes, RetryPolicy, BACKOFF_CAP_FACTOR, DEFAULT_ATTEMPTS, DEFAULT_BACKOFF, MAX_ATTEMPTS,
};
pub use rule::{Forward, RouteKind, RouteMeta, RouteRef, Rule, RuleAction, RuleFilters, Timeouts};
