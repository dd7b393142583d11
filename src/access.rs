//! The access log: one line per request, in the Combined format or as JSON
//! lines, buffered and written within [`ACCESS_FLUSH_INTERVAL`].
//!
//! A shadowed request's line carries the shadows' verdicts, so it is
//! written once both halves are known: the client's side
//! ([`AccessLog::served`], from [`crate::proxy::Hooks::request_done`]) and
//! the comparison ([`AccessLog::verdicts`], from
//! [`crate::proxy::Hooks::backends_finished`]), in either order. Lines are
//! in the order they complete.
//!
//! Combined, with the time the response ended, the duration in seconds and
//! one `NAME=VERDICT` per shadow appended:
//!
//! ```text
//! 127.0.0.1 - - [01/Dec/2026:14:25:56 +0000] "GET /a HTTP/1.1" 200 12 "-" "curl/8.5.0" 0.000412 new=match
//! ```
//!
//! A request whose client left before any response head is logged with
//! status 499 (nginx's "client closed request"); JSON says `"status":null`
//! and `"complete":false` there.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::proxy::Served;
use crate::runtime::logfile::LogFile;

/// Lines wait at most this long in the buffer before they are written.
pub const ACCESS_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The buffer is written at once when it holds this many bytes.
pub const ACCESS_BUFFER: usize = 64 * 1024;

/// Most shadowed lines (or verdicts) waiting for their other half; past
/// it the oldest line is written with `shadows=unknown`.
pub const MAX_AWAITING: usize = 16 * 1024;

/// How the lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AccessFormat {
    /// The Combined Log Format, with duration and verdicts appended.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

impl AccessFormat {
    /// `combined` or `json`.
    pub fn parse(v: &str) -> Option<Self> {
        match v {
            "combined" => Some(AccessFormat::Combined),
            "json" => Some(AccessFormat::Json),
            _ => None,
        }
    }
}

/// One half of a shadowed line, waiting for the other.
enum Awaiting {
    /// The line without its verdicts and end.
    Line(Vec<u8>),
    /// The verdicts, formatted.
    Verdicts(Vec<u8>),
}

/// Where the access log goes, and what waits to be written.
pub struct AccessLog {
    out: LogFile,
    format: AccessFormat,
    buf: Vec<u8>,
    /// When the oldest unwritten line was buffered.
    since: Option<Instant>,
    awaiting: BTreeMap<u64, Awaiting>,
    /// Combined's `[01/Dec/2026:14:25:56 +0000]` for one second.
    stamp: (u64, String),
    /// JSON's `2026-12-01T14:25:56` for one second.
    rfc3339: (u64, String),
    /// When it was opened: a deadline already past.
    opened: Instant,
}

impl AccessLog {
    /// Appends to `path` (created if missing); `-` is stdout.
    pub fn open(path: &Path, format: AccessFormat) -> io::Result<Self> {
        Ok(AccessLog {
            out: LogFile::open(path, "access log")?,
            format,
            buf: Vec::with_capacity(ACCESS_BUFFER + 4096),
            since: None,
            awaiting: BTreeMap::new(),
            stamp: (u64::MAX, String::new()),
            rfc3339: (u64::MAX, String::new()),
            opened: Instant::now(),
        })
    }

    /// Set it (from a SIGHUP handler, say) to have the file reopened at
    /// once (within the next deadline): log rotation.
    pub fn reopen_flag(&self) -> Arc<AtomicBool> {
        self.out.reopen_flag()
    }

    /// The client's side of one request.
    pub fn served(&mut self, s: &Served<'_>) {
        if !s.shadowed {
            // Straight into the buffer: no allocation per line.
            let mut buf = std::mem::take(&mut self.buf);
            self.format_line(s, &mut buf);
            self.buf = buf;
            self.finish(&[], &[]);
            return;
        }
        let mut line = Vec::with_capacity(256);
        self.format_line(s, &mut line);
        match self.awaiting.remove(&s.id) {
            Some(Awaiting::Verdicts(v)) => self.finish(&line, &v),
            _ => {
                self.awaiting.insert(s.id, Awaiting::Line(line));
                self.bound();
            }
        }
    }

