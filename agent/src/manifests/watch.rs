//! Watching a manifests directory: a fresh [`Loaded`] whenever any file's content changes.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::load::{load_dir, manifest_files, Loaded};

/// A digest of the directory: every manifest file's path and content. Content is hashed
/// (not just mtimes) so that atomic renames and same-second rewrites are seen.
fn fingerprint(dir: &Path) -> u64 {
    let mut hasher = DefaultHasher::new();
    match manifest_files(dir) {
        Ok(files) => {
            for file in files {
                file.hash(&mut hasher);
                match std::fs::read(&file) {
                    Ok(bytes) => bytes.hash(&mut hasher),
                    Err(e) => e.kind().to_string().hash(&mut hasher),
                }
            }
        }
        Err(e) => e.kind().to_string().hash(&mut hasher),
    }
    hasher.finish()
}

fn load(dir: &Path) -> Arc<Loaded> {
    let (state, errors) = load_dir(dir);
    for error in &errors {
        tracing::warn!(%error, "manifest not loaded");
    }
    Arc::new(Loaded { state, errors })
}

/// Loads `dir` now and then polls it every `interval` (use ~200 ms), publishing a new
/// [`Loaded`] when any manifest file was added, removed or changed. The receiver holds
/// the initial load at once. The polling task stops when every receiver is dropped.
/// Must be called within a Tokio runtime.
pub fn watch_dir(dir: PathBuf, interval: Duration) -> watch::Receiver<Arc<Loaded>> {
    let mut last = fingerprint(&dir);
    let (tx, rx) = watch::channel(load(&dir));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if tx.is_closed() {
                return;
            }
            let scan_dir = dir.clone();
            let previous = last;
            let scanned = tokio::task::spawn_blocking(move || {
                let now = fingerprint(&scan_dir);
                (now != previous).then(|| (now, load(&scan_dir)))
            })
            .await;
            match scanned {
                Ok(Some((now, loaded))) => {
                    last = now;
                    tracing::info!(dir = %dir.display(), objects = loaded.state.len(), errors = loaded.errors.len(), "manifests changed");
                    if tx.send(loaded).is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "manifest scan failed"),
            }
        }
    });
    rx
}
