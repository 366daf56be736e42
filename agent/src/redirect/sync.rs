//! What one map sync achieved: every entry that could be written is, and the ones
//! that could not (a full map, a kernel error) are counted, never silently dropped.

use std::fmt;

/// The outcome of making one map hold a wanted set of keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Wanted entries that are missing from the map, plus unwanted ones still in it.
    pub unsynced: usize,
    /// The first failure's error, for logs and `/config_dump`.
    pub first_error: Option<String>,
}

impl SyncOutcome {
    pub fn is_complete(&self) -> bool {
        self.unsynced == 0
    }

    /// Counts one entry that could not be written.
    pub(super) fn failed(&mut self, error: impl fmt::Display) {
        self.unsynced += 1;
        if self.first_error.is_none() {
            self.first_error = Some(error.to_string());
        }
    }
}
