//! The conformance report, in upstream Gateway API's `ConformanceReport` format
//! (`gateway.networking.k8s.io/v1`, as in `conformance/reports/` upstream), built from
//! the results of one run of the mesh suite.
//!
//! Only what passed is declared: an extended feature is listed as supported when every
//! test that needs it passed, otherwise as unsupported, and the tests needing an
//! unsupported feature are not counted (upstream does not attempt them). Core tests are
//! always counted; a failed one makes the profile's core result `failure`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::profile::{Membership, Profile, PROFILES};

/// The outcome of one test (one case file) across every mode that ran it.
#[derive(Debug, Clone)]
pub struct TestOutcome {
    pub name: String,
    pub features: Vec<String>,
    pub provisional: bool,
    /// Passed in every mode that ran it.
    pub passed: bool,
    /// Mode name → passed in that mode.
    pub modes: BTreeMap<String, bool>,
}

/// Every test's result, next to the report (whose upstream format lists only the
/// failed ones).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TestResults {
    pub tests: Vec<TestResult>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TestResult {
    pub name: String,
    pub features: Vec<String>,
    /// Profile name → `core` or `extended`.
    pub profiles: BTreeMap<String, String>,
    pub provisional: bool,
    /// `passed` when it passed in every mode, else `failed`.
    pub result: String,
    /// Mode → `passed` or `failed`.
    pub modes: BTreeMap<String, String>,
}

fn verdict(passed: bool) -> String {
    if passed { "passed" } else { "failed" }.to_string()
}

