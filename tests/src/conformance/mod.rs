//! The Gateway API mesh conformance cases (`../shared/conformance`), read from their
//! YAML files, and the checks of one response against a case's declared expectations.
//!
//! Every declared expectation is enforced, including those upstream's mesh helper
//! leaves unchecked (`request_path`, `request_host`, `redirect` i.e. the `Location`
//! header, and `namespace`), except where a case's `note` says a declared value is
//! wrong (see [`case::Case::waived`]).

pub mod case;
pub mod expect;
pub mod placeholder;
pub mod profile;
pub mod report;
pub mod report_file;
pub mod run;
pub mod weights;

pub use case::{Case, CaseFile, Expect, RedirectExpect, RequestSpec, WeightCheck};
