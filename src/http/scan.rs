//! Finding the end of a head in bytes that arrive in pieces.

use std::sync::LazyLock;

use memchr::memmem::Finder;

use super::error::{Error, ErrorKind, fail};
use super::limits::{MAX_HEAD_LEN, MAX_LEADING_EMPTY_LINES, MAX_REQUEST_LINE_LEN};

/// The end of a head: the last line's LF, then the empty line. Built once.
static HEAD_END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\r\n"));

/// A line ended by a bare LF followed by another line end. Built once.
static LF_LF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));

/// Where a head ends, found by looking at each new byte once however the
/// bytes are split across reads: one `memmem` search for LF CRLF (the last
/// line's end and the empty line) over the new bytes and the two before them.
///
/// While the end has not arrived it rejects what is already certain, in this
/// order: a request line past [`MAX_REQUEST_LINE_LEN`] (414), a bare LF line
/// (LF LF), a head past [`MAX_HEAD_LEN`] (431). Once the end is found, the
/// head parser applies the same rules in the same order, so the verdict
/// does not depend on how the bytes were split (the `differential` fuzz
/// target checks this). Inside a complete head, `Fields::collect` checks
/// that every line before a field line ends in CRLF. Empty lines before the
/// start line are skipped, as RFC 9112 §2.2 allows.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeadScanner {
    /// Bytes already searched.
    pos: usize,
    /// Where the start line begins, after any leading empty lines.
    start: usize,
    /// The leading empty lines are behind us.
    started: bool,
    /// The first line's LF was seen (only tracked while waiting).
    first_line_done: bool,
}

/// What the scanner knows so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// No end yet; call again with more bytes.
    Partial,
    /// The start line begins at `start`, the head ends before `end`.
    Complete { start: usize, end: usize },
}

impl HeadScanner {
    /// True while no byte has been looked at.
    pub(crate) fn is_fresh(&self) -> bool {
        self.pos == 0 && self.start == 0 && !self.started
    }

    /// Looks at the bytes of `buf` not seen before. `buf` must begin where the
    /// head begins and hold every byte given to earlier calls.
    pub(crate) fn scan(&mut self, buf: &[u8], request_line_cap: bool) -> Result<Scan, Error> {
        if !self.started && !self.skip_empty_lines(buf)? {
            return Ok(Scan::Partial);
        }
        let limit = buf.len().min(MAX_HEAD_LEN);
        // The end: the terminator may straddle the previous search's end.
        let from = self.pos.saturating_sub(2).max(self.start).min(limit);
        let new = &buf[from..limit];
        if let Some(at) = HEAD_END.find(new) {
            let lf = from + at;
            // `lf > start`: the start line does not begin with LF.
            if lf == 0 || buf[lf - 1] != b'\r' {
                // The same precedence as while waiting: line length first.
                let first_lf = memchr::memchr(b'\n', &buf[self.start..]).unwrap_or(lf - self.start);
                if request_line_cap && first_lf > MAX_REQUEST_LINE_LEN {
                    return fail(ErrorKind::TargetTooLong);
                }
                return fail(ErrorKind::BareLf);
            }
            let end = lf + 3;
            self.pos = end;
            // The request line's length and any bare LF line before the end
            // are judged by the head parser, in the same order as below, so
            // the verdict does not depend on how the bytes were split.
            return Ok(Scan::Complete { start: self.start, end });
        }
        // No end yet: reject what is already certain, in this order.
        if request_line_cap && !self.first_line_done {
            let line_end = memchr::memchr(b'\n', &buf[self.pos.min(limit)..limit]).map(|i| self.pos + i);
            if line_end.unwrap_or(limit) - self.start > MAX_REQUEST_LINE_LEN {
                return fail(ErrorKind::TargetTooLong);
            }
            self.first_line_done = line_end.is_some();
        }
        if LF_LF.find(new).is_some() {
            return fail(ErrorKind::BareLf);
        }
        self.pos = limit;
        if buf.len() >= MAX_HEAD_LEN {
            return fail(ErrorKind::HeadTooLarge);
        }
        Ok(Scan::Partial)
    }

