//! `cargo xtask build-ebpf`: build the programs and update `ebpf/obj/ambit.bpf.o`.

use std::path::PathBuf;

use anyhow::Context;

use crate::ebpf;

#[derive(clap::Args)]
pub struct Args {
    /// Cargo target directory for the eBPF build (default: ebpf/programs/target).
    #[arg(long)]
    target_dir: Option<PathBuf>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let target_dir = args
        .target_dir
        .clone()
        .unwrap_or_else(|| ebpf::repo_root().join("ebpf/programs/target"));
    let object = ebpf::build(&target_dir)?;
    let dest = ebpf::committed_object();
    std::fs::create_dir_all(dest.parent().expect("has a parent"))?;
    std::fs::copy(&object, &dest).with_context(|| format!("copying to {}", dest.display()))?;
    println!("wrote {}", dest.display());
    Ok(())
}
