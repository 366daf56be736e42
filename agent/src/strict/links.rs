//! Attaching the STRICT classifier to interfaces (tcx egress), one pinned link per
//! interface under `<pin_dir>/strict/<interface>`, so that enforcement survives an
//! agent restart: a new agent attaches its own link before the old one is detached.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use aya::programs::links::FdLink;
use aya::programs::tc::TcAttachOptions;
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};

use crate::redirect::sys;

/// The classifier's name in the object.
pub const PROGRAM: &str = "ambit_strict";

/// The interfaces this agent attached to: name -> ifindex at attach time.
pub struct Links {
    dir: PathBuf,
    attached: BTreeMap<String, u32>,
}

impl Links {
    /// Links under `dir` (created); links pinned there by a previous agent are
    /// replaced or removed by the first [`Links::sync`].
    pub fn new(dir: PathBuf) -> anyhow::Result<Self> {
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir, attached: BTreeMap::new() })
    }

    /// Makes the classifier attached to exactly the interfaces `wanted`. Returns one
    /// problem per interface that could not be attached or detached.
    pub fn sync(&mut self, program: &mut SchedClassifier, wanted: &BTreeMap<String, u32>) -> Vec<String> {
        let mut problems = Vec::new();
        for (iface, index) in wanted {
            if self.attached.get(iface) == Some(index) {
                continue;
            }
            match self.attach(program, iface) {
                Ok(()) => {
                    self.attached.insert(iface.clone(), *index);
                }
                Err(error) => problems.push(format!("attaching the STRICT guard to {iface}: {error:#}")),
            }
        }
        for stale in self.pinned().into_iter().filter(|name| !wanted.contains_key(name)) {
            self.attached.remove(&stale);
            if let Err(error) = retire(&self.dir.join(&stale)) {
                problems.push(format!("detaching the STRICT guard from {stale}: {error:#}"));
            }
        }
        problems
    }

    /// Attaches a new link to `iface`, then replaces the pinned one (if any) with it.
    fn attach(&self, program: &mut SchedClassifier, iface: &str) -> anyhow::Result<()> {
        let options = TcAttachOptions::TcxOrder(LinkOrder::default());
        let id = program.attach_with_options(iface, TcAttachType::Egress, options)?;
        let link: FdLink = program.take_link(id)?.try_into().map_err(|e| anyhow!("{e}"))?;
        let path = self.dir.join(iface);
        if path.exists() {
            // The old link may be defunct (its interface was recreated): detaching
            // then fails, removing the pin still succeeds.
            let _ = retire(&path);
        }
        link.pin(&path).with_context(|| format!("pinning {}", path.display()))?;
        Ok(())
    }

    /// Interface names with a pinned link.
    fn pinned(&self) -> Vec<String> {
        fs::read_dir(&self.dir)
            .map(|entries| entries.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
            .unwrap_or_default()
    }
}

/// Detaches the link pinned at `path` (if its interface still exists) and removes the pin.
pub fn retire(path: &Path) -> anyhow::Result<()> {
    let detached = sys::obj_get(path).and_then(|fd| sys::link_detach(&fd));
    fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    match detached {
        Ok(()) => Ok(()),
        // ENOLINK: the interface is gone and the link with it.
        Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("detaching {}", path.display())),
    }
}

/// Detaches every link pinned under `dir` and removes it (uninstall).
pub fn retire_all(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        retire(&entry?.path())?;
    }
    Ok(())
}
