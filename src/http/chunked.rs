//! The chunked transfer coding (RFC 9112 §7.1), strictly.
//!
//! One function per state. Framing bytes are looked at one by one (they are
//! few); data runs are reported as ranges and never touched, so a proxy can
//! forward the input unchanged while knowing where data lies and where the
//! message ends. Decoding is the same scan, copying the data ranges.

use std::ops::Range;

use super::error::{Error, ErrorKind, fail};
use super::fields::{is_field_vchar, is_ows, is_tchar};
use super::limits::{MAX_CHUNK_LINE_LEN, MAX_CHUNK_SIZE_DIGITS, MAX_TRAILER_LINE_LEN, MAX_TRAILERS, MAX_TRAILERS_LEN};

/// Where the decoder stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// Hex digits of the chunk size.
    #[default]
    Size,
    /// Whitespace after the size; only `;` may follow.
    SizeBws,
    /// After `;`: whitespace, then an extension name.
    ExtStart,
    /// In an extension name.
    ExtName,
    /// Whitespace after an extension name.
    ExtNameBws,
    /// After `=`: whitespace, then a token or a quoted string.
    ExtValueStart,
    /// In a token value.
    ExtToken,
    /// In a quoted-string value.
    ExtQuoted,
    /// After a backslash in a quoted string.
    ExtQuotedEscape,
    /// After a value: whitespace, `;` or CR.
    ExtAfterValue,
    /// CR of the chunk-size line seen; LF expected.
    SizeLf,
    /// Chunk data; `remaining` bytes left.
    Data,
    /// Data done; CR expected.
    DataCr,
    /// LF after data expected.
    DataLf,
    /// Start of a trailer line or of the final empty line.
    TrailerStart,
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value.
    TrailerValue,
    /// LF of a trailer line expected.
    TrailerLf,
    /// LF of the final empty line expected.
    EndLf,
    /// The message is complete.
    Done,
}

/// How far one call got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scanned {
    /// Bytes of the input that belong to this message and were looked at.
    pub consumed: usize,
    /// The message ended within those bytes.
    pub done: bool,
}

