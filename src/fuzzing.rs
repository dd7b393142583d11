//! The bodies of the fuzz targets in `fuzz/`, public so that `tests/` can
//! replay the committed corpus through the very same code on stable Rust.
//!
//! Each target panics when an invariant breaks; it never panics on input the
//! parser merely rejects. Input layout: the first byte(s) choose the split
//! points (and for responses the request method); the rest is the stream.

use crate::http::limits::{MAX_HEAD_LEN, MAX_HEADERS, MAX_REQUEST_FIELDS};
use crate::http::{
    BodyDecoder, ChunkedDecoder, Connection, ErrorKind, Framing, HeadRewrite, HeadStatus, Method, RequestContext,
    RequestHead, ResponseHead, write_request, write_response,
};

/// Most decoded body bytes a driver keeps per message.
pub const MAX_CAPTURE: usize = 1 << 20;

/// One message as a driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The head rewritten for the next hop with `Connection: keep-alive`.
    pub head: Vec<u8>,
    /// The framing the head announced.
    pub framing: Framing,
    /// The decoded body, up to [`MAX_CAPTURE`] bytes.
    pub body: Vec<u8>,
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// At a message boundary, all input used.
    Clean,
    /// A message said the connection ends after it (close, tunnel); the rest
    /// of the input was not read.
    Closed,
    /// Input ran out inside a head or a body that needed more.
    Partial,
    /// A message was rejected.
    Error(ErrorKind),
}

/// Everything a driver saw on one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Messages read completely, in order.
    pub messages: Vec<Message>,
    /// How the stream ended.
    pub end: End,
}

/// Split sizes from a seed: `0` feeds everything at once, `1` one byte at a
/// time, others a fixed pseudo-random sequence of small pieces.
pub fn splits(seed: u8) -> impl FnMut() -> usize {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761).max(1);
    move || match seed {
        0 => usize::MAX,
        1 => 1,
        _ => {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            1 + (state % 97) as usize
        }
    }
}

/// Which side of the exchange a driver parses.
#[derive(Debug, Clone, Copy)]
enum Side {
    Request,
    Response(RequestContext),
}

/// Reads a pipeline of requests from `input`, fed in pieces of `next_len()`
/// bytes, as a client connection would deliver it.
pub fn read_requests(input: &[u8], next_len: impl FnMut() -> usize) -> Outcome {
    read_stream(input, next_len, Side::Request)
}

/// Reads responses to requests described by `request` from `input`.
pub fn read_responses(input: &[u8], request: RequestContext, next_len: impl FnMut() -> usize) -> Outcome {
    read_stream(input, next_len, Side::Response(request))
}

