//! The signer's decision for one pending CertificateSigningRequest: who asks (an agent,
//! on which node), for which identity, and whether that node runs a pod of it.

use std::time::Duration;

use ambit_proxy_core::identity::{SpiffeId, TrustDomain};
use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;

use super::pods::PodIndex;
use super::request::{requested_identity, ForgedRequest};

/// The `spec.extra` key in which a bound service-account token names its pod's node.
pub const NODE_NAME_EXTRA: &str = "authentication.kubernetes.io/node-name";

/// What the signer accepts.
#[derive(Clone, Debug)]
pub struct Policy {
    pub trust_domain: TrustDomain,
    /// `system:serviceaccount:<agent namespace>:<agent service account>`.
    pub agent_username: String,
    /// The longest certificate signed (a longer `expirationSeconds` is shortened).
    pub max_lifetime: Duration,
}

impl Policy {
    pub fn new(trust_domain: TrustDomain, agent_namespace: &str, agent_service_account: &str, max_lifetime: Duration) -> Self {
        Self { trust_domain, agent_username: format!("system:serviceaccount:{agent_namespace}:{agent_service_account}"), max_lifetime }
    }
}

/// Why a request is denied; `reason()` is the condition's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("the requester {0:?} is not the Ambit agent's service account")]
    NotAnAgent(String),
    #[error("the requester's token names no node (extra {NODE_NAME_EXTRA}): only a pod-bound token of an agent is accepted")]
    NoNode,
    #[error(transparent)]
    Forged(#[from] ForgedRequest),
    #[error("the requested identity {id} is not in the trust domain {trust_domain}")]
    ForeignTrustDomain { id: SpiffeId, trust_domain: TrustDomain },
    #[error("no pod of service account {namespace}/{service_account} runs on node {node}")]
    NotOnNode { namespace: String, service_account: String, node: String },
}

impl Denial {
    /// The CamelCase reason of the Denied condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::NotAnAgent(_) => "RequesterNotAnAgent",
            Denial::NoNode => "RequesterHasNoNode",
            Denial::Forged(_) => "ForgedRequest",
            Denial::ForeignTrustDomain { .. } => "ForeignTrustDomain",
            Denial::NotOnNode { .. } => "IdentityNotOnNode",
        }
    }
}

/// An authorized request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub id: SpiffeId,
    pub node: String,
    pub lifetime: Duration,
}

/// Decides one request. The checks run in order: requester, node, request, trust
/// domain, pod on node; the first failure is the denial.
pub fn decide(spec: &CertificateSigningRequestSpec, policy: &Policy, pods: &PodIndex) -> Result<Approval, Denial> {
    let username = spec.username.as_deref().unwrap_or("");
    if username != policy.agent_username {
        return Err(Denial::NotAnAgent(username.chars().take(128).collect()));
    }
    let node = requester_node(spec).ok_or(Denial::NoNode)?;
    let id = requested_identity(&spec.request.0)?;
    if id.trust_domain() != &policy.trust_domain {
        return Err(Denial::ForeignTrustDomain { id, trust_domain: policy.trust_domain.clone() });
    }
    if !pods.runs_on(id.namespace(), id.service_account(), &node) {
        return Err(Denial::NotOnNode { namespace: id.namespace().into(), service_account: id.service_account().into(), node });
    }
    Ok(Approval { id, node, lifetime: lifetime(spec, policy) })
}

/// The single node named in the requester's extra fields.
fn requester_node(spec: &CertificateSigningRequestSpec) -> Option<String> {
    match spec.extra.as_ref()?.get(NODE_NAME_EXTRA)?.as_slice() {
        [node] if !node.is_empty() => Some(node.clone()),
        _ => None,
    }
}

/// `spec.expirationSeconds` clamped to the policy's maximum (the maximum when absent).
fn lifetime(spec: &CertificateSigningRequestSpec, policy: &Policy) -> Duration {
    match spec.expiration_seconds {
        Some(seconds) if seconds > 0 => Duration::from_secs(seconds as u64).min(policy.max_lifetime),
        _ => policy.max_lifetime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::pods::tests::pod;
    use crate::signer::request::tests::{csr_pem, tampered};

    const ID: &str = "spiffe://cluster.local/ns/shop/sa/catalog";

    fn policy() -> Policy {
        Policy::new(TrustDomain::new("cluster.local").unwrap(), "ambit-system", "ambit-agent", Duration::from_secs(86400))
    }

    fn spec(username: &str, node: Option<&str>, pem: &str, expiration: Option<i32>) -> CertificateSigningRequestSpec {
        let mut spec = CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(pem.as_bytes().to_vec()),
            signer_name: crate::signer::SIGNER_NAME.into(),
            username: Some(username.into()),
            expiration_seconds: expiration,
            ..Default::default()
        };
        if let Some(node) = node {
            spec.extra = Some([(NODE_NAME_EXTRA.to_string(), vec![node.to_string()])].into());
        }
        spec
    }

    fn pods() -> PodIndex {
        let mut index = PodIndex::default();
        index.apply(&pod("shop", "catalog-1", "catalog", "node-1", "Running"));
        index
    }

    const AGENT: &str = "system:serviceaccount:ambit-system:ambit-agent";

    #[test]
    fn approves_an_agent_on_a_node_with_a_pod_of_the_account() {
        let (pem, _) = csr_pem(&[ID], &[]);
        let approval = decide(&spec(AGENT, Some("node-1"), &pem, Some(600)), &policy(), &pods()).unwrap();
        assert_eq!((approval.id.to_string().as_str(), approval.node.as_str(), approval.lifetime), (ID, "node-1", Duration::from_secs(600)));
        let long = decide(&spec(AGENT, Some("node-1"), &pem, Some(10 * 86400)), &policy(), &pods()).unwrap();
        assert_eq!(long.lifetime, Duration::from_secs(86400), "clamped to the maximum");
    }

    #[test]
    fn denies_each_failed_check() {
        let (pem, _) = csr_pem(&[ID], &[]);
        let deny = |s: CertificateSigningRequestSpec| decide(&s, &policy(), &pods()).unwrap_err();
        assert!(matches!(deny(spec("system:serviceaccount:shop:catalog", Some("node-1"), &pem, None)), Denial::NotAnAgent(_)));
        assert_eq!(deny(spec(AGENT, None, &pem, None)), Denial::NoNode);
        assert!(matches!(deny(spec(AGENT, Some("node-2"), &pem, None)), Denial::NotOnNode { .. }));
        assert!(matches!(deny(spec(AGENT, Some("node-1"), &tampered(ID), None)), Denial::Forged(ForgedRequest::BadSignature)));
        let (foreign, _) = csr_pem(&["spiffe://other.domain/ns/shop/sa/catalog"], &[]);
        assert!(matches!(deny(spec(AGENT, Some("node-1"), &foreign, None)), Denial::ForeignTrustDomain { .. }));
        assert_eq!(deny(spec(AGENT, None, &pem, None)).reason(), "RequesterHasNoNode");
    }
}