/// A chunked body decoder over bytes that arrive in pieces.
///
/// ```
/// use kage::http::ChunkedDecoder;
/// let wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nNEXT";
/// let mut data = Vec::new();
/// let mut dec = ChunkedDecoder::new();
/// let s = dec.scan(wire, |r| data.extend_from_slice(&wire[r])).unwrap();
/// assert!(s.done);
/// assert_eq!(&wire[s.consumed..], b"NEXT");
/// assert_eq!(data, b"hello world");
/// ```
#[derive(Debug, Clone, Default)]
pub struct ChunkedDecoder {
    state: State,
    /// The size being read, then the data bytes left in the chunk.
    remaining: u64,
    digits: usize,
    line_len: usize,
    trailer_bytes: usize,
    trailers: usize,
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self::default()
    }

    /// True once the last chunk and the trailer section were read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads `input` up to its end or the end of the message, calling
    /// `on_data` with each run of data bytes as a range of `input`.
    pub fn scan(&mut self, input: &[u8], mut on_data: impl FnMut(Range<usize>)) -> Result<Scanned, Error> {
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::Done => break,
                State::Data => {
                    let left = input.len() - pos;
                    // Fits: bounded by `left`, a usize.
                    let take = self.remaining.min(left as u64) as usize;
                    on_data(pos..pos + take);
                    pos += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    self.step(input[pos])?;
                    pos += 1;
                }
            }
        }
        Ok(Scanned {
            consumed: pos,
            done: self.is_done(),
        })
    }

    /// Like [`scan`](Self::scan), appending the data to `out` while `out`
    /// holds fewer than `cap` bytes. Returns also whether data was cut off.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>, cap: usize) -> Result<(Scanned, bool), Error> {
        let mut cut = false;
        let scanned = self.scan(input, |r| {
            let room = cap.saturating_sub(out.len());
            if r.len() > room {
                cut = true;
            }
            out.extend_from_slice(&input[r.start..r.start + r.len().min(room)]);
        })?;
        Ok((scanned, cut))
    }

    /// One framing byte.
    fn step(&mut self, b: u8) -> Result<(), Error> {
        use State::*;
        let expects_lf = matches!(self.state, SizeLf | DataLf | TrailerLf | EndLf);
        if b == b'\n' && !expects_lf {
            return fail(ErrorKind::BareLf);
        }
        match self.state {
            Size | SizeBws | ExtStart | ExtName | ExtNameBws | ExtValueStart | ExtToken | ExtQuoted
            | ExtQuotedEscape | ExtAfterValue => {
                self.line_len += 1;
                if self.line_len > MAX_CHUNK_LINE_LEN {
                    return fail(ErrorKind::ChunkLineTooLong);
                }
            }
            TrailerStart | TrailerName | TrailerValue | TrailerLf | EndLf => {
                self.trailer_bytes += 1;
                if self.trailer_bytes > MAX_TRAILERS_LEN {
                    return fail(ErrorKind::TrailersTooLarge);
                }
            }
            _ => {}
        }
        self.state = match self.state {
            Size => self.on_size(b)?,
            SizeBws => on_size_bws(b)?,
            ExtStart => on_ext_start(b)?,
            ExtName => on_ext_name(b)?,
            ExtNameBws => on_ext_name_bws(b)?,
            ExtValueStart => on_ext_value_start(b)?,
            ExtToken => on_ext_token(b)?,
            ExtQuoted => on_ext_quoted(b)?,
            ExtQuotedEscape => on_ext_quoted_escape(b)?,
            ExtAfterValue => on_ext_after_value(b)?,
            SizeLf => self.on_size_lf(b)?,
            DataCr => on_data_cr(b)?,
            DataLf => self.on_data_lf(b)?,
            TrailerStart => self.on_trailer_start(b)?,
            TrailerName => self.on_trailer_name(b)?,
            TrailerValue => self.on_trailer_value(b)?,
            TrailerLf => on_lf(b, TrailerStart)?,
            EndLf => on_lf(b, Done)?,
            Data | Done => self.state,
        };
        Ok(())
    }

    fn on_size(&mut self, b: u8) -> Result<State, Error> {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ if self.digits == 0 => return fail(ErrorKind::InvalidChunkSize),
            b';' => return Ok(State::ExtStart),
            b' ' | b'\t' => return Ok(State::SizeBws),
            b'\r' => return Ok(State::SizeLf),
            _ => return fail(ErrorKind::InvalidChunkSize),
        };
        self.digits += 1;
        if self.digits > MAX_CHUNK_SIZE_DIGITS {
            return fail(ErrorKind::InvalidChunkSize);
        }
        // 16 hex digits fit a u64 exactly, so this cannot overflow.
        self.remaining = (self.remaining << 4) | u64::from(digit);
        Ok(State::Size)
    }

    fn on_size_lf(&mut self, b: u8) -> Result<State, Error> {
        on_lf(b, State::Data)?;
        self.line_len = 0;
        self.digits = 0;
        Ok(if self.remaining == 0 {
            State::TrailerStart
        } else {
            State::Data
        })
    }

    fn on_data_lf(&mut self, b: u8) -> Result<State, Error> {
        on_lf(b, State::Size)?;
        self.remaining = 0;
        Ok(State::Size)
    }

    fn on_trailer_start(&mut self, b: u8) -> Result<State, Error> {
        self.line_len = 0;
        match b {
            b'\r' => Ok(State::EndLf),
            _ if is_tchar(b) => {
                self.trailers += 1;
                if self.trailers > MAX_TRAILERS {
                    return fail(ErrorKind::TrailersTooLarge);
                }
                self.trailer_line_byte()?;
                Ok(State::TrailerName)
            }
            // Whitespace here is obs-fold or a field without a name.
            _ => fail(ErrorKind::InvalidTrailer),
        }
    }

    fn on_trailer_name(&mut self, b: u8) -> Result<State, Error> {
        self.trailer_line_byte()?;
        match b {
            b':' => Ok(State::TrailerValue),
            _ if is_tchar(b) => Ok(State::TrailerName),
            _ => fail(ErrorKind::InvalidTrailer),
        }
    }

    fn on_trailer_value(&mut self, b: u8) -> Result<State, Error> {
        match b {
            b'\r' => Ok(State::TrailerLf),
            _ if is_field_vchar(b) => {
                self.trailer_line_byte()?;
                Ok(State::TrailerValue)
            }
            _ => fail(ErrorKind::InvalidTrailer),
        }
    }

    fn trailer_line_byte(&mut self) -> Result<(), Error> {
        self.line_len += 1;
        if self.line_len > MAX_TRAILER_LINE_LEN {
            return fail(ErrorKind::TrailersTooLarge);
        }
        Ok(())
    }
}

