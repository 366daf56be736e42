//! CPU profiles of the agents during a measurement with `perf record`: on request,
//! with `AMBIT_BENCH_PERF=<dir>` set (the given processes for the duration of the run,
//! into `<dir>/<name>.data`; read it with `perf report -i`), and for the explanations
//! the report measures itself (see [`super::user_profile`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// A running `perf record`; stopping it (SIGINT) writes the profile.
pub struct Profile(Option<Child>);

impl Profile {
    /// Starts sampling `pids` when `AMBIT_BENCH_PERF` names a directory; a no-op otherwise.
    pub fn start(name: &str, pids: &[i32]) -> Result<Profile> {
        let Some(dir) = std::env::var_os("AMBIT_BENCH_PERF").map(PathBuf::from) else {
            return Ok(Profile(None));
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Self::record(&dir.join(format!("{name}.data")), pids, &["-F", "1999", "-g"])
    }

    /// Starts `perf record <args>` on `pids` into `file`, and gives it a moment to
    /// attach before the load starts.
    pub fn record(file: &Path, pids: &[i32], args: &[&str]) -> Result<Profile> {
        let pids: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
        let child = Command::new("perf")
            .arg("record")
            .args(args)
            .arg("-o")
            .arg(file)
            .args(["-p", &pids.join(",")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting perf record (Debian package linux-perf)")?;
        std::thread::sleep(Duration::from_millis(300));
        Ok(Profile(Some(child)))
    }

    /// Stops sampling and waits for the profile to be written.
    pub fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.0.take() else { return Ok(()) };
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let status = child.wait().context("waiting for perf record")?;
        // perf writes the profile on SIGINT, then dies of the signal it got.
        if !status.success() && std::os::unix::process::ExitStatusExt::signal(&status) != Some(libc::SIGINT) {
            bail!("perf record failed: {status}");
        }
        Ok(())
    }
}
