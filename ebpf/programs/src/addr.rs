//! Conversions between the kernel's context fields and the 16-byte map addresses.
//!
//! The kernel hands addresses as `u32` words whose in-memory bytes are in network
//! order, so `to_ne_bytes` yields the address bytes.

use ambit_ebpf_common::{v4_mapped, Addr};

pub const AF_INET: u32 = 2;
pub const AF_INET6: u32 = 10;

/// An IPv4 address word (network order in memory) as the IPv4-mapped 16-byte form.
#[inline(always)]
pub fn from_ip4(word: u32) -> Addr {
    v4_mapped(word.to_ne_bytes())
}

/// Four IPv6 address words as 16 bytes.
#[inline(always)]
pub fn from_ip6(words: [u32; 4]) -> Addr {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let b = words[i].to_ne_bytes();
        out[i * 4] = b[0];
        out[i * 4 + 1] = b[1];
        out[i * 4 + 2] = b[2];
        out[i * 4 + 3] = b[3];
        i += 1;
    }
    out
}

/// 16 bytes as four IPv6 address words.
#[inline(always)]
pub fn to_ip6(addr: &Addr) -> [u32; 4] {
    [
        u32::from_ne_bytes([addr[0], addr[1], addr[2], addr[3]]),
        u32::from_ne_bytes([addr[4], addr[5], addr[6], addr[7]]),
        u32::from_ne_bytes([addr[8], addr[9], addr[10], addr[11]]),
        u32::from_ne_bytes([addr[12], addr[13], addr[14], addr[15]]),
    ]
}

/// The IPv4 word of an IPv4-mapped address (its last four bytes).
#[inline(always)]
pub fn to_ip4(addr: &Addr) -> u32 {
    u32::from_ne_bytes([addr[12], addr[13], addr[14], addr[15]])
}

/// Whether `addr` is IPv4-mapped (`::ffff:a.b.c.d`).
#[inline(always)]
pub fn is_v4_mapped(addr: &Addr) -> bool {
    let mut i = 0;
    while i < 10 {
        if addr[i] != 0 {
            return false;
        }
        i += 1;
    }
    addr[10] == 0xff && addr[11] == 0xff
}

/// A `bpf_sock_addr.user_port` value (network order in the low 16 bits) in host order.
#[inline(always)]
pub fn port_from_user(user_port: u32) -> u16 {
    u16::from_be(user_port as u16)
}

/// A host-order port as a `bpf_sock_addr.user_port` value.
#[inline(always)]
pub fn port_to_user(port: u16) -> u32 {
    port.to_be() as u32
}
