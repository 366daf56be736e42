//! The agent binary's memory allocator: jemalloc (feature `jemalloc`, on by default),
//! set up to give freed memory back to the kernel.
//!
//! An idle proxied connection keeps a few KiB of live heap, but while it carried a
//! request it used tens of KiB (hyper's buffers, the request's state), all freed by
//! the time it is parked. glibc's malloc keeps most of that freed memory: the freed
//! chunks sit between the live ones in the same heap pages, and each thread's arena
//! keeps its own. jemalloc groups allocations by size class, so the pages that held
//! the freed buffers empty out whole, and it returns empty pages to the kernel on a
//! schedule:
//!
//! - `background_thread:true`: a jemalloc thread returns the pages, so memory freed
//!   just before the proxy went quiet is returned too (without it, jemalloc returns
//!   pages only from inside later allocator calls);
//! - `dirty_decay_ms:1000`: freed pages are returned within about a second (default
//!   10 s), soon after a connection is parked, long enough for a busy proxy to reuse
//!   them instead of faulting them in again;
//! - `muzzy_decay_ms:0`: returned with `MADV_DONTNEED` at once, which lowers the RSS,
//!   rather than `MADV_FREE`, which leaves the pages counted until memory is short.
//!
//! Without the feature the binary uses the system allocator.

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (the `_RJEM_MALLOC_CONF` environment
/// variable, read after this, can override them). The symbol is the prefixed
/// `malloc_conf` of tikv-jemalloc-sys's build, a `const char *`: a reference to an
/// array is one pointer, to its first byte.
#[cfg(feature = "jemalloc")]
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 60] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";
