//! STRICT mode in the kernel: guarded pods accept TCP connections only through the
//! node proxy (the eBPF program is `ebpf/programs/src/strict.rs`).
//!
//! [`StrictGuard::install`] loads the classifier from the embedded object, opens the
//! pinned maps `AMBIT_GUARDED_PODS`, `AMBIT_TRUSTED_CGROUPS` and `AMBIT_STRICT_STATS`,
//! and fills the trusted cgroups (the agent's own, the probe cgroups).
//! [`StrictGuard::sync`] makes the guarded set exactly the given pod addresses: their
//! map entries, and the classifier on each one's node-side interface (tcx egress,
//! found from the pod's host route). Links are pinned under `<pin_dir>/strict/`, so
//! a restarting agent never leaves a guarded pod unguarded.

mod links;
pub mod metrics;
pub mod routes;
pub mod trust;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ambit_ebpf_common::{map_names, Addr, GuardedPod, TrustReason, TrustedCgroup, STRICT_STAT_COUNT};
use anyhow::{anyhow, Context};
use aya::maps::{HashMap, MapData, PerCpuArray};
use aya::programs::SchedClassifier;
use aya::{Ebpf, EbpfLoader};

use crate::redirect::MapCapacity;
pub use trust::Trusted;

/// Where the guard's maps and links live, and whom it trusts.
#[derive(Clone, Debug)]
pub struct StrictConfig {
    /// The redirection's pin directory (the maps are shared with it).
    pub pin_dir: PathBuf,
    /// The map sizes the redirection was loaded with.
    pub capacity: MapCapacity,
    /// Cgroups whose sockets may open connections to guarded pods.
    pub trusted: Vec<Trusted>,
    /// The node's cgroup v2 hierarchy: another agent's entry (a surge rollout's old or
    /// new agent) is kept while its cgroup still exists there. None: only `trusted`.
    pub cgroup_mount: Option<PathBuf>,
}

/// What one [`StrictGuard::sync`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StrictSync {
    /// Guarded addresses (map entries written).
    pub guarded: usize,
    /// Interfaces the classifier is attached to.
    pub interfaces: usize,
    /// Guarded addresses whose interface was not found (yet): retry later.
    pub unresolved: usize,
    pub problems: Vec<String>,
}

struct Inner {
    /// The addresses the last sync guarded.
    current: BTreeSet<IpAddr>,
    ebpf: Ebpf,
    guarded: HashMap<MapData, Addr, GuardedPod>,
    links: links::Links,
}

/// The installed STRICT guard.
pub struct StrictGuard {
    inner: Mutex<Inner>,
    stats: PerCpuArray<MapData, u64>,
    trusted: Vec<Trusted>,
}

fn links_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("strict")
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<aya::maps::Map> {
    ebpf.take_map(name).ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
}

impl StrictGuard {
    /// Loads the classifier and the maps (pinned next to the redirection's; install the
    /// redirection first) and writes the trusted cgroups.
    pub fn install(cfg: &StrictConfig) -> anyhow::Result<Self> {
        let mut loader = EbpfLoader::new();
        loader.default_map_pin_directory(cfg.pin_dir.join("maps"));
        for (name, entries) in cfg.capacity.overrides() {
            loader.map_max_entries(name, entries);
        }
        let mut ebpf = loader.load(crate::redirect::OBJECT).context("loading the eBPF object")?;
        let program: &mut SchedClassifier = ebpf
            .program_mut(links::PROGRAM)
            .ok_or_else(|| anyhow!("program {} missing from the eBPF object", links::PROGRAM))?
            .try_into()?;
        program.load().context("loading the STRICT classifier")?;
        let mut trusted: HashMap<MapData, u64, TrustedCgroup> = take_map(&mut ebpf, map_names::TRUSTED_CGROUPS)?.try_into()?;
        let live = cfg.cgroup_mount.as_deref().map(trust::live_cgroup_ids).unwrap_or_default();
        write_trusted(&mut trusted, &cfg.trusted, &live)?;
        let guarded: HashMap<MapData, Addr, GuardedPod> = take_map(&mut ebpf, map_names::GUARDED_PODS)?.try_into()?;
        // A previous agent's guarded addresses (pinned map): released like any others.
        let current = guarded.keys().flatten().map(|k| show(&k)).collect();
        let stats = take_map(&mut ebpf, map_names::STRICT_STATS)?.try_into()?;
        let links = links::Links::new(links_dir(&cfg.pin_dir))?;
        let inner = Inner { current, ebpf, guarded, links };
        Ok(Self { inner: Mutex::new(inner), stats, trusted: cfg.trusted.clone() })
    }

