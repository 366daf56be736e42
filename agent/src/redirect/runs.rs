//! The kernel's own statistics of each loaded eBPF program: how often it ran and the
//! time it spent running (`run_cnt`, `run_time_ns` of `bpf_prog_info`).
//!
//! The kernel keeps them only while run-time statistics are enabled
//! (`kernel.bpf_stats_enabled`, or a `BPF_ENABLE_STATS` file descriptor held open:
//! [`RunStatsSwitch`]). Enabled, every run of every BPF program on the host reads the
//! clock twice (tens of nanoseconds); `--no-bpf-stats` leaves them off.

use std::os::fd::OwnedFd;

use anyhow::{anyhow, Context};
use aya::Ebpf;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use serde_json::json;

/// One program's runs since it was loaded (while statistics were enabled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramRuns {
    /// Ambit's name of the program (its function name in the object).
    pub program: &'static str,
    pub run_count: u64,
    pub run_time_ns: u64,
}

impl ProgramRuns {
    /// Mean time per run, in nanoseconds (None before the first counted run).
    pub fn ns_per_run(&self) -> Option<f64> {
        (self.run_count > 0).then(|| self.run_time_ns as f64 / self.run_count as f64)
    }

    /// The `/redirect` form.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "program": self.program,
            "runCount": self.run_count,
            "runTimeNs": self.run_time_ns,
            "nsPerRun": self.ns_per_run(),
        })
    }
}

/// Keeps the kernel's run-time statistics enabled while it lives (they stay on while
/// any holder, this agent or another, keeps its descriptor open).
#[derive(Debug)]
pub struct RunStatsSwitch(#[allow(dead_code)] OwnedFd);

impl RunStatsSwitch {
    /// Turns the statistics on (kernel 5.8 or later, CAP_SYS_ADMIN).
    pub fn enable() -> anyhow::Result<Self> {
        let fd = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("enabling BPF run-time statistics")?;
        Ok(Self(fd))
    }
}

/// The statistics of `names`, each a program loaded in `ebpf`.
pub(crate) fn read(ebpf: &Ebpf, names: impl IntoIterator<Item = &'static str>) -> anyhow::Result<Vec<ProgramRuns>> {
    names
        .into_iter()
        .map(|program| {
            let loaded = ebpf.program(program).ok_or_else(|| anyhow!("program {program} missing from the eBPF object"))?;
            let info = loaded.info().with_context(|| format!("reading the kernel's information on {program}"))?;
            let run_time_ns = u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX);
            Ok(ProgramRuns { program, run_count: info.run_count(), run_time_ns })
        })
        .collect()
}

/// Writes `ambit_ebpf_program_runs_total` and `ambit_ebpf_program_run_seconds_total`,
/// labelled by program.
pub fn encode(encoder: &mut DescriptorEncoder, runs: &[ProgramRuns]) -> Result<(), std::fmt::Error> {
    let mut count = encoder.encode_descriptor(
        "ambit_ebpf_program_runs",
        "Runs of each eBPF program, counted by the kernel while BPF run-time statistics are enabled",
        None,
        MetricType::Counter,
    )?;
    for r in runs {
        ConstCounter::new(r.run_count).encode(count.encode_family(&[("program", r.program)])?)?;
    }
    let mut time = encoder.encode_descriptor(
        "ambit_ebpf_program_run_seconds",
        "Time each eBPF program spent running, measured by the kernel while BPF run-time statistics are enabled",
        None,
        MetricType::Counter,
    )?;
    for r in runs {
        ConstCounter::new(r.run_time_ns as f64 / 1e9).encode(time.encode_family(&[("program", r.program)])?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_per_run_is_the_mean_and_none_before_any_run() {
        let runs = ProgramRuns { program: "p", run_count: 4, run_time_ns: 1000 };
        assert_eq!(runs.ns_per_run(), Some(250.0));
        assert_eq!(ProgramRuns { run_count: 0, run_time_ns: 0, ..runs }.ns_per_run(), None);
        assert_eq!(runs.to_json()["runTimeNs"], 1000);
    }
}
