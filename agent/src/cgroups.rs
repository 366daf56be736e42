//! Finding the cgroup2 mount and each pod's cgroup from its UID.
//!
//! The kubelet puts every pod in a pod-level cgroup below its cgroup root; the
//! container runtime (containerd, CRI-O) creates the container cgroups below that. The
//! pod cgroup is what the agent enrolls: its id (the directory's inode number) is what
//! `bpf_get_current_cgroup_id` reports for the connect hook... once resolved to the
//! pod level by the eBPF program's ancestor walk.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ambit_proxy_core::identity::CgroupId;

/// Errors finding the cgroup v2 hierarchy.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("no cgroup2 filesystem is mounted (none in /proc/self/mounts)")]
    NotMounted,
}

/// The mount point of the cgroup v2 hierarchy, from `/proc/self/mounts`
/// (`/sys/fs/cgroup` on most nodes, `/sys/fs/cgroup/unified` on hybrid hosts).
pub fn cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let path = PathBuf::from("/proc/self/mounts");
    let text = std::fs::read_to_string(&path).map_err(|source| CgroupError::Read { path, source })?;
    cgroup2_mount_in(&text).ok_or(CgroupError::NotMounted)
}

/// The first cgroup2 mount point listed in a mounts table (fstab format).
pub fn cgroup2_mount_in(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount_path(target)))
    })
}

/// Undoes the octal escapes (`\040` for a space...) of /proc/self/mounts.
fn unescape_mount_path(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let code = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A pod's cgroup: its directory and its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodCgroup {
    pub path: PathBuf,
    pub id: CgroupId,
}

/// A pod's QoS class, which selects the parent cgroup of its pod cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// Parses `status.qosClass` (case-insensitive); None for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "guaranteed" => Some(Self::Guaranteed),
            "burstable" => Some(Self::Burstable),
            "besteffort" => Some(Self::BestEffort),
            _ => None,
        }
    }

    /// The directory component the kubelet uses (None: guaranteed pods sit directly below kubepods).
    fn dir(self) -> Option<&'static str> {
        match self {
            Self::Guaranteed => None,
            Self::Burstable => Some("burstable"),
            Self::BestEffort => Some("besteffort"),
        }
    }
}

/// Finds pod cgroups below the kubelet's cgroup root, for both cgroup drivers:
///
/// - systemd: `kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid, - as _>.slice`,
///   guaranteed pods at `kubepods.slice/kubepods-pod<uid_>.slice`;
/// - cgroupfs: `kubepods/<qos>/pod<uid>`, guaranteed pods at `kubepods/pod<uid>`.
#[derive(Clone, Debug)]
pub struct PodCgroupResolver {
    root: PathBuf,
}