fn on_lf(b: u8, next: State) -> Result<State, Error> {
    if b == b'\n' { Ok(next) } else { fail(ErrorKind::BareCr) }
}

fn on_size_bws(b: u8) -> Result<State, Error> {
    match b {
        b';' => Ok(State::ExtStart),
        _ if is_ows(b) => Ok(State::SizeBws),
        _ => fail(ErrorKind::InvalidChunkSize),
    }
}

fn on_ext_start(b: u8) -> Result<State, Error> {
    match b {
        _ if is_ows(b) => Ok(State::ExtStart),
        _ if is_tchar(b) => Ok(State::ExtName),
        _ => fail(ErrorKind::InvalidChunkExtension),
    }
}

fn on_ext_name(b: u8) -> Result<State, Error> {
    match b {
        _ if is_tchar(b) => Ok(State::ExtName),
        _ => on_ext_name_bws(b),
    }
}

fn on_ext_name_bws(b: u8) -> Result<State, Error> {
    match b {
        b'=' => Ok(State::ExtValueStart),
        _ if is_ows(b) => Ok(State::ExtNameBws),
        _ => on_ext_after_value(b),
    }
}

fn on_ext_value_start(b: u8) -> Result<State, Error> {
    match b {
        b'"' => Ok(State::ExtQuoted),
        _ if is_ows(b) => Ok(State::ExtValueStart),
        _ if is_tchar(b) => Ok(State::ExtToken),
        _ => fail(ErrorKind::InvalidChunkExtension),
    }
}

fn on_ext_token(b: u8) -> Result<State, Error> {
    match b {
        _ if is_tchar(b) => Ok(State::ExtToken),
        _ => on_ext_after_value(b),
    }
}

fn on_ext_quoted(b: u8) -> Result<State, Error> {
    match b {
        b'"' => Ok(State::ExtAfterValue),
        b'\\' => Ok(State::ExtQuotedEscape),
        b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => Ok(State::ExtQuoted),
        _ => fail(ErrorKind::InvalidChunkExtension),
    }
}

fn on_ext_quoted_escape(b: u8) -> Result<State, Error> {
    match b {
        b'\t' | b' '..=b'~' | 0x80..=0xff => Ok(State::ExtQuoted),
        _ => fail(ErrorKind::InvalidChunkExtension),
    }
}

fn on_ext_after_value(b: u8) -> Result<State, Error> {
    match b {
        b';' => Ok(State::ExtStart),
        b'\r' => Ok(State::SizeLf),
        _ if is_ows(b) => Ok(State::ExtAfterValue),
        _ => fail(ErrorKind::InvalidChunkExtension),
    }
}

