//! The compiled eBPF object, embedded at build time.
//!
//! `ebpf/obj/ambit.bpf.o` is committed and rebuilt with `cargo xtask build-ebpf`
//! (`cargo xtask check-ebpf` verifies it matches the sources), so building the agent
//! never needs the nightly/bpf-linker toolchain.

/// The bytes of `ebpf/obj/ambit.bpf.o`, aligned for parsing.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!("../../../ebpf/obj/ambit.bpf.o");
