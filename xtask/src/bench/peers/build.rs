//! Building Istio's ztunnel for the peer comparison, once: the source tarball in the
//! shared peers directory (default `<repo>/../shared/peers/ztunnel`, or
//! `AMBIT_ZTUNNEL_DIR`) is unpacked into `<target>/peers/ztunnel-src` and built with
//! upstream's `quick-release` profile, `tls-ring` (no BoringSSL) and `testing` (its
//! fake CA), into `<target>/peers/ztunnel-target`. A stamp remembers which tarball
//! was built and how long the build from scratch took; later runs reuse the build.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// What the bench runs of ztunnel.
#[derive(Debug, Clone)]
pub struct ZtunnelBuild {
    pub ztunnel: PathBuf,
    /// The fake CNI agent that hands a pod's netns to ztunnel.
    pub inpodserver: PathBuf,
    /// ztunnel's in-pod iptables capture (run inside each pod's netns).
    pub redirect_script: PathBuf,
    /// The tarball's name (it carries the upstream commit).
    pub source: String,
    /// How long the build from scratch took, when the bench did it.
    pub scratch_build_secs: Option<f64>,
    /// How long this run's build step took (unpack + cargo; seconds when cached).
    pub this_run_secs: f64,
    pub cached: bool,
}

/// The shared directory with ztunnel's tarball, README and bed script.
pub fn material_dir(root: &Path) -> PathBuf {
    std::env::var_os("AMBIT_ZTUNNEL_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("../shared/peers/ztunnel"))
}

fn tarball(dir: &Path) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {} (set AMBIT_ZTUNNEL_DIR)", dir.display()))?;
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("ztunnel-") && n.ends_with("-src.tar.gz")))
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("no ztunnel-*-src.tar.gz in {}", dir.display()),
        n => bail!("{n} ztunnel source tarballs in {}; keep one", dir.display()),
    }
}

/// Identifies a tarball's content (cache key; not a security check).
fn tarball_key(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    Ok(format!("{name} {} {:016x}", bytes.len(), h.finish()))
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Unpacks the tarball into `src` (emptied first) and keeps it out of Ambit's
/// workspace (it lies below the repository, so cargo would take Ambit's root
/// manifest for its workspace).
fn unpack(tarball: &Path, src: &Path) -> Result<()> {
    if src.exists() {
        std::fs::remove_dir_all(src).with_context(|| format!("removing {}", src.display()))?;
    }
    std::fs::create_dir_all(src)?;
    run(Command::new("tar").arg("-xzf").arg(tarball).arg("-C").arg(src), "tar -xzf (ztunnel source)")?;
    let manifest = src.join("Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    if !text.lines().any(|l| l.trim() == "[workspace]") {
        text.push_str("\n# Added by Ambit's bench: not a member of the enclosing Ambit workspace.\n[workspace]\n");
        std::fs::write(&manifest, text)?;
    }
    Ok(())
}

fn cargo_build(src: &Path, target: &Path) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new("nice");
    cmd.args(["-n", "10"]).arg(cargo).current_dir(src);
    cmd.args(["build", "--profile", "quick-release", "--no-default-features", "-F", "tls-ring,testing"]);
    cmd.args(["--bin", "ztunnel", "--example", "inpodserver"]);
    // The bench runs under `cargo run`, which sets CARGO_MANIFEST_DIR, CARGO_PKG_NAME
    // and more. ring's build script asks to rerun when those change, so with them set
    // the cached build would be redone (half an hour on a busy machine). Keep only
    // CARGO_HOME; ztunnel's own .cargo/config.toml sets its rustflags.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if (key.starts_with("CARGO_") && key != "CARGO_HOME") || key == "RUSTFLAGS" {
            cmd.env_remove(&key);
        }
    }
    cmd.env("CARGO_TARGET_DIR", target).env("CARGO_INCREMENTAL", "0");
    run(&mut cmd, "cargo build (ztunnel, quick-release; about 8 minutes on 2 cores)")
}

fn read_stamp(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Builds ztunnel unless this tarball's build is already in `target_dir`.
pub fn ensure(root: &Path, target_dir: &Path) -> Result<ZtunnelBuild> {
    let started = Instant::now();
    let tarball = tarball(&material_dir(root))?;
    let key = tarball_key(&tarball)?;
    let dir = target_dir.join("peers");
    let (src, target, stamp_path) = (dir.join("ztunnel-src"), dir.join("ztunnel-target"), dir.join("ztunnel.stamp.json"));
    let out = target.join("quick-release");
    let stamp = read_stamp(&stamp_path).filter(|s| s["key"] == key.as_str());
    let unpacked = std::fs::read_to_string(src.join(".ambit-unpacked")).is_ok_and(|k| k == key);
    let mut scratch_build_secs = stamp.as_ref().and_then(|s| s["scratch_build_secs"].as_f64());
    let cached = stamp.is_some() && unpacked && out.join("ztunnel").exists();
    if !unpacked {
        unpack(&tarball, &src)?;
    }
    let scratch = !target.exists();
    cargo_build(&src, &target)?;
    std::fs::write(src.join(".ambit-unpacked"), &key)?;
    if scratch {
        scratch_build_secs = Some(started.elapsed().as_secs_f64());
    }
    if stamp.is_none() || scratch {
        let s = json!({"key": key, "scratch_build_secs": scratch_build_secs});
        std::fs::write(&stamp_path, serde_json::to_string_pretty(&s)? + "\n")?;
    }
    let build = ZtunnelBuild {
        ztunnel: out.join("ztunnel"),
        inpodserver: out.join("examples").join("inpodserver"),
        redirect_script: src.join("scripts").join("ztunnel-redirect-inpod.sh"),
        source: tarball.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string(),
        scratch_build_secs,
        this_run_secs: started.elapsed().as_secs_f64(),
        cached,
    };
    for p in [&build.ztunnel, &build.inpodserver, &build.redirect_script] {
        if !p.exists() {
            bail!("the ztunnel build left no {}", p.display());
        }
    }
    Ok(build)
}

impl ZtunnelBuild {
    /// How the report describes the build.
    pub fn describe(&self) -> String {
        let scratch = match self.scratch_build_secs {
            Some(s) => format!("from scratch {:.0} s", s),
            None => "from-scratch time not recorded (target dir built outside the bench)".into(),
        };
        let now = if self.cached { "cached" } else { "built or updated this run" };
        format!(
            "{} (tls-ring, testing; profile quick-release): {scratch}; this run's build step {:.1} s ({now})",
            self.source, self.this_run_secs
        )
    }
}