    /// The verdicts of exchange `id`, as `(shadow, verdict)` pairs.
    pub fn verdicts<'a>(&mut self, id: u64, verdicts: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let mut v = Vec::new();
        for (i, (name, verdict)) in verdicts.into_iter().enumerate() {
            match self.format {
                AccessFormat::Combined => {
                    v.push(b' ');
                    combined_escaped(&mut v, name.as_bytes());
                    v.push(b'=');
                    v.extend_from_slice(verdict.as_bytes());
                }
                AccessFormat::Json => {
                    v.extend_from_slice(if i == 0 { b",\"shadows\":{" } else { b"," });
                    json_string(&mut v, name.as_bytes());
                    v.push(b':');
                    json_string(&mut v, verdict.as_bytes());
                }
            }
        }
        if self.format == AccessFormat::Json && !v.is_empty() {
            v.push(b'}');
        }
        match self.awaiting.remove(&id) {
            Some(Awaiting::Line(line)) => self.finish(&line, &v),
            _ => {
                self.awaiting.insert(id, Awaiting::Verdicts(v));
                self.bound();
            }
        }
    }

    /// When buffered lines are due to be written.
    /// A reopen asked for is due at once, so a quiet log lets go of a
    /// rotated file too.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.out.reopen_asked() {
            return Some(self.opened);
        }
        self.since.map(|t| t + ACCESS_FLUSH_INTERVAL)
    }

    /// Writes what is due at `now` (and reopens the file if asked).
    pub fn on_deadline(&mut self, now: Instant) {
        if self.out.reopen_asked() || self.since.is_some_and(|t| t + ACCESS_FLUSH_INTERVAL <= now) {
            self.flush();
        }
    }

    /// Writes every buffered line (to a reopened file, if that was asked).
    pub fn flush(&mut self) {
        self.since = None;
        self.out.write(&self.buf);
        self.buf.clear();
    }

    /// Appends a whole line: `line`, `verdicts`, its end.
    fn finish(&mut self, line: &[u8], verdicts: &[u8]) {
        self.buf.extend_from_slice(line);
        self.buf.extend_from_slice(verdicts);
        if self.format == AccessFormat::Json {
            self.buf.push(b'}');
        }
        self.buf.push(b'\n');
        if self.buf.len() >= ACCESS_BUFFER || self.out.reopen_asked() {
            self.flush();
        } else if self.since.is_none() {
            self.since = Some(Instant::now());
        }
    }

    /// Keeps the halves waiting within [`MAX_AWAITING`]: the oldest line
    /// is written without its verdicts.
    fn bound(&mut self) {
        while self.awaiting.len() > MAX_AWAITING {
            if let Some((_, Awaiting::Line(line))) = self.awaiting.pop_first() {
                self.finish(&line, self.unknown());
            }
        }
    }

    fn unknown(&self) -> &'static [u8] {
        match self.format {
            AccessFormat::Combined => b" shadows=unknown",
            AccessFormat::Json => b",\"shadows\":null",
        }
    }

    /// The line for `s`, without its verdicts and end.
    fn format_line(&mut self, s: &Served<'_>, out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let micros = s.duration.as_micros();
        let (secs, frac) = (micros / 1_000_000, micros % 1_000_000);
        let req = s.request;
        let header = |name| req.and_then(|r| r.header(name));
        let mut num = itoa::Buffer::new();
        match self.format {
            AccessFormat::Combined => {
                push_ip(out, s.peer.ip());
                out.extend_from_slice(b" - - ");
                out.extend_from_slice(self.combined_time(now).as_bytes());
                out.extend_from_slice(b" \"");
                match req {
                    Some(r) => {
                        combined_escaped(out, r.method_bytes());
                        out.push(b' ');
                        combined_escaped(out, r.target());
                        out.push(b' ');
                        out.extend_from_slice(r.version().as_bytes());
                    }
                    None => out.push(b'-'),
                }
                out.extend_from_slice(b"\" ");
                out.extend_from_slice(num.format(s.status.unwrap_or(499)).as_bytes());
                out.push(b' ');
                out.extend_from_slice(num.format(s.body_bytes).as_bytes());
                for name in ["referer", "user-agent"] {
                    out.extend_from_slice(b" \"");
                    match header(name) {
                        Some(v) => combined_escaped(out, v),
                        None => out.push(b'-'),
                    }
                    out.push(b'"');
                }
                out.push(b' ');
                out.extend_from_slice(num.format(secs).as_bytes());
                push_fraction(out, frac);
            }
            AccessFormat::Json => {
                out.extend_from_slice(b"{\"ts\":\"");
                self.push_rfc3339(out, now);
                out.extend_from_slice(b"\",\"client\":\"");
                push_ip(out, s.peer.ip());
                out.push(b':');
                out.extend_from_slice(num.format(s.peer.port()).as_bytes());
                out.push(b'"');
                if let Some(r) = req {
                    out.extend_from_slice(b",\"id\":");
                    out.extend_from_slice(num.format(s.id).as_bytes());
                    out.extend_from_slice(b",\"method\":");
                    json_string(out, r.method_bytes());
                    out.extend_from_slice(b",\"target\":");
                    json_string(out, r.target());
                    out.extend_from_slice(b",\"version\":");
                    json_string(out, r.version().as_bytes());
                }
                out.extend_from_slice(b",\"status\":");
                match s.status {
                    Some(st) => out.extend_from_slice(num.format(st).as_bytes()),
                    None => out.extend_from_slice(b"null"),
                }
                out.extend_from_slice(b",\"bytes\":");
                out.extend_from_slice(num.format(s.body_bytes).as_bytes());
                out.extend_from_slice(b",\"duration_us\":");
                out.extend_from_slice(num.format(micros).as_bytes());
                out.extend_from_slice(if s.complete {
                    b",\"complete\":true"
                } else {
                    b",\"complete\":false"
                });
                for (key, name) in [("referer", "referer"), ("user_agent", "user-agent")] {
                    if let Some(v) = header(name) {
                        out.extend_from_slice(b",\"");
                        out.extend_from_slice(key.as_bytes());
                        out.extend_from_slice(b"\":");
                        json_string(out, v);
                    }
                }
            }
        }
    }

    /// `2026-12-01T14:25:56.123Z`: the seconds made once a second.
    fn push_rfc3339(&mut self, out: &mut Vec<u8>, now: SystemTime) {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        if self.rfc3339.0 != since.as_secs() {
            let mut t = humantime::format_rfc3339_seconds(now).to_string();
            t.pop(); // the Z
            self.rfc3339 = (since.as_secs(), t);
        }
        out.extend_from_slice(self.rfc3339.1.as_bytes());
        let ms = since.subsec_millis();
        out.extend_from_slice(&[
            b'.',
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
        ]);
    }

    /// `[01/Dec/2026:14:25:56 +0000]` for `now`, made once a second.
    fn combined_time(&mut self, now: SystemTime) -> &str {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if self.stamp.0 != secs {
            self.stamp = (secs, combined_stamp(now));
        }
        &self.stamp.1
    }
}

