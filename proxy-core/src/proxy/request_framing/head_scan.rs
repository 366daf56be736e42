//! Where a request head ends and how its body is framed, found without parsing the head:
//! the scan splits lines at LF and looks only at the lines that start with one of the
//! framing headers' names. hyper (httparse) parses the head; on every head httparse
//! accepts, the scan finds the same end and the same header lines. What httparse refuses
//! hyper answers with 400 and closes, whatever the scan made of it.

use super::Rejected;

/// How the body after an accepted head is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Let hyper decide (upgrade, CONNECT, or something hyper refuses itself).
    Passthrough,
}

/// What a scan of the bytes from a head's start found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeadScan {
    /// The head has not ended yet.
    Partial,
    /// The head's length (through its empty line) and its body's framing, or why the
    /// head is refused.
    Complete { len: usize, framing: Result<Framing, Rejected> },
}

/// Scans `bytes`, which start where a head starts.
pub(crate) fn scan_head(bytes: &[u8]) -> HeadScan {
    HeadScanner::default().scan(bytes)
}

/// Where a scan stands, so that a head cut across reads is scanned in one pass over
/// its bytes however it was cut (a head sent a byte at a time costs no more).
#[derive(Default)]
pub(crate) struct HeadScanner {
    phase: Phase,
    /// Where the current line starts.
    line_start: usize,
    /// How far the current line has been searched for its LF.
    searched: usize,
    headers: FramingHeaders,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum Phase {
    /// Empty lines (CRLF or LF) before the request line, which httparse skips.
    #[default]
    Leading,
    RequestLine,
    Headers,
}

impl HeadScanner {
    /// Scans `bytes`: the head so far, from its start; each call's bytes extend the
    /// previous call's.
    pub(crate) fn scan(&mut self, bytes: &[u8]) -> HeadScan {
        loop {
            if self.phase == Phase::Leading {
                match (bytes.get(self.line_start), bytes.get(self.line_start + 1)) {
                    (None, _) | (Some(b'\r'), None) => return HeadScan::Partial,
                    (Some(b'\n'), _) => self.line_start += 1,
                    (Some(b'\r'), Some(b'\n')) => self.line_start += 2,
                    // (A CR alone is a parse error for httparse: hyper answers it.)
                    _ => self.phase = Phase::RequestLine,
                }
                self.searched = self.line_start;
                continue;
            }
            let Some(end) = memchr::memchr(b'\n', &bytes[self.searched..]) else {
                self.searched = bytes.len();
                return HeadScan::Partial;
            };
            let line = &bytes[self.line_start..self.searched + end];
            let next = self.searched + end + 1;
            (self.line_start, self.searched) = (next, next);
            if self.phase == Phase::RequestLine {
                self.headers.connect = line.starts_with(b"CONNECT ");
                self.phase = Phase::Headers;
                continue;
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                let headers = std::mem::take(&mut self.headers);
                return HeadScan::Complete { len: next, framing: headers.framing() };
            }
            self.headers.line(line);
        }
    }
}

/// The last coding named by the `Transfer-Encoding` lines so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Coding {
    Chunked,
    Other,
}

/// The framing headers of one head, gathered line by line.
#[derive(Default)]
struct FramingHeaders {
    connect: bool,
    has_length: bool,
    length: Option<u64>,
    coding: Option<Coding>,
    upgrade: bool,
    /// Decided by an earlier line: an unreadable length (hyper answers 400) or
    /// conflicting lengths.
    decided: Option<Result<Framing, Rejected>>,
}

impl FramingHeaders {
    /// One header line (without its line end).
    fn line(&mut self, line: &[u8]) {
        if self.decided.is_some() {
            return;
        }
        match line[0] | 0x20 {
            b'c' => {
                if let Some(value) = value_of(line, b"content-length") {
                    self.content_length(value);
                }
            }
            b't' => {
                if let Some(value) = value_of(line, b"transfer-encoding") {
                    self.transfer_encoding(value);
                }
            }
            b'u' => self.upgrade |= value_of(line, b"upgrade").is_some(),
            _ => {}
        }
    }

    fn content_length(&mut self, value: &[u8]) {
        self.has_length = true;
        for part in value.split(|&b| b == b',') {
            let Some(n) = parse_decimal(trim(part)) else {
                self.decided = Some(Ok(Framing::Passthrough)); // hyper answers 400
                return;
            };
            match self.length {
                Some(seen) if seen != n => {
                    self.decided = Some(Err(Rejected::ConflictingContentLengths));
                    return;
                }
                _ => self.length = Some(n),
            }
        }
    }

    fn transfer_encoding(&mut self, value: &[u8]) {
        match value.split(|&b| b == b',').map(trim).rfind(|c| !c.is_empty()) {
            Some(coding) if coding.eq_ignore_ascii_case(b"chunked") => self.coding = Some(Coding::Chunked),
            Some(_) => self.coding = Some(Coding::Other),
            None => {
                self.coding.get_or_insert(Coding::Other);
            }
        }
    }

    fn framing(self) -> Result<Framing, Rejected> {
        if self.connect {
            return Ok(Framing::Passthrough);
        }
        if let Some(decided) = self.decided {
            return decided;
        }
        if self.has_length && self.coding.is_some() {
            return Err(Rejected::ContentLengthWithTransferEncoding);
        }
        if self.upgrade {
            return Ok(Framing::Passthrough);
        }
        match (self.coding, self.length) {
            (Some(Coding::Chunked), _) => Ok(Framing::Chunked),
            (Some(Coding::Other), _) => Ok(Framing::Passthrough), // hyper answers 400
            (None, Some(n)) => Ok(Framing::Length(n)),
            (None, None) if self.has_length => Ok(Framing::Passthrough),
            (None, None) => Ok(Framing::None),
        }
    }
}

/// The trimmed value of a header line whose name is `name` (any case).
fn value_of<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = line.split_at_checked(name.len())?;
    let value = rest.strip_prefix(b":")?;
    head.eq_ignore_ascii_case(name).then(|| trim(value))
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = char::from(b).to_digit(10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// The length of the head at the start of `bytes`, if it has ended (for the fuzz target's
/// comparison with httparse).
pub fn head_length(bytes: &[u8]) -> Option<usize> {
    match scan_head(bytes) {
        HeadScan::Complete { len, .. } => Some(len),
        HeadScan::Partial => None,
    }
}

#[cfg(test)]
mod tests;
