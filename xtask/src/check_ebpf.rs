//! `cargo xtask check-ebpf`: rebuild the programs in a fresh target directory and
//! fail unless the result is byte-identical to the committed `ebpf/obj/ambit.bpf.o`.

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::ebpf;

#[derive(clap::Args, Default)]
pub struct Args {
    /// Keep the fresh build here instead of a temporary directory (kept afterwards).
    #[arg(long)]
    target_dir: Option<PathBuf>,
}

/// Removes the temporary target directory when the check ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (target_dir, _guard) = match &args.target_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = std::env::temp_dir().join(format!("ambit-check-ebpf-{}", std::process::id()));
            (dir.clone(), Some(TempDir(dir)))
        }
    };
    let fresh_path = ebpf::build(&target_dir)?;
    let fresh = std::fs::read(&fresh_path)?;
    let committed_path = ebpf::committed_object();
    let committed = std::fs::read(&committed_path).with_context(|| format!("reading {}", committed_path.display()))?;
    if fresh != committed {
        let first = fresh.iter().zip(&committed).position(|(a, b)| a != b);
        bail!(
            "{} is stale: a fresh build differs ({} vs {} bytes, first difference at {:?}); run `cargo xtask build-ebpf` and commit",
            committed_path.display(),
            fresh.len(),
            committed.len(),
            first
        );
    }
    println!(
        "{} matches a fresh build ({} bytes)",
        committed_path.display(),
        fresh.len()
    );
    Ok(())
}
