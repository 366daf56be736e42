//! Packet capture on a bed's cluster network: an `AF_PACKET` raw socket bound to
//! an interface inside a network namespace (the cluster bridge, which the bed
//! makes promiscuous so that it sees every frame forwarded between nodes),
//! reading frames into memory on a dedicated thread that entered the namespace
//! with `setns` (only that thread changes namespace).
//!
//! A capture runs from [`Capture::start`] (which returns once the socket is
//! bound, so traffic sent afterwards is seen) until [`Capture::finish`] or its
//! time limit; at most [`MAX_STORED_BYTES`] of frames are kept.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::netns;

/// The most frame bytes one capture keeps; later frames are counted as dropped.
pub const MAX_STORED_BYTES: usize = 64 << 20;
/// Receive buffer per read (large enough for a GSO super-frame).
const READ_BUFFER: usize = 256 << 10;
/// How often the capture thread checks whether it should stop.
const POLL: Duration = Duration::from_millis(50);

/// A running capture; stopped on [`Capture::finish`] or drop.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Captured>>>,
}

/// What a capture saw: the frames (link-layer, Ethernet) in arrival order.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    frames: Vec<Vec<u8>>,
    stored: usize,
    dropped: usize,
}

impl Capture {
    /// Starts capturing on `iface` inside netns `netns` for at most `limit`.
    pub fn start(netns: &str, iface: &str, limit: Duration) -> Result<Capture> {
        let ns = File::open(netns::netns_path(netns)).with_context(|| format!("opening netns {netns}"))?;
        let iface_c = CString::new(iface).context("interface name")?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let thread_stop = stop.clone();
        let what = format!("{iface} in {netns}");
        let thread = std::thread::Builder::new().name("ambit-capture".into()).spawn(move || {
            let opened = nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| anyhow!("setns: {e}"))
                .and_then(|()| open_packet_socket(&iface_c));
            let socket = match opened {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return Ok(Captured::default());
                }
            };
            read_frames(&socket, &thread_stop, Instant::now() + limit)
        })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Capture { stop, thread: Some(thread) }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e.context(format!("opening a packet socket on {what}")))
            }
            Err(_) => bail!("the capture thread for {what} ended before opening its socket"),
        }
    }

    /// Stops the capture and returns what it saw.
    pub fn finish(mut self) -> Result<Captured> {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().expect("a capture is finished once");
        thread.join().map_err(|_| anyhow!("capture thread panicked"))?
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A raw packet socket bound to interface `iface` (of the calling thread's netns).
fn open_packet_socket(iface: &CString) -> Result<OwnedFd> {
    // Protocol 0 until bound: the socket sees no frame of another interface.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket(AF_PACKET)");
    }
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let index = unsafe { libc::if_nametoindex(iface.as_ptr()) };
    if index == 0 {
        bail!("no interface {iface:?}");
    }
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    addr.sll_ifindex = index as i32;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    let rc = unsafe { libc::bind(fd, (&addr as *const libc::sockaddr_ll).cast(), len) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("bind(AF_PACKET)");
    }
    let timeout = libc::timeval { tv_sec: 0, tv_usec: POLL.as_micros() as libc::suseconds_t };
    set_option(fd, libc::SO_RCVTIMEO, &timeout)?;
    // Room for bursts while the test is busy elsewhere (as root, beyond rmem_max): a
    // loaded machine (a build beside the tests) overflowed 8 MiB once.
    let _ = set_option(fd, libc::SO_RCVBUFFORCE, &(64i32 << 20));
    Ok(socket)
}

fn set_option<T>(fd: i32, name: libc::c_int, value: &T) -> Result<()> {
    let len = std::mem::size_of::<T>() as libc::socklen_t;
    let rc = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, name, (value as *const T).cast(), len) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("setsockopt({name})"));
    }
    Ok(())
}

/// How long the final drain of queued frames may take.
const DRAIN: Duration = Duration::from_secs(2);

/// Reads frames until `stop` or `deadline`, then drains what is already queued: the
/// kernel queues a frame on the socket as it crosses the bridge, so every frame of a
/// call that has returned is in the queue even if this thread (on a loaded machine)
/// has not run since.
fn read_frames(socket: &OwnedFd, stop: &AtomicBool, deadline: Instant) -> Result<Captured> {
    let mut captured = Captured::default();
    let mut buf = vec![0u8; READ_BUFFER];
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        if let Some(n) = receive(socket, &mut buf, 0)? {
            captured.push_received(&buf, n);
        }
    }
    // Bounded: traffic that goes on while draining must not keep this loop alive.
    let drained_by = Instant::now() + DRAIN;
    while let Some(n) = receive(socket, &mut buf, libc::MSG_DONTWAIT)? {
        captured.push_received(&buf, n);
        if Instant::now() > drained_by {
            break;
        }
    }
    Ok(captured)
}