fn read_stream(input: &[u8], mut next_len: impl FnMut() -> usize, side: Side) -> Outcome {
    let mut req = RequestHead::new();
    let mut res = ResponseHead::new();
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut pos = 0;
    let mut messages = Vec::new();
    // The message whose body is being read, with its decoder and whether the
    // connection stays open after it.
    let mut current: Option<(Message, BodyDecoder, bool)> = None;
    loop {
        // Read as much as the buffered bytes allow.
        loop {
            if let Some((msg, body, _)) = current.as_mut() {
                let scanned = match body.scan(&buf[pos..], |r| capture(&mut msg.body, &buf[pos..][r])) {
                    Ok(s) => s,
                    Err(e) => {
                        return Outcome {
                            messages,
                            end: End::Error(e.kind()),
                        };
                    }
                };
                pos += scanned.consumed;
                if !scanned.done {
                    break;
                }
                let Some((msg, _, persistent)) = current.take() else {
                    break;
                };
                messages.push(msg);
                if !persistent {
                    return Outcome {
                        messages,
                        end: End::Closed,
                    };
                }
                continue;
            }
            let parsed = match side {
                Side::Request => req.parse(&buf[pos..]),
                Side::Response(ctx) => res.parse(&buf[pos..], ctx),
            };
            let len = match parsed {
                Err(e) => {
                    return Outcome {
                        messages,
                        end: End::Error(e.kind()),
                    };
                }
                Ok(HeadStatus::Partial) => break,
                Ok(HeadStatus::Complete(len)) => len,
            };
            let head_buf = &buf[pos..pos + len];
            let mut head = Vec::new();
            let rw = HeadRewrite::new(Connection::KeepAlive);
            let (framing, persistent) = match side {
                Side::Request => {
                    write_request(&req, head_buf, &rw, &mut head);
                    (
                        req.framing(),
                        req.keep_alive() && !req.upgrade() && req.method() != Method::Connect,
                    )
                }
                Side::Response(_) => {
                    write_response(&res, head_buf, &rw, &mut head);
                    (res.framing(), res.keep_alive() || res.is_interim())
                }
            };
            pos += len;
            req.clear();
            res.clear();
            let msg = Message {
                head,
                framing,
                body: Vec::new(),
            };
            if framing == Framing::Tunnel {
                messages.push(msg);
                return Outcome {
                    messages,
                    end: End::Closed,
                };
            }
            current = Some((msg, BodyDecoder::new(framing), persistent));
        }
        if fed == input.len() {
            break;
        }
        let n = next_len().clamp(1, input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
    }
    // End of input: the peer closed.
    let end = match current {
        Some((msg, mut body, _)) => match body.finish() {
            Ok(()) => {
                messages.push(msg);
                End::Closed
            }
            Err(_) => End::Partial,
        },
        None if pos == buf.len() => End::Clean,
        None => End::Partial,
    };
    Outcome { messages, end }
}

fn capture(out: &mut Vec<u8>, data: &[u8]) {
    let room = MAX_CAPTURE.saturating_sub(out.len());
    out.extend_from_slice(&data[..data.len().min(room)]);
}

/// The request context a selector byte stands for.
pub fn context(selector: u8) -> RequestContext {
    let method = match selector % 4 {
        0 => Method::Get,
        1 => Method::Head,
        2 => Method::Connect,
        _ => Method::Post,
    };
    RequestContext {
        method,
        upgrade: selector & 4 != 0,
    }
}

/// Fuzz target `request_stream`: `[split seed] stream...`.
///
/// Checks that every complete head, rewritten for the next hop, has at most
/// [`MAX_HEADERS`] fields, parses again to the same method, path, host and
/// framing, carries its framing in at most one canonical field, and that a
/// rejected request leaves the messages before it intact.
pub fn request_stream(data: &[u8]) {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let out = read_requests(input, splits(seed));
    for msg in &out.messages {
        assert!(
            field_lines(&msg.head) <= MAX_HEADERS,
            "rewritten request head has more than MAX_HEADERS fields"
        );
        let mut again = RequestHead::new();
        let parsed = again.parse(&msg.head);
        if reparse_is_over_limit(parsed.map_err(|e| e.kind()), &msg.head, MAX_REQUEST_FIELDS) {
            continue;
        }
        assert_eq!(
            parsed,
            Ok(HeadStatus::Complete(msg.head.len())),
            "rewritten request head does not parse"
        );
        assert_eq!(again.framing(), msg.framing, "rewrite changed the framing");
        assert_canonical_framing(&again, &msg.head);
        let mut twice = Vec::new();
        write_request(&again, &msg.head, &HeadRewrite::new(Connection::KeepAlive), &mut twice);
        assert_eq!(twice, msg.head, "rewriting is not idempotent");
    }
}

/// Field lines in a head the rewrite wrote (every line but the start line
/// and the empty one).
fn field_lines(head: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', head).count().saturating_sub(2)
}

/// The rewrite adds a Connection field (and Host for an absolute-form
/// target), so a head at the field-count (`max_fields`) or size limit may be
/// over it once rewritten. That and only that may fail to parse again.
fn reparse_is_over_limit(parsed: Result<HeadStatus, ErrorKind>, head: &[u8], max_fields: usize) -> bool {
    match parsed {
        Err(ErrorKind::TooManyHeaders) => field_lines(head) > max_fields,
        Err(ErrorKind::HeadTooLarge) => head.len() > MAX_HEAD_LEN,
        _ => false,
    }
}

/// A forwarded request has at most one Content-Length or Transfer-Encoding
/// field, and it is `chunked` or a decimal length without leading zeros.
fn assert_canonical_framing(head: &RequestHead, buf: &[u8]) {
    let mut framing_fields = 0;
    for f in head.fields() {
        let (name, value) = (f.name.get(buf), f.value.get(buf));
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            assert_eq!(value, b"chunked", "forwarded Transfer-Encoding is not canonical");
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let canonical = !value.is_empty() && (value == b"0" || value.first() != Some(&b'0'));
            assert!(canonical, "forwarded Content-Length has leading zeros");
        } else {
            continue;
        }
        framing_fields += 1;
    }
    assert!(
        framing_fields <= 1,
        "forwarded request has {framing_fields} framing fields"
    );
}

