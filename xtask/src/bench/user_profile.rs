//! Where a proxy's user-space time goes, by code: a `perf record` (cpu-clock, no call
//! graphs) of the proxy during a load run of its own, its self-time samples grouped
//! by the crate or library of each function, and each group's share turned into
//! microseconds per request with the user time measured in the unprofiled runs.
//!
//! Self time is attributed to the function the sample landed in: code inlined into a
//! caller counts as the caller's (an Ambit function inlined into hyper's dispatcher
//! counts as hyper's), so the groups are approximate at their borders.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::profile::Profile;

/// Groups of user-space code, in the order they are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// hyper, http, httparse, http-body, h2: parsing, encoding, connection dispatch.
    Http,
    /// tokio and mio: the event loop, task polls and wake-ups, timers.
    Runtime,
    /// Ambit's own crates: routing, filters, metrics, pools, the framing guard.
    Ambit,
    /// The allocator (malloc/free, jemalloc) and memory copies (memcpy/memmove/memset).
    Memory,
    /// The standard library, bytes, hash maps, unresolved addresses and the rest.
    Other,
}

impl Code {
    const ALL: [Code; 5] = [Code::Http, Code::Runtime, Code::Ambit, Code::Memory, Code::Other];

    fn label(self) -> &'static str {
        match self {
            Code::Http => "hyper/http/httparse",
            Code::Runtime => "tokio",
            Code::Ambit => "Ambit's own code",
            Code::Memory => "allocator and memory copies",
            Code::Other => "std, bytes, hash maps and other",
        }
    }
}

const HTTP_CRATES: &[&str] = &["hyper", "hyper_util", "http", "httparse", "http_body", "http_body_util", "h2"];
const RUNTIME_CRATES: &[&str] = &["tokio", "tokio_util", "mio"];
const MEMORY_PREFIXES: &[&str] =
    &["malloc", "free", "cfree", "realloc", "calloc", "_int_malloc", "_int_free", "_int_realloc", "__libc_", "tcache_", "je_", "_rjem_", "tikv_jemalloc", "__memmove", "__memcpy", "__memset", "memcpy", "memmove", "memset", "__rust_alloc", "__rust_dealloc", "__rust_realloc", "__rustc::__rust_"];

/// The group of a (demangled) function name as `perf report` prints it.
pub fn code_of(symbol: &str) -> Code {
    let symbol = symbol.trim();
    if MEMORY_PREFIXES.iter().any(|p| symbol.starts_with(p)) {
        return Code::Memory;
    }
    // `core::ptr::drop_in_place<T>` is T's code; `<T as Trait>::f` is T's.
    let symbol = symbol.strip_prefix("core::ptr::drop_in_place<").unwrap_or(symbol);
    let path = symbol.trim_start_matches(['<', '&', '*']).trim_start_matches("mut ").trim_start_matches("dyn ");
    let first = path.split("::").next().unwrap_or("");
    if first.starts_with("ambit") {
        Code::Ambit
    } else if HTTP_CRATES.contains(&first) {
        Code::Http
    } else if RUNTIME_CRATES.contains(&first) {
        Code::Runtime
    } else {
        Code::Other
    }
}

/// A profile's user-space samples: each group's share of them, and the busiest functions.
#[derive(Debug, Default)]
pub struct UserProfile {
    /// Per group, its share of the user-space samples (0..=1).
    pub shares: Vec<(Code, f64)>,
    /// The functions with the most self time, with their share of the user-space samples.
    pub top: Vec<(String, f64)>,
}

/// Parses `perf report --stdio -F overhead,sym` output: lines `  2.15%  [.] name`
/// (user space) and `  1.02%  [k] name` (kernel, skipped).
pub fn parse_report(text: &str) -> Result<UserProfile> {
    let mut functions: Vec<(String, f64)> = Vec::new();
    for line in text.lines() {
        let Some((percent, rest)) = line.trim_start().split_once('%') else { continue };
        let Ok(percent) = percent.parse::<f64>() else { continue };
        let Some(name) = rest.trim_start().strip_prefix("[.]") else { continue };
        functions.push((name.trim().to_string(), percent));
    }
    let total: f64 = functions.iter().map(|(_, p)| p).sum();
    if total <= 0.0 {
        bail!("the profile has no user-space samples");
    }
    let shares = Code::ALL
        .iter()
        .map(|&code| (code, functions.iter().filter(|(n, _)| code_of(n) == code).map(|(_, p)| p).sum::<f64>() / total))
        .collect();
    functions.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top = functions.into_iter().take(5).map(|(n, p)| (n, p / total)).collect();
    Ok(UserProfile { shares, top })
}

impl UserProfile {
    /// Each group in µs per request, given the proxy's user time per request, and the
    /// busiest functions.
    pub fn describe(&self, user_us_per_request: f64) -> String {
        let groups: Vec<String> = self
            .shares
            .iter()
            .map(|(code, share)| format!("{} {:.1} µs", code.label(), share * user_us_per_request))
            .collect();
        let top: Vec<String> = self.top.iter().map(|(name, share)| format!("{} {:.0}%", short(name), share * 100.0)).collect();
        format!("{} (busiest functions: {})", groups.join(", "), top.join(", "))
    }
}

