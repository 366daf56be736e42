//! Manifest parsing and translation: any text, loaded as a manifests file would be
//! (YAML documents, Lists, every kind the agent reads) and translated to the proxy
//! configuration and route status, must never panic.

#![no_main]

use std::path::Path;

use ambit_agent::cluster::ClusterState;
use ambit_agent::manifests::{allocate_missing_cluster_ips, parse_text};
use ambit_agent::translate::{translate, NodeView};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = parse_text(Path::new("fuzz.yaml"), text);
    let mut state = ClusterState::new();
    let mut errors = Vec::new();
    parsed.load_into(&mut state, &mut errors);
    allocate_missing_cluster_ips(&mut state);
    let no_cgroups = |_: &str, _: Option<&str>| None;
    let translation = translate(&state, &NodeView { node_name: None, cgroups: &no_cgroups });
    // The configuration dump (admin API) must render whatever was translated.
    let _ = translation.config.dump();
});
