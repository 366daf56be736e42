//! The report's plots, as SVG files next to it (`target/bench/*.svg`): latency
//! percentiles against request rate (scenario 2) and throughput per proxy core at one
//! and two cores (scenario 1). SVG keeps them free of fonts and system libraries.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// The systems a point can belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Direct,
    Ambit,
    HAProxy,
}

impl System {
    const ALL: [System; 3] = [System::Direct, System::Ambit, System::HAProxy];

    fn name(self) -> &'static str {
        match self {
            System::Direct => "direct",
            System::Ambit => "Ambit",
            System::HAProxy => "HAProxy",
        }
    }

    fn color(self) -> RGBColor {
        match self {
            System::Direct => RGBColor(110, 110, 110),
            System::Ambit => RGBColor(31, 119, 180),
            System::HAProxy => RGBColor(214, 39, 40),
        }
    }
}

/// Latency percentiles of one system at one fixed rate (medians of the repetitions), µs.
#[derive(Clone, Copy, Debug)]
pub struct LatencyPoint {
    pub system: System,
    pub rate: u64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

/// Maximum throughput of one system with the proxy on `cores` cores (medians).
#[derive(Clone, Copy, Debug)]
pub struct CorePoint {
    pub system: System,
    pub cores: usize,
    /// Requests per second of the proxy's own CPU time (NaN for direct: no proxy).
    pub per_core: f64,
    pub throughput: f64,
}

/// What the scenarios collected for the plots.
#[derive(Debug, Default)]
pub struct PlotData {
    pub latency: Vec<LatencyPoint>,
    pub cores: Vec<CorePoint>,
}

/// Writes the plots that have data into `dir`; returns their paths.
pub fn write(dir: &Path, data: &PlotData) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    if !data.latency.is_empty() {
        let path = dir.join("latency-vs-rate.svg");
        latency_plot(&path, &data.latency)?;
        written.push(path);
    }
    if !data.cores.is_empty() {
        let path = dir.join("throughput-per-core.svg");
        cores_plot(&path, &data.cores)?;
        written.push(path);
    }
    Ok(written)
}

fn draw_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a plot: {e}")
}

/// The finite values' range, padded, with a floor for log axes.
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let finite: Vec<f64> = values.filter(|v| v.is_finite() && *v > 0.0).collect();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(0.0, f64::max);
    if finite.is_empty() {
        return 1.0..10.0;
    }
    (lo / 1.5)..(hi * 1.5)
}

/// Three panels (p50, p99, p99.9), latency in µs (log) against the offered rate.
fn latency_plot(path: &Path, points: &[LatencyPoint]) -> Result<()> {
    let root = SVGBackend::new(path, (1500, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let panels = root.split_evenly((1, 3));
    let rates = log_range(points.iter().map(|p| p.rate as f64));
    type Pick = fn(&LatencyPoint) -> f64;
    let picks: [(&str, Pick); 3] = [("p50", |p| p.p50), ("p99", |p| p.p99), ("p99.9", |p| p.p999)];
    for (panel, (name, pick)) in panels.iter().zip(picks) {
        let ys = log_range(points.iter().map(pick));
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("latency {name} against request rate"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(rates.clone().log_scale(), ys.log_scale())
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("offered rate (req/s)")
            .y_desc(format!("{name} (µs)"))
            .x_labels(4)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(draw_err)?;
        let lines = System::ALL.map(|system| {
            (system, points.iter().filter(|p| p.system == system).map(|p| (p.rate as f64, pick(p))).collect())
        });
        draw_lines(&mut chart, lines, 4, SeriesLabelPosition::UpperLeft)?;
    }
    root.present().map_err(draw_err)
}

/// Two panels: requests per proxy core-second, and requests per second, at 1 and 2 cores.
fn cores_plot(path: &Path, points: &[CorePoint]) -> Result<()> {
    let root = SVGBackend::new(path, (1100, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let panels = root.split_evenly((1, 2));
    type Pick = fn(&CorePoint) -> f64;
    let picks: [(&str, &str, Pick); 2] = [
        ("throughput per proxy core", "req/s per core-second of proxy CPU", |p| p.per_core),
        ("throughput", "req/s", |p| p.throughput),
    ];
    let max_cores = points.iter().map(|p| p.cores).max().unwrap_or(1);
    for (panel, (title, unit, pick)) in panels.iter().zip(picks) {
        let hi = points.iter().map(pick).filter(|v| v.is_finite()).fold(0.0, f64::max) * 1.2;
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.5f64..(max_cores as f64 + 0.5), 0f64..hi.max(1.0))
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc("proxy cores (threads pinned to as many CPUs)")
            .y_desc(unit)
            .x_labels(max_cores + 1)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(draw_err)?;
        let lines = System::ALL.map(|system| {
            (system, points.iter().filter(|p| p.system == system).map(|p| (p.cores as f64, pick(p))).collect())
        });
        draw_lines(&mut chart, lines, 5, SeriesLabelPosition::LowerRight)?;
    }
    root.present().map_err(draw_err)
}

/// One line with its points per system (skipping systems without a finite point), and
/// the legend at `legend`.
fn draw_lines<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    lines: [(System, Vec<(f64, f64)>); 3],
    radius: u32,
    legend: SeriesLabelPosition,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (system, mut series) in lines {
        series.retain(|(_, y)| y.is_finite());
        if series.is_empty() {
            continue;
        }
        series.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = system.color();
        chart
            .draw_series(LineSeries::new(series.clone(), color.stroke_width(2)))
            .map_err(draw_err)?
            .label(system.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(series.iter().map(|&p| Circle::new(p, radius, color.filled()))).map_err(draw_err)?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_both_plots_with_every_system() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = PlotData::default();
        for (i, system) in System::ALL.into_iter().enumerate() {
            for rate in [1_000, 2_000, 5_000, 10_000] {
                let base = 100.0 * (i + 1) as f64 + rate as f64 / 100.0;
                data.latency.push(LatencyPoint { system, rate, p50: base, p99: base * 3.0, p999: base * 6.0 });
            }
            for cores in [1, 2] {
                let per_core = if system == System::Direct { f64::NAN } else { 30_000.0 + i as f64 * 5_000.0 };
                data.cores.push(CorePoint { system, cores, per_core, throughput: per_core * cores as f64 });
            }
        }
        let written = write(dir.path(), &data).unwrap();
        assert_eq!(written.len(), 2);
        for path in written {
            let svg = std::fs::read_to_string(&path).unwrap();
            assert!(svg.starts_with("<svg"), "{}", path.display());
            for name in ["Ambit", "HAProxy"] {
                assert!(svg.contains(name), "{} lacks {name}", path.display());
            }
        }
        assert!(write(dir.path(), &PlotData::default()).unwrap().is_empty());
    }
}
