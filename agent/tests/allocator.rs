//! The agent binary runs on jemalloc with the settings of `src/allocator.rs`: jemalloc
//! reads them from an exported symbol, which a renamed symbol or a changed prefix would
//! silently ignore. jemalloc prints its options at exit when asked (`stats_print`).
#![cfg(feature = "jemalloc")]

use std::process::Command;

#[test]
fn the_binary_runs_on_jemalloc_with_its_settings() {
    let output = Command::new(env!("CARGO_BIN_EXE_ambit-agent"))
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("running ambit-agent --version");
    assert!(output.status.success(), "ambit-agent --version failed: {output:?}");
    let stats = String::from_utf8_lossy(&output.stderr);
    for option in ["opt.background_thread: true", "opt.dirty_decay_ms: 1000", "opt.muzzy_decay_ms: 0"] {
        assert!(stats.contains(option), "jemalloc's statistics lack {option:?}:\n{stats}");
    }
}
