//! The benchmark report: figures with their repetitions, medians, ratios and
//! targets, written as `target/bench/report.md` and `target/bench/report.json`.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

/// Which way a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// A target a figure is compared with (shown, never asserted).
#[derive(Clone, Debug)]
pub struct Target {
    /// How the target reads in the report, e.g. "≤ 150 µs over direct".
    pub text: String,
    /// Whether the figure meets it (None: could not be decided).
    pub met: Option<bool>,
}

/// One measured figure: the repetitions of one system (Ambit, direct or HAProxy).
#[derive(Clone, Debug)]
pub struct Figure {
    pub scenario: String,
    pub metric: String,
    pub unit: String,
    pub better: Better,
    /// Ambit's repetitions (or the only system's, for in-process figures).
    pub ambit: Vec<f64>,
    pub direct: Vec<f64>,
    pub haproxy: Vec<f64>,
    pub target: Option<Target>,
    pub note: String,
    /// Where the time (or memory) goes, from measurements of the same run: printed
    /// beside the figure when its target is missed.
    pub why: String,
}

/// The median of `v` (None when empty).
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    Some(if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 })
}

/// Repetitions as the report prints them: each value, then `unit`, and how far apart
/// they lie ((max − min) / median, in %), e.g. "449, 534, 512 ms (spread 17%)".
pub fn spread(values: &[f64], unit: &str) -> String {
    let listed: Vec<String> = values.iter().map(|v| format!("{v:.0}")).collect();
    let (min, max) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let percent = median(values).map_or(f64::NAN, |m| (max - min) / m * 100.0);
    format!("{} {unit} (spread {percent:.0}%)", listed.join(", "))
}

impl Figure {
    pub fn new(scenario: &str, metric: &str, unit: &str, better: Better) -> Self {
        Figure {
            scenario: scenario.into(),
            metric: metric.into(),
            unit: unit.into(),
            better,
            ambit: vec![],
            direct: vec![],
            haproxy: vec![],
            target: None,
            note: String::new(),
            why: String::new(),
        }
    }

    pub fn ambit_median(&self) -> Option<f64> {
        median(&self.ambit)
    }

    fn ratio(&self, other: &[f64]) -> Option<f64> {
        let (a, b) = (median(&self.ambit)?, median(other)?);
        (b != 0.0).then_some(a / b)
    }

    /// Ambit's median over direct's median.
    pub fn ratio_to_direct(&self) -> Option<f64> {
        self.ratio(&self.direct)
    }

    /// Ambit's median over HAProxy's median.
    pub fn ratio_to_haproxy(&self) -> Option<f64> {
        self.ratio(&self.haproxy)
    }

    /// Sets the target: `met` decided by `check` on Ambit's median.
    pub fn target(mut self, text: &str, check: impl Fn(&Figure, f64) -> bool) -> Self {
        let met = self.ambit_median().map(|m| check(&self, m));
        self.target = Some(Target { text: text.into(), met });
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// Sets the measured explanation shown when the target is missed.
    pub fn why(mut self, why: impl Into<String>) -> Self {
        self.why = why.into();
        self
    }

    fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "metric": self.metric,
            "unit": self.unit,
            "better": if self.better == Better::Higher { "higher" } else { "lower" },
            "ambit": {"median": median(&self.ambit), "runs": self.ambit},
            "direct": {"median": median(&self.direct), "runs": self.direct},
            "haproxy": {"median": median(&self.haproxy), "runs": self.haproxy},
            "ratio_to_direct": self.ratio_to_direct(),
            "ratio_to_haproxy": self.ratio_to_haproxy(),
            "target": self.target.as_ref().map(|t| json!({"text": t.text, "met": t.met})),
            "note": self.note,
            "why": self.why,
        })
    }
}

/// Everything one `cargo xtask bench` run produced.
#[derive(Debug, Default)]
pub struct Report {
    /// Machine, kernel, pinning, tools: (key, value).
    pub environment: Vec<(String, String)>,
    pub figures: Vec<Figure>,
    /// Scenarios that could not run, with the reason.
    pub failures: Vec<(String, String)>,
    /// Free-form findings (e.g. where the proxy spends its time).
    pub findings: Vec<String>,
    /// The peer comparison (`--peers`): Ambit, ztunnel, HAProxy and direct.
    pub peers: super::peers::table::PeerSection,
}

fn num(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.3}"),
    }
}

fn ratio(v: Option<f64>) -> String {
    v.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "—".into())
}

impl Report {
    pub fn push(&mut self, f: Figure) {
        self.figures.push(f);
    }

