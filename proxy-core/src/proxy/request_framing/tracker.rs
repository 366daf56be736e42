//! Follows the request stream of one HTTP/1 connection, message by message: each head's
//! framing (see [`super::head_scan`]), then its body, to know where the next head starts.

use super::head_scan::{trim, Framing, HeadScan, HeadScanner};
use super::Rejected;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Longest chunk-size line, chunk terminator or trailer section the tracker follows.
const MAX_CHUNK_LINE: usize = 4096;

/// A refused head: why, and where in the stream (bytes from the connection's first) it
/// starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub why: Rejected,
    pub head_start: u64,
}

/// Where in a chunked body the tracker is.
#[derive(Debug, PartialEq, Eq)]
enum Chunked {
    /// Reading a chunk-size line (bytes so far).
    Size(Vec<u8>),
    /// Inside chunk data: bytes left.
    Data(u64),
    /// After chunk data, up to its line end (bytes seen).
    DataEnd(usize),
    /// After the last chunk: trailer lines until an empty one (length of the current
    /// line without CR, total bytes seen).
    Trailers { line: usize, total: usize },
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Before the first byte: may still be the HTTP/2 preface.
    Start,
    /// Between messages or inside a head.
    Head,
    /// Inside a body of known length: bytes left.
    FixedBody(u64),
    Chunked(Chunked),
    /// Not following any more (HTTP/2, upgraded, or left to hyper's own checks).
    Passthrough,
    /// A head was refused; every later call fails too.
    Refused(Refusal),
}

/// The bytes of a head cut across reads, and where their scan stands.
#[derive(Default)]
struct Cut {
    bytes: Vec<u8>,
    scanner: HeadScanner,
}

/// Follows the request stream of one HTTP/1 connection (see the module docs).
pub struct FramingTracker {
    state: State,
    /// A head (or a possible HTTP/2 preface) cut across reads, until it is complete.
    /// None while heads arrive whole.
    cut: Option<Box<Cut>>,
    /// Largest head followed; a longer one is left to hyper, which answers 431.
    max_head: usize,
    /// Stream position of the next byte fed.
    offset: u64,
}

impl FramingTracker {
    /// A tracker that follows heads up to `max_head` bytes.
    pub fn new(max_head: usize) -> Self {
        Self { state: State::Start, cut: None, max_head, offset: 0 }
    }

    /// Whether the tracker has stepped aside for the rest of the connection.
    pub fn is_passthrough(&self) -> bool {
        self.state == State::Passthrough
    }

    /// Whether nothing is known yet of how the connection opens (no byte, or a
    /// possible HTTP/2 preface so far).
    pub fn at_start(&self) -> bool {
        self.state == State::Start
    }

    /// Whether a request head is being received: nothing read yet on a new connection,
    /// or part of a head read.
    pub fn head_in_progress(&self) -> bool {
        match self.state {
            State::Start => true,
            State::Head => self.cut.is_some(),
            _ => false,
        }
    }

    /// Stream position of the next byte fed (bytes fed so far).
    pub fn position(&self) -> u64 {
        self.offset
    }

