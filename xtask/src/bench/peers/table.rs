//! The peer comparison's part of the report: one row per figure, one column per
//! system (direct, Ambit plaintext, Ambit mTLS, ztunnel, HAProxy), and the ratios
//! that matter: Ambit over ztunnel, over direct and over HAProxy.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use super::super::report::{median, Better};
use super::usage::Usage;

/// The systems compared on the two-node bed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum System {
    /// The client pod calls the server pod's IP: no proxy.
    Direct,
    /// Both nodes' Ambit agents, mesh off (plaintext between the nodes).
    AmbitPlain,
    /// Both nodes' Ambit agents, HBONE (HTTP/2 CONNECT over mutual TLS 1.3).
    AmbitMtls,
    /// Both nodes' ztunnels, HBONE mutual TLS (Istio ambient, L4).
    Ztunnel,
    /// HAProxy on the client's node, HTTP mode, plaintext to the server pod.
    Haproxy,
}

impl System {
    pub const ALL: [System; 5] = [System::Direct, System::AmbitPlain, System::AmbitMtls, System::Ztunnel, System::Haproxy];

    pub fn label(self) -> &'static str {
        match self {
            System::Direct => "direct",
            System::AmbitPlain => "Ambit plaintext",
            System::AmbitMtls => "Ambit mTLS",
            System::Ztunnel => "ztunnel mTLS",
            System::Haproxy => "HAProxy",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            System::Direct => "direct",
            System::AmbitPlain => "ambit_plaintext",
            System::AmbitMtls => "ambit_mtls",
            System::Ztunnel => "ztunnel",
            System::Haproxy => "haproxy",
        }
    }
}

/// The ratios shown, as (numerator, denominator).
const RATIOS: [(System, System); 4] = [
    (System::AmbitMtls, System::Ztunnel),
    (System::AmbitPlain, System::Ztunnel),
    (System::AmbitMtls, System::Direct),
    (System::AmbitPlain, System::Haproxy),
];

/// A target of the peer comparison, decided on the medians (reported, never asserted).
#[derive(Clone, Debug)]
pub struct PeerTarget {
    pub text: String,
    pub met: Option<bool>,
}

/// One figure measured on every system that can run it.
#[derive(Clone, Debug)]
pub struct PeerFigure {
    pub scenario: String,
    pub metric: String,
    pub unit: String,
    pub better: Better,
    pub runs: BTreeMap<System, Vec<f64>>,
    pub target: Option<PeerTarget>,
    pub note: String,
    /// Where the time (or memory, or the failures) went, from measurements of the same
    /// run: printed under a missed target, and in report.json always.
    pub why: String,
}

impl PeerFigure {
    pub fn new(scenario: &str, metric: &str, unit: &str, better: Better) -> Self {
        PeerFigure {
            scenario: scenario.into(),
            metric: metric.into(),
            unit: unit.into(),
            better,
            runs: BTreeMap::new(),
            target: None,
            note: String::new(),
            why: String::new(),
        }
    }

    pub fn push(&mut self, system: System, value: f64) {
        self.runs.entry(system).or_default().push(value);
    }

    pub fn median(&self, system: System) -> Option<f64> {
        median(self.runs.get(&system)?)
    }

    /// `a`'s median over `b`'s (None when either is missing or `b`'s is 0).
    pub fn ratio(&self, a: System, b: System) -> Option<f64> {
        let (x, y) = (self.median(a)?, self.median(b)?);
        (y != 0.0 && x.is_finite() && y.is_finite()).then_some(x / y)
    }

    /// Sets the target, `met` decided by `check` on this figure (None: undecidable).
    pub fn target(mut self, text: &str, check: impl Fn(&PeerFigure) -> Option<bool>) -> Self {
        let met = check(&self);
        self.target = Some(PeerTarget { text: text.into(), met });
        self
    }

