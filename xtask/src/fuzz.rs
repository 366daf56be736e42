//! `cargo xtask fuzz`: runs each cargo-fuzz target of `fuzz/` for a bounded time,
//! starting from its committed seed corpus; fails when a target crashes.
//!
//! The targets are built once (nightly, libFuzzer, no sanitizer: the code under test is
//! safe Rust, so AddressSanitizer would only slow the build and the runs). New inputs
//! the fuzzer finds go to `fuzz/target/corpus/<target>/`, not to the committed corpus;
//! a crashing input is saved under `fuzz/artifacts/<target>/` and the command prints
//! how to reproduce it.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

use crate::{ebpf, setup};

/// The fuzz targets (`fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: [&str; 4] = ["request_framing", "client_hello", "manifests", "route_matching"];
/// Seconds per target unless `--seconds` says otherwise.
pub const DEFAULT_SECONDS: u64 = 30;

#[derive(clap::Args)]
pub struct Args {
    /// How long to run each target.
    #[arg(long, default_value_t = DEFAULT_SECONDS)]
    pub seconds: u64,
    /// Targets to run (default: all).
    pub targets: Vec<String>,
}

fn cargo_fuzz(fuzz_dir: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(fuzz_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .args(["+nightly", "fuzz"]);
    cmd
}

fn run_cmd(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    for target in &args.targets {
        if !TARGETS.contains(&target.as_str()) {
            bail!("unknown fuzz target {target:?}; the targets are {}", TARGETS.join(", "));
        }
    }
    let targets: Vec<&str> =
        if args.targets.is_empty() { TARGETS.to_vec() } else { args.targets.iter().map(String::as_str).collect() };
    setup::nightly()?;
    setup::cargo_fuzz()?;
    let fuzz_dir = ebpf::repo_root().join("fuzz");
    run_cmd(cargo_fuzz(&fuzz_dir).args(["build", "--sanitizer", "none"]), "building the fuzz targets")?;
    for target in targets {
        println!("fuzzing {target} for {} s", args.seconds);
        let scratch = fuzz_dir.join("target").join("corpus").join(target);
        std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
        let seeds = fuzz_dir.join("corpus").join(target);
        run_cmd(
            cargo_fuzz(&fuzz_dir)
                .args(["run", "--sanitizer", "none", target])
                .arg(&scratch)
                .arg(&seeds)
                .args(["--", "-rss_limit_mb=2048", "-timeout=10"])
                .arg(format!("-max_total_time={}", args.seconds)),
            &format!("fuzz target {target}"),
        )?;
    }
    Ok(())
}
