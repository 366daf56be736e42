//! The `AuthorizationPolicy` resource (`ambit.dev/v1alpha1`, namespaced, shaped after
//! GEP-3779): its type and CRD, its strict validation, and its compilation into
//! proxy-core's [`ambit_proxy_core::authz`] model.
//!
//! - [`resource`]: the CRD type (the schema) and the object as stored, its spec unchecked;
//! - [`compile`]: checking a spec (unknown fields, selectors, paths, SPIFFE IDs, ports,
//!   methods) and turning it into a [`CompiledPolicy`];
//! - [`selector`]: label selectors (validated, then matched against pod labels);
//! - [`names`]: name patterns, paths, methods and SPIFFE IDs;
//! - [`explain`]: "may X call Y on port P?", answered from the translated table.
//!
//! Which pods a policy applies to is decided in [`crate::translate::authz`].

pub mod compile;
pub mod explain;
pub mod names;
pub mod resource;
pub mod selector;

pub use compile::{compile, CompiledPolicy};
pub use resource::{AuthorizationPolicy, AuthorizationPolicySpec, PolicyObject};
pub use selector::Selector;
