//! Project tasks: `cargo xtask <command>`.
//!
//! Each subcommand lives in its own module; add new ones to [`Command`].

mod bench;
mod build_ebpf;
mod check_ebpf;
mod cmd;
mod demo;
mod demo_mesh;
mod disk;
mod ebpf;
mod fuzz;
mod image;
mod setup;
mod test;

use clap::{Parser, Subcommand};

/// Counts live heap bytes, so the bench's control-plane scenario can say how much the
/// route table holds.
#[global_allocator]
static GLOBAL: ambit_alloc_count::Counting = ambit_alloc_count::Counting;

#[derive(Parser)]
#[command(name = "xtask", about = "Ambit project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the eBPF and fuzzing toolchains (llvm-22-dev, nightly rust-src, bpf-linker, cargo-fuzz); idempotent.
    Setup(setup::Args),
    /// Build the eBPF programs and update the committed object ebpf/obj/ambit.bpf.o.
    BuildEbpf(build_ebpf::Args),
    /// Rebuild the eBPF programs from scratch and fail if the committed object differs.
    CheckEbpf(check_ebpf::Args),
    /// Build the agent's container image offline (static musl binary, from scratch) as localhost/ambit-agent:test.
    Image(image::Args),
    /// Run Ambit on a local test bed with the example manifests and explain what happens (needs root).
    Demo(demo::Args),
    /// Run each cargo-fuzz target (fuzz/) for a bounded time from its committed corpus; fails on a crash.
    Fuzz(fuzz::Args),
    /// Install prerequisites and run the whole test suite, as CI does (needs root).
    Test(test::Args),
    /// Measure Ambit against a direct connection and HAProxy; writes target/bench/report.{md,json} (needs root).
    Bench(bench::Args),
    /// The in-process control-plane benchmark (run by `bench` from an optimised build).
    #[command(hide = true)]
    BenchControlPlane(bench::control_plane::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup(args) => setup::run(&args),
        Command::BuildEbpf(args) => build_ebpf::run(&args),
        Command::CheckEbpf(args) => check_ebpf::run(&args),
        Command::Image(args) => image::run_image(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::Test(args) => test::run_tests(&args),
        Command::Bench(args) => bench::run(&args),
        Command::BenchControlPlane(args) => bench::control_plane::run(&args),
    }
}
