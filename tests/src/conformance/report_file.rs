//! Where the conformance run writes its report, and the check that the committed copy
//! (`conformance/report/ambit-mesh-report.yaml`, linked from README) says what the run
//! found.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::report::{undated, ConformanceReport};

/// The committed report, relative to the repository root.
pub const COMMITTED: &str = "conformance/report/ambit-mesh-report.yaml";

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

/// Writes `report` as YAML to `path`, creating its directory.
pub fn write(report: &ConformanceReport, path: &Path) -> Result<()> {
    let yaml = serde_yaml::to_string(report).context("serializing the conformance report")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, yaml).with_context(|| format!("writing {}", path.display()))
}

/// Fails unless the report at `committed` equals `report` except for its date.
pub fn check_committed(report: &ConformanceReport, committed: &Path, written: &Path) -> Result<()> {
    let expected = serde_yaml::to_value(undated(report)).context("serializing the conformance report")?;
    let text = std::fs::read_to_string(committed).with_context(|| format!("reading {}", committed.display()))?;
    let mut found: serde_yaml::Value = serde_yaml::from_str(&text).with_context(|| format!("parsing {}", committed.display()))?;
    if let Some(map) = found.as_mapping_mut() {
        map.insert("date".into(), "".into());
    }
    if found != expected {
        bail!(
            "{} does not match this run's results; copy {} over it (or run with AMBIT_CONFORMANCE_REPORT={})",
            committed.display(),
            written.display(),
            COMMITTED
        );
    }
    Ok(())
}
