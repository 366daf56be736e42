//! Running the agent's container image (`cargo xtask image`) as a bed's node agent, set
//! up the way `daemonset/daemonset.yaml` sets up the agent's pod: the manifest's
//! capabilities, hostPath volumes (mount points, read-only flags, propagation), host
//! network (the bed's node namespace), host PID, read-only root file system, user and
//! no privilege escalation are read FROM the manifest, so the test follows it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_yaml::Value;

/// The image the end-to-end test runs (`AMBIT_AGENT_IMAGE` overrides it).
pub const DEFAULT_IMAGE: &str = "localhost/ambit-agent:test";

/// The agent image to run.
pub fn image() -> String {
    std::env::var("AMBIT_AGENT_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.to_owned())
}

/// Fails clearly when `image` is not in podman's local storage.
pub fn require_image(image: &str) -> Result<()> {
    let status = Command::new("podman")
        .args(["image", "exists", image])
        .status()
        .context("running podman (install it with `cargo xtask setup`)")?;
    if !status.success() {
        bail!("container image {image} is missing: build it with `cargo xtask image`");
    }
    Ok(())
}

/// Makes sure a bpffs is mounted at `/sys/fs/bpf` on the host, as a shared mount (a
/// `Bidirectional` volume needs one, as on a Kubernetes node): the container's bpffs
/// volume is that mount.
pub fn ensure_host_bpffs() -> Result<()> {
    use nix::mount::{mount, MsFlags};
    let target = Path::new("/sys/fs/bpf");
    let mounts = std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    let mounted = mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 2 && f[1] == "/sys/fs/bpf" && f[2] == "bpf"
    });
    if !mounted {
        std::fs::create_dir_all(target).context("creating /sys/fs/bpf")?;
        mount(Some("bpf"), target, Some("bpf"), MsFlags::empty(), None::<&str>).context("mounting bpffs at /sys/fs/bpf")?;
    }
    mount(None::<&str>, target, None::<&str>, MsFlags::MS_SHARED, None::<&str>).context("making /sys/fs/bpf a shared mount")?;
    Ok(())
}

/// The capability number of a Kubernetes capability name (`NET_ADMIN` or `CAP_NET_ADMIN`).
pub fn capability_number(name: &str) -> Option<u32> {
    const NAMES: &[&str] = &[
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
        "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
        "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
        "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
        "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let name = name.strip_prefix("CAP_").unwrap_or(name);
    NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)).map(|i| i as u32)
}

/// The capability mask of `names` (Kubernetes spelling).
pub fn capability_mask(names: &[String]) -> Result<u64> {
    names.iter().try_fold(0u64, |mask, name| {
        let n = capability_number(name).with_context(|| format!("unknown capability {name:?}"))?;
        Ok(mask | (1u64 << n))
    })
}

/// The effective capabilities (CapEff) of the main process of container `name`.
pub fn effective_capabilities(name: &str) -> Result<u64> {
    let out = Command::new("podman")
        .args(["--runtime", "runc", "inspect", "--format", "{{.State.Pid}}", name])
        .output()
        .context("running podman inspect")?;
    if !out.status.success() {
        bail!("podman inspect {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().context("podman inspect gave no pid")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:")).context("no CapEff in /proc/<pid>/status")?;
    u64::from_str_radix(line.trim(), 16).with_context(|| format!("bad CapEff {line:?}"))
}

/// A hostPath volume mounted into the agent's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostMount {
    pub host_path: PathBuf,
    pub mount_path: PathBuf,
    pub read_only: bool,
    /// `mountPropagation: Bidirectional`.
    pub bidirectional: bool,
}