impl PodCgroupResolver {
    /// `kubelet_cgroup_root` is the directory holding `kubepods.slice` or `kubepods`
    /// (normally the cgroup2 mount point).
    pub fn new(kubelet_cgroup_root: PathBuf) -> Self {
        Self { root: kubelet_cgroup_root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The candidate pod cgroup directories for a pod, most likely first.
    pub fn candidates(&self, pod_uid: &str, qos: Option<QosClass>) -> Vec<PathBuf> {
        let classes: Vec<QosClass> = match qos {
            Some(q) => vec![q],
            None => vec![QosClass::Burstable, QosClass::BestEffort, QosClass::Guaranteed],
        };
        let systemd_uid = pod_uid.replace('-', "_");
        let mut out = Vec::new();
        for class in classes {
            match class.dir() {
                Some(q) => {
                    out.push(self.root.join(format!("kubepods.slice/kubepods-{q}.slice/kubepods-{q}-pod{systemd_uid}.slice")));
                    out.push(self.root.join(format!("kubepods/{q}/pod{pod_uid}")));
                }
                None => {
                    out.push(self.root.join(format!("kubepods.slice/kubepods-pod{systemd_uid}.slice")));
                    out.push(self.root.join(format!("kubepods/pod{pod_uid}")));
                }
            }
        }
        out
    }

    /// The pod's cgroup, if it exists on this node. `qos` is `status.qosClass` (any case);
    /// unknown or None tries every class.
    pub fn find(&self, pod_uid: &str, qos: Option<&str>) -> Option<PodCgroup> {
        if pod_uid.is_empty() || pod_uid.contains('/') || pod_uid.contains("..") {
            return None;
        }
        let qos = qos.and_then(QosClass::parse);
        self.candidates(pod_uid, qos).into_iter().find_map(|path| {
            let meta = std::fs::metadata(&path).ok().filter(|m| m.is_dir())?;
            Some(PodCgroup { id: CgroupId(meta.ino()), path })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ino(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn finds_the_cgroup2_mount() {
        let mounts = "sysfs /sys sysfs rw 0 0\n\
            tmpfs /sys/fs/cgroup tmpfs ro 0 0\n\
            cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nsdelegate 0 0\n\
            cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n";
        assert_eq!(cgroup2_mount_in(mounts), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(cgroup2_mount_in("cgroup2 /a\\040b cgroup2 rw 0 0\n"), Some(PathBuf::from("/a b")));
        assert_eq!(cgroup2_mount_in("sysfs /sys sysfs rw 0 0\n"), None);
    }

    #[test]
    fn this_machine_has_a_cgroup2_mount() {
        let mount = cgroup2_mount().unwrap();
        assert!(mount.join("cgroup.controllers").exists(), "{}", mount.display());
    }

    #[test]
    fn systemd_driver_layout() {
        let root = tempfile::tempdir().unwrap();
        let uid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
        let burstable = root.path().join("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b4e28ba_2fa1_11d2_883f_0016d3cca427.slice");
        std::fs::create_dir_all(burstable.join("cri-containerd-abc.scope")).unwrap();
        let guaranteed_uid = "00000000-0000-0000-0000-000000000001";
        let guaranteed = root.path().join("kubepods.slice/kubepods-pod00000000_0000_0000_0000_000000000001.slice");
        std::fs::create_dir_all(guaranteed.join("crio-def.scope")).unwrap();

        let resolver = PodCgroupResolver::new(root.path().to_path_buf());
        let found = resolver.find(uid, Some("Burstable")).unwrap();
        assert_eq!(found, PodCgroup { id: CgroupId(ino(&burstable)), path: burstable.clone() });
        assert_eq!(resolver.find(uid, None).unwrap().path, burstable);
        assert_eq!(resolver.find(uid, Some("BestEffort")), None);
        let g = resolver.find(guaranteed_uid, Some("Guaranteed")).unwrap();
        assert_eq!(g.id, CgroupId(ino(&guaranteed)));
        assert_eq!(resolver.find(guaranteed_uid, None).unwrap().path, guaranteed);
        assert_ne!(g.id, found.id);
    }

    #[test]
    fn cgroupfs_driver_layout() {
        let root = tempfile::tempdir().unwrap();
        let uid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
        let besteffort = root.path().join(format!("kubepods/besteffort/pod{uid}"));
        std::fs::create_dir_all(besteffort.join("0123456789abcdef")).unwrap();
        let guaranteed = root.path().join("kubepods/podaaaa");
        std::fs::create_dir_all(&guaranteed).unwrap();

        let resolver = PodCgroupResolver::new(root.path().to_path_buf());
        assert_eq!(resolver.find(uid, Some("BestEffort")).unwrap().id, CgroupId(ino(&besteffort)));
        assert_eq!(resolver.find(uid, None).unwrap().path, besteffort);
        assert_eq!(resolver.find("aaaa", Some("Guaranteed")).unwrap().id, CgroupId(ino(&guaranteed)));
        assert_eq!(resolver.find("missing", None), None);
        assert_eq!(resolver.find("../kubepods", None), None);
    }
}
