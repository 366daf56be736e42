//! Loading, pinning and feeding the eBPF redirection (the programs are in `ebpf/programs`).
//!
//! [`Redirector::install`] loads the embedded object, reuses or creates the maps pinned
//! under `<pin_dir>/maps/`, attaches the programs to the attach cgroup (normally the
//! kubelet's cgroup root) and pins the links under `<pin_dir>/links/`.
//!
//! # Restarts and exit
//! Maps are pinned, so enrollment, Services and connection tracking survive an agent
//! restart. A new agent attaches its programs before detaching the previous agent's
//! links: the hooks are never empty, and exactly one attachment of each remains.
//!
//! The links stay pinned when the agent exits: enrolled pods' connects to Services keep
//! going to the proxy address, where nothing listens, so they fail fast with
//! ECONNREFUSED. They never hang and never bypass the mesh. `ambit-agent uninstall`
//! ([`Redirector::uninstall`]) detaches everything and removes the pin directory.
//!
//! # Capacity
//! `AMBIT_ENROLLED` holds [`MAX_ENROLLED`](ambit_ebpf_common::MAX_ENROLLED) pod cgroups,
//! `AMBIT_SERVICES` [`MAX_SERVICES`](ambit_ebpf_common::MAX_SERVICES) VIP:ports (a sync
//! beyond that writes every entry that fits and reports the rest: [`SyncOutcome`]), and `AMBIT_SOCKETS`/`AMBIT_CONNS`
//! [`MAX_TRACKED`](ambit_ebpf_common::MAX_TRACKED) live redirected connections: when
//! full, further redirected connects fail with EPERM and count `TrackingFull`.
//!
//! # Fairness
//! Each pod may hold at most [`RedirectorConfig::per_pod_sockets`] tracked sockets
//! (`AMBIT_POD_SOCKETS`, quota in `AMBIT_LIMITS`): beyond it only that pod's connects
//! fail (EPERM, counted in `AMBIT_LIMIT_STATS`), so one pod cannot fill the shared
//! tracking map. The proxy deletes a connection's `AMBIT_CONNS` entry once it has
//! looked it up ([`ConnsResolver`]), so entries do not outlive their use.

mod addr;
mod bpffs;
mod capacity;
mod object;
mod programs;
mod resolver;
mod runs;
mod sync;
pub(crate) mod sys;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ambit_ebpf_common::{
    map_names, ConnKey, EnrolledPod, Limits, ProxyTarget, Redirect, ServiceKey, ServiceValue, LIMIT_STAT_COUNT,
    STAT_COUNT,
};
use ambit_proxy_core::identity::OriginResolver;
use anyhow::{anyhow, bail, Context};
use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::{Ebpf, EbpfLoader};

pub use capacity::MapCapacity;
pub(crate) use object::OBJECT;
pub use programs::PROGRAMS;
pub use sync::SyncOutcome;
pub use resolver::ConnsResolver;
pub use runs::{ProgramRuns, RunStatsSwitch};
pub(crate) use runs::read as read_program_runs;
pub use runs::encode as encode_program_runs;

/// Where and how to install the redirection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectorConfig {
    /// cgroup v2 directory the programs attach to; they see every socket below it.
    pub attach_cgroup: PathBuf,
    /// Directory on bpffs holding `maps/` and `links/`.
    pub pin_dir: PathBuf,
    /// Proxy listener address for IPv4 (and IPv4-mapped) destinations.
    pub proxy_v4: Option<Ipv4Addr>,
    /// Proxy listener address for IPv6 destinations.
    pub proxy_v6: Option<Ipv6Addr>,
    /// Proxy listener port.
    pub proxy_port: u16,
    /// Sizes of the enrollment and Service maps (default: the object's).
    pub capacity: MapCapacity,
    /// Most live tracked sockets one pod may hold (its further redirected connects
    /// fail with EPERM); 0 means no per-pod quota.
    pub per_pod_sockets: u32,
}

