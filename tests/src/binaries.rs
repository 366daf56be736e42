//! Locating the binaries the bed runs.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// The target profile directory (`target/<profile>`) of the running test
/// executable (which lives in `target/<profile>/deps/`).
fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    if dir.file_name()? == "deps" {
        dir.parent().map(PathBuf::from)
    } else {
        Some(dir.to_path_buf())
    }
}

fn locate(env: &str, name: &str, hint: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("{env}={} does not exist", p.display());
    }
    if let Some(dir) = profile_dir() {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
        bail!("{name} not found at {} (and {env} is unset): {hint}", p.display());
    }
    bail!("cannot locate {name}: set {env}")
}

/// `ambit-pod`: `AMBIT_POD_BIN`, else next to the test executable.
/// Integration tests of this crate should prefer `env!("CARGO_BIN_EXE_ambit-pod")`.
pub fn ambit_pod() -> Result<PathBuf> {
    locate("AMBIT_POD_BIN", "ambit-pod", "run cargo build -p ambit-e2e first")
}

/// `ambit-agent`: `AMBIT_AGENT_BIN`, else next to the test executable.
pub fn ambit_agent() -> Result<PathBuf> {
    locate("AMBIT_AGENT_BIN", "ambit-agent", "run cargo build -p ambit-agent first")
}
