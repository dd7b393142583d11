//! Field values that decide framing: Content-Length, Transfer-Encoding,
//! Connection, Host, and the character classes they use.

use super::error::{Error, ErrorKind, fail};
use super::limits::MAX_TRANSFER_CODINGS;

/// A 256-entry table of the bytes for which `$pred` holds, built at compile time.
macro_rules! byte_table {
    ($pred:ident) => {{
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = $pred(i as u8);
            i += 1;
        }
        t
    }};
}

const fn tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// reg-name characters of RFC 3986 (unreserved, sub-delims, `%`).
const fn reg_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

static TCHAR: [bool; 256] = byte_table!(tchar);
static REG_NAME: [bool; 256] = byte_table!(reg_name_char);

/// `tchar` of RFC 9110 §5.6.2.
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// True when every byte is a `tchar` and there is at least one.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// SP or HTAB (OWS, BWS).
pub(crate) fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A field value byte: VCHAR, obs-text, SP or HTAB.
pub(crate) fn is_field_vchar(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// `s` equals `lower` ignoring ASCII case, where `lower` holds only lower-case
/// letters, digits and `-`, and `s` has no control byte (a field name, which
/// httparse checked is a token, or a field value, which has no CR, LF or
/// other control).
///
/// Setting bit 5 of every byte folds case: under that precondition only an
/// upper-case letter and itself map to a lower-case letter, only `-` to `-`
/// (the other candidate, CR, cannot occur) and only a digit to itself (the
/// others are controls). The length is part of the type, so the comparison
/// is a few wide loads rather than a loop.
#[inline(always)]
pub(crate) fn eq_lower<const N: usize>(s: &[u8], lower: &[u8; N]) -> bool {
    let Ok(s) = <&[u8; N]>::try_from(s) else {
        return false;
    };
    let mut diff = 0u8;
    for (a, b) in s.iter().zip(lower) {
        diff |= (a | 0x20) ^ b;
    }
    diff == 0
}

/// `s` without OWS at either end.
pub(crate) fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_ows(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

/// The elements of a comma-separated list, trimmed, empty ones skipped
/// (RFC 9110 §5.6.1).
pub(crate) fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows).filter(|s| !s.is_empty())
}

/// Parses a Content-Length value: `1*DIGIT`, no sign, no list, no overflow.
pub(crate) fn parse_content_length(value: &[u8]) -> Result<u64, Error> {
    if value.is_empty() {
        return fail(ErrorKind::InvalidContentLength);
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return fail(ErrorKind::InvalidContentLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(Error::new(ErrorKind::InvalidContentLength))?;
    }
    Ok(n)
}

/// What the Transfer-Encoding fields of one message say, across all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Codings {
    /// How many codings were listed.
    pub(crate) count: usize,
    /// `chunked` was listed.
    pub(crate) chunked: bool,
    /// The last coding listed so far is `chunked`.
    pub(crate) chunked_last: bool,
    /// A known coding other than `chunked` was listed (allowed in responses
    /// only).
    pub(crate) other: bool,
}

impl Codings {
    /// Adds the codings of one Transfer-Encoding field.
    pub(crate) fn add(&mut self, value: &[u8]) -> Result<(), Error> {
        let mut any = false;
        for coding in list_items(value) {
            any = true;
            self.count += 1;
            if self.count > MAX_TRANSFER_CODINGS {
                return fail(ErrorKind::InvalidTransferEncoding);
            }
            if coding.eq_ignore_ascii_case(b"chunked") {
                if self.chunked {
                    return fail(ErrorKind::ChunkedTwice);
                }
                self.chunked = true;
                self.chunked_last = true;
            } else if !is_token(coding) {
                return fail(ErrorKind::InvalidTransferEncoding);
            } else if is_known_coding(coding) {
                self.chunked_last = false;
                self.other = true;
            } else {
                return fail(ErrorKind::UnknownTransferCoding);
            }
        }
        if !any {
            return fail(ErrorKind::InvalidTransferEncoding);
        }
        Ok(())
    }
}

/// Transfer codings registered besides chunked. `identity` is not one any more
/// (RFC 9112 removed it), so it is rejected as unknown.
fn is_known_coding(coding: &[u8]) -> bool {
    [&b"gzip"[..], b"x-gzip", b"deflate", b"compress", b"x-compress"]
        .iter()
        .any(|known| coding.eq_ignore_ascii_case(known))
}

