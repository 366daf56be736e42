//! `ambit-agent check`: load a manifests directory and report, per route and Service
//! parent, whether it is accepted and its references resolve, plus the documents that
//! failed to load, and each AuthorizationPolicy that is not accepted.

use std::fmt;
use std::path::Path;

use crate::manifests::{load_dir, ManifestError};
use crate::translate::{self, ConditionType, NodeView, PolicyStatus, RouteStatus};

/// What `check` found.
#[derive(Debug)]
pub struct CheckReport {
    pub manifest_errors: Vec<ManifestError>,
    pub routes: Vec<RouteStatus>,
    /// Every AuthorizationPolicy's `Accepted` condition.
    pub policies: Vec<PolicyStatus>,
    pub problems: Vec<String>,
    /// Number of Service ports (cluster IP × port) that would be served.
    pub service_ports: usize,
}

impl CheckReport {
    /// True when every manifest loaded and every route parent is accepted with all
    /// references resolved and no rule dropped.
    pub fn ok(&self) -> bool {
        self.manifest_errors.is_empty() && self.routes.iter().all(RouteStatus::ok) && self.policies.iter().all(PolicyStatus::ok)
    }
}

/// Loads `dir` and translates it as standalone mode would (no cgroups needed).
pub fn check(dir: &Path) -> anyhow::Result<CheckReport> {
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    let (mut state, manifest_errors) = load_dir(dir);
    let placeholders = crate::manifests::allocate_missing_cluster_ips(&mut state);
    let no_cgroups = |_: &str, _: Option<&str>| None;
    let translation = translate::translate(&state, &NodeView { node_name: None, cgroups: &no_cgroups });
    Ok(CheckReport {
        manifest_errors,
        routes: translation.route_status,
        policies: translation.policy_status,
        problems: placeholders
            .iter()
            .map(|a| format!("placeholder cluster IP {a} (none in the manifest; a cluster allocates one)"))
            .chain(translation.problems)
            .collect(),
        service_ports: translation.config.services.len(),
    })
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for error in &self.manifest_errors {
            writeln!(f, "ERROR manifest {error}")?;
        }
        for route in &self.routes {
            writeln!(f, "{} {} {}/{}", if route.ok() { "OK   " } else { "ERROR" }, route.kind, route.namespace, route.name)?;
            for parent in &route.parents {
                writeln!(f, "  parent {}", parent.parent_ref)?;
                for c in &parent.conditions {
                    let status = if c.status { "True" } else { "False" };
                    writeln!(f, "    {}={status} ({}): {}", c.type_, c.reason, c.message)?;
                }
                if parent.condition(ConditionType::Accepted).is_none() {
                    writeln!(f, "    no Accepted condition")?;
                }
            }
        }
        for policy in &self.policies {
            let c = &policy.accepted;
            let verdict = if policy.ok() { "OK   " } else { "ERROR" };
            writeln!(f, "{verdict} AuthorizationPolicy {}/{}: {}={} ({}): {}", policy.namespace, policy.name, c.type_, if c.status { "True" } else { "False" }, c.reason, c.message)?;
        }
        for problem in self.problems.iter().filter(|p| !p.starts_with("AuthorizationPolicy ")) {
            writeln!(f, "WARN  {problem}")?;
        }
        let bad_routes = self.routes.iter().filter(|r| !r.ok()).count();
        writeln!(
            f,
            "{}: {} route(s), {} with problems; {} manifest error(s); {} Service port address(es)",
            if self.ok() { "ok" } else { "FAILED" },
            self.routes.len(),
            bad_routes,
            self.manifest_errors.len(),
            self.service_ports
        )
    }
}
