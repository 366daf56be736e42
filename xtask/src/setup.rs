//! `cargo xtask setup`: install the eBPF toolchain, doing nothing for parts present.
//!
//! - `llvm-22-dev` (apt): the LLVM libraries bpf-linker links against;
//! - the nightly toolchain with `rust-src` (for `-Z build-std=core`);
//! - `bpf-linker` built against LLVM 22 (`--no-default-features --features llvm-22`,
//!   with LLVM 22's bin directory first on PATH so its `llvm-config` is found).

use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use crate::ebpf;

#[derive(clap::Args)]
pub struct Args {}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_cmd(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn llvm() -> anyhow::Result<()> {
    let installed = output(Command::new("dpkg-query").args(["-W", "-f", "${Status}", "llvm-22-dev"]))
        .is_ok_and(|s| s.contains("install ok installed"));
    if installed {
        println!("llvm-22-dev: present");
        return Ok(());
    }
    println!("llvm-22-dev: installing");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "llvm-22-dev"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    if install().is_ok_and(|s| s.success()) {
        return Ok(());
    }
    run_cmd(Command::new("apt-get").arg("update"))?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "llvm-22-dev"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn nightly() -> anyhow::Result<()> {
    if !succeeds(Command::new("rustc").args(["+nightly", "--version"])) {
        println!("nightly: installing");
        run_cmd(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    let components =
        output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", "nightly"]))?;
    if components.lines().any(|l| l.trim() == "rust-src") {
        println!("nightly rust-src: present");
        return Ok(());
    }
    println!("nightly rust-src: installing");
    run_cmd(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn bpf_linker() -> anyhow::Result<()> {
    if succeeds(
        Command::new("bpf-linker")
            .arg("--version")
            .env("PATH", ebpf::path_with_llvm()),
    ) {
        println!("bpf-linker: present");
        return Ok(());
    }
    println!("bpf-linker: installing");
    run_cmd(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("PATH", ebpf::path_with_llvm()),
    )
}

pub fn run(_args: &Args) -> anyhow::Result<()> {
    llvm()?;
    nightly()?;
    bpf_linker()?;
    println!("eBPF toolchain ready");
    Ok(())
}
