//! What the benchmark installs when missing (idempotent): HAProxy and h2load
//! (nghttp2-client) from Debian's packages; taskset and prlimit come with util-linux.

use std::process::Command;

use anyhow::{bail, Result};

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Installs Debian package `package` unless it is installed.
pub fn apt_install(package: &str) -> Result<()> {
    if installed(package) {
        return Ok(());
    }
    println!("{package}: installing");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    if install().is_ok_and(|s| s.success()) {
        return Ok(());
    }
    let _ = Command::new("apt-get").arg("update").status();
    if !install().is_ok_and(|s| s.success()) {
        bail!("apt-get install {package} failed");
    }
    Ok(())
}

/// Installs HAProxy, nghttp2-client, util-linux, iproute2 and linux-perf (the profile
/// behind scenario 1's per-core explanation) if missing.
pub fn prerequisites() -> Result<()> {
    for p in ["iproute2", "util-linux", "haproxy", "nghttp2-client", "linux-perf"] {
        apt_install(p)?;
    }
    Ok(())
}
