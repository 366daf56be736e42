//! Free disk space, checked before a build that needs a lot of it.
//!
//! A clean `cargo xtask test` writes about 8 GiB (the debug build of every test binary,
//! the container image's LTO build, the fuzz targets); when the disk fills half-way, the
//! failure is a linker's `No space left on device` deep in a build log. Checking first
//! turns that into one clear line.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{bail, Context};

const GIB: u64 = 1 << 30;

/// Bytes an unprivileged writer may still use on the filesystem holding `path`.
pub fn available_bytes(path: &Path) -> anyhow::Result<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes()).context("a path with a NUL byte")?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is NUL-terminated and `stats` is valid for one `statvfs` write.
    if unsafe { libc::statvfs(c_path.as_ptr(), stats.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("statvfs {}", path.display()));
    }
    // SAFETY: statvfs returned 0, so it filled `stats`.
    let stats = unsafe { stats.assume_init() };
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Fails, saying how much is free and how much `what` needs, when the filesystem
/// holding `path` has less than `needed_gib` GiB available.
pub fn require_free(path: &Path, needed_gib: u64, what: &str) -> anyhow::Result<()> {
    let available = available_bytes(path)?;
    check(available, needed_gib, what, path)
}

fn check(available: u64, needed_gib: u64, what: &str, path: &Path) -> anyhow::Result<()> {
    if available < needed_gib * GIB {
        bail!(
            "{what} needs about {needed_gib} GiB free on the filesystem of {}, and {:.1} GiB are; \
             free some (an old `target/` directory is the usual culprit) and run it again",
            path.display(),
            available as f64 / GIB as f64
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_little_space_is_refused_with_both_figures() {
        let error = check(3 * GIB / 2, 12, "a clean test run", Path::new("/repo")).unwrap_err().to_string();
        assert!(error.contains("about 12 GiB free"), "{error}");
        assert!(error.contains("and 1.5 GiB are"), "{error}");
        assert!(error.contains("/repo"), "{error}");
    }

    #[test]
    fn enough_space_passes() {
        check(12 * GIB, 12, "a clean test run", Path::new("/repo")).unwrap();
    }

    #[test]
    fn a_missing_path_is_an_error_not_zero_bytes() {
        let error = available_bytes(Path::new("/no/such/dir/for/ambit")).unwrap_err();
        assert!(format!("{error:#}").contains("statvfs /no/such/dir/for/ambit"), "{error:#}");
    }
}
