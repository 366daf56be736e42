//! A connection to a backend endpoint: plain TCP (endpoints outside the mesh, and
//! same-node mesh pods once admitted), or an HBONE tunnel stream to another node.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::io::DuplexStream;
use tokio::net::TcpStream;

use crate::authz::Registration;

use crate::hbone::TunnelStream;

#[derive(Debug)]
pub enum UpstreamStream {
    /// Plaintext to an endpoint outside the mesh.
    Plain(TcpStream),
    /// A mesh pod on this node: plain TCP after the inbound gate admitted the caller
    /// (registered while open, so that a new policy refusing it shuts it down).
    Local(TcpStream, Registration),
    /// A mesh pod on this node whose policies have HTTP rules: an in-process pipe to
    /// the HTTP enforcement, which forwards allowed requests to the pod.
    Filtered(DuplexStream),
    /// A mesh pod on another node, through mutual TLS.
    Hbone(Box<TunnelStream>),
}

impl UpstreamStream {
    /// `none`, `local` or `hbone` (access logs and metrics).
    pub fn tunnel(&self) -> &'static str {
        match self {
            UpstreamStream::Plain(_) => "none",
            UpstreamStream::Local(..) | UpstreamStream::Filtered(_) => "local",
            UpstreamStream::Hbone(_) => "hbone",
        }
    }

    /// Each direction's copy buffer when relaying to this upstream (larger through a
    /// tunnel: fewer DATA frames and TLS records per byte).
    pub fn copy_buffer(&self) -> usize {
        match self {
            UpstreamStream::Plain(_) | UpstreamStream::Local(..) | UpstreamStream::Filtered(_) => super::idle::PLAIN_BUFFER,
            UpstreamStream::Hbone(_) => super::idle::TUNNEL_BUFFER,
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) | UpstreamStream::Local(s, _) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Filtered(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Hbone(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) | UpstreamStream::Local(s, _) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Filtered(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Hbone(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) | UpstreamStream::Local(s, _) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Filtered(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Hbone(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) | UpstreamStream::Local(s, _) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Filtered(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Hbone(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
