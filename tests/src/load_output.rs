//! What `ambit-load` prints that its callers read back.

/// The connections `ambit-load idle` opened, from its first stderr line: `OPEN <n>`,
/// followed by the failures when some connections failed. None for any other line.
pub fn idle_opened(line: &str) -> Option<usize> {
    line.trim().strip_prefix("OPEN ")?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::idle_opened;

    #[test]
    fn the_count_is_read_with_or_without_the_failures() {
        assert_eq!(idle_opened("OPEN 2000\n"), Some(2000));
        assert_eq!(idle_opened("OPEN 8235 (failed: 1765, the first: connection reset)"), Some(8235));
        assert_eq!(idle_opened("OPEN x"), None);
        assert_eq!(idle_opened("something else"), None);
    }
}
