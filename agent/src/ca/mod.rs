//! Ambit's certificate authority for workload identities.
//!
//! - [`dir`]: a CA directory (`ca.pem`, `ca-key.pem` mode 0600, `ca.json`) and
//!   `ambit-agent ca init`.
//! - [`sign`]: checking a PKCS#10 request and issuing a workload certificate, shared by
//!   standalone mode's [`LocalCa`] and the Kubernetes signer.
//! - [`local`]: [`LocalCa`], the standalone mode's certificate source.
//! - [`args`]: the agent's certificate flags.
//!
//! In standalone mode the agent itself holds the CA key (a development and test mode).
//! In Kubernetes mode only the signer Deployment holds it; agents hold their own keys and
//! the trust bundle, never the CA key.

pub mod args;
pub mod dir;
pub mod local;
pub mod sign;

pub use args::{local_cert_store, local_source, CertArgs, CertSettings};
pub use dir::{init_ca, load_ca, Authority, CaDirError, CaInit};
pub use local::LocalCa;
pub use sign::{sign_csr, SignError};
