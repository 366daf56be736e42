//! Watching a manifests directory: a fresh [`Loaded`] whenever any file changes.
//!
//! Each poll lists the directory and compares every file's stamp (size, modification
//! time in nanoseconds, inode) with the last poll; only new or changed files are read
//! and parsed again, so a change to one file among thousands costs one parse. An atomic
//! rename changes the inode, and any rewrite changes the modification time. The merged
//! state is rebuilt only for the kinds of object the changed files hold (or held).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::load::{manifest_files, parse_file, Loaded, ParsedFile};
use super::ManifestError;
use crate::cluster::{ClusterState, ObjectKind};

/// What identifies one version of a file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime_ns: i128,
    ino: u64,
    ctime_ns: i128,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Stamp {
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ino: meta.ino(),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        })
    }
}

/// One file's objects (shared with the merged state) and the documents that failed.
#[derive(Default)]
struct FileState {
    state: ClusterState,
    errors: Vec<ManifestError>,
}

impl FileState {
    fn of(parsed: ParsedFile) -> Self {
        let mut state = ClusterState::new();
        for object in parsed.objects {
            // Keys were checked when the file was parsed.
            let _ = state.insert(object);
        }
        Self { state, errors: parsed.errors }
    }

    fn kinds(&self) -> impl Iterator<Item = ObjectKind> + '_ {
        ObjectKind::ALL.into_iter().filter(|k| self.state.count(*k) > 0)
    }
}

/// The parsed content of a manifests directory, file by file, and all of it merged.
///
/// The merged state is kept between refreshes: a change rebuilds only the kinds the
/// changed files held before or hold now, so the other kinds' maps (and every object)
/// stay the same allocations, which lets translation reuse what it derived from them.
#[derive(Default)]
pub struct ManifestCache {
    files: BTreeMap<PathBuf, (Option<Stamp>, FileState)>,
    listing_error: Option<String>,
    merged: ClusterState,
}

impl ManifestCache {
    /// Rescans `dir`, re-reading only files that are new or changed. Returns the whole
    /// directory's content when anything changed (always on the first call).
    pub fn refresh(&mut self, dir: &Path) -> Option<Loaded> {
        let first = self.files.is_empty() && self.listing_error.is_none();
        let mut changed = first;
        let mut dirty: BTreeSet<ObjectKind> = BTreeSet::new();
        match manifest_files(dir) {
            Err(e) => {
                let message = format!("cannot read directory: {e}");
                changed |= self.listing_error.as_deref() != Some(message.as_str()) || !self.files.is_empty();
                self.listing_error = Some(message);
                for (_, old) in std::mem::take(&mut self.files).into_values() {
                    dirty.extend(old.kinds());
                }
            }
            Ok(files) => {
                changed |= self.listing_error.take().is_some();
                self.files.retain(|path, (_, old)| {
                    let keep = files.binary_search(path).is_ok();
                    if !keep {
                        dirty.extend(old.kinds());
                        changed = true;
                    }
                    keep
                });
                for file in files {
                    let stamp = Stamp::of(&file);
                    let fresh = match self.files.get(&file) {
                        Some((old, _)) => *old != stamp || stamp.is_none(),
                        None => true,
                    };
                    if fresh {
                        let parsed = FileState::of(parse_file(&file));
                        dirty.extend(parsed.kinds());
                        if let Some((_, old)) = self.files.insert(file, (stamp, parsed)) {
                            dirty.extend(old.kinds());
                        }
                        changed = true;
                    }
                }
            }
        }
        changed.then(|| self.loaded(dir, &dirty))
    }

    /// Everything, as one state: files in path order, later definitions winning. Only
    /// the `dirty` kinds are merged again.
    fn loaded(&mut self, dir: &Path, dirty: &BTreeSet<ObjectKind>) -> Loaded {
        for kind in dirty {
            self.merged.replace_kind(*kind, ClusterState::new());
            for (_, file) in self.files.values() {
                self.merged.extend_kind(*kind, &file.state);
            }
        }
        let mut errors = Vec::new();
        if let Some(message) = &self.listing_error {
            errors.push(ManifestError { file: dir.to_path_buf(), document: None, kind: None, name: None, message: message.clone() });
        }
        for (_, file) in self.files.values() {
            errors.extend(file.errors.iter().cloned());
        }
        Loaded { state: self.merged.clone(), errors }
    }
}

fn publish(loaded: Loaded) -> Arc<Loaded> {
    for error in &loaded.errors {
        tracing::warn!(%error, "manifest not loaded");
    }
    Arc::new(loaded)
}

