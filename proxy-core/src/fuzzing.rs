//! Entry points for the cargo-fuzz targets in `fuzz/`: the parsers that read untrusted
//! bytes but are private to the data path. Not a stable API.

pub use crate::proxy::client_hello::{parse as parse_client_hello, Hello, Malformed};
pub use crate::proxy::request_framing::head_scan::head_length;
pub use crate::proxy::request_framing::{FramingTracker, Refusal, Rejected};