/// One frame's length, `Some(0)` for one to skip (sent by the bridge itself), or `None`
/// when none came within the socket's timeout (or at once, with `MSG_DONTWAIT`).
fn receive(socket: &OwnedFd, buf: &mut [u8], flags: libc::c_int) -> Result<Option<usize>> {
    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    let n = unsafe {
        libc::recvfrom(
            socket.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
            (&mut from as *mut libc::sockaddr_ll).cast(),
            &mut from_len,
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e).context("recvfrom(AF_PACKET)"),
        };
    }
    // Frames the bridge itself sends would be seen twice; it sends none, but be sure.
    if from.sll_pkttype == libc::PACKET_OUTGOING {
        return Ok(Some(0));
    }
    Ok(Some(n as usize))
}

/// A TCP segment found in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// TCP flags (the low 8 bits: FIN, SYN, RST, PSH, ACK, ...).
    pub flags: u8,
    /// The segment's payload (no headers).
    pub payload: &'a [u8],
}

impl Captured {
    fn push_received(&mut self, buf: &[u8], n: usize) {
        if n > 0 {
            self.push(&buf[..n]);
        }
    }

    fn push(&mut self, frame: &[u8]) {
        if self.stored + frame.len() > MAX_STORED_BYTES {
            self.dropped += 1;
            return;
        }
        self.stored += frame.len();
        self.frames.push(frame.to_vec());
    }

    /// Number of frames kept.
    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// Frames not kept because [`MAX_STORED_BYTES`] was reached.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// Whether any one frame holds `needle` (headers included; a needle split
    /// across two segments is not found, so keep needles short).
    pub fn contains(&self, needle: &[u8]) -> bool {
        !needle.is_empty() && self.frames.iter().any(|f| f.windows(needle.len()).any(|w| w == needle))
    }

    /// The TCP segments (over IPv4 or IPv6) of the kept frames.
    pub fn tcp_segments(&self) -> impl Iterator<Item = TcpSegment<'_>> {
        self.frames.iter().filter_map(|f| tcp_segment(f))
    }

    /// TCP payload bytes sent to or from `port`.
    pub fn tcp_payload_bytes(&self, port: u16) -> u64 {
        self.tcp_segments()
            .filter(|s| s.src_port == port || s.dst_port == port)
            .map(|s| s.payload.len() as u64)
            .sum()
    }

    /// TCP connections opened to `port` (SYN without ACK).
    pub fn connections_to(&self, port: u16) -> usize {
        self.tcp_segments().filter(|s| s.dst_port == port && s.flags & (TCP_SYN | TCP_ACK) == TCP_SYN).count()
    }

    /// TLS ClientHellos sent to `port` (a handshake record whose first message is a
    /// ClientHello at the start of a segment): one per TLS connection.
    pub fn tls_client_hellos_to(&self, port: u16) -> usize {
        self.tcp_segments()
            .filter(|s| s.dst_port == port && s.payload.len() > 5 && s.payload[0] == 0x16 && s.payload[1] == 0x03 && s.payload[5] == 0x01)
            .count()
    }

    /// The ports (either side) that carried TCP payload, with their byte counts.
    pub fn tcp_ports_with_payload(&self) -> std::collections::BTreeMap<(u16, u16), u64> {
        let mut out = std::collections::BTreeMap::new();
        for s in self.tcp_segments().filter(|s| !s.payload.is_empty()) {
            *out.entry((s.src_port, s.dst_port)).or_insert(0) += s.payload.len() as u64;
        }
        out
    }
}

/// The HBONE port (HTTP/2 CONNECT over mutual TLS between node proxies), as Istio ambient.
pub const HBONE_PORT: u16 = 15008;

/// What a call between mesh pods on different nodes looks like on the cluster network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// The request as the caller sent it, to the backend pod's own port.
    Plaintext,
    /// Only TLS on [`HBONE_PORT`]: no plaintext, nothing on the backend's port.
    Hbone,
}

