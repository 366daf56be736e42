//! Making sure the pin directory is on a mounted BPF file system.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nix::mount::{mount, MsFlags};

/// Where bpffs is conventionally mounted; mounted there when no bpffs is mounted yet.
pub const DEFAULT_MOUNT: &str = "/sys/fs/bpf";

/// Mount points of every bpffs in `/proc/self/mounts`.
pub fn bpffs_mounts() -> anyhow::Result<Vec<PathBuf>> {
    let mounts = fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    Ok(mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _source = fields.next()?;
            let target = fields.next()?;
            let fstype = fields.next()?;
            (fstype == "bpf").then(|| PathBuf::from(unescape(target)))
        })
        .collect())
}

/// `/proc/self/mounts` escapes spaces and the like as octal `\NNN`.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let v = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts bpffs at [`DEFAULT_MOUNT`] if it is not mounted there, then checks that
/// `pin_dir` lies on a bpffs and creates it.
pub fn prepare_pin_dir(pin_dir: &Path) -> anyhow::Result<()> {
    let default = Path::new(DEFAULT_MOUNT);
    if !bpffs_mounts()?.iter().any(|m| m == default) {
        fs::create_dir_all(default).with_context(|| format!("creating {DEFAULT_MOUNT}"))?;
        mount(Some("bpf"), default, Some("bpf"), MsFlags::empty(), None::<&str>)
            .with_context(|| format!("mounting bpffs at {DEFAULT_MOUNT}"))?;
    }
    let mounts = bpffs_mounts()?;
    if !mounts.iter().any(|m| pin_dir.starts_with(m)) {
        bail!(
            "pin directory {} is not on a BPF file system (bpffs mounts: {:?})",
            pin_dir.display(),
            mounts
        );
    }
    fs::create_dir_all(pin_dir).with_context(|| format!("creating {}", pin_dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn unescapes_octal_sequences() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape("/sys/fs/bpf"), "/sys/fs/bpf");
        assert_eq!(unescape(r"/x\"), r"/x\");
    }
}