/// The default of [`RedirectorConfig::per_pod_sockets`]: 1/16 of the tracking map, so
/// at least 16 pods at their quota still leave room for everyone else.
pub const DEFAULT_PER_POD_SOCKETS: u32 = ambit_ebpf_common::MAX_TRACKED / 16;

/// Entry counts of the tracking maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tracked {
    /// Redirected sockets not yet released (`AMBIT_SOCKETS`).
    pub sockets: usize,
    /// Established redirected connections not yet closed (`AMBIT_CONNS`).
    pub connections: usize,
}

/// The installed redirection and handles on its maps.
pub struct Redirector {
    enrolled: Mutex<HashMap<MapData, u64, EnrolledPod>>,
    services: Mutex<HashMap<MapData, ServiceKey, ServiceValue>>,
    sockets: HashMap<MapData, u64, Redirect>,
    conns: HashMap<MapData, ConnKey, Redirect>,
    stats: PerCpuArray<MapData, u64>,
    limit_stats: PerCpuArray<MapData, u64>,
    pod_sockets: Mutex<HashMap<MapData, u64, u64>>,
    resolver: Arc<ConnsResolver>,
    /// The loaded programs (their maps taken above), for the kernel's run statistics.
    programs: Ebpf,
}

fn maps_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("maps")
}

fn links_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("links")
}

fn take_map(ebpf: &mut Ebpf, name: &str) -> anyhow::Result<aya::maps::Map> {
    ebpf.take_map(name)
        .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))
}

impl Redirector {
    /// Loads the embedded object, pins maps and program links under `pin_dir`,
    /// attaches to `attach_cgroup`.
    pub fn install(cfg: &RedirectorConfig) -> anyhow::Result<Self> {
        if cfg.proxy_v4.is_none() && cfg.proxy_v6.is_none() {
            bail!("no proxy address configured: need an IPv4 or an IPv6 proxy listener");
        }
        if cfg.proxy_port == 0 {
            bail!("proxy port must not be 0");
        }
        let cgroup = File::open(&cfg.attach_cgroup)
            .with_context(|| format!("opening attach cgroup {}", cfg.attach_cgroup.display()))?;

        bpffs::prepare_pin_dir(&cfg.pin_dir)?;
        let (maps, links) = (maps_dir(&cfg.pin_dir), links_dir(&cfg.pin_dir));
        for dir in [&maps, &links] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }

        let mut loader = EbpfLoader::new();
        loader.default_map_pin_directory(&maps);
        for (name, entries) in cfg.capacity.overrides() {
            loader.map_max_entries(name, entries);
        }
        let mut ebpf = loader
            .load(object::OBJECT)
            .context("loading the eBPF object")?;

        let mut proxy: Array<MapData, ProxyTarget> = take_map(&mut ebpf, map_names::PROXY)?.try_into()?;
        proxy.set(0, proxy_target(cfg), 0).context("writing AMBIT_PROXY")?;
        let mut limits: Array<MapData, Limits> = take_map(&mut ebpf, map_names::LIMITS)?.try_into()?;
        limits
            .set(0, Limits { per_pod_sockets: cfg.per_pod_sockets, _pad: 0 }, 0)
            .context("writing AMBIT_LIMITS")?;

        programs::attach_all(&mut ebpf, &cgroup, &links)?;

        let conns_pin = maps.join(map_names::CONNS);
        let resolver_conns =
            MapData::from_pin(&conns_pin).with_context(|| format!("opening {}", conns_pin.display()))?;
        let resolver = Arc::new(ConnsResolver::new(HashMap::try_from(aya::maps::Map::HashMap(
            resolver_conns,
        ))?));

