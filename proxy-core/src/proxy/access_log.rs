//! Access logs: one structured event per request or TCP connection, written through
//! `tracing` with target `ambit::access`. Off by default, switchable at run time.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct AccessLog {
    enabled: AtomicBool,
}

impl AccessLog {
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }
}