/// A function name cut to its last two path segments, without generic arguments.
fn short(name: &str) -> String {
    let mut depth = 0;
    let plain: String = name
        .chars()
        .filter(|&c| {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => return depth == 0,
            }
            false
        })
        .collect();
    let parts: Vec<&str> = plain.split("::").filter(|p| !p.is_empty()).collect();
    parts[parts.len().saturating_sub(2)..].join("::")
}

/// Samples `pid` (all its threads, cpu-clock) while `run` runs, into `file`, and groups
/// the user-space samples.
pub fn record(pid: i32, file: &Path, run: impl FnOnce() -> Result<()>) -> Result<UserProfile> {
    let profile = Profile::record(file, &[pid], &["-e", "cpu-clock", "-F", "2999"])?;
    let ran = run();
    let stopped = profile.stop();
    ran?;
    stopped?;
    let out = Command::new("perf")
        .args(["report", "--stdio", "--no-children", "-F", "overhead,sym", "-i"])
        .arg(file)
        .stderr(Stdio::null())
        .output()
        .context("running perf report")?;
    if !out.status.success() {
        bail!("perf report failed: {}", out.status);
    }
    parse_report(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_are_grouped_by_their_crate_or_library() {
        let cases = [
            ("hyper::proto::h1::dispatch::Dispatcher<D,Bs,I,T>::poll_catch", Code::Http),
            ("<hyper::proto::h1::role::Server as hyper::proto::h1::Http1Transaction>::parse", Code::Http),
            ("httparse::parse_headers_iter_uninit", Code::Http),
            ("http::header::map::HeaderMap<T>::try_append2", Code::Http),
            ("tokio::runtime::scheduler::current_thread::Context::run_task", Code::Runtime),
            ("<mio::net::tcp::stream::TcpStream as std::io::Read>::read", Code::Runtime),
            ("ambit_proxy_core::proxy::http::handle::{{closure}}", Code::Ambit),
            ("<ambit_proxy_core::proxy::http1_park::RoundIo as tokio::io::async_read::AsyncRead>::poll_read", Code::Ambit),
            ("core::ptr::drop_in_place<ambit_proxy_core::proxy::in_flight::InFlightBody>", Code::Ambit),
            ("core::ptr::drop_in_place<hyper::body::incoming::Incoming>", Code::Http),
            ("__memmove_avx512_unaligned_erms", Code::Memory),
            ("_int_free", Code::Memory),
            ("_rjem_je_malloc_default", Code::Memory),
            ("__rustc::__rust_alloc", Code::Memory),
            ("bytes::bytes_mut::BytesMut::split_to", Code::Other),
            ("<core::pin::Pin<P> as core::future::future::Future>::poll", Code::Other),
            ("0x00007f12", Code::Other),
        ];
        for (symbol, code) in cases {
            assert_eq!(code_of(symbol), code, "{symbol}");
        }
    }

    #[test]
    fn a_report_gives_each_groups_share_of_the_user_space_samples_only() {
        let text = "# Samples: 1K of event 'cpu-clock'\n#\n# Overhead  Symbol\n\
                    #\n    30.00%  [k] tcp_ack\n    20.00%  [.] hyper::proto::h1::io::Buffered<T,B>::parse\n\
                    10.00%  [.] tokio::runtime::task::raw::poll\n    10.00%  [.] ambit_proxy_core::proxy::http::forward\n\
                    \x20    5.00%  [.] malloc\n     5.00%  [.] bytes::bytes_mut::BytesMut::reserve_inner\n\n";
        let profile = parse_report(text).unwrap();
        let share = |code| profile.shares.iter().find(|(c, _)| *c == code).unwrap().1;
        assert!((share(Code::Http) - 0.4).abs() < 1e-9);
        assert!((share(Code::Runtime) - 0.2).abs() < 1e-9);
        assert!((share(Code::Ambit) - 0.2).abs() < 1e-9);
        assert!((share(Code::Memory) - 0.1).abs() < 1e-9);
        assert!((share(Code::Other) - 0.1).abs() < 1e-9);
        assert_eq!(profile.top[0].0, "hyper::proto::h1::io::Buffered<T,B>::parse");
        assert_eq!(
            profile.describe(10.0),
            "hyper/http/httparse 4.0 µs, tokio 2.0 µs, Ambit's own code 2.0 µs, allocator and memory copies 1.0 µs, \
             std, bytes, hash maps and other 1.0 µs (busiest functions: Buffered::parse 40%, raw::poll 20%, http::forward 20%, \
             malloc 10%, BytesMut::reserve_inner 10%)"
        );
    }

    #[test]
    fn a_report_without_user_space_samples_is_an_error() {
        assert!(parse_report("    100.00%  [k] tcp_ack\n").is_err());
        assert!(parse_report("").is_err());
    }
}
