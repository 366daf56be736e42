//! `cargo xtask setup`: install the eBPF toolchain, doing nothing for parts present.
//!
//! - `llvm-22-dev` (apt): the LLVM libraries bpf-linker links against;
//! - the nightly toolchain with `rust-src` (for `-Z build-std=core`);
//! - `iproute2` (apt), for the network-namespace test bed;
//! - `bpf-linker` built against LLVM 22 (`--no-default-features --features llvm-22`,
//!   with LLVM 22's bin directory first on PATH so its `llvm-config` is found);
//! - `cargo-fuzz`, for the fuzz targets (`cargo xtask fuzz`, run by `cargo xtask test`).
//! - for the container image (`cargo xtask image`) and its end-to-end test: `podman`,
//!   `buildah`, `runc` (crun refuses hybrid cgroup hierarchies) and `musl-tools` (apt),
//!   and the `x86_64-unknown-linux-musl` Rust target.

use std::process::{Command, Stdio};

use crate::cmd::{self, output};
use crate::ebpf;

#[derive(clap::Args)]
pub struct Args {}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs a Debian package unless it is installed already.
fn apt_package(name: &str) -> anyhow::Result<()> {
    let installed = output(Command::new("dpkg-query").args(["-W", "-f", "${Status}", name]))
        .is_ok_and(|s| s.contains("install ok installed"));
    if installed {
        println!("{name}: present");
        return Ok(());
    }
    println!("{name}: installing");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", name])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    if install().is_ok_and(|s| s.success()) {
        return Ok(());
    }
    cmd::run(Command::new("apt-get").arg("update"))?;
    cmd::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", name])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// The LLVM libraries bpf-linker links against.
fn llvm() -> anyhow::Result<()> {
    apt_package("llvm-22-dev")
}

/// `ip` (network namespaces and veths) for the test bed.
fn iproute2() -> anyhow::Result<()> {
    apt_package("iproute2")
}

/// `make` and a C compiler: the agent's allocator (jemalloc, via tikv-jemalloc-sys) is
/// built from its C sources.
fn c_build_tools() -> anyhow::Result<()> {
    apt_package("make")?;
    apt_package("gcc")
}

/// What `cargo xtask image` and the image's end-to-end test need.
fn image_tools() -> anyhow::Result<()> {
    for package in ["podman", "buildah", "runc", "musl-tools"] {
        apt_package(package)?;
    }
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if installed.lines().any(|l| l.trim() == crate::image::MUSL_TARGET) {
        println!("{}: present", crate::image::MUSL_TARGET);
        return Ok(());
    }
    println!("{}: installing", crate::image::MUSL_TARGET);
    cmd::run(Command::new("rustup").args(["target", "add", crate::image::MUSL_TARGET]))
}

pub fn nightly() -> anyhow::Result<()> {
    if !succeeds(Command::new("rustc").args(["+nightly", "--version"])) {
        println!("nightly: installing");
        cmd::run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    let components =
        output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", "nightly"]))?;
    if components.lines().any(|l| l.trim() == "rust-src") {
        println!("nightly rust-src: present");
        return Ok(());
    }
    println!("nightly rust-src: installing");
    cmd::run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn bpf_linker() -> anyhow::Result<()> {
    let version = output(Command::new("bpf-linker").arg("--version").env("PATH", ebpf::path_with_llvm()));
    if version.as_deref().is_ok_and(|v| v.split_whitespace().any(|w| w == BPF_LINKER_VERSION)) {
        println!("bpf-linker {BPF_LINKER_VERSION}: present");
        return Ok(());
    }
    println!("bpf-linker: installing");
    cmd::run(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                // Pinned, with its lock file: the committed eBPF object must rebuild byte for byte.
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("PATH", ebpf::path_with_llvm()),
    )
}

/// cargo-fuzz, for `cargo xtask fuzz` (pinned, with its lock file).
pub fn cargo_fuzz() -> anyhow::Result<()> {
    let version = output(Command::new("cargo").args(["fuzz", "--version"]));
    if version.as_deref().is_ok_and(|v| v.split_whitespace().any(|w| w == CARGO_FUZZ_VERSION)) {
        println!("cargo-fuzz {CARGO_FUZZ_VERSION}: present");
        return Ok(());
    }
    println!("cargo-fuzz: installing");
    cmd::run(Command::new("cargo").args(["install", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION, "--locked"]))
}

/// The cargo-fuzz release `cargo xtask fuzz` runs.
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The bpf-linker release the committed object is built with.
pub const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run(_args: &Args) -> anyhow::Result<()> {
    iproute2()?;
    c_build_tools()?;
    llvm()?;
    nightly()?;
    bpf_linker()?;
    cargo_fuzz()?;
    image_tools()?;
    println!("eBPF and fuzzing toolchains and image tools ready");
    Ok(())
}