    /// Steps over CRLF pairs at the front; false while it cannot tell yet.
    fn skip_empty_lines(&mut self, buf: &[u8]) -> Result<bool, Error> {
        loop {
            match buf.get(self.start..) {
                Some([b'\r', b'\n', ..]) => {
                    self.start += 2;
                    if self.start / 2 > MAX_LEADING_EMPTY_LINES {
                        return fail(ErrorKind::LeadingEmptyLines);
                    }
                }
                Some([b'\r']) | Some([]) | None => return Ok(false),
                Some([b'\n', ..]) => return fail(ErrorKind::BareLf),
                Some(_) => {
                    self.started = true;
                    self.pos = self.start;
                    return Ok(true);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(input: &[u8]) -> Result<Scan, Error> {
        HeadScanner::default().scan(input, true)
    }

    #[test]
    fn finds_end_split_anywhere() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        for cut in 0..head.len() {
            let mut s = HeadScanner::default();
            let first = s.scan(&head[..cut], true).unwrap();
            let second = s.scan(head, true).unwrap();
            let expect = Scan::Complete {
                start: 0,
                end: head.len() - 4,
            };
            assert!(first == Scan::Partial || first == expect, "cut {cut}");
            assert_eq!(if first == Scan::Partial { second } else { first }, expect, "cut {cut}");
        }
    }

    #[test]
    fn finds_end_fed_byte_by_byte() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        let mut s = HeadScanner::default();
        let mut got = Scan::Partial;
        for n in 1..=head.len() {
            got = s.scan(&head[..n], true).unwrap();
            if got != Scan::Partial {
                assert_eq!(n, head.len() - 4, "found only once complete");
                break;
            }
        }
        assert_eq!(
            got,
            Scan::Complete {
                start: 0,
                end: head.len() - 4
            }
        );
    }

    #[test]
    fn skips_leading_empty_lines() {
        assert_eq!(
            scan_all(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n").unwrap(),
            Scan::Complete { start: 4, end: 22 }
        );
        let many = b"\r\n".repeat(MAX_LEADING_EMPTY_LINES + 1);
        assert_eq!(scan_all(&many).unwrap_err().kind(), ErrorKind::LeadingEmptyLines);
        assert_eq!(
            scan_all(b"\nGET / HTTP/1.1\r\n\r\n").unwrap_err().kind(),
            ErrorKind::BareLf
        );
    }

    #[test]
    fn bare_lf_endings() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: a\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\n\n",
            b"GET / HTTP/1.1\n\n",
        ] {
            assert_eq!(
                scan_all(bad).unwrap_err().kind(),
                ErrorKind::BareLf,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// The verdict on a long request line does not depend on where reads
    /// end, whatever else is wrong after it (fuzz: differential, twice).
    #[test]
    fn long_request_line_split_anywhere() {
        let tails: [&[u8]; 3] = [
            b" HTTP/1.1\r\nX: a\r\r\n\r\n",
            b"\n\r\n\r\n",
            b" HTTP/1.1\r\nX: 1\n\nY: 2\r\n\r\n",
        ];
        for tail in tails {
            let mut head = b"GET /".to_vec();
            head.resize(MAX_REQUEST_LINE_LEN + 2, b'a');
            head.extend_from_slice(tail);
            for cut in 1..head.len() {
                let mut req = crate::http::RequestHead::new();
                let r = req.parse(&head[..cut]).and_then(|_| req.parse(&head));
                assert_eq!(
                    r.unwrap_err().kind(),
                    ErrorKind::TargetTooLong,
                    "cut {cut} tail {tail:?}"
                );
            }
        }
    }

    #[test]
    fn caps_head_and_request_line() {
        let mut long_line = b"GET /".to_vec();
        long_line.resize(MAX_REQUEST_LINE_LEN + 10, b'a');
        assert_eq!(scan_all(&long_line).unwrap_err().kind(), ErrorKind::TargetTooLong);
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        while big.len() < MAX_HEAD_LEN {
            big.extend_from_slice(b"X-Fill: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(scan_all(&big).unwrap_err().kind(), ErrorKind::HeadTooLarge);
    }
}
