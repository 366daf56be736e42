//! `cargo xtask test`: the whole test suite, as CI runs it.
//!
//! 1. installs what a fresh machine lacks (`cargo xtask setup`; idempotent, seconds when
//!    everything is present);
//! 2. checks that the committed eBPF object matches its sources (`check-ebpf`), and
//!    that the disk has room for the builds ([`crate::disk`]);
//! 3. builds every binary (the end-to-end tests run the real `ambit-agent` and
//!    `ambit-pod`) and the agent's container image (`cargo xtask image`, which the
//!    end-to-end test `image` runs as the node agent);
//! 4. runs `cargo test --workspace`: unit tests, loopback data-path tests, the kernel
//!    test of the eBPF programs, the Kubernetes-mode tests against the in-test API
//!    server, and the end-to-end tests (walking skeleton, routing, and the Gateway API
//!    mesh conformance suite from `../shared/conformance`) in network-namespace test
//!    beds;
//! 5. runs every fuzz target for [`CI_FUZZ_SECONDS`] (`cargo xtask fuzz`).
//!
//! The kernel and end-to-end tests need root (CAP_BPF, CAP_SYS_ADMIN, CAP_NET_ADMIN):
//! without it they fail; they never skip.

use std::process::Command;

use anyhow::bail;

use crate::cmd::run;
use crate::{check_ebpf, disk, fuzz, image, setup};

/// GiB a test run writes: a clean clone builds everything (about 8 GiB, measured in
/// session 10), a built tree only what changed.
fn needed_gib(root: &std::path::Path) -> u64 {
    if root.join("target/debug").is_dir() {
        4
    } else {
        12
    }
}

/// Seconds each fuzz target runs in the test suite (`cargo xtask fuzz --seconds N` runs longer).
pub const CI_FUZZ_SECONDS: u64 = 20;

#[derive(clap::Args)]
pub struct Args {
    /// Skip installing prerequisites (assume `cargo xtask setup` ran).
    #[arg(long)]
    no_setup: bool,
    /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

pub fn run_tests(args: &Args) -> anyhow::Result<()> {
    if !args.no_setup {
        setup::run(&setup::Args {})?;
    }
    check_ebpf::run(&check_ebpf::Args::default())?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the kernel and end-to-end tests need root (eBPF, cgroups, network namespaces); run as root");
    }
    let root = crate::ebpf::repo_root();
    disk::require_free(&root, needed_gib(&root), "`cargo xtask test`")?;
    run(cargo().current_dir(&root).args(["build", "--workspace", "--bins"]))?;
    image::run_image(&image::Args::default())?;
    run(cargo().current_dir(&root).args(["test", "--workspace", "--no-fail-fast"]).args(&args.cargo_test_args))?;
    fuzz::run(&fuzz::Args { seconds: CI_FUZZ_SECONDS, targets: Vec::new() })
}