/// Loads `dir` now and then polls it every `interval` (use ~200 ms), publishing a new
/// [`Loaded`] when any manifest file was added, removed or changed. The receiver holds
/// the initial load at once. The polling task stops when every receiver is dropped.
/// Must be called within a Tokio runtime.
pub fn watch_dir(dir: PathBuf, interval: Duration) -> watch::Receiver<Arc<Loaded>> {
    let mut cache = ManifestCache::default();
    let initial = cache.refresh(&dir).unwrap_or_default();
    let (tx, rx) = watch::channel(publish(initial));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if tx.is_closed() {
                return;
            }
            let scan_dir = dir.clone();
            let scanned = tokio::task::spawn_blocking(move || {
                let loaded = cache.refresh(&scan_dir);
                (cache, loaded)
            })
            .await;
            match scanned {
                Ok((back, loaded)) => {
                    cache = back;
                    if let Some(loaded) = loaded {
                        tracing::info!(dir = %dir.display(), objects = loaded.state.len(), errors = loaded.errors.len(), "manifests changed");
                        if tx.send(publish(loaded)).is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "manifest scan failed");
                    return;
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n";
    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: a\nspec:\n  clusterIP: 10.96.0.1\n  ports: [{port: 80}]\n";

    #[test]
    fn only_changed_files_are_parsed_again_and_every_change_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ns.yaml"), NS).unwrap();
        let mut cache = ManifestCache::default();
        let first = cache.refresh(dir.path()).expect("first refresh reports content");
        assert_eq!(first.state.namespaces.len(), 1);
        assert!(cache.refresh(dir.path()).is_none(), "nothing changed");

        // Added file.
        std::fs::write(dir.path().join("svc.yaml"), SVC).unwrap();
        let added = cache.refresh(dir.path()).expect("new file");
        assert_eq!(added.state.services.len(), 1);

        // Same-size rewrite (atomic rename: new inode).
        let tmp = dir.path().join(".svc.tmp");
        std::fs::write(&tmp, SVC.replace("10.96.0.1", "10.96.0.2")).unwrap();
        std::fs::rename(&tmp, dir.path().join("svc.yaml")).unwrap();
        let rewritten = cache.refresh(dir.path()).expect("rewritten file");
        let svc = rewritten.state.services.values().next().unwrap();
        assert_eq!(svc.cluster_ips.addresses(), ["10.96.0.2".parse::<std::net::IpAddr>().unwrap()]);

        // Removed file.
        std::fs::remove_file(dir.path().join("svc.yaml")).unwrap();
        let removed = cache.refresh(dir.path()).expect("removed file");
        assert!(removed.state.services.is_empty());
        assert_eq!(removed.state.namespaces.len(), 1);
    }

    #[test]
    fn a_change_merges_again_only_the_kinds_it_touches() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a-ns.yaml"), NS).unwrap();
        std::fs::write(dir.path().join("b-svc.yaml"), SVC).unwrap();
        let mut cache = ManifestCache::default();
        let first = cache.refresh(dir.path()).unwrap();

        // A later file redefines the Service: it wins; the Namespaces map is untouched.
        std::fs::write(dir.path().join("c-svc.yaml"), SVC.replace("10.96.0.1", "10.96.0.3")).unwrap();
        let second = cache.refresh(dir.path()).unwrap();
        assert!(second.state.namespaces.same(&first.state.namespaces), "Namespaces were merged again");
        assert!(!second.state.services.same(&first.state.services));
        let ip = |l: &Loaded| l.state.services.values().next().unwrap().cluster_ips.addresses().to_vec();
        assert_eq!(ip(&second), ["10.96.0.3".parse::<std::net::IpAddr>().unwrap()]);
        assert_eq!(first.state.services.len(), 1, "a published state is never changed");
        assert_eq!(ip(&first), ["10.96.0.1".parse::<std::net::IpAddr>().unwrap()]);

        // Removing the later file brings back the earlier definition, the same object.
        std::fs::remove_file(dir.path().join("c-svc.yaml")).unwrap();
        let third = cache.refresh(dir.path()).unwrap();
        assert_eq!(ip(&third), ip(&first));
        let (a, b) = (third.state.services.values().next().unwrap(), first.state.services.values().next().unwrap());
        assert!(Arc::ptr_eq(a, b), "an unchanged file's objects are shared, not copied");
        assert!(third.state.namespaces.same(&first.state.namespaces));
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_crash() {
        let mut cache = ManifestCache::default();
        let loaded = cache.refresh(Path::new("/nonexistent/ambit-manifests")).unwrap();
        assert_eq!(loaded.errors.len(), 1);
        assert!(cache.refresh(Path::new("/nonexistent/ambit-manifests")).is_none());
    }
}
