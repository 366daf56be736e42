//! A mesh CA for standalone agents: `ambit-agent ca init` in a directory of the bed,
//! and the agent arguments that turn the mesh (workload certificates, HBONE) on.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::binaries;

/// The trust domain the bed's mesh CA signs for.
pub const TRUST_DOMAIN: &str = "cluster.local";

/// A CA directory made by the agent binary itself.
#[derive(Debug, Clone)]
pub struct MeshCa {
    dir: PathBuf,
}

impl MeshCa {
    /// Runs `ambit-agent ca init --dir <dir>` for [`TRUST_DOMAIN`].
    pub fn create(dir: &Path) -> Result<Self> {
        Self::create_for(dir, TRUST_DOMAIN)
    }

    /// The same for another trust domain.
    pub fn create_for(dir: &Path, trust_domain: &str) -> Result<Self> {
        let agent = binaries::ambit_agent()?;
        let out = Command::new(&agent)
            .args(["ca", "init", "--dir"])
            .arg(dir)
            .args(["--trust-domain", trust_domain])
            .output()
            .with_context(|| format!("running {}", agent.display()))?;
        if !out.status.success() {
            bail!("ambit-agent ca init failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(Self { dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate (PEM).
    pub fn certificate_pem(&self) -> Result<String> {
        std::fs::read_to_string(self.dir.join("ca.pem")).context("reading ca.pem")
    }

    /// Agent arguments that turn the mesh on with this CA.
    pub fn agent_args(&self) -> Vec<String> {
        vec!["--ca-dir".into(), self.dir.display().to_string()]
    }
}
