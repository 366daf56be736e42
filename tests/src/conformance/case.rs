//! The schema of one conformance case file (see `shared/conformance/README.md`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// One `<ShortName>.yaml`: an upstream test with its manifests and cases.
#[derive(Debug, Clone, Deserialize)]
pub struct CaseFile {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub provisional: bool,
    /// The test's own manifests (multi-document YAML), empty when none.
    #[serde(default)]
    pub manifests: String,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Client {
    /// `echo-v1` means the pod with labels app=echo, version=v1.
    pub app: String,
    pub namespace: String,
}

impl Client {
    /// The label selector upstream uses for the client pod.
    pub fn labels(&self) -> Vec<(String, String)> {
        match self.app.split_once('-') {
            Some((app, version)) => vec![("app".into(), app.into()), ("version".into(), version.into())],
            None => vec![("app".into(), self.app.clone())],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RequestSpec {
    /// `service[.namespace][:port]`, or a pod address `{pod-ip:<app>-<version>}[:port]`
    /// (see [`super::placeholder`]).
    pub host: String,
    pub method: Option<String>,
    /// Path plus query (`""` for grpc).
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub protocol: String,
    #[serde(default)]
    pub unfollow_redirect: bool,
    /// *(extra, Ambit's own cases)* `http` spoken as HTTP/2 with prior knowledge (h2c)
    /// instead of HTTP/1.1.
    #[serde(default)]
    pub h2c: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RedirectExpect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<String>,
    pub path: Option<String>,
    pub status: u16,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Expect {
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub absent_headers: Vec<String>,
    pub backend: Option<String>,
    #[serde(default)]
    pub request_headers: BTreeMap<String, String>,
    #[serde(default)]
    pub absent_request_headers: Vec<String>,
    pub request_path: Option<String>,
    pub request_host: Option<String>,
    pub redirect: Option<RedirectExpect>,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WeightCheck {
    pub total_requests: usize,
    pub tolerance_percent: f64,
    pub max_attempts: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub name: String,
    pub client: Client,
    pub request: RequestSpec,
    pub expect: Expect,
    /// Expected share of requests per backend name, in percent.
    pub weights: Option<BTreeMap<String, f64>>,
    pub weight_check: Option<WeightCheck>,
    #[serde(default)]
    pub upstream_unchecked: Vec<String>,
    pub note: Option<String>,
}

/// An expectation a case declares that the harness may skip because the case's note
/// says the declared value is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waivable {
    RequestPath,
    RequestHost,
    Redirect,
}

impl Case {
    /// Whether the note says the declared value for `what` is wrong. Notes name the
    /// upstream field (`ExpectedRequest.Path`, `ExpectedRequest.Host`, `RedirectRequest`)
    /// they dispute.
    pub fn waived(&self, what: Waivable) -> bool {
        let Some(note) = &self.note else { return false };
        let disputes = note.contains("never been enforced") || note.contains("would fail") || note.contains("wrong");
        let field = match what {
            Waivable::RequestPath => "ExpectedRequest.Path",
            Waivable::RequestHost => "ExpectedRequest.Host",
            Waivable::Redirect => "RedirectRequest",
        };
        disputes && note.contains(field)
    }
}

impl CaseFile {
    pub fn load(path: &Path) -> Result<CaseFile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_yaml::from_str(&text).with_context(|| format!("parsing conformance case file {}", path.display()))
    }
}

/// The conformance directory: `AMBIT_CONFORMANCE_DIR`, else `../shared/conformance`
/// relative to the repository root.
pub fn conformance_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("AMBIT_CONFORMANCE_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance")
}

/// Ambit's own cases (`tests/conformance/`): same schema, run on the shared corpus's
/// base manifests, never part of the shared corpus's report.
pub fn ambit_conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

/// Every `*.yaml` case file in `dir` except `base-manifests.yaml`, sorted by name.
pub fn case_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading conformance directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && p.file_name().is_some_and(|n| n != "base-manifests.yaml"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shared_case_file_parses() {
        let dir = conformance_dir();
        let files = case_files(&dir).unwrap();
        assert!(files.len() >= 17, "expected the 17 upstream tests in {}", dir.display());
        let mut cases = 0;
        for file in files {
            let parsed = CaseFile::load(&file).unwrap();
            assert_eq!(file.file_stem().unwrap().to_str().unwrap(), parsed.name);
            cases += parsed.cases.len();
        }
        assert!(cases >= 65);
    }

    /// Ambit's own cases (`tests/conformance`) use the same schema.
    #[test]
    fn ambits_own_case_files_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance");
        let files = case_files(&dir).unwrap();
        let cors = files.iter().find(|f| f.ends_with("MeshHTTPRouteCORS.yaml")).expect("the CORS cases");
        let parsed = CaseFile::load(cors).unwrap();
        assert_eq!(parsed.name, "MeshHTTPRouteCORS");
        assert!(parsed.cases.iter().any(|c| c.request.h2c) && parsed.cases.iter().any(|c| !c.request.h2c));
        for file in files {
            let parsed = CaseFile::load(&file).unwrap();
            assert_eq!(file.file_stem().unwrap().to_str().unwrap(), parsed.name);
        }
    }

    #[test]
    fn every_ambit_case_file_parses_and_is_named_after_its_file() {
        let files = case_files(&ambit_conformance_dir()).unwrap();
        assert!(!files.is_empty(), "Ambit's own cases are in tests/conformance");
        for file in files {
            let parsed = CaseFile::load(&file).unwrap();
            assert_eq!(file.file_stem().unwrap().to_str().unwrap(), parsed.name);
            assert!(!parsed.cases.is_empty(), "{}", parsed.name);
        }
    }

    #[test]
    fn the_named_rule_note_waives_only_the_request_path() {
        let file = CaseFile::load(&conformance_dir().join("MeshHTTPRouteNamedRule.yaml")).unwrap();
        assert!(!file.cases[0].waived(Waivable::RequestPath));
        assert!(file.cases[1].waived(Waivable::RequestPath));
        assert!(!file.cases[1].waived(Waivable::RequestHost));
        assert!(!file.cases[1].waived(Waivable::Redirect));
    }

    #[test]
    fn client_labels() {
        let c = Client { app: "echo-v2".into(), namespace: "ns".into() };
        assert_eq!(c.labels(), vec![("app".to_string(), "echo".to_string()), ("version".to_string(), "v2".to_string())]);
    }
}
