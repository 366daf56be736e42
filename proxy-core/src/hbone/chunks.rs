//! Owned chunks for h2's DATA frames, copied from the bytes a tunnel is given: bulk
//! writes share one reused buffer instead of allocating each.

use bytes::{Bytes, BytesMut};

/// Writes of at least this many bytes are copied into the reused buffer; smaller ones
/// (such as HTTP messages) get an allocation of their own, so an idle stream holds no
/// large buffer.
const BULK_WRITE: usize = 16 * 1024;
/// The reused buffer's size.
const BUFFER: usize = 256 * 1024;

#[derive(Debug, Default)]
pub(crate) struct Chunks {
    /// h2 gets shared slices of it; once every earlier chunk has been sent (dropped),
    /// its whole space is reused.
    bulk: BytesMut,
}

impl Chunks {
    /// `bytes` as an owned chunk.
    pub(crate) fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if bytes.len() < BULK_WRITE {
            return Bytes::copy_from_slice(bytes);
        }
        if self.bulk.capacity() < bytes.len() {
            // Reclaims the whole buffer if no earlier chunk is alive, else allocates.
            self.bulk.reserve(BUFFER.max(bytes.len()));
        }
        self.bulk.extend_from_slice(bytes);
        self.bulk.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(fill: u8) -> Vec<u8> {
        vec![fill; 64 * 1024]
    }

    #[test]
    fn chunks_keep_their_bytes_while_later_ones_are_written() {
        let mut chunks = Chunks::default();
        let held: Vec<Bytes> = (0..10u8).map(|i| chunks.copy(&bulk(i))).collect();
        for (i, chunk) in held.iter().enumerate() {
            assert!(chunk.iter().all(|b| *b == i as u8), "chunk {i} changed");
        }
        assert_eq!(&chunks.copy(b"small")[..], b"small");
    }

    #[test]
    fn the_buffer_is_reused_once_its_chunks_are_dropped() {
        let mut chunks = Chunks::default();
        let first = chunks.copy(&bulk(1));
        let start = first.as_ptr();
        drop(first);
        let rest: Vec<Bytes> = (2..5u8).map(|i| chunks.copy(&bulk(i))).collect();
        drop(rest);
        let again = chunks.copy(&bulk(9));
        assert_eq!(again.as_ptr(), start, "a fresh allocation instead of the dropped chunks' space");
        assert!(again.iter().all(|b| *b == 9));
    }
}