    /// Follows the next bytes of the stream. Fails when they complete a refused head;
    /// once refused, every later call fails too.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Refusal> {
        loop {
            if let State::Refused(refusal) = self.state {
                return Err(refusal);
            }
            if data.is_empty() {
                return Ok(());
            }
            let used = match &mut self.state {
                State::Refused(_) => unreachable!("handled above"),
                State::Passthrough => {
                    self.cut = None;
                    data.len()
                }
                State::Start => match self.start(data) {
                    Some(used) => used,
                    None => {
                        // Not the preface: what was held is followed as the stream's
                        // first bytes, then this read.
                        let held = self.cut.take().map(|cut| cut.bytes).unwrap_or_default();
                        self.state = State::Head;
                        self.offset -= held.len() as u64;
                        self.feed(&held)?;
                        0
                    }
                },
                State::FixedBody(left) | State::Chunked(Chunked::Data(left)) => {
                    let k = (*left).min(data.len() as u64);
                    *left -= k;
                    if *left == 0 {
                        self.end_of_body_data();
                    }
                    k as usize
                }
                State::Chunked(_) => {
                    self.chunk_control_byte(data[0]);
                    1
                }
                State::Head => self.head(data)?,
            };
            self.offset += used as u64;
            data = &data[used..];
        }
    }

    /// Bytes that may be the HTTP/2 preface: returns how many were used, or `None` when
    /// they show that the stream does not open with it.
    fn start(&mut self, data: &[u8]) -> Option<usize> {
        let held = self.cut.as_ref().map_or(0, |cut| cut.bytes.len());
        let want = &H2_PREFACE[held..];
        let k = want.len().min(data.len());
        if data[..k] != want[..k] {
            return None;
        }
        if held + k == H2_PREFACE.len() {
            self.cut = None;
            self.state = State::Passthrough;
        } else {
            self.cut.get_or_insert_default().bytes.extend_from_slice(&data[..k]);
        }
        Some(k)
    }

    fn end_of_body_data(&mut self) {
        self.state = match self.state {
            State::FixedBody(_) => State::Head,
            _ => State::Chunked(Chunked::DataEnd(0)),
        };
    }

    /// Head bytes: returns how many were used (all of them unless the head ends).
    fn head(&mut self, data: &[u8]) -> Result<usize, Refusal> {
        let (before, scan) = match &mut self.cut {
            // The common case: the head starts in this read, scanned where it lies.
            None => {
                let mut scanner = HeadScanner::default();
                let scan = scanner.scan(data);
                if scan == HeadScan::Partial {
                    self.cut = Some(Box::new(Cut { bytes: data.to_vec(), scanner }));
                }
                (0, scan)
            }
            Some(cut) => {
                let before = cut.bytes.len();
                cut.bytes.extend_from_slice(data);
                (before, cut.scanner.scan(&cut.bytes))
            }
        };
        let cut_len = self.cut.as_ref().map_or(0, |cut| cut.bytes.len());
        match scan {
            HeadScan::Partial if cut_len > self.max_head => self.step_aside(),
            HeadScan::Partial => {}
            HeadScan::Complete { len, .. } if len > self.max_head => self.step_aside(),
            HeadScan::Complete { framing: Err(why), .. } => {
                let refusal = Refusal { why, head_start: self.offset - before as u64 };
                self.cut = None;
                self.state = State::Refused(refusal);
                return Err(refusal);
            }
            HeadScan::Complete { len, framing: Ok(framing) } => {
                self.cut = None;
                self.state = match framing {
                    Framing::None | Framing::Length(0) => State::Head,
                    Framing::Length(n) => State::FixedBody(n),
                    Framing::Chunked => State::Chunked(Chunked::Size(Vec::new())),
                    Framing::Passthrough => State::Passthrough,
                };
                return Ok(len - before);
            }
        }
        Ok(data.len())
    }

    /// A head too long to follow: hyper answers 431 itself.
    fn step_aside(&mut self) {
        self.cut = None;
        self.state = State::Passthrough;
    }

    /// One byte of a chunk-size line, chunk terminator or trailer section.
    fn chunk_control_byte(&mut self, byte: u8) {
        let State::Chunked(chunked) = &mut self.state else { return };
        match chunked {
            Chunked::Size(line) => {
                if byte != b'\n' {
                    line.push(byte);
                    if line.len() > MAX_CHUNK_LINE {
                        self.state = State::Passthrough;
                    }
                    return;
                }
                self.state = match parse_chunk_size(line) {
                    Some(0) => State::Chunked(Chunked::Trailers { line: 0, total: 0 }),
                    Some(size) => State::Chunked(Chunked::Data(size)),
                    None => State::Passthrough,
                };
            }
            Chunked::Data(_) => unreachable!("chunk data is handled in bulk"),
            Chunked::DataEnd(seen) => {
                *seen += 1;
                if byte == b'\n' {
                    self.state = State::Chunked(Chunked::Size(Vec::new()));
                } else if *seen > 2 {
                    // hyper requires CRLF here and fails the body otherwise.
                    self.state = State::Passthrough;
                }
            }
            Chunked::Trailers { line, total } => {
                *total += 1;
                if byte == b'\n' {
                    if *line == 0 {
                        self.state = State::Head;
                        return;
                    }
                    *line = 0;
                } else if byte != b'\r' {
                    *line += 1;
                }
                if *total > MAX_CHUNK_LINE * 16 {
                    self.state = State::Passthrough;
                }
            }
        }
    }
}

/// A chunk-size line (without its LF): hex size, optional extensions after `;`.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let size = line.split(|&b| b == b';').next()?;
    let size = std::str::from_utf8(trim(size)).ok()?;
    if size.is_empty() {
        return None;
    }
    u64::from_str_radix(size, 16).ok()
}

#[cfg(test)]
mod tests;
