//! Logging setup: human-readable or JSON lines on stderr, with a level that can be
//! changed at run time (admin API `/logging`).

use tracing_subscriber::{filter::EnvFilter, fmt, prelude::*, reload, Registry};

/// Changes the log filter of the running agent.
#[derive(Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl LogControl {
    /// Replaces the filter, e.g. `info`, `debug`, `info,ambit::access=info`.
    pub fn set(&self, directives: &str) -> anyhow::Result<()> {
        let filter = EnvFilter::try_new(directives)?;
        self.handle.reload(filter)?;
        Ok(())
    }

    pub fn current(&self) -> String {
        self.handle.with_current(|f| f.to_string()).unwrap_or_default()
    }
}

/// Installs the global subscriber. `json` selects one JSON object per line.
pub fn init(level: &str, json: bool) -> anyhow::Result<LogControl> {
    let filter = EnvFilter::try_new(level)?;
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry
            .with(fmt::layer().json().flatten_event(true).with_current_span(false).with_writer(std::io::stderr))
            .try_init()?;
    } else {
        registry.with(fmt::layer().with_writer(std::io::stderr)).try_init()?;
    }
    Ok(LogControl { handle })
}
