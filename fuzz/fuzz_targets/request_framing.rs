//! The HTTP/1 request-framing guard: any byte stream, cut into reads anywhere, must
//! never panic; whether and where it refuses a head must not depend on how the stream
//! was cut; and its head scan must find the end httparse (hyper's parser) finds.

#![no_main]

use ambit_proxy_core::fuzzing::{head_length, FramingTracker, Refusal};
use libfuzzer_sys::fuzz_target;

/// Heads larger than this are left to hyper (431); small, so the fuzzer reaches it.
const MAX_HEAD: usize = 512;

/// Feeds `stream` in pieces of the given sizes (the rest in one last piece), stopping at
/// the first refusal.
fn feed(stream: &[u8], cuts: &[u8]) -> Result<(), Refusal> {
    let mut tracker = FramingTracker::new(MAX_HEAD);
    let mut rest = stream;
    let pieces = cuts.iter().map(|&c| usize::from(c)).chain(std::iter::once(usize::MAX));
    for cut in pieces {
        let (piece, after) = rest.split_at(cut.min(rest.len()));
        rest = after;
        tracker.feed(piece)?;
        if rest.is_empty() {
            break;
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    // First byte: how many cut sizes follow; then the cut sizes; then the stream.
    let Some((&n, data)) = data.split_first() else { return };
    let (cuts, stream) = data.split_at(usize::from(n % 16).min(data.len()));
    let whole = feed(stream, &[]);
    assert_eq!(whole, feed(stream, cuts), "the verdict depends on how the stream was cut ({cuts:?})");
    if let Err(refusal) = whole {
        let start = usize::try_from(refusal.head_start).expect("a position in the stream");
        assert!(head_length(&stream[start..]).is_some(), "a refused head is a complete head");
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    if let Ok(httparse::Status::Complete(len)) = httparse::Request::new(&mut headers).parse(stream) {
        assert_eq!(head_length(stream), Some(len), "the scan and httparse disagree on where the head ends");
    }
});