fn on_data_cr(b: u8) -> Result<State, Error> {
    if b == b'\r' {
        Ok(State::DataLf)
    } else {
        fail(ErrorKind::MissingChunkCrlf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` whole, split at every byte, and byte by byte; all three
    /// must agree. Returns (data, bytes consumed) or the error.
    fn decode_all_ways(wire: &[u8]) -> Result<(Vec<u8>, usize), ErrorKind> {
        let whole = decode_pieces(wire, &[wire.len()]);
        for cut in 0..=wire.len() {
            assert_eq!(decode_pieces(wire, &[cut, wire.len()]), whole, "cut at {cut}");
        }
        let ones: Vec<usize> = (1..=wire.len()).collect();
        assert_eq!(decode_pieces(wire, &ones), whole, "byte by byte");
        whole
    }

    fn decode_pieces(wire: &[u8], ends: &[usize]) -> Result<(Vec<u8>, usize), ErrorKind> {
        let mut dec = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut pos = 0;
        for &end in ends {
            let s = dec.scan(&wire[pos..end], |r| {
                out.extend_from_slice(&wire[pos + r.start..pos + r.end])
            });
            let s = s.map_err(|e| e.kind())?;
            pos += s.consumed;
            if s.done {
                return Ok((out, pos));
            }
        }
        Err(ErrorKind::Truncated)
    }

    #[test]
    fn valid_bodies() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"0\r\n\r\n", b""),
            (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
            (
                b"A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
                b"01234567890123456789",
            ),
            (b"005\r\nhello\r\n000\r\n\r\n", b"hello"),
            (b"5;a=b\r\nhello\r\n0;last\r\n\r\n", b"hello"),
            (b"5 ; a = \"q\\\"x\" ; b\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5;a =b;c\t;d=\"\"\r\nhello\r\n0\r\n\r\n", b"hello"),
            (b"5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-Other:\r\n\r\n", b"hello"),
        ];
        for (wire, data) in cases {
            let mut with_next = wire.to_vec();
            with_next.extend_from_slice(b"GET");
            assert_eq!(
                decode_all_ways(&with_next),
                Ok((data.to_vec(), wire.len())),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn invalid_bodies() {
        let cases: &[(&[u8], ErrorKind)] = &[
            (b"\r\n", ErrorKind::InvalidChunkSize),
            (b"x\r\n", ErrorKind::InvalidChunkSize),
            (b"-1\r\n", ErrorKind::InvalidChunkSize),
            (b"5 \r\nhello\r\n0\r\n\r\n", ErrorKind::InvalidChunkSize),
            (b"0x5\r\n", ErrorKind::InvalidChunkSize),
            (b"10000000000000000\r\n", ErrorKind::InvalidChunkSize),
            (b"00000000000000001\r\n", ErrorKind::InvalidChunkSize),
            (b"5\nhello\r\n0\r\n\r\n", ErrorKind::BareLf),
            (b"5\rhello\r\n", ErrorKind::BareCr),
            (b"5\r\nhelloX\r\n", ErrorKind::MissingChunkCrlf),
            (b"5\r\nhello\n0\r\n\r\n", ErrorKind::BareLf),
            (b"5\r\nhello\r0\r\n\r\n", ErrorKind::BareCr),
            (b"5;\r\nhello\r\n", ErrorKind::InvalidChunkExtension),
            (b"5;a=\r\nhello\r\n", ErrorKind::InvalidChunkExtension),
            (b"5;a=\"x\r\nhello\r\n", ErrorKind::InvalidChunkExtension),
            (b"5;a\x00\r\n", ErrorKind::InvalidChunkExtension),
            (b"0\r\n X: 1\r\n\r\n", ErrorKind::InvalidTrailer),
            (b"0\r\nX : 1\r\n\r\n", ErrorKind::InvalidTrailer),
            (b"0\r\nX: a\x01\r\n\r\n", ErrorKind::InvalidTrailer),
            (b"0\r\nX: 1\n\r\n", ErrorKind::BareLf),
            (b"0\r\n\n", ErrorKind::BareLf),
            (b"0\r\n\rX", ErrorKind::BareCr),
            (b"5\r\nhel", ErrorKind::Truncated),
        ];
        for (wire, kind) in cases {
            assert_eq!(decode_all_ways(wire), Err(*kind), "{:?}", String::from_utf8_lossy(wire));
        }
    }

    #[test]
    fn limits() {
        let mut long_ext = b"1;".to_vec();
        long_ext.resize(MAX_CHUNK_LINE_LEN + 1, b'a');
        assert_eq!(
            decode_pieces(&long_ext, &[long_ext.len()]),
            Err(ErrorKind::ChunkLineTooLong)
        );
        let mut many = b"0\r\n".to_vec();
        for _ in 0..=MAX_TRAILERS {
            many.extend_from_slice(b"X: 1\r\n");
        }
        assert_eq!(decode_pieces(&many, &[many.len()]), Err(ErrorKind::TrailersTooLarge));
        let mut long_trailer = b"0\r\nX: ".to_vec();
        long_trailer.resize(MAX_TRAILER_LINE_LEN + 10, b'v');
        assert_eq!(
            decode_pieces(&long_trailer, &[long_trailer.len()]),
            Err(ErrorKind::TrailersTooLarge)
        );
        let max = b"ffffffffffffffff\r\nab";
        let mut dec = ChunkedDecoder::new();
        let s = dec.scan(max, |r| assert_eq!(r, 18..20)).unwrap();
        assert_eq!(
            s,
            Scanned {
                consumed: 20,
                done: false
            }
        );
    }

    #[test]
    fn decode_caps_output() {
        let wire = b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n";
        let mut out = Vec::new();
        let (s, cut) = ChunkedDecoder::new().decode(wire, &mut out, 7).unwrap();
        assert!(s.done && cut);
        assert_eq!(out, b"hellowo");
    }
}