        Ok(Self {
            enrolled: Mutex::new(take_map(&mut ebpf, map_names::ENROLLED)?.try_into()?),
            services: Mutex::new(take_map(&mut ebpf, map_names::SERVICES)?.try_into()?),
            sockets: take_map(&mut ebpf, map_names::SOCKETS)?.try_into()?,
            conns: take_map(&mut ebpf, map_names::CONNS)?.try_into()?,
            stats: take_map(&mut ebpf, map_names::STATS)?.try_into()?,
            limit_stats: take_map(&mut ebpf, map_names::LIMIT_STATS)?.try_into()?,
            pod_sockets: Mutex::new(take_map(&mut ebpf, map_names::POD_SOCKETS)?.try_into()?),
            resolver,
            programs: ebpf,
        })
    }

    /// Makes `AMBIT_ENROLLED` hold exactly these pod cgroup ids (removes extra, then adds
    /// missing). Continues past entries that cannot be written (e.g. a full map) and
    /// reports them; fails only when the map cannot be read at all.
    pub fn sync_enrolled(&self, cgroups: &BTreeSet<u64>) -> anyhow::Result<SyncOutcome> {
        let mut map = self
            .enrolled
            .lock()
            .map_err(|_| anyhow!("enrolled map lock poisoned"))?;
        let present = map.keys().collect::<Result<BTreeSet<u64>, _>>()?;
        let mut outcome = SyncOutcome::default();
        for id in present.difference(cgroups) {
            if let Err(error) = map.remove(id) {
                outcome.failed(format_args!("unenrolling cgroup {id}: {error}"));
            }
        }
        for id in cgroups.difference(&present) {
            if let Err(error) = map.insert(id, EnrolledPod { flags: 0, _pad: 0 }, 0) {
                outcome.failed(format_args!("enrolling cgroup {id}: {error}"));
            }
        }
        drop(map);
        if let Err(error) = self.prune_pod_counts(cgroups) {
            // Only bookkeeping of pods already gone: enrollment itself is unaffected.
            tracing::warn!(error = %format!("{error:#}"), "pruning per-pod socket counts failed");
        }
        Ok(outcome)
    }

    /// Drops the socket counts of pods no longer enrolled once they are back at zero,
    /// so `AMBIT_POD_SOCKETS` follows the enrolled pods rather than every pod ever seen.
    fn prune_pod_counts(&self, enrolled: &BTreeSet<u64>) -> anyhow::Result<()> {
        let mut map = self
            .pod_sockets
            .lock()
            .map_err(|_| anyhow!("pod sockets map lock poisoned"))?;
        let idle: Vec<u64> = map
            .iter()
            .filter_map(|entry| match entry {
                Ok((pod, 0)) if !enrolled.contains(&pod) => Some(Ok(pod)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()?;
        for pod in idle {
            // Gone meanwhile (another agent pruned it) is fine.
            let _ = map.remove(&pod);
        }
        Ok(())
    }

    /// Live tracked sockets per pod cgroup (pods with a count, zero included).
    pub fn pod_sockets(&self) -> anyhow::Result<BTreeMap<u64, u64>> {
        let map = self
            .pod_sockets
            .lock()
            .map_err(|_| anyhow!("pod sockets map lock poisoned"))?;
        Ok(map.iter().collect::<Result<_, _>>()?)
    }

    /// Makes `AMBIT_SERVICES` hold exactly these VIP:port pairs, as
    /// [`Redirector::sync_enrolled`] does.
    pub fn sync_services(&self, services: &BTreeSet<SocketAddr>) -> anyhow::Result<SyncOutcome> {
        let wanted: BTreeMap<[u8; 18], ServiceKey> = services
            .iter()
            .map(|s| (sort_key(&addr::service_key(*s)), addr::service_key(*s)))
            .collect();
        let mut map = self
            .services
            .lock()
            .map_err(|_| anyhow!("services map lock poisoned"))?;
        let present: BTreeMap<[u8; 18], ServiceKey> = map
            .keys()
            .map(|k| k.map(|k| (sort_key(&k), k)))
            .collect::<Result<_, _>>()?;
        let mut outcome = SyncOutcome::default();
        let name = |key: &ServiceKey| addr::from_map_addr(key.addr, key.port);
        for (k, key) in &present {
            if !wanted.contains_key(k) {
                if let Err(error) = map.remove(key) {
                    outcome.failed(format_args!("removing service {}: {error}", name(key)));
                }
            }
        }
        for (k, key) in &wanted {
            if !present.contains_key(k) {
                if let Err(error) = map.insert(key, ServiceValue { flags: 0, _pad: 0 }, 0) {
                    outcome.failed(format_args!("adding service {}: {error}", name(key)));
                }
            }
        }
        Ok(outcome)
    }

    /// Resolver for the proxy: (peer, local) of an accepted connection -> Origin via AMBIT_CONNS.
    pub fn origin_resolver(&self) -> Arc<dyn OriginResolver> {
        self.resolver.clone()
    }

    /// Number of entries in AMBIT_SOCKETS and AMBIT_CONNS.
    pub fn tracked(&self) -> anyhow::Result<Tracked> {
        Ok(Tracked {
            sockets: self.sockets.keys().try_fold(0usize, |n, k| k.map(|_| n + 1))?,
            connections: self.conns.keys().try_fold(0usize, |n, k| k.map(|_| n + 1))?,
        })
    }

    /// Summed per-CPU counters, indexed like `ambit_ebpf_common::Stat`.
    pub fn stats(&self) -> anyhow::Result<Vec<u64>> {
        (0..STAT_COUNT)
            .map(|i| Ok(self.stats.get(&i, 0)?.iter().sum()))
            .collect()
    }

    /// The kernel's run count and run time of each attached program ([`PROGRAMS`]);
    /// zeros while BPF run-time statistics are off ([`RunStatsSwitch`]).
    pub fn program_runs(&self) -> anyhow::Result<Vec<ProgramRuns>> {
        runs::read(&self.programs, PROGRAMS.iter().map(|p| p.name))
    }

    /// Summed per-CPU refusal counters, indexed like `ambit_ebpf_common::LimitStat`.
    pub fn limit_stats(&self) -> anyhow::Result<Vec<u64>> {
        (0..LIMIT_STAT_COUNT)
            .map(|i| Ok(self.limit_stats.get(&i, 0)?.iter().sum()))
            .collect()
    }

    /// Detaches everything and removes `pin_dir` (the `ambit-agent uninstall` command).
    /// Succeeds when nothing is installed.
    pub fn uninstall(pin_dir: &Path) -> anyhow::Result<()> {
        let links = links_dir(pin_dir);
        if links.exists() {
            for entry in fs::read_dir(&links).with_context(|| format!("listing {}", links.display()))? {
                programs::retire(&entry?.path())?;
            }
        }
        match fs::remove_dir_all(pin_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", pin_dir.display())),
        }
    }
}

/// Programs attached directly to `attach_cgroup`, summed over Ambit's hooks (any
/// program at those hooks counts). After install on a cgroup nothing else uses this is
/// `PROGRAMS.len()`; after uninstall, 0.
pub fn attached_program_count(attach_cgroup: &Path) -> anyhow::Result<usize> {
    Ok(attached_program_counts(attach_cgroup)?.values().sum())
}

/// Like [`attached_program_count`], per hook (keyed by Ambit's program name).
pub fn attached_program_counts(attach_cgroup: &Path) -> anyhow::Result<BTreeMap<&'static str, usize>> {
    programs::attached_counts(attach_cgroup)
}

fn proxy_target(cfg: &RedirectorConfig) -> ProxyTarget {
    ProxyTarget {
        addr4: cfg.proxy_v4.map_or([0; 4], |a| a.octets()),
        addr6: cfg.proxy_v6.map_or([0; 16], |a| a.octets()),
        port: cfg.proxy_port,
        has_v4: u8::from(cfg.proxy_v4.is_some()),
        has_v6: u8::from(cfg.proxy_v6.is_some()),
        _pad: [0; 4],
    }
}

/// A total order on service keys (which are not `Ord`): address bytes then port.
fn sort_key(k: &ServiceKey) -> [u8; 18] {
    let mut out = [0u8; 18];
    out[..16].copy_from_slice(&k.addr);
    out[16..].copy_from_slice(&k.port.to_be_bytes());
    out
}