/// The per-test results of `outcomes`, by test name.
pub fn results(outcomes: &[TestOutcome]) -> TestResults {
    let mut tests: Vec<TestResult> = outcomes
        .iter()
        .map(|t| TestResult {
            name: t.name.clone(),
            features: t.features.clone(),
            profiles: PROFILES
                .iter()
                .filter_map(|p| match p.membership(&t.features) {
                    Membership::None => None,
                    Membership::Core => Some((p.name.to_string(), "core".to_string())),
                    Membership::Extended(_) => Some((p.name.to_string(), "extended".to_string())),
                })
                .collect(),
            provisional: t.provisional,
            result: verdict(t.passed),
            modes: t.modes.iter().map(|(mode, passed)| (mode.clone(), verdict(*passed))).collect(),
        })
        .collect();
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    TestResults { tests }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Implementation {
    pub contact: Vec<String>,
    pub organization: String,
    pub project: String,
    pub url: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Statistics {
    #[serde(rename = "Failed")]
    pub failed: usize,
    #[serde(rename = "Passed")]
    pub passed: usize,
    #[serde(rename = "Skipped")]
    pub skipped: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_tests: Vec<String>,
    pub result: String,
    pub statistics: Statistics,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExtendedStatus {
    pub result: String,
    pub statistics: Statistics,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub supported_features: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unsupported_features: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProfileReport {
    pub core: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extended: Option<ExtendedStatus>,
    pub name: String,
    pub summary: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConformanceReport {
    pub api_version: String,
    pub date: String,
    #[serde(rename = "gatewayAPIChannel")]
    pub gateway_api_channel: String,
    #[serde(rename = "gatewayAPIVersion")]
    pub gateway_api_version: String,
    pub implementation: Implementation,
    pub kind: String,
    pub mode: String,
    pub profiles: Vec<ProfileReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub succeeded_provisional_tests: Vec<String>,
}

/// What the report says about the run, besides the results.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub implementation: Implementation,
    pub gateway_api_version: String,
    pub gateway_api_channel: String,
    pub mode: String,
    pub date: String,
}

/// Ambit's implementation block, with `version` the workspace version. The project has
/// no published repository address yet; `ambit.dev` is the domain of its labels and
/// controller name.
pub fn ambit_implementation() -> Implementation {
    Implementation {
        contact: vec!["https://ambit.dev".into()],
        organization: "Ambit".into(),
        project: "ambit".into(),
        url: "https://ambit.dev".into(),
        version: format!("v{}", env!("CARGO_PKG_VERSION")),
    }
}

/// The report of `outcomes` for the MESH-HTTP and MESH-GRPC profiles.
pub fn build(info: &RunInfo, outcomes: &[TestOutcome]) -> ConformanceReport {
    let profiles = PROFILES.iter().filter_map(|p| profile_report(p, outcomes)).collect();
    let mut provisional: Vec<String> = outcomes
        .iter()
        .filter(|t| t.provisional && t.passed && PROFILES.iter().any(|p| p.membership(&t.features) != Membership::None))
        .map(|t| t.name.clone())
        .collect();
    provisional.sort();
    ConformanceReport {
        api_version: "gateway.networking.k8s.io/v1".into(),
        date: info.date.clone(),
        gateway_api_channel: info.gateway_api_channel.clone(),
        gateway_api_version: info.gateway_api_version.clone(),
        implementation: info.implementation.clone(),
        kind: "ConformanceReport".into(),
        mode: info.mode.clone(),
        profiles,
        succeeded_provisional_tests: provisional,
    }
}

fn profile_report(profile: &Profile, outcomes: &[TestOutcome]) -> Option<ProfileReport> {
    let core_tests: Vec<&TestOutcome> = outcomes.iter().filter(|t| profile.membership(&t.features) == Membership::Core).collect();
    let extended_tests: Vec<(&TestOutcome, Vec<String>)> = outcomes
        .iter()
        .filter_map(|t| match profile.membership(&t.features) {
            Membership::Extended(features) => Some((t, features)),
            _ => None,
        })
        .collect();
    if core_tests.is_empty() && extended_tests.is_empty() {
        return None;
    }
    let core = core_status(&core_tests);
    let extended = (!extended_tests.is_empty()).then(|| extended_status(&extended_tests));
    let mut summary = if core.result == "success" {
        "Core tests succeeded.".to_string()
    } else {
        format!("Core tests failed with {} test failures.", core.statistics.failed)
    };
    if extended.is_some() {
        summary.push_str(" Extended tests succeeded.");
    }
    Some(ProfileReport { core, extended, name: profile.name.into(), summary })
}

fn core_status(tests: &[&TestOutcome]) -> Status {
    let mut failed_tests: Vec<String> = tests.iter().filter(|t| !t.passed).map(|t| t.name.clone()).collect();
    failed_tests.sort();
    let failed = failed_tests.len();
    let result = if failed == 0 { "success" } else { "failure" };
    Status { failed_tests, result: result.into(), statistics: Statistics { failed, passed: tests.len() - failed, skipped: 0 } }
}

fn extended_status(tests: &[(&TestOutcome, Vec<String>)]) -> ExtendedStatus {
    let mut failing: BTreeSet<&str> = BTreeSet::new();
    let mut all: BTreeMap<&str, ()> = BTreeMap::new();
    for (test, features) in tests {
        for feature in features {
            all.insert(feature, ());
            if !test.passed {
                failing.insert(feature);
            }
        }
    }
    let supported: Vec<String> = all.keys().filter(|f| !failing.contains(*f)).map(|f| f.to_string()).collect();
    let unsupported: Vec<String> = failing.iter().map(|f| f.to_string()).collect();
    let counted = tests.iter().filter(|(_, features)| features.iter().all(|f| supported.contains(f))).count();
    ExtendedStatus {
        result: "success".into(),
        statistics: Statistics { failed: 0, passed: counted, skipped: 0 },
        supported_features: supported,
        unsupported_features: unsupported,
    }
}

/// `report` without its date, to compare two runs' reports.
pub fn undated(report: &ConformanceReport) -> ConformanceReport {
    ConformanceReport { date: String::new(), ..report.clone() }
}

/// RFC 3339 UTC timestamp of `seconds` since the Unix epoch (`2026-11-26T03:26:28Z`).
pub fn rfc3339_utc(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's
/// days-to-civil algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(name: &str, features: &[&str], passed: bool) -> TestOutcome {
        let modes = BTreeMap::from([("standalone".to_string(), passed)]);
        TestOutcome { name: name.into(), features: features.iter().map(|s| s.to_string()).collect(), provisional: false, passed, modes }
    }

    fn info() -> RunInfo {
        RunInfo {
            implementation: ambit_implementation(),
            gateway_api_version: "v1.4.0".into(),
            gateway_api_channel: "standard".into(),
            mode: "default".into(),
            date: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_795_663_588), "2026-11-26T03:26:28Z");
    }

    #[test]
    fn only_passing_extended_features_are_supported() {
        let outcomes = [
            outcome("MeshBasic", &["Mesh"], true),
            outcome("MeshConsumerRoute", &["Mesh", "HTTPRoute", "MeshConsumerRoute"], true),
            outcome("MeshHTTPRouteRewritePath", &["Mesh", "HTTPRoute", "MeshHTTPRouteRewritePath"], false),
            outcome("MeshGRPC", &["Mesh", "GRPCRoute"], true),
        ];
        let report = build(&info(), &outcomes);
        let http = &report.profiles[0];
        assert_eq!(http.name, "MESH-HTTP");
        assert_eq!(http.core.statistics, Statistics { failed: 0, passed: 1, skipped: 0 });
        let extended = http.extended.as_ref().unwrap();
        assert_eq!(extended.supported_features, vec!["MeshConsumerRoute".to_string()]);
        assert_eq!(extended.unsupported_features, vec!["MeshHTTPRouteRewritePath".to_string()]);
        assert_eq!(extended.statistics, Statistics { failed: 0, passed: 1, skipped: 0 });
        let grpc = &report.profiles[1];
        assert_eq!(grpc.name, "MESH-GRPC");
        assert_eq!(grpc.core.statistics.passed, 2);
        assert!(grpc.extended.is_none());
    }

    #[test]
    fn a_failed_core_test_fails_the_profile() {
        let report = build(&info(), &[outcome("MeshTrafficSplit", &["Mesh", "HTTPRoute"], false)]);
        let http = &report.profiles[0];
        assert_eq!(http.core.result, "failure");
        assert_eq!(http.core.failed_tests, vec!["MeshTrafficSplit".to_string()]);
        assert!(http.summary.contains("failed"));
    }

    #[test]
    fn per_test_results_name_profiles_and_modes() {
        let mut consumer = outcome("MeshConsumerRoute", &["Mesh", "HTTPRoute", "MeshConsumerRoute"], true);
        consumer.modes.insert("kubernetes".into(), false);
        consumer.passed = false;
        let results = results(&[outcome("MeshBasic", &["Mesh"], true), consumer]);
        assert_eq!(results.tests[0].name, "MeshBasic");
        assert_eq!(results.tests[0].profiles.len(), 2);
        let consumer = &results.tests[1];
        assert_eq!(consumer.profiles["MESH-HTTP"], "extended");
        assert_eq!(consumer.result, "failed");
        assert_eq!(consumer.modes["standalone"], "passed");
        assert_eq!(consumer.modes["kubernetes"], "failed");
    }

    #[test]
    fn yaml_uses_upstream_field_names() {
        let mut provisional = outcome("MeshHTTPRouteNamedRule", &["Mesh", "HTTPRoute", "MeshHTTPRouteNamedRouteRule"], true);
        provisional.provisional = true;
        let yaml = serde_yaml::to_string(&build(&info(), &[provisional])).unwrap();
        for needle in [
            "apiVersion: gateway.networking.k8s.io/v1",
            "kind: ConformanceReport",
            "gatewayAPIVersion: v1.4.0",
            "gatewayAPIChannel: standard",
            "supportedFeatures:",
            "Passed: 1",
            "succeededProvisionalTests:\n- MeshHTTPRouteNamedRule",
        ] {
            assert!(yaml.contains(needle), "{needle:?} missing from\n{yaml}");
        }
    }
}
