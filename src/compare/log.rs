//! The diff log: one JSON object per line for each shadowed exchange,
//! appended to a file (reopened on request, for log rotation) or stdout.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{Difference, Verdict};
use base64::Engine as _;

use crate::proxy::{BackendReport, Exchange, Role};
use crate::runtime::logfile::LogFile;

/// One line of the diff log.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// When the exchange was compared (RFC 3339, UTC).
    pub ts: String,
    /// The exchange's id, unique per process run.
    pub id: u64,
    /// The request method.
    pub method: String,
    /// The request target.
    pub target: String,
    /// Every selected backend.
    pub backends: Vec<BackendLine>,
    /// What differs (empty when every shadow matched).
    pub differences: Vec<Difference>,
    /// With bodies recorded: the request as the master got it and the
    /// master's response, for `kage replay`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded: Option<Recorded>,
}

/// A request and the master's response, as bytes (base64).
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    /// The request as sent to the master.
    pub request: Message,
    /// The master's response as received (framing kept).
    pub master: Message,
}

/// One message: head and body, base64.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    /// The head, base64.
    pub head_b64: String,
    /// The body with its framing, base64, up to the capture cap.
    pub body_b64: String,
    /// The body was cut at the capture cap.
    pub truncated: bool,
}

impl Recorded {
    /// From the master's report of an exchange.
    pub fn of(master: &BackendReport) -> Self {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let head_len = master
            .response
            .as_ref()
            .map_or(0, |h| h.len())
            .min(master.response_raw.len());
        Recorded {
            request: Message {
                head_b64: b64(&master.request_head),
                body_b64: b64(&master.request_body),
                truncated: false,
            },
            master: Message {
                head_b64: b64(&master.response_raw[..head_len]),
                body_b64: b64(&master.response_raw[head_len..]),
                truncated: master.truncated,
            },
        }
    }
}

/// One backend in a [`Record`].
#[derive(Debug, Clone, Serialize)]
pub struct BackendLine {
    /// The backend's name.
    pub name: String,
    /// `master`, `shadow` or `control`.
    pub role: &'static str,
    /// The response status, if a head came.
    pub status: Option<u16>,
    /// For a shadow its verdict (`match`, `mismatch`, `ignored`, or how
    /// it failed); for the master and the control how the exchange ended.
    pub outcome: &'static str,
    /// Milliseconds to the first response byte.
    pub ttfb_ms: Option<f64>,
    /// Milliseconds to the last response byte.
    pub total_ms: Option<f64>,
    /// Response bytes received.
    pub bytes: u64,
    /// The whole decoded body's length (content coding removed), for a
    /// complete response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_len: Option<u64>,
    /// Its XXH3-128 digest (32 hex digits), however much of the body was
    /// captured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_digest: Option<String>,
}

impl Record {
    /// The record of `exchange` with the shadows' `verdicts` (by backend
    /// index) and their `differences`.
    pub fn new(
        exchange: &Exchange<'_>,
        verdicts: &[(usize, Verdict)],
        control: Option<&str>,
        differences: Vec<Difference>,
    ) -> Self {
        let ms = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3);
        let backends = exchange
            .iter()
            .map(|(b, r)| {
                let control = b.role == Role::Shadow && control == Some(b.name.as_str());
                let verdict = verdicts.iter().find(|(i, _)| *i == r.backend).map(|(_, v)| v.as_str());
                // Taken while the body streamed past the capture, or made
                // now from a body captured whole (about 10 us per 64 KiB,
                // paid only with a diff log).
                let digest = r.body_digest();
                BackendLine {
                    name: b.name.clone(),
                    role: if control { "control" } else { b.role.as_str() },
                    status: r.status(),
                    outcome: verdict.unwrap_or(r.outcome.as_str()),
                    ttfb_ms: ms(r.ttfb),
                    total_ms: ms(r.total),
                    bytes: r.bytes,
                    body_len: digest.as_ref().map(|d| d.len),
                    body_digest: digest.as_ref().map(|d| d.hex()),
                }
            })
            .collect();
        Record {
            ts: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            id: exchange.id,
            method: String::from_utf8_lossy(exchange.request.method_bytes()).into_owned(),
            target: String::from_utf8_lossy(exchange.request.target()).into_owned(),
            backends,
            differences,
            recorded: None,
        }
    }
}

/// Where the diff log goes.
pub struct DiffLog {
    out: LogFile,
    line: Vec<u8>,
}

impl DiffLog {
    /// Appends to `path` (created if missing); `-` is stdout.
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(DiffLog {
            out: LogFile::open(path, "diff log")?,
            line: Vec::new(),
        })
    }

    /// Set it (from a SIGHUP handler, say) to have the file reopened
    /// before the next line: log rotation.
    pub fn reopen_flag(&self) -> Arc<AtomicBool> {
        self.out.reopen_flag()
    }

    /// Writes one line; a failure is logged once until writing works again.
    pub fn write(&mut self, record: &Record) {
        self.line.clear();
        if serde_json::to_writer(&mut self.line, record).is_err() {
            return;
        }
        self.line.push(b'\n');
        self.out.write(&self.line);
    }
}
