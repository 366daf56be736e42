//! `cargo xtask image`: the agent's container image, built offline.
//!
//! 1. builds a static `ambit-agent` (target `x86_64-unknown-linux-musl`, profile `image`:
//!    release optimisations, no debug info, stripped); the eBPF object is embedded;
//! 2. assembles an image from scratch with buildah (no base image, no registry): the
//!    binary alone, at `/usr/local/bin/ambit-agent`, entrypoint `ambit-agent run`;
//! 3. commits it as `localhost/ambit-agent:<tag>` (default `test`, the name the
//!    end-to-end test `image` runs) and prints its size.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use crate::cmd::{output, run};
use crate::ebpf::repo_root;

/// The static target the image's binary is built for.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// The Cargo profile of the image's binary (see the workspace Cargo.toml).
const PROFILE: &str = "image";
/// Where the binary lives in the image.
const BINARY_IN_IMAGE: &str = "/usr/local/bin/ambit-agent";
/// The image name (the end-to-end test's default, `AMBIT_AGENT_IMAGE` overrides it there).
pub const IMAGE_NAME: &str = "localhost/ambit-agent";

/// The tag the end-to-end test runs.
pub const DEFAULT_TAG: &str = "test";

#[derive(clap::Args)]
pub struct Args {
    /// The image tag.
    #[arg(long, default_value = DEFAULT_TAG)]
    pub tag: String,
}

impl Default for Args {
    fn default() -> Self {
        Args { tag: DEFAULT_TAG.to_owned() }
    }
}

/// Builds the static agent binary and returns its path.
fn build_binary() -> anyhow::Result<PathBuf> {
    let root = repo_root();
    run(Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(&root)
        .args(["build", "--locked", "-p", "ambit-agent", "--bin", "ambit-agent", "--profile", PROFILE, "--target", MUSL_TARGET])
        // ring's C parts build with musl-gcc (Debian's musl-tools).
        .env("CC_x86_64_unknown_linux_musl", "musl-gcc"))?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let binary = target_dir.join(MUSL_TARGET).join(PROFILE).join("ambit-agent");
    if !binary.is_file() {
        bail!("cargo built no {}", binary.display());
    }
    Ok(binary)
}

/// Assembles the image from scratch around `binary`; returns the image reference.
fn assemble(binary: &std::path::Path, tag: &str) -> anyhow::Result<String> {
    let reference = format!("{IMAGE_NAME}:{tag}");
    // The image this build replaces, removed afterwards (no dangling copies pile up).
    let previous = output(Command::new("podman").args(["image", "inspect", "--format", "{{.Id}}", &reference])).ok();
    let container = output(Command::new("buildah").args(["from", "scratch"]))?;
    let result = (|| {
        run(Command::new("buildah")
            .args(["copy", "--quiet", "--chmod", "0755", &container])
            .arg(binary)
            .arg(BINARY_IN_IMAGE)
            .stdout(Stdio::null()))?;
        run(Command::new("buildah").args([
            "config",
            "--entrypoint",
            &format!("[\"{BINARY_IN_IMAGE}\"]"),
            "--cmd",
            "run",
            "--user",
            "0:0",
            "--label",
            "org.opencontainers.image.title=ambit-agent",
            &container,
        ]))?;
        run(Command::new("buildah").args(["commit", "--quiet", "--rm", &container, &reference]).stdout(Stdio::null()))
    })();
    if result.is_err() {
        let _ = Command::new("buildah").args(["rm", &container]).stdout(Stdio::null()).status();
    }
    result?;
    let current = output(Command::new("podman").args(["image", "inspect", "--format", "{{.Id}}", &reference]))?;
    if let Some(previous) = previous.filter(|p| !p.is_empty() && *p != current) {
        let _ = Command::new("podman").args(["rmi", &previous]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
    Ok(reference)
}

pub fn run_image(args: &Args) -> anyhow::Result<()> {
    let binary = build_binary()?;
    let reference = assemble(&binary, &args.tag)?;
    let size = output(Command::new("podman").args(["image", "inspect", "--format", "{{.Size}}", &reference]))?;
    let bytes: u64 = size.parse().with_context(|| format!("podman reported size {size:?}"))?;
    println!("image {reference}: {:.1} MiB ({bytes} bytes)", bytes as f64 / (1024.0 * 1024.0));
    Ok(())
}