/// A Host value is `uri-host [":" port]` (RFC 9110 §7.2): reg-name, IPv4 or an
/// IP-literal in brackets, and digits after the colon. Empty is allowed.
pub(crate) fn is_valid_host(value: &[u8]) -> bool {
    if let [b'[', rest @ ..] = value {
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &rest[..close];
        let literal_ok =
            !literal.is_empty() && literal.iter().all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        return literal_ok && is_port_suffix(&rest[close + 1..]);
    }
    // One pass: reg-name bytes up to an optional single colon.
    for (i, &b) in value.iter().enumerate() {
        if !REG_NAME[b as usize] {
            return b == b':' && is_port_suffix(&value[i..]);
        }
    }
    true
}

/// Empty, or `":"` and at most five digits.
fn is_port_suffix(s: &[u8]) -> bool {
    match s {
        [] => true,
        [b':', digits @ ..] => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// The options a Connection field lists that change how the proxy behaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ConnectionOptions {
    /// `close`.
    pub(crate) close: bool,
    /// `keep-alive`.
    pub(crate) keep_alive: bool,
    /// `upgrade`.
    pub(crate) upgrade: bool,
}

impl ConnectionOptions {
    /// Adds the options of one Connection field.
    pub(crate) fn add(&mut self, value: &[u8]) {
        // The usual single option, without splitting.
        if eq_lower(value, b"keep-alive") {
            self.keep_alive = true;
            return;
        }
        if eq_lower(value, b"close") {
            self.close = true;
            return;
        }
        for option in list_items(value) {
            if option.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if option.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if option.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length() {
        assert_eq!(parse_content_length(b"0"), Ok(0));
        assert_eq!(parse_content_length(b"0042"), Ok(42));
        assert_eq!(parse_content_length(b"18446744073709551615"), Ok(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"+1",
            b"-1",
            b"1 2",
            b"5,5",
            b"0x10",
            b"1.0",
        ] {
            assert_eq!(
                parse_content_length(bad).unwrap_err().kind(),
                ErrorKind::InvalidContentLength,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn codings() {
        let mut c = Codings::default();
        c.add(b"gzip, chunked").unwrap();
        assert!(c.chunked_last);
        let mut c = Codings::default();
        c.add(b"chunked").unwrap();
        assert_eq!(c.add(b"chunked").unwrap_err().kind(), ErrorKind::ChunkedTwice);
        let mut c = Codings::default();
        c.add(b"CHUNKED , gzip").unwrap();
        assert!(c.chunked && !c.chunked_last);
        for (bad, kind) in [
            (&b"identity"[..], ErrorKind::UnknownTransferCoding),
            (b"br, chunked", ErrorKind::UnknownTransferCoding),
            (b"chunked;x=1", ErrorKind::InvalidTransferEncoding),
            (b" , ", ErrorKind::InvalidTransferEncoding),
            (b"", ErrorKind::InvalidTransferEncoding),
            (b"\"chunked\"", ErrorKind::InvalidTransferEncoding),
        ] {
            assert_eq!(Codings::default().add(bad).unwrap_err().kind(), kind);
        }
    }

    #[test]
    fn hosts() {
        for ok in [
            &b""[..],
            b"example.com",
            b"example.com:8080",
            b"[::1]:80",
            b"10.0.0.1",
            b"a_b~c",
        ] {
            assert!(is_valid_host(ok), "{:?}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"a b"[..],
            b"a/b",
            b"user@a",
            b"a:80:80",
            b"a:x",
            b"[::1",
            b"[]",
            b"a:123456",
            b"a?b",
        ] {
            assert!(!is_valid_host(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn connection_options() {
        let mut c = ConnectionOptions::default();
        c.add(b"Keep-Alive, X-Foo , UPGRADE");
        assert_eq!(
            c,
            ConnectionOptions {
                close: false,
                keep_alive: true,
                upgrade: true
            }
        );
    }

    #[test]
    fn lower_case_names() {
        assert!(eq_lower(b"Content-Length", b"content-length"));
        assert!(eq_lower(b"HOST", b"host"));
        assert!(eq_lower(b"100-Continue", b"100-continue"));
        assert!(!eq_lower(b"hosts", b"host"));
        assert!(!eq_lower(b"hos", b"host"));
        // Every token byte that is not a letter, a digit or '-' differs.
        for b in 0..=255u8 {
            let folds = is_tchar(b) && eq_lower(&[b], b"a");
            assert_eq!(folds, b == b'a' || b == b'A', "{b:#x}");
            let dash = is_tchar(b) && eq_lower(&[b], b"-");
            assert_eq!(dash, b == b'-', "{b:#x}");
        }
    }

    #[test]
    fn trimming() {
        assert_eq!(trim_ows(b" \ta b\t "), b"a b");
        assert_eq!(trim_ows(b"  "), b"");
        assert_eq!(list_items(b" a, ,b ,").collect::<Vec<_>>(), vec![&b"a"[..], b"b"]);
    }
}
