//! Kubernetes mode's certificate authority: `ambit-agent signer`, one small Deployment
//! and the only holder of the CA key. Agents ask for workload certificates through the
//! CertificateSigningRequest API with the signerName [`SIGNER_NAME`]; the signer
//! approves and signs a request only when
//!
//! 1. its requester is the agents' service account (`spec.username`);
//! 2. the requester's token is bound to a pod on a node (`spec.extra`
//!    [`NODE_NAME_EXTRA`](policy::NODE_NAME_EXTRA), set by the API server from a
//!    projected service-account token, never by the client);
//! 3. the PKCS#10 request verifies and names exactly one SAN, a SPIFFE URI in the trust
//!    domain ([`request`]);
//! 4. a running pod of that namespace/service account is scheduled on that node
//!    ([`pods`]; the signer watches all Pods and keeps only this).
//!
//! Otherwise it denies the request with a reason. So a compromised node can obtain the
//! identities of the workloads it runs, and no others: the same rule as istiod's node
//! authorization, which lets a ztunnel request a certificate for an identity only if a
//! pod with that identity runs on the ztunnel's node (istiod checks the ztunnel's own
//! token and its pod's node; here the API server does the authentication and records
//! the node in the request).
//!
//! - [`controller`]: the watch loop (approve, sign, deny, fail);
//! - [`policy`]: the decision; [`signing`]: the CA behind a [`Signer`](signing::Signer);
//! - [`bundle`]: the trust bundle ConfigMap; [`rbac`]: every permission used;
//! - [`endpoint`]: `/metrics`, `/healthz`, `/ready`;
//! - [`directory`]: the mesh directory (`MeshNode` objects) the agents route by.

pub mod bundle;
pub mod conditions;
pub mod controller;
pub mod directory;
pub mod endpoint;
pub mod pods;
pub mod policy;
pub mod rbac;
pub mod request;
pub mod run;
pub mod signing;

pub use controller::{serve, SignerOptions, SignerStats};
pub use policy::{Denial, Policy, NODE_NAME_EXTRA};
pub use run::{run, SignerArgs};
pub use signing::{CaSigner, SignError, Signer};

/// The signerName of Ambit's workload certificates.
pub const SIGNER_NAME: &str = "ambit.dev/workload";
/// The ConfigMap (in the agents' namespace) that holds the trust bundle.
pub const TRUST_BUNDLE_CONFIGMAP: &str = "ambit-trust-bundle";
/// Its key: the CA certificate(s), PEM.
pub const TRUST_BUNDLE_KEY: &str = "ca.pem";