    pub fn extend(&mut self, figures: impl IntoIterator<Item = Figure>) {
        self.figures.extend(figures);
    }

    pub fn fail(&mut self, scenario: &str, why: impl Into<String>) {
        self.failures.push((scenario.into(), why.into()));
    }

    /// Targets that Ambit missed.
    pub fn missed(&self) -> Vec<&Figure> {
        self.figures.iter().filter(|f| f.target.as_ref().is_some_and(|t| t.met == Some(false))).collect()
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Ambit benchmark report\n");
        for (k, v) in &self.environment {
            let _ = writeln!(s, "- **{k}**: {v}");
        }
        let _ = writeln!(
            s,
            "\nEach figure is the median of the repetitions (runs listed in report.json). \
             Ratios are Ambit's median over direct's and over HAProxy's; compare ratios, \
             not absolute times, between machines.\n"
        );
        let _ = writeln!(s, "| scenario | metric | Ambit | direct | HAProxy | Ambit/direct | Ambit/HAProxy | target | met |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        for f in &self.figures {
            let (t, met) = match &f.target {
                None => ("".to_string(), "".to_string()),
                Some(t) => (
                    t.text.clone(),
                    match t.met {
                        Some(true) => "yes".into(),
                        Some(false) => "**MISSED**".into(),
                        None => "?".into(),
                    },
                ),
            };
            let _ = writeln!(
                s,
                "| {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} |",
                f.scenario,
                f.metric,
                f.unit,
                num(f.ambit_median()),
                num(median(&f.direct)),
                num(median(&f.haproxy)),
                ratio(f.ratio_to_direct()),
                ratio(f.ratio_to_haproxy()),
                t,
                met
            );
        }
        let notes: Vec<&Figure> = self.figures.iter().filter(|f| !f.note.is_empty()).collect();
        if !notes.is_empty() {
            let _ = writeln!(s, "\n## Notes\n");
            for f in notes {
                let _ = writeln!(s, "- {} / {}: {}", f.scenario, f.metric, f.note);
            }
        }
        let missed = self.missed();
        let _ = writeln!(s, "\n## Targets missed\n");
        if missed.is_empty() && self.failures.is_empty() {
            let _ = writeln!(s, "None.");
        }
        for f in missed {
            let t = f.target.as_ref().map(|t| t.text.as_str()).unwrap_or("");
            let _ = write!(s, "- {} / {}: {} {} against the target {t}.", f.scenario, f.metric, num(f.ambit_median()), f.unit);
            if f.why.is_empty() {
                let _ = writeln!(s);
            } else {
                let _ = writeln!(s, " Where it goes (measured in this run): {}", f.why);
            }
        }
        for (sc, why) in &self.failures {
            let _ = writeln!(s, "- {sc}: did not run: {why}");
        }
        if !self.findings.is_empty() {
            let _ = writeln!(s, "\n## Findings\n");
            for x in &self.findings {
                let _ = writeln!(s, "- {x}");
            }
        }
        s.push_str(&self.peers.markdown());
        s
    }

    pub fn json(&self) -> Value {
        json!({
            "environment": self.environment.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "figures": self.figures.iter().map(Figure::to_json).collect::<Vec<_>>(),
            "missed": self.missed().iter().map(|f| format!("{} / {}", f.scenario, f.metric)).collect::<Vec<_>>(),
            "failures": self.failures.iter().map(|(a, b)| json!({"scenario": a, "error": b})).collect::<Vec<_>>(),
            "findings": self.findings,
            "peers": self.peers.json(),
        })
    }

    /// Writes report.md and report.json into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(&self.json())? + "\n")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_lists_the_repetitions_and_how_far_apart_they_lie() {
        assert_eq!(spread(&[449.0, 534.0, 512.0], "ms"), "449, 534, 512 ms (spread 17%)");
        assert_eq!(spread(&[100.0], "req/s"), "100 req/s (spread 0%)");
    }

    #[test]
    fn median_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let mut f = Figure::new("s", "m", "u", Better::Higher);
        f.ambit = vec![10.0, 30.0, 20.0];
        f.direct = vec![40.0];
        f.haproxy = vec![10.0, 10.0];
        assert_eq!(f.ratio_to_direct(), Some(0.5));
        assert_eq!(f.ratio_to_haproxy(), Some(2.0));
        let f = f.target("≥ 15", |_, m| m >= 15.0);
        assert_eq!(f.target.as_ref().unwrap().met, Some(true));
        let mut r = Report::default();
        r.push(f.clone().target("≥ 25", |_, m| m >= 25.0));
        assert_eq!(r.missed().len(), 1);
        assert!(r.markdown().contains("**MISSED**"));
    }
}
