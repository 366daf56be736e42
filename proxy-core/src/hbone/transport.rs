//! The TCP connection under a tunnel's TLS, read through a buffer: rustls asks its
//! transport for at most 4 KiB per read, so a 16 KiB record would otherwise take
//! four or more `recvmsg` calls; the buffer takes up to [`READ_BUFFER`] per call and
//! rustls' small reads are served from memory. Writes pass straight through.

use tokio::io::BufReader;
use tokio::net::TcpStream;

/// Bytes read from the socket at once (a few TLS records).
pub(crate) const READ_BUFFER: usize = 64 * 1024;

/// What a tunnel's TLS runs over.
pub(crate) type Transport = BufReader<TcpStream>;

pub(crate) fn buffered(tcp: TcpStream) -> Transport {
    BufReader::with_capacity(READ_BUFFER, tcp)
}