    /// The target "Ambit mTLS no worse than ztunnel", in the figure's direction.
    pub fn target_vs_ztunnel(self) -> Self {
        let text = match self.better {
            Better::Lower => "Ambit mTLS ≤ ztunnel",
            Better::Higher => "Ambit mTLS ≥ ztunnel",
        };
        let better = self.better;
        self.target(text, move |f| {
            let r = f.ratio(System::AmbitMtls, System::Ztunnel)?;
            Some(if better == Better::Lower { r <= 1.0 } else { r >= 1.0 })
        })
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    fn missed(&self) -> bool {
        self.target.as_ref().is_some_and(|t| t.met == Some(false))
    }

    fn to_json(&self) -> Value {
        let systems: serde_json::Map<String, Value> = System::ALL
            .iter()
            .map(|s| {
                let runs = self.runs.get(s).cloned().unwrap_or_default();
                (s.key().to_string(), json!({"median": median(&runs), "runs": runs}))
            })
            .collect();
        let ratios: serde_json::Map<String, Value> =
            RATIOS.iter().map(|(a, b)| (format!("{}_over_{}", a.key(), b.key()), json!(self.ratio(*a, *b)))).collect();
        json!({
            "scenario": self.scenario,
            "metric": self.metric,
            "unit": self.unit,
            "better": if self.better == Better::Higher { "higher" } else { "lower" },
            "systems": systems,
            "ratios": ratios,
            "target": self.target.as_ref().map(|t| json!({"text": t.text, "met": t.met})),
            "note": self.note,
            "why": self.why,
        })
    }
}

fn num(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(x) if !x.is_finite() => "—".into(),
        Some(0.0) => "0".into(),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.3}"),
    }
}

fn ratio(v: Option<f64>) -> String {
    v.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "—".into())
}

/// The peer comparison: its conditions, figures, notes and missed targets.
#[derive(Debug, Default)]
pub struct PeerSection {
    /// How the comparison ran: (key, value).
    pub conditions: Vec<(String, String)>,
    pub figures: Vec<PeerFigure>,
    /// Systems or scenarios that could not run, with the reason.
    pub failures: Vec<(String, String)>,
    /// What the explanations were made of (report.json's `peers.usage`).
    pub usage: Usage,
}

impl PeerSection {
    pub fn is_empty(&self) -> bool {
        self.figures.is_empty() && self.failures.is_empty() && self.conditions.is_empty()
    }

    pub fn push(&mut self, f: PeerFigure) {
        self.figures.push(f);
    }

    pub fn fail(&mut self, what: &str, why: impl Into<String>) {
        self.failures.push((what.into(), why.into()));
    }

    fn table(&self, s: &mut String) {
        let systems: Vec<&str> = System::ALL.iter().map(|s| s.label()).collect();
        let ratios: Vec<String> = RATIOS.iter().map(|(a, b)| format!("{}/{}", a.label(), b.label())).collect();
        let _ = writeln!(s, "| scenario | metric | {} | {} | target | met |", systems.join(" | "), ratios.join(" | "));
        let _ = writeln!(s, "|---|---|{}|", vec!["---"; systems.len() + ratios.len() + 2].join("|"));
        for f in &self.figures {
            let cells: Vec<String> = System::ALL.iter().map(|sys| num(f.median(*sys))).collect();
            let rs: Vec<String> = RATIOS.iter().map(|(a, b)| ratio(f.ratio(*a, *b))).collect();
            let (t, met) = match &f.target {
                None => (String::new(), ""),
                Some(t) => (t.text.clone(), match t.met { Some(true) => "yes", Some(false) => "**MISSED**", None => "?" }),
            };
            let _ = writeln!(s, "| {} | {} ({}) | {} | {} | {t} | {met} |", f.scenario, f.metric, f.unit, cells.join(" | "), rs.join(" | "));
        }
    }

