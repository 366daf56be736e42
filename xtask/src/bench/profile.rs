//! Optional CPU profiles of the agents during a measurement: with
//! `AMBIT_BENCH_PERF=<dir>` set, `perf record` samples the given processes for the
//! duration of the run into `<dir>/<name>.data` (read it with `perf report -i`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

/// A running `perf record`; stopping it (SIGINT) writes the profile.
pub struct Profile(Option<Child>);

impl Profile {
    /// Starts sampling `pids` when `AMBIT_BENCH_PERF` names a directory; a no-op otherwise.
    pub fn start(name: &str, pids: &[i32]) -> Result<Profile> {
        let Some(dir) = std::env::var_os("AMBIT_BENCH_PERF").map(PathBuf::from) else {
            return Ok(Profile(None));
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let pids: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
        let child = Command::new("perf")
            .args(["record", "-F", "1999", "-g", "-o"])
            .arg(dir.join(format!("{name}.data")))
            .args(["-p", &pids.join(",")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting perf record")?;
        Ok(Profile(Some(child)))
    }

    /// Stops sampling and waits for the profile to be written.
    pub fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.0.take() else { return Ok(()) };
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        child.wait().context("waiting for perf record")?;
        Ok(())
    }
}
