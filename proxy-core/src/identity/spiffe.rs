//! Workload identities: SPIFFE IDs of the form
//! `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`, one per Kubernetes
//! service account, as Istio uses them.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A SPIFFE trust domain: lower-case letters, digits, `.`, `-` and `_`, 1 to 255 bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct TrustDomain(Arc<str>);

impl TrustDomain {
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        let valid = !name.is_empty()
            && name.len() <= 255
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'));
        if valid {
            Ok(Self(name.into()))
        } else {
            Err(SpiffeIdError::TrustDomain(name.chars().take(64).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity of the pods of one service account.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    namespace: Arc<str>,
    service_account: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("invalid trust domain {0:?}")]
    TrustDomain(String),
    #[error("not a SPIFFE ID of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>: {0:?}")]
    Form(String),
    #[error("invalid {what} {value:?} in a SPIFFE ID")]
    Segment { what: &'static str, value: String },
}

/// A Kubernetes namespace or service-account name usable as a path segment: non-empty,
/// at most 253 bytes, lower-case alphanumerics, `-` and `.`.
fn valid_segment(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 253
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
}

impl SpiffeId {
    pub fn new(trust_domain: TrustDomain, namespace: &str, service_account: &str) -> Result<Self, SpiffeIdError> {
        for (what, value) in [("namespace", namespace), ("service account", service_account)] {
            if !valid_segment(value) {
                return Err(SpiffeIdError::Segment { what, value: value.chars().take(64).collect() });
            }
        }
        Ok(Self { trust_domain, namespace: namespace.into(), service_account: service_account.into() })
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn service_account(&self) -> &str {
        &self.service_account
    }

    /// The ID as a URI (what an X.509 URI SAN holds).
    pub fn uri(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spiffe://{}/ns/{}/sa/{}", self.trust_domain, self.namespace, self.service_account)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        let form = || SpiffeIdError::Form(uri.chars().take(128).collect());
        let rest = uri.strip_prefix("spiffe://").ok_or_else(form)?;
        let (domain, path) = rest.split_once('/').ok_or_else(form)?;
        let mut segments = path.split('/');
        let (Some("ns"), Some(namespace), Some("sa"), Some(account), None) =
            (segments.next(), segments.next(), segments.next(), segments.next(), segments.next())
        else {
            return Err(form());
        };
        SpiffeId::new(TrustDomain::new(domain)?, namespace, account)
    }
}

impl serde::Serialize for SpiffeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_uri() {
        let id = SpiffeId::new(TrustDomain::new("cluster.local").unwrap(), "shop", "catalog").unwrap();
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/catalog");
        assert_eq!(id.to_string().parse::<SpiffeId>().unwrap(), id);
    }

    #[test]
    fn refuses_malformed_ids() {
        for bad in [
            "spiffe://cluster.local/ns/shop",
            "spiffe://cluster.local/ns/shop/sa/catalog/extra",
            "spiffe://Cluster.local/ns/shop/sa/catalog",
            "spiffe:///ns/shop/sa/catalog",
            "https://cluster.local/ns/shop/sa/catalog",
            "spiffe://cluster.local/ns//sa/catalog",
            "spiffe://cluster.local/ns/shop/sa/Catalog",
            "spiffe://cluster.local/sa/shop/ns/catalog",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad} was accepted");
        }
    }
}
