//! Reading and watching a directory of Kubernetes manifests (standalone mode).
//!
//! Every `*.yaml`, `*.yml` and `*.json` file below the directory is read, each YAML
//! file may hold several documents (`---`), and a `kind: List` is unpacked. Objects of
//! kinds the agent does not use (Deployments, ConfigMaps...) are skipped. A document
//! that cannot be understood yields a [`ManifestError`]; everything else still loads.

mod allocate;
mod load;
mod parse;
mod watch;

pub use allocate::allocate_missing_cluster_ips;
pub use load::{load_dir, manifest_files, parse_file, parse_text, Loaded, ParsedFile};
pub use parse::{parse_documents, parse_object, Parsed};
pub use watch::{watch_dir, ManifestCache};

use std::fmt;
use std::path::PathBuf;

/// One document of one file that could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    pub file: PathBuf,
    /// Position of the document in its file, from 0 (None for errors about the whole file).
    pub document: Option<usize>,
    /// `kind` of the object, when it could be read.
    pub kind: Option<String>,
    /// `namespace/name` or `name` of the object, when it could be read.
    pub name: Option<String>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(doc) = self.document {
            write!(f, " (document {doc})")?;
        }
        match (&self.kind, &self.name) {
            (Some(kind), Some(name)) => write!(f, " {kind} {name}")?,
            (Some(kind), None) => write!(f, " {kind}")?,
            (None, Some(name)) => write!(f, " {name}")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ManifestError {}
