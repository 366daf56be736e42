//! Where the conformance run writes its report, and the check that the committed copy
//! (`conformance/report/ambit-mesh-report.yaml`, linked from README) says what the run
//! found.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use serde::Serialize;

use super::report::{undated, ConformanceReport, TestResults};

/// The committed report, relative to the repository root.
pub const COMMITTED: &str = "conformance/report/ambit-mesh-report.yaml";
/// The committed per-test results, written next to the report.
pub const RESULTS_NAME: &str = "ambit-mesh-results.yaml";

/// The repository root (the parent of the `tests` crate).
pub fn repo_root() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).to_path_buf()
}

/// Where a run writes its report: `AMBIT_CONFORMANCE_REPORT`, else
/// `<target>/conformance/ambit-mesh-report.yaml` (`CARGO_TARGET_DIR` or `<repo>/target`).
/// A relative path is taken from the repository root.
pub fn output_path() -> PathBuf {
    if let Some(path) = std::env::var_os("AMBIT_CONFORMANCE_REPORT") {
        return repo_root().join(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
    target.join("conformance/ambit-mesh-report.yaml")
}

/// Where the per-test results go: next to the report at `report`.
pub fn results_path(report: &Path) -> PathBuf {
    report.with_file_name(RESULTS_NAME)
}

/// Writes `value` as YAML to `path`, creating its directory.
pub fn write(value: &impl Serialize, path: &Path) -> Result<()> {
    let yaml = serde_yaml::to_string(value).context("serializing the conformance report")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, yaml).with_context(|| format!("writing {}", path.display()))
}

/// Fails unless the report at `committed` equals `report` except for its date.
pub fn check_committed(report: &ConformanceReport, committed: &Path, written: &Path) -> Result<()> {
    check_same(serde_yaml::to_value(undated(report)).context("serializing the conformance report")?, committed, written)
}

/// Fails unless the per-test results at `committed` equal `results`.
pub fn check_committed_results(results: &TestResults, committed: &Path, written: &Path) -> Result<()> {
    check_same(serde_yaml::to_value(results).context("serializing the test results")?, committed, written)
}

/// `expected` against the YAML at `committed`, whose `date` (if any) is not compared.
fn check_same(expected: serde_yaml::Value, committed: &Path, written: &Path) -> Result<()> {
    let text = std::fs::read_to_string(committed).with_context(|| format!("reading {}", committed.display()))?;
    let mut found: serde_yaml::Value = serde_yaml::from_str(&text).with_context(|| format!("parsing {}", committed.display()))?;
    if let (Some(map), true) = (found.as_mapping_mut(), expected.get("date").is_some()) {
        map.insert("date".into(), "".into());
    }
    if found != expected {
        bail!(
            "{} does not match this run's results; copy {} over it (or run with AMBIT_CONFORMANCE_REPORT={COMMITTED})",
            committed.display(),
            written.display(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::conformance::report::results;
    use crate::conformance::report::TestOutcome;

    fn outcome(passed: bool) -> TestOutcome {
        let modes = BTreeMap::from([("standalone".to_string(), passed)]);
        TestOutcome { name: "MeshBasic".into(), features: vec!["Mesh".into()], provisional: false, passed, modes }
    }

    #[test]
    fn committed_results_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let committed = dir.path().join(RESULTS_NAME);
        write(&results(&[outcome(true)]), &committed).unwrap();
        check_committed_results(&results(&[outcome(true)]), &committed, &committed).unwrap();
        let error = check_committed_results(&results(&[outcome(false)]), &committed, &committed).unwrap_err();
        assert!(format!("{error}").contains("does not match"));
        assert!(check_committed_results(&results(&[outcome(true)]), &dir.path().join("missing.yaml"), &committed).is_err());
    }
}
