//! What the HTTP/1 framing guard costs per request head, on one core: the tracker fed
//! whole heads, as it sees them when each arrives in one read (the common case), and
//! a head cut in two reads. Run with `cargo run --release --example framing_guard`.

use std::time::Instant;

use ambit_proxy_core::fuzzing::FramingTracker;

const ROUNDS: u32 = 2_000_000;

fn per_head(heads: &[&[u8]]) -> f64 {
    let mut tracker = FramingTracker::new(64 * 1024);
    let start = Instant::now();
    for _ in 0..ROUNDS {
        for piece in heads {
            tracker.feed(std::hint::black_box(piece)).expect("accepted");
        }
    }
    start.elapsed().as_nanos() as f64 / f64::from(ROUNDS)
}

fn main() {
    let small: &[u8] = b"GET /echo HTTP/1.1\r\nHost: echo.bench.svc.cluster.local\r\n\r\n";
    let typical: &[u8] = b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: echo.bench.svc.cluster.local\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nX-Request-Id: 7f0c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f\r\nAuthorization: Bearer abcdefghijklmnopqrstuvwxyz0123456789\r\nContent-Length: 0\r\n\r\n";
    let (first, second) = typical.split_at(typical.len() / 2);
    println!("small head ({} B), one read:    {:6.1} ns", small.len(), per_head(&[small]));
    println!("typical head ({} B), one read: {:6.1} ns", typical.len(), per_head(&[typical]));
    println!("typical head, cut in two reads: {:6.1} ns", per_head(&[first, second]));
}