/// What the DaemonSet's pod spec asks of the agent's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPodSpec {
    pub host_network: bool,
    pub host_pid: bool,
    pub privileged: bool,
    pub allow_privilege_escalation: bool,
    pub read_only_root: bool,
    /// `seccompProfile.type` (container, else pod); Kubernetes' default is `Unconfined`.
    pub seccomp: String,
    pub run_as_user: Option<u64>,
    pub drop_caps: Vec<String>,
    pub add_caps: Vec<String>,
    pub mounts: Vec<HostMount>,
    /// Mount paths of `emptyDir` volumes (a fresh tmpfs each, as the kubelet gives a pod).
    pub empty_dirs: Vec<PathBuf>,
}

/// The DaemonSet manifest of the repository.
pub fn daemonset_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../daemonset/daemonset.yaml")
}

fn strings(value: &Value) -> Vec<String> {
    value.as_sequence().map(|s| s.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

impl AgentPodSpec {
    /// Reads the spec of the container named `agent` from the DaemonSet at `path`.
    pub fn from_daemonset(path: &Path) -> Result<AgentPodSpec> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(yaml: &str) -> Result<AgentPodSpec> {
        let doc: Value = serde_yaml::from_str(yaml).context("parsing the DaemonSet")?;
        if doc["kind"].as_str() != Some("DaemonSet") {
            bail!("not a DaemonSet (kind {:?})", doc["kind"]);
        }
        let pod = &doc["spec"]["template"]["spec"];
        let container = pod["containers"]
            .as_sequence()
            .and_then(|cs| cs.iter().find(|c| c["name"].as_str() == Some("agent")))
            .context("no container named agent")?;
        let security = &container["securityContext"];
        let volumes = pod["volumes"].as_sequence().cloned().unwrap_or_default();
        let mut mounts = Vec::new();
        let mut empty_dirs = Vec::new();
        for mount in container["volumeMounts"].as_sequence().cloned().unwrap_or_default() {
            let name = mount["name"].as_str().context("a volumeMount without name")?;
            let volume = volumes
                .iter()
                .find(|v| v["name"].as_str() == Some(name))
                .with_context(|| format!("volumeMount {name} names no volume"))?;
            let mount_path = mount["mountPath"].as_str().with_context(|| format!("volumeMount {name} has no mountPath"))?;
            if volume.get("emptyDir").is_some() {
                empty_dirs.push(mount_path.into());
                continue;
            }
            let host_path = volume["hostPath"]["path"]
                .as_str()
                .with_context(|| format!("volume {name} is neither a hostPath nor an emptyDir"))?;
            mounts.push(HostMount {
                host_path: host_path.into(),
                mount_path: mount_path.into(),
                read_only: mount["readOnly"].as_bool().unwrap_or(false),
                bidirectional: mount["mountPropagation"].as_str() == Some("Bidirectional"),
            });
        }
        Ok(AgentPodSpec {
            host_network: pod["hostNetwork"].as_bool().unwrap_or(false),
            host_pid: pod["hostPID"].as_bool().unwrap_or(false),
            privileged: security["privileged"].as_bool().unwrap_or(false),
            allow_privilege_escalation: security["allowPrivilegeEscalation"].as_bool().unwrap_or(true),
            read_only_root: security["readOnlyRootFilesystem"].as_bool().unwrap_or(false),
            seccomp: security["seccompProfile"]["type"]
                .as_str()
                .or(pod["securityContext"]["seccompProfile"]["type"].as_str())
                .unwrap_or("Unconfined")
                .to_owned(),
            run_as_user: security["runAsUser"].as_u64(),
            drop_caps: strings(&security["capabilities"]["drop"]),
            add_caps: strings(&security["capabilities"]["add"]),
            mounts,
            empty_dirs,
        })
    }

    /// Fails unless `host_path` is visible at the same path in the container (under a
    /// hostPath volume mounted where it is on the host), as the agent's arguments name it.
    pub fn require_same_path(&self, host_path: &Path) -> Result<()> {
        if self.mounts.iter().any(|m| host_path.starts_with(&m.host_path) && m.host_path == m.mount_path) {
            return Ok(());
        }
        bail!("{} is under no hostPath volume mounted at the same path in the container", host_path.display())
    }

    /// `podman run` options that give the container this spec, with `node_netns` (a
    /// bed's node) as the host network. The container has podman's own cgroup (runc
    /// refuses `--cgroups=disabled`), outside the bed's cgroup root, and the host's cgroup
    /// namespace: it sees the host's hierarchy through the cgroup volume.
    pub fn podman_run_args(&self, node_netns: &str) -> Result<Vec<OsString>> {
        if !self.host_network {
            bail!("the DaemonSet does not use hostNetwork: the bed's node namespace cannot stand in for it");
        }
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |a: &str| args.push(a.into());
        push("--network");
        push(&format!("ns:/run/netns/{node_netns}"));
        if self.host_pid {
            push("--pid=host");
        }
        push("--cgroupns=host");
        if self.privileged {
            push("--privileged");
        }
        for cap in &self.drop_caps {
            push("--cap-drop");
            push(cap);
        }
        for cap in &self.add_caps {
            push("--cap-add");
            push(cap);
        }
        if !self.allow_privilege_escalation {
            push("--security-opt");
            push("no-new-privileges");
        }
        match self.seccomp.as_str() {
            "Unconfined" => {
                push("--security-opt");
                push("seccomp=unconfined");
            }
            // Podman's default profile stands in for the container runtime's.
            "RuntimeDefault" => {}
            other => bail!("seccompProfile type {other:?} is not supported by the test"),
        }
        if self.read_only_root {
            // Kubernetes mounts no tmpfs on a read-only root; neither does this.
            push("--read-only");
            push("--read-only-tmpfs=false");
        }
        if let Some(uid) = self.run_as_user {
            push("--user");
            push(&uid.to_string());
        }
        for m in &self.mounts {
            let mut options = vec![if m.read_only { "ro" } else { "rw" }, "rbind"];
            if m.bidirectional {
                options.push("rshared");
            }
            push("--volume");
            push(&format!("{}:{}:{}", m.host_path.display(), m.mount_path.display(), options.join(",")));
        }
        for path in &self.empty_dirs {
            push("--mount");
            push(&format!("type=tmpfs,destination={}", path.display()));
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_repository_daemonset() {
        let spec = AgentPodSpec::from_daemonset(&daemonset_path()).unwrap();
        assert!(spec.host_network);
        assert_eq!(spec.seccomp, "Unconfined");
        assert_eq!(spec.drop_caps, vec!["ALL".to_owned()]);
        assert!(!spec.add_caps.is_empty());
        assert!(spec.mounts.iter().any(|m| m.mount_path == Path::new("/sys/fs/bpf") && m.bidirectional));
        assert!(spec.mounts.iter().any(|m| m.mount_path == Path::new("/sys/fs/cgroup") && m.read_only));
        let args = spec.podman_run_args("ambit-x-node").unwrap();
        assert!(args.iter().any(|a| a == "ns:/run/netns/ambit-x-node"));
    }

    #[test]
    fn capability_names_map_to_numbers() {
        assert_eq!(capability_number("NET_ADMIN"), Some(12));
        assert_eq!(capability_number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(capability_number("BPF"), Some(39));
        assert_eq!(capability_number("NOPE"), None);
        assert_eq!(capability_mask(&["BPF".into(), "NET_ADMIN".into()]).unwrap(), (1 << 39) | (1 << 12));
        assert!(capability_mask(&["NOPE".into()]).is_err());
    }

    #[test]
    fn rejects_other_documents_and_dangling_mounts() {
        assert!(AgentPodSpec::parse("kind: Deployment").is_err());
        assert!(AgentPodSpec::parse("- not a map").is_err());
        let dangling = "kind: DaemonSet\nspec:\n  template:\n    spec:\n      containers:\n        - name: agent\n          volumeMounts:\n            - name: x\n              mountPath: /x\n";
        assert!(AgentPodSpec::parse(dangling).is_err());
    }
}