/// Fuzz target `response_stream`: `[method selector] [split seed] stream...`.
pub fn response_stream(data: &[u8]) {
    let [selector, seed, input @ ..] = data else { return };
    let ctx = context(*selector);
    let out = read_responses(input, ctx, splits(*seed));
    for msg in &out.messages {
        let mut again = ResponseHead::new();
        let parsed = again.parse(&msg.head, ctx);
        if reparse_is_over_limit(parsed.map_err(|e| e.kind()), &msg.head, MAX_HEADERS) {
            continue;
        }
        assert_eq!(
            parsed,
            Ok(HeadStatus::Complete(msg.head.len())),
            "rewritten response head does not parse"
        );
        assert_eq!(again.framing(), msg.framing, "rewrite changed the framing");
    }
}

/// Fuzz target `chunked`: `[split seed] body...`. Pass-through ranges and
/// decoding agree, whole and split; the end is found at the same byte.
pub fn chunked(data: &[u8]) {
    let Some((&seed, wire)) = data.split_first() else {
        return;
    };
    let whole = decode_chunked(wire, splits(0));
    assert_eq!(decode_chunked(wire, splits(seed)), whole, "split changed the result");
    // Decoding with a cap agrees with the pass-through ranges.
    let mut out = Vec::new();
    let decoded = ChunkedDecoder::new().decode(wire, &mut out, MAX_CAPTURE);
    match (&whole, decoded) {
        (Ok((data, consumed, done)), Ok((s, _))) => {
            assert_eq!((&out, s.consumed, s.done), (data, *consumed, *done));
        }
        (Err(a), Err(b)) => assert_eq!(*a, b.kind()),
        (a, b) => panic!("pass-through {a:?} and decode {b:?} disagree"),
    }
}

/// Pass-through scan of a chunked body in pieces: (data, consumed, done).
fn decode_chunked(wire: &[u8], mut next_len: impl FnMut() -> usize) -> Result<(Vec<u8>, usize, bool), ErrorKind> {
    let mut dec = ChunkedDecoder::new();
    let mut data = Vec::new();
    let mut pos = 0;
    while pos < wire.len() {
        let end = pos.saturating_add(next_len()).min(wire.len());
        let piece = &wire[pos..end];
        let s = dec
            .scan(piece, |r| capture(&mut data, &piece[r]))
            .map_err(|e| e.kind())?;
        assert!(s.consumed <= piece.len());
        pos += s.consumed;
        if s.done {
            return Ok((data, pos, true));
        }
        assert_eq!(s.consumed, piece.len(), "stopped early without finishing");
    }
    Ok((data, pos, false))
}

/// Fuzz target `differential`: `[selector] stream...`. Parsing the whole
/// input at once, split pseudo-randomly and one byte at a time agree.
/// Selector bit 7 picks responses (with [`context`] of the selector).
pub fn differential(data: &[u8]) {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let run = |seed: u8| {
        if selector & 0x80 == 0 {
            read_requests(input, splits(seed))
        } else {
            read_responses(input, context(selector), splits(seed))
        }
    };
    let whole = run(0);
    assert_eq!(run(1), whole, "byte-at-a-time differs from whole");
    assert_eq!(run(selector | 2), whole, "pseudo-random split differs from whole");
}

