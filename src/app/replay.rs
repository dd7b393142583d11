//! `kage replay`: the requests a diff log recorded (`--diff-log-bodies`)
//! sent again to one backend, its answers compared with the recorded
//! master responses, and the same summary as `kage demo`.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

use crate::compare::{Kind, Rules, Tally, compare, render_summary, verdict};
use crate::http::{
    BodyDecoder, Connection, HeadRewrite, HeadStatus, RequestContext, RequestHead, ResponseHead, write_request,
};
use crate::proxy::{BackendReport, BodyDigest, DEFAULT_CAPTURE_CAP, Outcome};

/// Waits at most this long for each reply.
pub const REPLAY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a replay found.
#[derive(Debug, Default)]
pub struct Outcomes {
    /// Requests sent.
    pub sent: usize,
    /// Lines without recorded bodies, skipped.
    pub skipped: usize,
    /// Verdicts of the target against the recorded master.
    pub verdicts: BTreeMap<&'static str, u64>,
    /// One line per request that did not match: its verdict, method,
    /// target and what differed.
    pub failures: Vec<String>,
    /// The summary text.
    pub summary: String,
}

impl Outcomes {
    /// Replies that did not match (mismatches and failures).
    pub fn mismatches(&self) -> u64 {
        self.verdicts
            .iter()
            .filter(|(v, _)| !matches!(**v, "match" | "ignored"))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Replays `log` to `to`, comparing with `rules`.
pub fn run(log: &Path, to: SocketAddr, rules: &Rules) -> io::Result<Outcomes> {
    let file = std::fs::File::open(log)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: cannot read: {e}", log.display())))?;
    let mut out = Outcomes::default();
    let (mut master, mut target) = (Tally::new("recorded"), Tally::new("target"));
    let mut differences: BTreeMap<(String, Kind, String), u64> = BTreeMap::new();
    let mut conn: Option<(TcpStream, Vec<u8>)> = None;
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let at = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}:{}: {what}", log.display(), n + 1),
            )
        };
        let v: Value = serde_json::from_str(&line).map_err(|e| at(&format!("not JSON: {e}")))?;
        let Some(rec) = v.get("recorded") else {
            out.skipped += 1;
            continue;
        };
        let field = |m: &str, f: &str| -> io::Result<Vec<u8>> {
            let s = rec[m][f]
                .as_str()
                .ok_or_else(|| at(&format!("recorded.{m}.{f} is missing")))?;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| at(&format!("recorded.{m}.{f}: {e}")))
        };
        let (recorded_head, req_body) = (field("request", "head_b64")?, field("request", "body_b64")?);
        let mut raw = field("master", "head_b64")?;
        raw.extend(field("master", "body_b64")?);
        let (req_head, ctx, idempotent) =
            keep_alive_head(&recorded_head).ok_or_else(|| at("recorded.request is not a request head"))?;
        let mut recorded = report_of(&raw, ctx, rec["master"]["truncated"] == true, Outcome::Complete);
        if recorded.truncated {
            // Cut at the capture: the line's digest covers the whole body.
            recorded.digest = recorded_digest(&v);
        }
        master.add(recorded.status(), None);
        // One connection while the target keeps it; when a reused one fails,
        // an idempotent request is tried once more on a fresh one (as the
        // proxy does).
        let mut started = Instant::now();
        let reused = conn.is_some();
        let (mut reply, mut kept) = match conn.take() {
            Some((stream, buf)) => exchange(stream, buf, &req_head, &req_body, ctx),
            None => (Err(io::ErrorKind::NotConnected.into()), None),
        };
        if reply.is_err() && (!reused || idempotent) {
            let s =
                TcpStream::connect(to).map_err(|e| io::Error::new(e.kind(), format!("cannot connect to {to}: {e}")))?;
            s.set_read_timeout(Some(REPLAY_TIMEOUT))?;
            started = Instant::now();
            (reply, kept) = exchange(s, Vec::new(), &req_head, &req_body, ctx);
        }
        let total = started.elapsed();
        let reply = match reply {
            Ok(raw) => {
                let mut r = report_of(&raw, ctx, false, Outcome::Complete);
                r.total = Some(total);
                r
            }
            Err(_) => report_of(&[], ctx, false, Outcome::Reset),
        };
        conn = kept;
        out.sent += 1;
        target.add(reply.status(), reply.total);
        let diffs = compare(&recorded, &reply, "target", rules);
        let verdict = verdict(&reply, &recorded, &diffs);
        *out.verdicts.entry(verdict.as_str()).or_default() += 1;
        if !matches!(verdict.as_str(), "match" | "ignored") {
            let what: Vec<String> = diffs
                .iter()
                .filter(|d| d.counts())
                .map(|d| {
                    let path = d.path.as_deref().map(|p| format!(" {p}")).unwrap_or_default();
                    let side = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
                    format!("{}{path}: {} vs {}", d.kind.as_str(), side(&d.master), side(&d.shadow))
                })
                .collect();
            out.failures.push(format!(
                "{} {} {}: {}",
                verdict.as_str(),
                v["method"].as_str().unwrap_or("?"),
                v["target"].as_str().unwrap_or("?"),
                if what.is_empty() {
                    verdict.as_str().to_string()
                } else {
                    what.join("; ")
                }
            ));
        }
        for d in diffs.iter().filter(|d| d.counts()) {
            *differences
                .entry(("target".into(), d.kind, d.path.clone().unwrap_or_default()))
                .or_default() += 1;
        }
    }
    let verdicts = vec![(
        "target".to_string(),
        out.verdicts.iter().map(|(v, n)| (*v, *n)).collect(),
    )];
    out.summary = render_summary(&[master, target], &verdicts, &differences);
    Ok(out)
}

