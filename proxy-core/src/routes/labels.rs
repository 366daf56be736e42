//! The metric and access-log labels of a rule, built once with the route table (not
//! per request).

use std::sync::Arc;

use super::Rule;

/// What a matched rule is called in metrics and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleLabels {
    /// `KIND namespace/name` of the rule's route.
    pub route: Arc<str>,
    /// The rule's name, or its index within the route when unnamed.
    pub rule: Arc<str>,
}

/// Unnamed rules' labels for the first indices, shared by every route.
const SHARED_INDICES: usize = 16;

fn index_label(index: usize) -> Arc<str> {
    static SHARED: std::sync::LazyLock<Vec<Arc<str>>> =
        std::sync::LazyLock::new(|| (0..SHARED_INDICES).map(|i| Arc::from(i.to_string())).collect());
    match SHARED.get(index) {
        Some(label) => label.clone(),
        None => index.to_string().into(),
    }
}

impl RuleLabels {
    /// The labels of `rule`; `previous` (the labels of another rule) lends its route
    /// label when it names the same route, so rules of one route share it.
    pub fn of(rule: &Rule, previous: Option<(&Rule, &RuleLabels)>) -> Self {
        let name = match &rule.name {
            Some(name) => name.clone(),
            None => index_label(rule.index),
        };
        let route = match previous {
            Some((other, labels)) if other.route() == rule.route() => labels.route.clone(),
            _ => rule.route().to_string().into(),
        };
        Self { route, rule: name }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::test_support::{http_rule, prefix};
    use crate::routes::{RequestView, RouteKind, RouteList};

    #[test]
    fn a_matched_rule_carries_its_route_and_rule_labels_built_with_the_list() {
        let mut named = Rule::clone(&http_rule("shop", 1, vec![prefix("/named")]));
        named.name = Some("canary".into());
        let rules = vec![http_rule("shop", 0, vec![prefix("/a")]), Arc::new(named), http_rule("cart", 20, vec![prefix("/c")])];
        let list = RouteList::new(RouteKind::Http, rules);
        let headers = http::HeaderMap::new();
        let labels = |path: &str| {
            let view = RequestView { method: &http::Method::GET, path, query: None, headers: &headers };
            list.find(&view).map(|m| (m.labels.route.to_string(), m.labels.rule.to_string()))
        };
        assert_eq!(labels("/a/x"), Some(("HTTPRoute ns/shop".into(), "0".into())));
        assert_eq!(labels("/named"), Some(("HTTPRoute ns/shop".into(), "canary".into())));
        assert_eq!(labels("/c"), Some(("HTTPRoute ns/cart".into(), "20".into())));
        // Rules of one route share one route label.
        let shop: Vec<&Arc<str>> = list.matches().filter(|m| m.rule.route().name.as_ref() == "shop").map(|m| &m.labels.route).collect();
        assert!(Arc::ptr_eq(shop[0], shop[1]));
    }
}
