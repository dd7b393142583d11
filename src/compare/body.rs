//! Bodies as the comparison sees them: content coding removed, JSON
//! recognized, and for other bodies the first differing byte.

use std::borrow::Cow;
use std::io::Read;

use flate2::read::{DeflateDecoder, GzDecoder, ZlibDecoder};

/// Most bytes a compressed body may inflate to before the comparison gives
/// up on it (a small body must not become a memory bomb).
pub const MAX_DECODED_BODY: usize = 16 << 20;
/// Bytes of context shown on each side of a first difference.
pub const CONTEXT_BYTES: usize = 24;

/// `body` with its content coding removed.
pub fn decode<'a>(body: &'a [u8], coding: Option<&[u8]>) -> Result<Cow<'a, [u8]>, String> {
    let coding = coding.map(|c| String::from_utf8_lossy(c).trim().to_ascii_lowercase());
    match coding.as_deref() {
        None | Some("") | Some("identity") => Ok(Cow::Borrowed(body)),
        Some("gzip") | Some("x-gzip") => inflate(GzDecoder::new(body)),
        // HTTP's "deflate" is zlib-wrapped; some servers send it raw.
        Some("deflate") => inflate(ZlibDecoder::new(body)).or_else(|_| inflate(DeflateDecoder::new(body))),
        Some(other) => Err(format!("content-encoding {other} is not decoded")),
    }
}

fn inflate(reader: impl Read) -> Result<Cow<'static, [u8]>, String> {
    let mut out = Vec::new();
    reader
        .take(MAX_DECODED_BODY as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot decode the body: {e}"))?;
    if out.len() > MAX_DECODED_BODY {
        return Err(format!("the decoded body passes {MAX_DECODED_BODY} bytes"));
    }
    Ok(Cow::Owned(out))
}

/// Whether a body is to be compared as JSON: by its Content-Type, or by
/// its first non-blank byte when there is none.
pub fn is_json(content_type: Option<&[u8]>, body: &[u8]) -> bool {
    match content_type {
        Some(ct) => {
            let ct = String::from_utf8_lossy(ct).to_ascii_lowercase();
            let essence = ct.split(';').next().unwrap_or_default().trim();
            essence == "application/json" || essence.ends_with("+json")
        }
        None => matches!(body.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'[')),
    }
}

/// Where two different byte strings first differ, with escaped context
/// from each side.
pub fn first_difference(a: &[u8], b: &[u8]) -> (usize, String, String) {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let from = at.saturating_sub(CONTEXT_BYTES / 2);
    (at, context(a, from), context(b, from))
}

fn context(s: &[u8], from: usize) -> String {
    let end = (from + CONTEXT_BYTES).min(s.len());
    let part = s.get(from..end).unwrap_or_default();
    let mut out: String = part.escape_ascii().to_string();
    if end < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use std::io::Write;

    #[test]
    fn gzip_and_deflate_are_removed() {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(b"{\"a\":1}").unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(&*decode(&gz, Some(b"gzip")).unwrap(), b"{\"a\":1}");
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(b"zz").unwrap();
        assert_eq!(&*decode(&z.finish().unwrap(), Some(b"Deflate")).unwrap(), b"zz");
        assert_eq!(&*decode(b"plain", None).unwrap(), b"plain");
        assert!(decode(b"x", Some(b"br")).unwrap_err().contains("br"));
        assert!(decode(b"not gzip", Some(b"gzip")).is_err());
    }

    #[test]
    fn a_bomb_is_refused() {
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        gz.write_all(&vec![0u8; MAX_DECODED_BODY + 1]).unwrap();
        let gz = gz.finish().unwrap();
        assert!(decode(&gz, Some(b"gzip")).unwrap_err().contains("passes"));
    }

    #[test]
    fn json_is_recognized_by_type_or_first_byte() {
        assert!(is_json(Some(b"application/json; charset=utf-8"), b""));
        assert!(is_json(Some(b"application/problem+json"), b""));
        assert!(!is_json(Some(b"text/html"), b"{"));
        assert!(is_json(None, b"  [1]"));
        assert!(!is_json(None, b"<html>"));
    }

    #[test]
    fn first_difference_shows_escaped_context() {
        let (at, a, b) = first_difference(b"hello\r\nworld", b"hello\r\nWorld");
        assert_eq!(at, 7);
        assert_eq!(a, "hello\\r\\nworld");
        assert_eq!(b, "hello\\r\\nWorld");
        assert_eq!(first_difference(b"abc", b"abcd").0, 3);
    }
}
