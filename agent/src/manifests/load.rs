//! Loading every manifest file below a directory into a [`ClusterState`].

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::parse::{parse_documents, parse_object, Parsed};
use super::ManifestError;
use crate::cluster::ClusterState;

/// The outcome of loading a directory: the objects that loaded, and the documents that did not.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub state: ClusterState,
    pub errors: Vec<ManifestError>,
}

const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// The manifest files below `dir` (recursively, sorted; hidden entries such as the
/// `..data` links of a mounted ConfigMap are skipped).
pub fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            // Follow symlinks; an entry that vanished meanwhile is skipped.
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_file()
                && path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Loads every manifest below `dir`. Documents that fail are reported and skipped;
/// the rest load. A later definition of the same object replaces an earlier one.
pub fn load_dir(dir: &Path) -> (ClusterState, Vec<ManifestError>) {
    let mut state = ClusterState::new();
    let mut errors = Vec::new();
    let files = match manifest_files(dir) {
        Ok(files) => files,
        Err(e) => {
            errors.push(ManifestError {
                file: dir.to_path_buf(),
                document: None,
                kind: None,
                name: None,
                message: format!("cannot read directory: {e}"),
            });
            return (state, errors);
        }
    };
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => load_text(&file, &text, &mut state, &mut errors),
            Err(e) => errors.push(ManifestError {
                file: file.clone(),
                document: None,
                kind: None,
                name: None,
                message: format!("cannot read file: {e}"),
            }),
        }
    }
    (state, errors)
}

/// Loads the documents of one file's text (named `file` in errors) into `state`.
pub(crate) fn load_text(file: &Path, text: &str, state: &mut ClusterState, errors: &mut Vec<ManifestError>) {
    for (index, doc) in parse_documents(text).into_iter().enumerate() {
        let error = |kind: Option<String>, name: Option<String>, message: String| ManifestError {
            file: file.to_path_buf(),
            document: Some(index),
            kind,
            name,
            message,
        };
        match doc {
            Err(message) => errors.push(error(None, None, message)),
            Ok(Value::Null) => {}
            Ok(value) => load_value(value, state, &mut |k, n, m| errors.push(error(k, n, m)), 0),
        }
    }
}

fn load_value(
    value: Value,
    state: &mut ClusterState,
    report: &mut dyn FnMut(Option<String>, Option<String>, String),
    depth: usize,
) {
    match parse_object(value) {
        Ok(Parsed::Object(object)) => {
            let kind = object.kind();
            match state.insert(*object) {
                Ok(key) => tracing::debug!(%kind, %key, "loaded manifest object"),
                Err(e) => report(Some(kind.to_string()), None, e.to_string()),
            }
        }
        Ok(Parsed::Ignored { api_version, kind }) => {
            tracing::debug!(%api_version, %kind, "ignoring manifest object of an unused kind");
        }
        Ok(Parsed::List(items)) if depth == 0 => {
            for item in items {
                load_value(item, state, report, depth + 1);
            }
        }
        Ok(Parsed::List(_)) => report(Some("List".into()), None, "nested lists are not supported".into()),
        Err(e) => report(e.kind, e.name, e.message),
    }
}