impl Drop for AccessLog {
    /// Everything still waiting is written: lines without their verdicts
    /// say so.
    fn drop(&mut self) {
        while let Some((_, half)) = self.awaiting.pop_first() {
            if let Awaiting::Line(line) = half {
                self.finish(&line, self.unknown());
            }
        }
        self.flush();
    }
}

/// `[01/Dec/2026:14:25:56 +0000]`, from the RFC 3339 form
/// `2026-12-01T14:25:56Z`.
fn combined_stamp(now: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let r = humantime::format_rfc3339_seconds(now).to_string();
    let part = |a: usize, b: usize| r.get(a..b).unwrap_or("??");
    let month = part(5, 7)
        .parse::<usize>()
        .ok()
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("???");
    format!("[{}/{month}/{}:{} +0000]", part(8, 10), part(0, 4), part(11, 19))
}

/// An address without `fmt` (a tenth of its cost): IPv4 by octets.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut num = itoa::Buffer::new();
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(num.format(o).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `.000412`: microseconds as six digits.
fn push_fraction(out: &mut Vec<u8>, micros: u128) {
    let mut digits = [b'0'; 7];
    digits[0] = b'.';
    let mut m = micros;
    for d in digits[1..].iter_mut().rev() {
        *d = b'0' + (m % 10) as u8;
        m /= 10;
    }
    out.extend_from_slice(&digits);
}

/// Bytes as nginx writes them in a log: `"`, `\`, controls and non-ASCII
/// as `\xHH`; runs of plain bytes copied at once.
fn combined_escaped(out: &mut Vec<u8>, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    const PLAIN: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 0x20;
        while b < 0x7f {
            t[b] = b != b'"' as usize && b != b'\\' as usize;
            b += 1;
        }
        t
    };
    let mut run = 0;
    for (i, &b) in v.iter().enumerate() {
        if !PLAIN[usize::from(b)] {
            out.extend_from_slice(&v[run..i]);
            out.extend_from_slice(&[b'\\', b'x', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            run = i + 1;
        }
    }
    out.extend_from_slice(&v[run..]);
}

/// A JSON string of `v` (invalid UTF-8 replaced); runs that need no
/// escape copied at once.
fn json_string(out: &mut Vec<u8>, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let text = String::from_utf8_lossy(v);
    let v = text.as_bytes();
    out.push(b'"');
    let mut run = 0;
    for (i, &b) in v.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0..0x20 => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&v[run..i]);
        out.extend_from_slice(escape);
        run = i + 1;
    }
    out.extend_from_slice(&v[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_stamp_reads_like_apache() {
        let t = UNIX_EPOCH + Duration::from_secs(1_796_133_956); // 2026-12-01T14:05:56Z
        assert_eq!(combined_stamp(t), "[01/Dec/2026:14:05:56 +0000]");
        let mut log = AccessLog::open(Path::new("-"), AccessFormat::Json).unwrap();
        let mut out = Vec::new();
        log.push_rfc3339(&mut out, t + Duration::from_millis(7));
        assert_eq!(out, b"2026-12-01T14:05:56.007Z");
        out.clear();
        push_fraction(&mut out, 412);
        push_ip(&mut out, "10.0.255.1".parse().unwrap());
        push_ip(&mut out, "::1".parse().unwrap());
        assert_eq!(out, b".00041210.0.255.1::1");
    }

    #[test]
    fn escaping() {
        let mut out = Vec::new();
        combined_escaped(&mut out, b"a\"b\\c\x01\xff d");
        assert_eq!(out, b"a\\x22b\\x5Cc\\x01\\xFF d");
        out.clear();
        json_string(&mut out, b"a\"\\\n\xffz");
        assert_eq!(String::from_utf8(out).unwrap(), "\"a\\\"\\\\\\u000a\u{fffd}z\"");
    }
}
