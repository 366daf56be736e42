//! Network namespaces and veth links, driven through iproute2's `ip` command.
//!
//! Named namespaces live as bind mounts under `/var/run/netns/<name>` (what
//! `ip netns add` creates). Veth pairs are created with both ends directly in
//! their target namespaces, so no interface name ever exists in the host
//! namespace and parallel beds cannot collide.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Directory where iproute2 keeps named network namespaces.
pub const NETNS_DIR: &str = "/var/run/netns";

/// Path of the bind mount of the named namespace `name`.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Runs `ip ARGS...` and fails with its stderr when it exits non-zero.
pub fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `ip {}` (is iproute2 installed?)", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs several `ip` commands (one per line, without the leading `ip`) in the
/// namespace `ns` with a single `ip -n NS -batch -` process.
pub fn ip_batch(ns: &str, lines: &[String]) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["-n", ns, "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning `ip -batch` (is iproute2 installed?)")?;
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        for line in lines {
            writeln!(stdin, "{line}")?;
        }
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`ip -n {ns} -batch` failed: {}\ncommands:\n{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            lines.join("\n")
        );
    }
    Ok(())
}

/// Creates the named network namespace `name` (brings its `lo` up).
pub fn create(name: &str) -> Result<()> {
    ip(&["netns", "add", name])?;
    ip(&["-n", name, "link", "set", "lo", "up"])
}

/// Deletes the named network namespace `name`; a missing namespace is not an error.
pub fn delete(name: &str) -> Result<()> {
    if !netns_path(name).exists() {
        return Ok(());
    }
    ip(&["netns", "delete", name])
}

/// Names of all named network namespaces on the machine.
pub fn list() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// Creates a veth pair: `a_name` inside namespace `a_ns` and `b_name` inside `b_ns`.
pub fn create_veth(a_ns: &str, a_name: &str, b_ns: &str, b_name: &str) -> Result<()> {
    ip(&[
        "link", "add", a_name, "netns", a_ns, "type", "veth", "peer", "name", b_name, "netns",
        b_ns,
    ])
}

/// Runs `f` on a fresh thread that has entered the named namespace `name`.
///
/// Only that thread changes namespace; the caller's threads are untouched.
pub fn in_netns<T: Send>(name: &str, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let file = File::open(netns_path(name)).with_context(|| format!("opening netns {name}"))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("setns into {name}"))?;
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread inside netns {name} panicked"))?
    })
}

/// Writes sysctl values (`("net/ipv4/ip_forward", "1")`, relative to
/// `/proc/sys`) inside the named namespace.
pub fn sysctls(name: &str, values: &[(&str, &str)]) -> Result<()> {
    in_netns(name, || {
        for (key, value) in values {
            let path = format!("/proc/sys/{key}");
            std::fs::write(&path, value).with_context(|| format!("writing {path}={value}"))?;
        }
        Ok(())
    })
}