    /// The section in Markdown, to append to report.md.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        if self.is_empty() {
            return s;
        }
        let _ = writeln!(s, "\n## Peers: Ambit, Istio's ztunnel, HAProxy and direct on two nodes\n");
        for (k, v) in &self.conditions {
            let _ = writeln!(s, "- **{k}**: {v}");
        }
        let _ = writeln!(s, "\nMedians of the repetitions (runs in report.json, `peers`). \"—\": not measured for that system.\n");
        self.table(&mut s);
        let notes: Vec<&PeerFigure> = self.figures.iter().filter(|f| !f.note.is_empty()).collect();
        if !notes.is_empty() {
            let _ = writeln!(s, "\n### Peer notes\n");
            for f in notes {
                let _ = writeln!(s, "- {} / {}: {}", f.scenario, f.metric, f.note);
            }
        }
        let _ = writeln!(s, "\n### Peer targets missed\n");
        let missed: Vec<&PeerFigure> = self.figures.iter().filter(|f| f.missed()).collect();
        if missed.is_empty() && self.failures.is_empty() {
            let _ = writeln!(s, "None.");
        }
        for f in missed {
            let t = f.target.as_ref().map(|t| t.text.as_str()).unwrap_or("");
            let _ = write!(
                s,
                "- {} / {}: Ambit mTLS {} {}, ztunnel {} {}, against the target {t}.",
                f.scenario,
                f.metric,
                num(f.median(System::AmbitMtls)),
                f.unit,
                num(f.median(System::Ztunnel)),
                f.unit
            );
            if f.why.is_empty() {
                let _ = writeln!(s);
            } else {
                let _ = writeln!(s, " Where it goes (measured in this run): {}", f.why);
            }
        }
        for (what, why) in &self.failures {
            let _ = writeln!(s, "- {what}: did not run: {why}");
        }
        s
    }

    /// The section as JSON, for report.json's `peers`.
    pub fn json(&self) -> Value {
        json!({
            "conditions": self.conditions.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "figures": self.figures.iter().map(PeerFigure::to_json).collect::<Vec<_>>(),
            "missed": self.figures.iter().filter(|f| f.missed()).map(|f| format!("{} / {}", f.scenario, f.metric)).collect::<Vec<_>>(),
            "failures": self.failures.iter().map(|(a, b)| json!({"what": a, "error": b})).collect::<Vec<_>>(),
            "usage": self.usage.json(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_targets_against_ztunnel() {
        let mut f = PeerFigure::new("s", "cpu", "µs", Better::Lower);
        for (sys, v) in [(System::AmbitMtls, 40.0), (System::AmbitMtls, 60.0), (System::Ztunnel, 100.0), (System::Direct, 10.0)] {
            f.push(sys, v);
        }
        assert_eq!(f.ratio(System::AmbitMtls, System::Ztunnel), Some(0.5));
        assert_eq!(f.ratio(System::AmbitMtls, System::Direct), Some(5.0));
        assert_eq!(f.ratio(System::AmbitPlain, System::Ztunnel), None);
        let f = f.target_vs_ztunnel();
        assert_eq!(f.target.as_ref().and_then(|t| t.met), Some(true));

        let mut g = PeerFigure::new("s", "Gbit/s", "Gbit/s", Better::Higher);
        g.push(System::AmbitMtls, 1.0);
        g.push(System::Ztunnel, 2.0);
        let g = g.target_vs_ztunnel();
        assert_eq!(g.target.as_ref().and_then(|t| t.met), Some(false));

        let mut section = PeerSection::default();
        section.push(f);
        section.push(g);
        let md = section.markdown();
        assert!(md.contains("| 50.0 |") && md.contains("0.50×") && md.contains("**MISSED**"), "{md}");
        let v = section.json();
        assert_eq!(v["figures"][0]["ratios"]["ambit_mtls_over_ztunnel"], 0.5);
        assert_eq!(v["missed"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn a_why_is_printed_only_under_a_missed_target_and_kept_in_the_json() {
        let figure = |ambit: f64, why: &str| {
            let mut f = PeerFigure::new("P2", "latency p99", "µs", Better::Lower);
            f.push(System::AmbitMtls, ambit);
            f.push(System::Ztunnel, 500.0);
            let mut f = f.target_vs_ztunnel();
            f.why = why.into();
            f
        };
        let mut section = PeerSection::default();
        section.push(figure(400.0, "met-why"));
        section.push(figure(600.0, "missed-why"));
        let md = section.markdown();
        let missed = md.split("### Peer targets missed").nth(1).unwrap_or_default();
        assert!(
            missed.contains("Ambit mTLS 600 µs, ztunnel 500 µs, against the target Ambit mTLS ≤ ztunnel. Where it goes (measured in this run): missed-why"),
            "{md}"
        );
        assert!(!md.contains("met-why"), "a met target's why is not printed: {md}");
        let v = section.json();
        assert_eq!(v["figures"][0]["why"], "met-why");
        assert_eq!(v["figures"][1]["why"], "missed-why");
        assert!(v["usage"]["proxies_per_node"].is_object(), "{v}");

        let mut quiet = PeerSection::default();
        quiet.push(figure(600.0, ""));
        let md = quiet.markdown();
        assert!(md.contains("against the target Ambit mTLS ≤ ztunnel.\n") && !md.contains("Where it goes"), "{md}");
    }

    #[test]
    fn an_empty_section_renders_nothing() {
        assert_eq!(PeerSection::default().markdown(), "");
    }
}
