//! The programs in the object, where they attach, and attaching them with a
//! gap-free handover from a previous agent's links.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{anyhow, Context};
use aya::programs::links::{CgroupAttachMode, FdLink, PinnedLink};
use aya::programs::{CgroupSock, CgroupSockAddr, SockOps};
use aya::Ebpf;

use super::sys;

/// How a program is loaded and attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    SockAddr,
    SockOps,
    Sock,
}

/// One program of the object.
#[derive(Clone, Copy, Debug)]
pub struct ProgramSpec {
    /// Function name in the object; also the link's pin name under `links/`.
    pub name: &'static str,
    /// The kernel's `enum bpf_attach_type` value of the hook.
    pub attach_type: u32,
    kind: Kind,
}

/// Every program Ambit attaches to the attach cgroup.
pub const PROGRAMS: [ProgramSpec; 6] = [
    ProgramSpec {
        name: "ambit_connect4",
        attach_type: 10,
        kind: Kind::SockAddr,
    },
    ProgramSpec {
        name: "ambit_connect6",
        attach_type: 11,
        kind: Kind::SockAddr,
    },
    ProgramSpec {
        name: "ambit_sockops",
        attach_type: 3,
        kind: Kind::SockOps,
    },
    ProgramSpec {
        name: "ambit_sock_release",
        attach_type: 34,
        kind: Kind::Sock,
    },
    ProgramSpec {
        name: "ambit_getpeername4",
        attach_type: 29,
        kind: Kind::SockAddr,
    },
    ProgramSpec {
        name: "ambit_getpeername6",
        attach_type: 30,
        kind: Kind::SockAddr,
    },
];

/// Loads `spec`'s program and attaches it to `cgroup`, returning the new link.
///
/// Attaching goes through `bpf_link_create` (kernel >= 5.7), which takes no flags for
/// cgroups (hence `Single`, i.e. 0) and always attaches in multi mode, so the new link
/// coexists with a previous agent's until that one is detached.
fn attach(ebpf: &mut Ebpf, spec: &ProgramSpec, cgroup: &File) -> anyhow::Result<FdLink> {
    let program = ebpf
        .program_mut(spec.name)
        .ok_or_else(|| anyhow!("program {} missing from the eBPF object", spec.name))?;
    let mode = CgroupAttachMode::Single;
    let link: FdLink = match spec.kind {
        Kind::SockAddr => {
            let p: &mut CgroupSockAddr = program.try_into()?;
            p.load()?;
            let id = p.attach(cgroup.as_fd(), mode)?;
            p.take_link(id)?.try_into()?
        }
        Kind::SockOps => {
            let p: &mut SockOps = program.try_into()?;
            p.load()?;
            let id = p.attach(cgroup.as_fd(), mode)?;
            p.take_link(id)?.try_into()?
        }
        Kind::Sock => {
            let p: &mut CgroupSock = program.try_into()?;
            p.load()?;
            let id = p.attach(cgroup.as_fd(), mode)?;
            p.take_link(id)?.try_into()?
        }
    };
    Ok(link)
}

/// Attaches every program to `cgroup` and pins the links under `links_dir`.
///
/// A link already pinned there (a previous agent's) is replaced only after the new
/// program is attached, so the hook is never empty, and is then detached, so exactly
/// one attachment of each program remains.
pub fn attach_all(ebpf: &mut Ebpf, cgroup: &File, links_dir: &Path) -> anyhow::Result<()> {
    for spec in &PROGRAMS {
        let new = attach(ebpf, spec, cgroup).with_context(|| format!("attaching {}", spec.name))?;
        let path = links_dir.join(spec.name);
        if path.exists() {
            retire(&path).with_context(|| format!("replacing {}", path.display()))?;
        }
        new.pin(&path).with_context(|| format!("pinning {}", path.display()))?;
    }
    Ok(())
}

/// Detaches the link pinned at `path` and removes the pin.
pub fn retire(path: &Path) -> anyhow::Result<()> {
    let fd = sys::obj_get(path).with_context(|| format!("opening {}", path.display()))?;
    sys::link_detach(&fd).with_context(|| format!("detaching {}", path.display()))?;
    let old = PinnedLink::from_pin(path)?;
    drop(old.unpin()?);
    Ok(())
}

/// Programs attached directly to `cgroup`, by Ambit hook name. Counts every program at
/// each hook, Ambit's or not; on a cgroup only Ambit uses, 1 each means installed.
pub fn attached_counts(attach_cgroup: &Path) -> anyhow::Result<BTreeMap<&'static str, usize>> {
    let cgroup = File::open(attach_cgroup).with_context(|| format!("opening cgroup {}", attach_cgroup.display()))?;
    let fd = cgroup.into();
    PROGRAMS
        .iter()
        .map(|spec| {
            let n = sys::prog_query_count(&fd, spec.attach_type)
                .with_context(|| format!("querying {} attachments", spec.name))?;
            Ok((spec.name, n))
        })
        .collect()
}
