//! Requester identities: bearer tokens the test registers, each mapped to a user as the
//! real API server's authenticators would map it. A request without a token is
//! anonymous (`system:anonymous`), which this server, having no authorization, still
//! serves as before; a request with an unknown token is refused with 401, as a real
//! server refuses one.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// The extra key a bound service-account token carries its pod's node in.
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";

/// Who made a request: what a CSR's `spec.username`, `uid`, `groups` and `extra` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    /// The anonymous user of a request without credentials.
    pub fn anonymous() -> Self {
        Self { name: "system:anonymous".into(), uid: String::new(), groups: vec!["system:unauthenticated".into()], extra: BTreeMap::new() }
    }

    /// A service account's token (not bound to a pod): `system:serviceaccount:NS:NAME`.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            uid: format!("uid-sa-{namespace}-{name}"),
            groups: vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{namespace}"), "system:authenticated".into()],
            extra: BTreeMap::new(),
        }
    }

    /// The same account's token bound to a pod on `node` (as projected tokens are):
    /// the extra fields name the pod and its node.
    pub fn bound_to_pod(mut self, pod: &str, node: &str) -> Self {
        self.extra.insert("authentication.kubernetes.io/pod-name".into(), vec![pod.into()]);
        self.extra.insert(NODE_NAME_EXTRA.into(), vec![node.into()]);
        self
    }

    /// A plain user (e.g. an administrator with a client certificate).
    pub fn named(name: &str, groups: &[&str]) -> Self {
        Self { name: name.into(), uid: String::new(), groups: groups.iter().map(|g| g.to_string()).collect(), extra: BTreeMap::new() }
    }

    /// Sets a CSR's requester fields to this user, replacing whatever the client sent.
    pub(crate) fn stamp_csr(&self, object: &mut Value) {
        if !object.get("spec").is_some_and(Value::is_object) {
            object["spec"] = json!({});
        }
        let spec = &mut object["spec"];
        spec["username"] = json!(self.name);
        spec["groups"] = json!(self.groups);
        let map = spec.as_object_mut().expect("made an object above");
        if self.uid.is_empty() {
            map.remove("uid");
        } else {
            map.insert("uid".into(), json!(self.uid));
        }
        if self.extra.is_empty() {
            map.remove("extra");
        } else {
            map.insert("extra".into(), json!(self.extra));
        }
    }
}

/// The user a request acts as: its impersonation headers (`Impersonate-User`,
/// `-Group`, `-Uid`, `-Extra-<key>`; kubectl sends them for a kubeconfig's `as`, since it
/// sends no bearer token over plain HTTP; with no authorization here anyone may
/// impersonate), else its bearer token. `Err(())` for an unknown token.
pub(crate) fn requester(headers: &http::HeaderMap, tokens: &BTreeMap<String, User>) -> Result<User, ()> {
    if let Some(user) = impersonated(headers) {
        return Ok(user);
    }
    let authorization = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    Ok(authenticate(authorization, tokens)?.unwrap_or_else(User::anonymous))
}

fn impersonated(headers: &http::HeaderMap) -> Option<User> {
    let text = |v: &http::HeaderValue| v.to_str().ok().map(str::to_string);
    let name = headers.get("impersonate-user").and_then(text)?;
    let mut user = User::named(&name, &[]);
    user.groups = headers.get_all("impersonate-group").iter().filter_map(text).collect();
    user.uid = headers.get("impersonate-uid").and_then(text).unwrap_or_default();
    for (key, value) in headers {
        if let (Some(extra), Some(value)) = (key.as_str().strip_prefix("impersonate-extra-"), text(value)) {
            user.extra.entry(crate::server::percent_decode(extra)).or_default().push(value);
        }
    }
    Some(user)
}

/// The user of a request from its `Authorization` header: `Ok(None)` without one,
/// `Err(())` for a token that is not registered (or another scheme).
pub(crate) fn authenticate(header: Option<&str>, tokens: &BTreeMap<String, User>) -> Result<Option<User>, ()> {
    let Some(header) = header else { return Ok(None) };
    let token = header.strip_prefix("Bearer ").ok_or(())?.trim();
    tokens.get(token).cloned().map(Some).ok_or(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_users_and_unknown_ones_are_refused() {
        let agent = User::service_account("ambit-system", "ambit-agent").bound_to_pod("agent-x", "node-x");
        let tokens = BTreeMap::from([("t1".to_string(), agent.clone())]);
        assert_eq!(authenticate(Some("Bearer t1"), &tokens), Ok(Some(agent)));
        assert_eq!(authenticate(None, &tokens), Ok(None));
        assert_eq!(authenticate(Some("Bearer t2"), &tokens), Err(()));
        assert_eq!(authenticate(Some("Basic dTpw"), &tokens), Err(()));
    }

    #[test]
    fn stamping_replaces_what_the_client_claimed() {
        let mut csr = json!({"spec": {"username": "system:admin", "extra": {"x": ["y"]}, "request": "AA=="}});
        User::anonymous().stamp_csr(&mut csr);
        assert_eq!(csr["spec"]["username"], "system:anonymous");
        assert!(csr["spec"].get("extra").is_none());
        assert_eq!(csr["spec"]["request"], "AA==");
    }
}
