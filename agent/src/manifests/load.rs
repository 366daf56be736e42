//! Loading every manifest file below a directory into a [`ClusterState`].

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::parse::{parse_documents, parse_object, Parsed};
use super::ManifestError;
use crate::cluster::{ClusterObject, ClusterState};

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
        let parsed = parse_file(&file);
        parsed.load_into(&mut state, &mut errors);
    }
    (state, errors)
}

/// What one manifest file holds: its objects, in document order, and the documents
/// that could not be loaded.
#[derive(Clone, Debug, Default)]
pub struct ParsedFile {
    pub objects: Vec<ClusterObject>,
    pub errors: Vec<ManifestError>,
}

impl ParsedFile {
    /// Adds the file's objects to `state` (later definitions replace earlier ones) and its
    /// errors to `errors`.
    pub fn load_into(&self, state: &mut ClusterState, errors: &mut Vec<ManifestError>) {
        for object in &self.objects {
            // Keys were checked when the file was parsed.
            let _ = state.insert(object.clone());
        }
        errors.extend(self.errors.iter().cloned());
    }
}

/// Reads and parses one manifest file.
pub fn parse_file(file: &Path) -> ParsedFile {
    match std::fs::read_to_string(file) {
        Ok(text) => parse_text(file, &text),
        Err(e) => ParsedFile {
            objects: Vec::new(),
            errors: vec![ManifestError {
                file: file.to_path_buf(),
                document: None,
                kind: None,
                name: None,
                message: format!("cannot read file: {e}"),
            }],
        },
    }
}

/// Parses the documents of one file's text (named `file` in errors).
pub fn parse_text(file: &Path, text: &str) -> ParsedFile {
    let mut parsed = ParsedFile::default();
    for (index, doc) in parse_documents(text).into_iter().enumerate() {
        let error = |kind: Option<String>, name: Option<String>, message: String| ManifestError {
            file: file.to_path_buf(),
            document: Some(index),
            kind,
            name,
            message,
        };
        match doc {
            Err(message) => parsed.errors.push(error(None, None, message)),
            Ok(Value::Null) => {}
            Ok(value) => {
                let mut errors = Vec::new();
                collect_value(value, &mut parsed.objects, &mut |k, n, m| errors.push(error(k, n, m)), 0);
                parsed.errors.extend(errors);
            }
        }
    }
    parsed
}

fn collect_value(
    value: Value,
    objects: &mut Vec<ClusterObject>,
    report: &mut dyn FnMut(Option<String>, Option<String>, String),
    depth: usize,
) {
    match parse_object(value) {
        Ok(Parsed::Object(object)) => {
            let kind = object.kind();
            match object.key() {
                Ok(key) => {
                    tracing::debug!(%kind, %key, "loaded manifest object");
                    objects.push(*object);
                }
                Err(e) => report(Some(kind.to_string()), None, e.to_string()),
            }
        }
        Ok(Parsed::Ignored { api_version, kind }) => {
            tracing::debug!(%api_version, %kind, "ignoring manifest object of an unused kind");
        }
        Ok(Parsed::List(items)) if depth == 0 => {
            for item in items {
                collect_value(item, objects, report, depth + 1);
            }
        }
        Ok(Parsed::List(_)) => report(Some("List".into()), None, "nested lists are not supported".into()),
        Err(e) => report(e.kind, e.name, e.message),
    }
}