/// Fuzz target `route_rules`: `[split seed] stream...`. Every matcher (and
/// the ClientHello reader under the SNI ones) must, over growing prefixes of
/// the stream, say NeedMore until it decides and then never change its mind.
pub fn route_rules(data: &[u8]) {
    use crate::route::{Matcher, Verdict};
    use std::sync::LazyLock;
    static MATCHERS: LazyLock<Vec<Matcher>> = LazyLock::new(|| {
        let mut m = vec![
            Matcher::Prefix(b"PING".to_vec()),
            Matcher::HttpHost("app.example".into()),
            Matcher::TlsSni("secure.example".into()),
            Matcher::TlsSni("*.example".into()),
        ];
        m.extend(Matcher::regex("^[0-9a-f]{4}git-upload-pack /").ok());
        m.extend(Matcher::regex("^(GET|POST) /api/[a-z]+").ok());
        m
    });
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let _ = crate::route::sni::server_name(stream);
    let mut next_len = splits(seed);
    for m in MATCHERS.iter() {
        let last = m.verdict(stream);
        let mut decided = false;
        let mut cut = 0;
        while cut < stream.len() {
            cut = cut.saturating_add(next_len()).min(stream.len());
            let v = m.verdict(&stream[..cut]);
            if decided || v != Verdict::NeedMore {
                decided = true;
                assert_eq!(v, last, "{m:?}: a verdict at {cut} bytes changed later");
            }
        }
    }
}

/// Fuzz target `compare`: `[selector] [len hi] [len lo] response-a response-b`.
/// Two backend responses (raw, framed; `selector` picks the request
/// context) go through the comparator with ignore, set and tolerance
/// rules: it must not panic, and a complete response compared with itself
/// has no difference.
pub fn compare(data: &[u8]) {
    use crate::app::replay::report_of;
    use crate::compare::{self as cmp, PathPattern, PathRule, Rules};
    use crate::proxy::Outcome;
    let [selector, hi, lo, rest @ ..] = data else { return };
    let split = (usize::from(*hi) << 8 | usize::from(*lo)).min(rest.len());
    let (a, b) = rest.split_at(split);
    let ctx = context(*selector);
    let mut rules = Rules::default();
    for (p, r) in [
        ("/a/*", PathRule::Ignore),
        ("/s", PathRule::Set),
        ("/n", PathRule::Tolerance(0.5)),
    ] {
        if let Ok(p) = PathPattern::parse(p) {
            rules.paths.push((p, r));
        }
    }
    let (ra, rb) = (
        report_of(a, ctx, false, Outcome::Complete),
        report_of(b, ctx, false, Outcome::Complete),
    );
    let diffs = cmp::compare(&ra, &rb, "b", &rules);
    let _ = cmp::verdict(&rb, &ra, &diffs);
    if ra.outcome == Outcome::Complete {
        let same = cmp::compare(&ra, &ra, "a", &rules);
        assert!(same.is_empty(), "a response differs from itself: {same:?}");
    }
}

/// Fuzz target `digest`: `[mode] [seed] body`. The body (gzip-encoded
/// first when `mode` is odd; declared gzip but left raw when `mode & 2`)
/// is digested whole and fed in pieces from `splits(seed)`: both agree,
/// bit for bit, whether a digest comes out or not, and an identity body's
/// length is its own.
pub fn digest(data: &[u8]) {
    use crate::proxy::BodyDigest;
    use crate::proxy::digest::{Coding, Digester};
    use std::io::Write as _;
    let [mode, seed, body @ ..] = data else { return };
    let mut owned = None;
    let (coding, body) = if mode & 1 == 1 {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let encoded = gz.write_all(body).and_then(|()| gz.finish());
        let Ok(encoded) = encoded else { return };
        (Some(&b"gzip"[..]), &**owned.insert(encoded))
    } else if mode & 2 == 2 {
        (Some(&b"gzip"[..]), body)
    } else {
        (None, body)
    };
    let whole = BodyDigest::of(body, coding);
    let mut next = splits(*seed);
    let mut streamed = Digester::new(Coding::of(coding));
    let mut rest = body;
    while !rest.is_empty() {
        let n = next().min(rest.len());
        streamed.update(&rest[..n]);
        rest = &rest[n..];
    }
    let streamed = streamed.finish();
    assert_eq!(
        whole.as_ref().map(|d| (d.len, d.xxh3, &d.blocks)),
        streamed.as_ref().map(|d| (d.len, d.xxh3, &d.blocks)),
        "pieces changed the digest"
    );
    if let Some(d) = &whole {
        assert_eq!(d.first_difference(d), None);
        if coding.is_none() {
            assert_eq!(d.len, body.len() as u64);
        }
    }
    if mode & 1 == 1 {
        assert!(whole.is_some(), "a valid gzip body has a digest");
    }
}