impl Captured {
    /// Checks that this capture of one call, whose request carried `marker` to a
    /// backend listening on `backend_port`, shows `wire`; the error says what it saw.
    pub fn check_wire(&self, marker: &[u8], backend_port: u16, wire: Wire) -> Result<()> {
        let seen = self.contains(marker);
        let (hbone, plain) = (self.tcp_payload_bytes(HBONE_PORT), self.tcp_payload_bytes(backend_port));
        let what = || {
            format!(
                "marker seen: {seen}, payload bytes on {backend_port}: {plain}, on {HBONE_PORT}: {hbone}, \
                 dropped frames: {}, flows: {:?}",
                self.dropped,
                self.tcp_ports_with_payload()
            )
        };
        let ok = self.dropped == 0
            && match wire {
                Wire::Plaintext => seen && plain > 0 && hbone == 0,
                Wire::Hbone => !seen && hbone > 0 && plain == 0,
            };
        if !ok {
            bail!("the cluster network does not show {wire:?}: {}", what());
        }
        Ok(())
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const IPPROTO_TCP: u8 = 6;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The TCP segment in an Ethernet frame, if it carries one (no IPv6 extension headers).
pub fn tcp_segment(frame: &[u8]) -> Option<TcpSegment<'_>> {
    let mut ethertype = be16(frame, 12)?;
    let mut l3 = 14;
    if ethertype == ETHERTYPE_VLAN {
        ethertype = be16(frame, 16)?;
        l3 = 18;
    }
    let ip = frame.get(l3..)?;
    let tcp = match ethertype {
        ETHERTYPE_IPV4 => {
            let header = usize::from(ip.first()? & 0x0f) * 4;
            if *ip.get(9)? != IPPROTO_TCP || header < 20 {
                return None;
            }
            let total = usize::from(be16(ip, 2)?).min(ip.len());
            ip.get(header..total)?
        }
        ETHERTYPE_IPV6 => {
            if *ip.get(6)? != IPPROTO_TCP {
                return None;
            }
            let end = (40 + usize::from(be16(ip, 4)?)).min(ip.len());
            ip.get(40..end)?
        }
        _ => return None,
    };
    let offset = usize::from(tcp.get(12)? >> 4) * 4;
    Some(TcpSegment {
        src_port: be16(tcp, 0)?,
        dst_port: be16(tcp, 2)?,
        flags: *tcp.get(13)?,
        payload: tcp.get(offset.max(20)..)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_v4(src: u16, dst: u16, payload: &[u8], padding: usize) -> Vec<u8> {
        frame_v4_flags(src, dst, TCP_ACK, payload, padding)
    }

    fn frame_v4_flags(src: u16, dst: u16, flags: u8, payload: &[u8], padding: usize) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let total = (20 + 20 + payload.len()) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, IPPROTO_TCP, 0, 0, 10, 77, 0, 1, 10, 77, 0, 2];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&src.to_be_bytes());
        tcp[2..4].copy_from_slice(&dst.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        f.extend_from_slice(&tcp);
        f.extend_from_slice(payload);
        f.extend(std::iter::repeat_n(0, padding));
        f
    }

    #[test]
    fn finds_tcp_payload_and_ignores_padding() {
        let mut c = Captured::default();
        c.push(&frame_v4(40000, 15008, b"hello", 10));
        c.push(&frame_v4(15008, 40000, b"", 6));
        c.push(&[0u8; 10]);
        assert_eq!(c.tcp_payload_bytes(15008), 5);
        assert_eq!(c.tcp_payload_bytes(8080), 0);
        assert!(c.contains(b"hello"));
        assert!(!c.contains(b"world"));
        assert!(!c.contains(b""));
        assert_eq!(c.tcp_ports_with_payload().into_iter().collect::<Vec<_>>(), vec![((40000, 15008), 5)]);
    }

    #[test]
    fn counts_connections_and_client_hellos() {
        let mut c = Captured::default();
        c.push(&frame_v4_flags(40000, HBONE_PORT, TCP_SYN, b"", 0));
        c.push(&frame_v4_flags(HBONE_PORT, 40000, TCP_SYN | TCP_ACK, b"", 0));
        c.push(&frame_v4(40000, HBONE_PORT, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc", 0));
        c.push(&frame_v4(HBONE_PORT, 40000, b"\x16\x03\x03\x00\x7a\x02\x00", 0));
        c.push(&frame_v4(40000, HBONE_PORT, b"\x17\x03\x03\x00\x10 app data", 0));
        assert_eq!(c.connections_to(HBONE_PORT), 1);
        assert_eq!(c.connections_to(40000), 0, "a SYN-ACK opens nothing");
        assert_eq!(c.tls_client_hellos_to(HBONE_PORT), 1);
        assert_eq!(c.tls_client_hellos_to(40000), 0, "a ServerHello is no ClientHello");
    }

    #[test]
    fn checks_the_wire() {
        let mut plain = Captured::default();
        plain.push(&frame_v4(40000, 8080, b"GET /marker", 0));
        assert!(plain.check_wire(b"/marker", 8080, Wire::Plaintext).is_ok());
        assert!(plain.check_wire(b"/marker", 8080, Wire::Hbone).is_err());
        let mut tls = Captured::default();
        tls.push(&frame_v4(40000, HBONE_PORT, b"\x16\x03\x01 opaque", 0));
        assert!(tls.check_wire(b"/marker", 8080, Wire::Hbone).is_ok());
        assert!(tls.check_wire(b"/marker", 8080, Wire::Plaintext).is_err());
        assert!(Captured::default().check_wire(b"/marker", 8080, Wire::Hbone).is_err(), "nothing flowed");
    }

    #[test]
    fn rejects_truncated_and_foreign_frames() {
        let f = frame_v4(1, 2, b"xyz", 0);
        for cut in 0..(14 + 20 + 13) {
            assert_eq!(tcp_segment(&f[..cut]), None, "cut at {cut}");
        }
        let mut udp = f.clone();
        udp[14 + 9] = 17;
        assert_eq!(tcp_segment(&udp), None);
    }
}
