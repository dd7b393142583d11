//! Finding the end of a head in bytes that arrive in pieces.

use super::error::{Error, ErrorKind, fail};
use super::limits::{MAX_HEAD_LEN, MAX_LEADING_EMPTY_LINES, MAX_REQUEST_LINE_LEN};

/// Where a head ends, found by looking at each byte once however the bytes
/// are split across reads.
///
/// Rejects a bare LF on the way (httparse accepts one as a line end). Empty
/// lines before the start line are skipped, as RFC 9112 §2.2 allows.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeadScanner {
    /// Next byte to look at.
    pos: usize,
    /// Where the start line begins, after any leading empty lines.
    start: usize,
    /// The leading empty lines are behind us.
    started: bool,
    /// The first line's LF was seen.
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
    /// Looks at the bytes of `buf` not seen before. `buf` must begin where the
    /// head begins and hold every byte given to earlier calls.
    pub(crate) fn scan(&mut self, buf: &[u8], request_line_cap: bool) -> Result<Scan, Error> {
        if !self.started && !self.skip_empty_lines(buf)? {
            return Ok(Scan::Partial);
        }
        let limit = buf.len().min(MAX_HEAD_LEN);
        let from = self.pos.min(limit);
        for offset in memchr::memchr_iter(b'\n', &buf[from..limit]) {
            let lf = from + offset;
            // `lf > self.start` holds: the byte at `start` is not LF.
            if buf[lf - 1] != b'\r' {
                return fail(ErrorKind::BareLf);
            }
            self.first_line_done = true;
            if lf >= self.start + 3 && buf[lf - 2] == b'\n' && buf[lf - 3] == b'\r' {
                self.pos = lf + 1;
                return Ok(Scan::Complete {
                    start: self.start,
                    end: lf + 1,
                });
            }
        }
        self.pos = limit;
        if request_line_cap && !self.first_line_done && limit - self.start > MAX_REQUEST_LINE_LEN {
            return fail(ErrorKind::TargetTooLong);
        }
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
    fn skips_leading_empty_lines() {
        assert_eq!(
            scan_all(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n").unwrap(),
            Scan::Complete { start: 4, end: 22 }
        );
        let many = b"\r\n".repeat(MAX_LEADING_EMPTY_LINES + 1);
        assert_eq!(scan_all(&many).unwrap_err().kind(), ErrorKind::LeadingEmptyLines);
    }

    #[test]
    fn rejects_bare_lf() {
        assert_eq!(
            scan_all(b"GET / HTTP/1.1\nHost: a\r\n\r\n").unwrap_err().kind(),
            ErrorKind::BareLf
        );
        assert_eq!(
            scan_all(b"GET / HTTP/1.1\r\nHost: a\r\n\n").unwrap_err().kind(),
            ErrorKind::BareLf
        );
        assert_eq!(
            scan_all(b"\nGET / HTTP/1.1\r\n\r\n").unwrap_err().kind(),
            ErrorKind::BareLf
        );
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
