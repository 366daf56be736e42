//! Building `ebpf/programs` reproducibly.
//!
//! The object must be byte-identical wherever the repository is cloned, so every
//! machine-specific path a compiler could embed (the repository, the target directory,
//! the cargo home, the nightly sysroot whose `core` sources `-Z build-std` compiles) is
//! remapped to a fixed prefix with `--remap-path-prefix`. The programs are built
//! without debug info, so no BTF or DWARF carries paths either.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The eBPF target triple.
pub const TARGET: &str = "bpfel-unknown-none";
/// The binary name in `ebpf/programs/Cargo.toml`.
const BIN: &str = "ambit";
/// bpf-linker needs LLVM's libraries; this directory holds the matching `llvm-config`.
pub const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";

/// Root of the repository (the parent of `xtask/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository")
        .to_path_buf()
}

/// The committed object the agent embeds.
pub fn committed_object() -> PathBuf {
    repo_root().join("ebpf/obj/ambit.bpf.o")
}

fn cargo_home() -> anyhow::Result<PathBuf> {
    if let Some(h) = std::env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(h));
    }
    let home = std::env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cargo"))
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .output()
        .context("running rustc +nightly (run `cargo xtask setup`)")?;
    if !out.status.success() {
        bail!(
            "rustc +nightly --print sysroot failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// `PATH` with LLVM 22's bin directory first.
pub fn path_with_llvm() -> std::ffi::OsString {
    let mut paths = vec![PathBuf::from(LLVM_BIN)];
    if let Some(p) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(paths).expect("PATH entries contain no separator")
}

/// Builds the programs with `target_dir` as cargo's target directory and returns the
/// path of the produced object.
pub fn build(target_dir: &Path) -> anyhow::Result<PathBuf> {
    let root = repo_root();
    let programs = root.join("ebpf/programs");
    // Later prefixes win when several match, so the most specific come last.
    let remaps = [
        (cargo_home()?, "/cargo"),
        (nightly_sysroot()?, "/rust-sysroot"),
        (root.clone(), "/ambit"),
        (target_dir.to_path_buf(), "/ambit-target"),
    ];
    let flags: Vec<String> = remaps
        .iter()
        .map(|(from, to)| format!("--remap-path-prefix={}={to}", from.display()))
        .collect();
    let status = Command::new("cargo")
        .current_dir(&programs)
        .env("PATH", path_with_llvm())
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .args([
            "+nightly",
            "build",
            "--release",
            "--locked",
            "--target",
            TARGET,
            "-Z",
            "build-std=core",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .context("running cargo +nightly build for ebpf/programs")?;
    if !status.success() {
        bail!("building ebpf/programs failed ({status}); is the toolchain installed? (`cargo xtask setup`)");
    }
    let object = target_dir.join(TARGET).join("release").join(BIN);
    if !object.is_file() {
        bail!("expected the object at {}", object.display());
    }
    Ok(object)
}
