//! The HTTP/1 request-framing guard: any byte stream, cut into reads anywhere, must
//! never panic, and what the guard releases (and whether it refuses) must not depend on
//! how the stream was cut.

#![no_main]

use ambit_proxy_core::fuzzing::{FramingTracker, Rejected};
use libfuzzer_sys::fuzz_target;

/// Heads larger than this are left to hyper (431); small, so the fuzzer reaches it.
const MAX_HEAD: usize = 512;

/// Feeds `stream` in pieces of the given sizes (the rest in one last piece), stopping at
/// the first refusal, then releases what is still held as the end of stream would.
fn feed(stream: &[u8], cuts: &[u8]) -> (Vec<u8>, Result<(), Rejected>) {
    let mut tracker = FramingTracker::new(MAX_HEAD);
    let mut released = Vec::new();
    let mut rest = stream;
    let pieces = cuts.iter().map(|&c| usize::from(c)).chain(std::iter::once(usize::MAX));
    for cut in pieces {
        let (piece, after) = rest.split_at(cut.min(rest.len()));
        rest = after;
        if let Err(why) = tracker.feed(piece, &mut released) {
            return (released, Err(why));
        }
        if rest.is_empty() {
            break;
        }
    }
    tracker.flush_held(&mut released);
    (released, Ok(()))
}

fuzz_target!(|data: &[u8]| {
    // First byte: how many cut sizes follow; then the cut sizes; then the stream.
    let Some((&n, data)) = data.split_first() else { return };
    let (cuts, stream) = data.split_at(usize::from(n % 16).min(data.len()));
    let whole = feed(stream, &[]);
    let split = feed(stream, cuts);
    assert_eq!(whole, split, "released bytes depend on how the stream was cut ({cuts:?})");
    if whole.1.is_ok() {
        assert_eq!(whole.0, stream, "an accepted stream is released unchanged");
    } else {
        assert!(whole.0.len() < stream.len(), "a refused head is never released");
        assert!(stream.starts_with(&whole.0), "released bytes are a prefix of the stream");
    }
});