    /// The kernel's run statistics of the classifier (zeros while they are off).
    pub fn program_runs(&self) -> anyhow::Result<Vec<crate::redirect::ProgramRuns>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        crate::redirect::read_program_runs(&inner.ebpf, [links::PROGRAM])
    }

    /// The trusted cgroups written at install.
    pub fn trusted(&self) -> &[Trusted] {
        &self.trusted
    }

    /// Stops guarding the addresses not in `ips` (and guards none that is not guarded
    /// yet). The node calls this before publishing a configuration in which those pods
    /// are dialled from their callers' namespaces again, and [`StrictGuard::sync`] after
    /// it: so the proxy never dials a pod from a namespace the guard would drop.
    pub fn release(&self, ips: &BTreeSet<IpAddr>) -> StrictSync {
        let current = self.inner.lock().unwrap_or_else(|p| p.into_inner()).current.clone();
        let kept: BTreeSet<IpAddr> = current.intersection(ips).copied().collect();
        if kept.len() == current.len() {
            return StrictSync::default();
        }
        self.sync(&kept)
    }

    /// Makes the guarded set exactly `ips`: new addresses get their map entry before
    /// the classifier is attached to their interface; addresses no longer guarded lose
    /// theirs after it is detached. Continues past failures and reports them.
    pub fn sync(&self, ips: &BTreeSet<IpAddr>) -> StrictSync {
        let mut out = StrictSync::default();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let wanted = match interfaces(ips, &mut out) {
            Ok(wanted) => wanted,
            Err(error) => {
                out.problems.push(format!("reading the routing table: {error}"));
                return out;
            }
        };
        let keys: BTreeSet<Addr> = ips.iter().map(|ip| addr(*ip)).collect();
        add_entries(&mut inner.guarded, &keys, &mut out);
        let Inner { ebpf, links, guarded, .. } = &mut *inner;
        match ebpf.program_mut(links::PROGRAM).map(<&mut SchedClassifier>::try_from) {
            Some(Ok(program)) => out.problems.extend(links.sync(program, &wanted)),
            _ => out.problems.push("the STRICT classifier is not loaded".to_string()),
        }
        remove_entries(guarded, &keys, &mut out);
        out.interfaces = wanted.len();
        inner.current = ips.clone();
        out
    }

    /// Summed per-CPU counters, indexed like `ambit_ebpf_common::StrictStat`.
    pub fn stats(&self) -> anyhow::Result<Vec<u64>> {
        (0..STRICT_STAT_COUNT).map(|i| Ok(self.stats.get(&i, 0)?.iter().sum())).collect()
    }

    /// Detaches every STRICT link under `pin_dir` (part of `ambit-agent uninstall`).
    pub fn uninstall(pin_dir: &Path) -> anyhow::Result<()> {
        links::retire_all(&links_dir(pin_dir))
    }
}

/// The interface (name -> ifindex) of each guarded address; unresolved ones are
/// counted and reported.
fn interfaces(ips: &BTreeSet<IpAddr>, out: &mut StrictSync) -> std::io::Result<BTreeMap<String, u32>> {
    let table = routes::RouteTable::read()?;
    let mut wanted = BTreeMap::new();
    for ip in ips {
        let found = table
            .host_interface(*ip)
            .and_then(|iface| nix::net::if_::if_nametoindex(iface).map(|i| (iface.to_string(), i)).map_err(|e| format!("{iface}: {e}")));
        match found {
            Ok((iface, index)) => {
                wanted.insert(iface, index);
            }
            Err(problem) => {
                out.unresolved += 1;
                out.problems.push(format!("STRICT pod {ip} is not guarded yet: {problem}"));
            }
        }
    }
    Ok(wanted)
}

/// Makes the map hold `trusted`, plus the entries of other agents whose cgroup is still
/// `live` (during a surge rollout both agents dial guarded pods); the rest is removed.
fn write_trusted(map: &mut HashMap<MapData, u64, TrustedCgroup>, trusted: &[Trusted], live: &BTreeSet<u64>) -> anyhow::Result<()> {
    let present = map.iter().collect::<Result<Vec<(u64, TrustedCgroup)>, _>>()?;
    let ids: BTreeSet<u64> = trusted.iter().map(|t| t.id).collect();
    let other_agent = |value: &TrustedCgroup| value.reason == TrustReason::Agent as u32;
    for (id, value) in present.iter().filter(|(id, _)| !ids.contains(id)) {
        if other_agent(value) && live.contains(id) {
            continue;
        }
        map.remove(id).with_context(|| format!("removing trusted cgroup {id}"))?;
    }
    for t in trusted {
        let value = TrustedCgroup { reason: t.reason as u32, _pad: 0 };
        map.insert(t.id, value, 0).with_context(|| format!("trusting cgroup {}", t.path.display()))?;
    }
    Ok(())
}

fn add_entries(map: &mut HashMap<MapData, Addr, GuardedPod>, keys: &BTreeSet<Addr>, out: &mut StrictSync) {
    for key in keys {
        match map.insert(key, GuardedPod { flags: 0, _pad: 0 }, 0) {
            Ok(()) => out.guarded += 1,
            Err(error) => out.problems.push(format!("guarding {}: {error}", show(key))),
        }
    }
}

fn remove_entries(map: &mut HashMap<MapData, Addr, GuardedPod>, keys: &BTreeSet<Addr>, out: &mut StrictSync) {
    let present: Vec<Addr> = map.keys().flatten().collect();
    for key in present.iter().filter(|k| !keys.contains(*k)) {
        if let Err(error) = map.remove(key) {
            out.problems.push(format!("unguarding {}: {error}", show(key)));
        }
    }
}

/// The map form of an address (IPv4 as IPv4-mapped IPv6).
fn addr(ip: IpAddr) -> Addr {
    match ip {
        IpAddr::V4(a) => ambit_ebpf_common::v4_mapped(a.octets()),
        IpAddr::V6(a) => a.octets(),
    }
}

fn show(key: &Addr) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(*key);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}