/// The recorded head asking to keep the connection, how a response to it
/// is framed, and whether it may be sent twice.
fn keep_alive_head(head: &[u8]) -> Option<(Vec<u8>, RequestContext, bool)> {
    let mut req = RequestHead::new();
    match req.parse(head) {
        Ok(HeadStatus::Complete(_)) => {
            let mut out = Vec::new();
            write_request(&req, head, &HeadRewrite::new(Connection::KeepAlive), &mut out);
            Some((out, RequestContext::of(&req), req.method().is_idempotent()))
        }
        _ => None,
    }
}

/// Sends one request and reads the whole response; the connection comes
/// back when it may carry another.
#[allow(clippy::type_complexity)]
fn exchange(
    mut stream: TcpStream,
    mut buf: Vec<u8>,
    head: &[u8],
    body: &[u8],
    ctx: RequestContext,
) -> (io::Result<Vec<u8>>, Option<(TcpStream, Vec<u8>)>) {
    if let Err(e) = stream.write_all(head).and_then(|()| stream.write_all(body)) {
        return (Err(e), None);
    }
    let mut chunk = [0u8; 16 * 1024];
    let mut response = ResponseHead::new();
    let len = loop {
        match response.parse(&buf, ctx) {
            Ok(HeadStatus::Complete(len)) if response.is_interim() => {
                buf.drain(..len);
                response.clear();
            }
            Ok(HeadStatus::Complete(len)) => break len,
            Ok(HeadStatus::Partial) => match stream.read(&mut chunk) {
                Ok(0) => return (Err(io::ErrorKind::UnexpectedEof.into()), None),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return (Err(e), None),
            },
            Err(e) => return (Err(io::Error::other(e.to_string())), None),
        }
    };
    let mut decoder = BodyDecoder::new(response.framing());
    let mut pos = len;
    let mut eof = false;
    loop {
        let scanned = match decoder.scan(&buf[pos..], |_| {}) {
            Ok(s) => s,
            Err(e) => return (Err(io::Error::other(e.to_string())), None),
        };
        pos += scanned.consumed;
        if scanned.done {
            break;
        }
        if eof {
            if decoder.finish().is_err() {
                return (Err(io::ErrorKind::UnexpectedEof.into()), None);
            }
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return (Err(e), None),
        }
    }
    let raw: Vec<u8> = buf.drain(..pos).collect();
    let keep = response.keep_alive() && !eof;
    (Ok(raw), keep.then_some((stream, buf)))
}

/// The recorded master's whole-body digest from a diff log line.
fn recorded_digest(line: &Value) -> Option<BodyDigest> {
    let master = line["backends"].as_array()?.iter().find(|b| b["role"] == "master")?;
    Some(BodyDigest {
        len: master["body_len"].as_u64()?,
        xxh3: u128::from_str_radix(master["body_digest"].as_str()?, 16).ok()?,
        blocks: Vec::new(),
    })
}

/// A report of a response from its raw bytes (head and framed body).
pub(crate) fn report_of(raw: &[u8], ctx: RequestContext, truncated: bool, outcome: Outcome) -> BackendReport {
    let mut head = ResponseHead::new();
    let mut report = BackendReport {
        backend: 0,
        request_head: Vec::new(),
        request_body: Vec::new(),
        response: None,
        response_raw: raw.to_vec(),
        response_body: Vec::new(),
        truncated,
        digest: None,
        ttfb: None,
        total: None,
        bytes: raw.len() as u64,
        outcome,
    };
    if let Ok(HeadStatus::Complete(len)) = head.parse(raw, ctx) {
        let mut decoder = BodyDecoder::new(head.framing());
        let body = &raw[len..];
        let mut decoded = Vec::new();
        let _ = decoder.scan(body, |r| decoded.extend_from_slice(&body[r]));
        // As the proxy would have captured it: past the cap, a digest.
        if !truncated && decoded.len() > DEFAULT_CAPTURE_CAP {
            report.digest = BodyDigest::of(&decoded, head.header(raw, "content-encoding"));
            report.truncated = true;
            decoded.truncate(DEFAULT_CAPTURE_CAP);
        }
        report.response_body = decoded;
        report.response = Some(head);
    } else if outcome == Outcome::Complete {
        report.outcome = Outcome::Invalid;
    }
    report
}
