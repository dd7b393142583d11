//! Response comparison: a [`Hooks`] implementation that compares every
//! shadow's response with the master's and writes what differs to a diff
//! log. Nothing in [`crate::proxy`] knows about it.
//!
//! Per shadow: the outcome (a shadow that failed is an `outcome`
//! difference), the status, the response headers minus an ignore list and
//! the hop-by-hop and framing fields, and the body after its chunked
//! framing (removed by the proxy) and gzip/deflate coding are removed.
//! Equal bodies cost one byte comparison; only different ones are parsed:
//! JSON bodies structurally, each difference named by its JSON Pointer
//! (see [`Rules`] for ignore, set and tolerance rules), others by their
//! first differing byte.
//!
//! Each shadow gets a verdict: `match`, `mismatch`, or `ignored` (every
//! difference is ignored or noise), or the core's outcome when it failed.
//! With a control backend (a second instance of the master's code, fed
//! like a shadow), a shadow's difference that the control also shows
//! against the master on the same path is noise, not a mismatch.

mod body;
mod json;
mod log;
mod rules;
mod tally;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

pub use self::body::{MAX_DECODED_BODY, decode, first_difference, is_json};
pub use self::json::{JsonDifference, MAX_JSON_DIFFERENCES, MAX_VALUE_CHARS};
pub use self::log::{BackendLine, DiffLog, Message, Record, Recorded};
pub use self::rules::{DEFAULT_IGNORED_HEADERS, FRAMING_HEADERS, PathPattern, PathRule, Rules};
pub use self::tally::{Tally, render as render_summary};
use crate::access::AccessLog;
use crate::http::HeadRewrite;
use crate::metrics::{Source, label};
use crate::proxy::{Backend, BackendReport, DIGEST_BLOCK, Exchange, Hooks, Outcome, Request, Role, Selection, Served};

/// What part of a response differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The status code.
    Status,
    /// A response header (`path` is its lower-case name).
    Header,
    /// The body (`path` is a JSON Pointer for JSON bodies).
    Body,
    /// How the exchange ended (the shadow failed).
    Outcome,
}

impl Kind {
    /// Lower-case name, as in the diff log.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Status => "status",
            Kind::Header => "header",
            Kind::Body => "body",
            Kind::Outcome => "outcome",
        }
    }
}

/// One difference between a shadow's response and the master's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// The shadow's name.
    pub backend: String,
    /// What differs.
    pub kind: Kind,
    /// Header name, or JSON Pointer of a body value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The master's side (absent: the master has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// The shadow's side (absent: the shadow has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<String>,
    /// The control differs from the master the same way: noise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub noise: bool,
    /// An ignore rule covers it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ignored: bool,
}

impl Difference {
    fn new(backend: &str, kind: Kind, path: Option<String>, master: Option<String>, shadow: Option<String>) -> Self {
        Difference {
            backend: backend.to_string(),
            kind,
            path,
            master,
            shadow,
            noise: false,
            ignored: false,
        }
    }

    /// Whether it counts against the shadow.
    pub fn counts(&self) -> bool {
        !self.noise && !self.ignored
    }
}

/// A shadow's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Same response.
    Match,
    /// At least one difference that is neither ignored nor noise.
    Mismatch,
    /// Differences, all ignored or noise.
    Ignored,
    /// The master's response is not complete: nothing to compare with.
    Uncompared,
    /// The shadow failed (the core's outcome).
    Failed(Outcome),
}

impl Verdict {
    /// Every name [`as_str`](Self::as_str) gives, in [`index`](Self::index) order.
    pub const NAMES: [&'static str; 4 + Outcome::ALL.len()] = [
        "match",
        "mismatch",
        "ignored",
        "uncompared",
        "complete",
        "refused",
        "timeout",
        "reset",
        "invalid",
        "truncated",
        "too_slow",
        "skipped",
        "dropped",
        "tls",
    ];

    /// Position in [`Verdict::NAMES`].
    pub fn index(self) -> usize {
        match self {
            Verdict::Match => 0,
            Verdict::Mismatch => 1,
            Verdict::Ignored => 2,
            Verdict::Uncompared => 3,
            Verdict::Failed(o) => 4 + o.index(),
        }
    }

    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Match => "match",
            Verdict::Mismatch => "mismatch",
            Verdict::Ignored => "ignored",
            Verdict::Uncompared => "uncompared",
            Verdict::Failed(o) => o.as_str(),
        }
    }
}

/// Compares `shadow`'s response with `master`'s; the differences are named
/// after `name`.
pub fn compare(master: &BackendReport, shadow: &BackendReport, name: &str, rules: &Rules) -> Vec<Difference> {
    let mut out = Vec::new();
    if master.outcome != Outcome::Complete {
        return out;
    }
    if shadow.outcome != Outcome::Complete {
        out.push(Difference::new(
            name,
            Kind::Outcome,
            None,
            Some(master.outcome.as_str().into()),
            Some(shadow.outcome.as_str().into()),
        ));
        return out;
    }
    if master.status() != shadow.status() {
        let status = |r: &BackendReport| r.status().map(|s| s.to_string());
        out.push(Difference::new(
            name,
            Kind::Status,
            None,
            status(master),
            status(shadow),
        ));
    }
    if !same_headers(master, shadow, rules) {
        compare_headers(master, shadow, name, rules, &mut out);
    }
    compare_bodies(master, shadow, name, rules, &mut out);
    out
}

/// The compared fields of a response, in order, as (name, value) slices.
fn compared_fields<'a>(r: &'a BackendReport, rules: &'a Rules) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
    r.response.iter().flat_map(|h| h.fields()).filter_map(move |f| {
        let name = f.name.get(&r.response_raw);
        let compared = std::str::from_utf8(name).is_ok_and(|n| rules.compares_header(n));
        compared.then(|| (name, f.value.get(&r.response_raw)))
    })
}

/// The usual case, without allocating: the same compared fields in the
/// same order.
fn same_headers(master: &BackendReport, shadow: &BackendReport, rules: &Rules) -> bool {
    let mut m = compared_fields(master, rules);
    let mut s = compared_fields(shadow, rules);
    loop {
        match (m.next(), s.next()) {
            (None, None) => return true,
            (Some((mn, mv)), Some((sn, sv))) if mn.eq_ignore_ascii_case(sn) && mv == sv => {}
            _ => return false,
        }
    }
}

fn compare_headers(
    master: &BackendReport,
    shadow: &BackendReport,
    name: &str,
    rules: &Rules,
    out: &mut Vec<Difference>,
) {
    let (mh, sh) = (headers(master, rules), headers(shadow, rules));
    for key in mh.keys().chain(sh.keys().filter(|k| !mh.contains_key(*k))) {
        let (m, s) = (mh.get(key), sh.get(key));
        if m != s {
            out.push(Difference::new(
                name,
                Kind::Header,
                Some(key.clone()),
                m.cloned(),
                s.cloned(),
            ));
        }
    }
}

/// Compared headers of a response: lower-case name to its values joined.
fn headers(r: &BackendReport, rules: &Rules) -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    let Some(head) = r.response.as_ref() else { return map };
    for f in head.fields() {
        let name = String::from_utf8_lossy(f.name.get(&r.response_raw)).to_ascii_lowercase();
        if !rules.compares_header(&name) {
            continue;
        }
        let value = String::from_utf8_lossy(f.value.get(&r.response_raw));
        map.entry(name)
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    map
}

fn compare_bodies(
    master: &BackendReport,
    shadow: &BackendReport,
    name: &str,
    rules: &Rules,
    out: &mut Vec<Difference>,
) {
    if master.truncated || shadow.truncated {
        return beyond_capture(master, shadow, name, out);
    }
    if master.response_body == shadow.response_body {
        return;
    }
    fn decoded(r: &BackendReport) -> Result<std::borrow::Cow<'_, [u8]>, String> {
        decode(&r.response_body, r.header("content-encoding"))
    }
    let (m, s) = match (decoded(master), decoded(shadow)) {
        (Ok(m), Ok(s)) => (m, s),
        // Undecodable: the raw bytes are what can be compared.
        _ => (
            master.response_body.as_slice().into(),
            shadow.response_body.as_slice().into(),
        ),
    };
    if m == s {
        return;
    }
    let json = |r: &BackendReport, b: &[u8]| is_json(r.header("content-type"), b);
    if json(master, &m) && json(shadow, &s) {
        if let (Ok(mv), Ok(sv)) = (
            serde_json::from_slice::<serde_json::Value>(&m),
            serde_json::from_slice::<serde_json::Value>(&s),
        ) {
            for d in json::diff(&mv, &sv, rules) {
                let mut diff = Difference::new(name, Kind::Body, Some(d.path), d.master, d.shadow);
                diff.ignored = d.ignored;
                out.push(diff);
            }
            return;
        }
    }
    let (at, mc, sc) = first_difference(&m, &s);
    out.push(Difference::new(
        name,
        Kind::Body,
        None,
        Some(format!("at byte {at}: {mc}")),
        Some(format!("at byte {at}: {sc}")),
    ));
}

/// Bodies longer than the capture: the digests of the whole decoded bodies
/// decide, and a difference says how far the captured view went.
fn beyond_capture(master: &BackendReport, shadow: &BackendReport, name: &str, out: &mut Vec<Difference>) {
    let view = master.response_body.len().min(shadow.response_body.len());
    let (md, sd) = (master.body_digest(), shadow.body_digest());
    let describe = |r: &BackendReport, d: &Option<std::borrow::Cow<'_, crate::proxy::BodyDigest>>| match d {
        Some(d) => format!("{} bytes, xxh3 {}", d.len, d.hex()),
        None => format!("{} bytes captured, no digest", r.response_body.len()),
    };
    // Offsets in the captured bytes mean decoded offsets only without a
    // content coding.
    let coded = master.header("content-encoding").is_some() || shadow.header("content-encoding").is_some();
    let differ_at = || {
        let (m, s) = (&master.response_body[..view], &shadow.response_body[..view]);
        (m != s && !coded).then(|| first_difference(m, s).0)
    };
    let what = match (&md, &sd) {
        (Some(m), Some(s)) if m == s => return,
        (Some(m), Some(s)) => match (differ_at(), m.first_difference(s)) {
            (Some(at), _) => format!("differs at byte {at}"),
            (None, Some(at)) if at % DIGEST_BLOCK as u64 != 0 || at == m.len.min(s.len) => {
                format!("differs at byte {at}, beyond the first {view} bytes captured: one body ends there")
            }
            (None, Some(at)) => format!(
                "differs in bytes {at}..{}, beyond the first {view} bytes captured",
                at + DIGEST_BLOCK as u64
            ),
            (None, None) => format!("differs beyond the first {view} bytes captured"),
        },
        _ => format!("not compared beyond the first {view} bytes (the captured part): a body has no digest"),
    };
    out.push(Difference::new(
        name,
        Kind::Body,
        None,
        Some(format!("{what}; {}", describe(master, &md))),
        Some(format!("{what}; {}", describe(shadow, &sd))),
    ));
}

/// The verdict for a shadow with `differences`.
pub fn verdict(shadow: &BackendReport, master: &BackendReport, differences: &[Difference]) -> Verdict {
    if shadow.outcome != Outcome::Complete {
        Verdict::Failed(shadow.outcome)
    } else if master.outcome != Outcome::Complete {
        Verdict::Uncompared
    } else if differences.is_empty() {
        Verdict::Match
    } else if differences.iter().any(Difference::counts) {
        Verdict::Mismatch
    } else {
        Verdict::Ignored
    }
}

/// Differences that counted, per (shadow, kind, path): kept across
/// exchanges for a summary (grows only with distinct differing paths).
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Count per (shadow, kind, path).
    pub differences: BTreeMap<(String, Kind, String), u64>,
}

const KINDS: [Kind; 4] = [Kind::Status, Kind::Header, Kind::Body, Kind::Outcome];

/// Comparison counters per shadow, for a metrics endpoint; fixed arrays,
/// sized once for the configured backends.
#[derive(Debug, Default)]
pub struct CompareStats {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    names: Vec<String>,
    verdicts: Vec<[u64; Verdict::NAMES.len()]>,
    kinds: Vec<[u64; KINDS.len()]>,
}

impl CompareStats {
    fn record(&self, backends: &[Backend], b: usize, verdict: Verdict, differences: &[Difference]) {
        let Ok(mut c) = self.counts.lock() else { return };
        if c.names.len() < backends.len() {
            c.names = backends.iter().map(|b| b.name.clone()).collect();
            c.verdicts.resize(backends.len(), [0; Verdict::NAMES.len()]);
            c.kinds.resize(backends.len(), [0; KINDS.len()]);
        }
        c.verdicts[b][verdict.index()] += 1;
        for d in differences.iter().filter(|d| d.counts()) {
            let k = KINDS.iter().position(|k| *k == d.kind).unwrap_or(0);
            c.kinds[b][k] += 1;
        }
    }

    /// Per shadow compared so far: its name and its non-zero verdict counts.
    pub fn verdicts(&self) -> Vec<(String, Vec<(&'static str, u64)>)> {
        let Ok(c) = self.counts.lock() else { return Vec::new() };
        c.verdicts
            .iter()
            .enumerate()
            .filter(|(_, v)| v.iter().any(|n| *n > 0))
            .map(|(b, v)| {
                let counts = v
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| **n > 0)
                    .map(|(i, n)| (Verdict::NAMES[i], *n))
                    .collect();
                (c.names[b].clone(), counts)
            })
            .collect()
    }

    /// Comparisons of backend `b` that came to `verdict`.
    pub fn comparisons(&self, b: usize, verdict: Verdict) -> u64 {
        self.counts
            .lock()
            .ok()
            .and_then(|c| c.verdicts.get(b).map(|v| v[verdict.index()]))
            .unwrap_or(0)
    }
}

impl Source for CompareStats {
    fn write_metrics(&self, out: &mut String) {
        let Ok(c) = self.counts.lock() else { return };
        out.push_str("# HELP kage_comparisons_total Shadow responses compared with the master's, by verdict.\n");
        out.push_str("# TYPE kage_comparisons_total counter\n");
        for (b, verdicts) in c.verdicts.iter().enumerate() {
            for (v, n) in verdicts.iter().enumerate().filter(|(_, n)| **n > 0) {
                let _ = writeln!(
                    out,
                    "kage_comparisons_total{{backend=\"{}\",result=\"{}\"}} {n}",
                    label(&c.names[b]),
                    Verdict::NAMES[v]
                );
            }
        }
        out.push_str("# HELP kage_differences_total Differences that count (not ignored, not noise), by kind.\n");
        out.push_str("# TYPE kage_differences_total counter\n");
        for (b, kinds) in c.kinds.iter().enumerate() {
            for (k, n) in kinds.iter().enumerate().filter(|(_, n)| **n > 0) {
                let kind = format!("{:?}", KINDS[k]).to_lowercase();
                let _ = writeln!(
                    out,
                    "kage_differences_total{{backend=\"{}\",kind=\"{kind}\"}} {n}",
                    label(&c.names[b])
                );
            }
        }
    }
}

/// The comparator: wraps the hooks that select and munge (`inner`),
/// compares in [`Hooks::backends_finished`], then calls `inner`'s.
pub struct Compare<H> {
    inner: H,
    rules: Rules,
    control: Option<String>,
    log: Option<DiffLog>,
    access: Option<AccessLog>,
    bodies: bool,
    summary: Summary,
    stats: Arc<CompareStats>,
}

impl<H: Hooks> Compare<H> {
    /// Compares with `rules`; selection and munging are `inner`'s.
    pub fn new(inner: H, rules: Rules) -> Self {
        Compare {
            inner,
            rules,
            control: None,
            log: None,
            access: None,
            bodies: false,
            summary: Summary::default(),
            stats: Arc::default(),
        }
    }

    /// Names the backend that runs the master's code (fed like a shadow):
    /// differences it shares with a shadow are noise.
    pub fn with_control(mut self, name: impl Into<String>) -> Self {
        self.control = Some(name.into());
        self
    }

    /// Writes one line per shadowed exchange to `log`.
    pub fn with_log(mut self, log: DiffLog) -> Self {
        self.log = Some(log);
        self
    }

    /// Writes one line per request to `log`, with the shadows' verdicts.
    pub fn with_access_log(mut self, log: AccessLog) -> Self {
        self.access = Some(log);
        self
    }

    /// The access log, if any.
    pub fn access_log(&mut self) -> Option<&mut AccessLog> {
        self.access.as_mut()
    }

    /// Records the request and the master's response in each log line
    /// (for `kage replay`).
    pub fn with_bodies(mut self) -> Self {
        self.bodies = true;
        self
    }

    /// The wrapped hooks.
    pub fn inner(&self) -> &H {
        &self.inner
    }

    /// What was compared so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The counters, to share with a [`crate::metrics::Endpoint`].
    pub fn stats(&self) -> Arc<CompareStats> {
        self.stats.clone()
    }

    /// Compares one exchange: the record the diff log gets.
    pub fn evaluate(&mut self, exchange: &Exchange<'_>) -> Option<Record> {
        let (verdicts, differences) = self.judge(exchange)?;
        self.tell_access_log(exchange, &verdicts);
        let mut record = Record::new(exchange, &verdicts, self.control.as_deref(), differences);
        if self.bodies {
            if let Some(master) = exchange.master() {
                record.recorded = Some(Recorded::of(master));
            }
        }
        Some(record)
    }

    /// Completes the exchange's access log line with its verdicts (none
    /// without a master to compare with).
    fn tell_access_log(&mut self, exchange: &Exchange<'_>, verdicts: &[(usize, Verdict)]) {
        if let Some(access) = self.access.as_mut() {
            let named = verdicts
                .iter()
                .filter_map(|(b, v)| exchange.backends.get(*b).map(|b| (b.name.as_str(), v.as_str())));
            access.verdicts(exchange.id, named);
        }
    }

    /// Compares and counts; the verdicts (by backend index) and the
    /// differences. `None` without a master report.
    #[allow(clippy::type_complexity)]
    fn judge(&mut self, exchange: &Exchange<'_>) -> Option<(Vec<(usize, Verdict)>, Vec<Difference>)> {
        let (_, master) = exchange.iter().find(|(b, _)| b.role == Role::Master)?;
        let control = exchange
            .iter()
            .find(|(b, _)| Some(&b.name) == self.control.as_ref() && b.role == Role::Shadow);
        // What the control shows against the master is noise.
        let noise: BTreeSet<(Kind, Option<String>)> = control
            .map(|(b, r)| compare(master, r, &b.name, &self.rules))
            .unwrap_or_default()
            .into_iter()
            .map(|d| (d.kind, d.path))
            .collect();
        let mut differences = Vec::new();
        let mut verdicts = Vec::new();
        for (b, r) in exchange.iter() {
            if b.role == Role::Master || Some(&b.name) == self.control.as_ref() {
                continue;
            }
            let mut diffs = compare(master, r, &b.name, &self.rules);
            for d in &mut diffs {
                d.noise = noise.contains(&(d.kind, d.path.clone()));
            }
            let v = verdict(r, master, &diffs);
            self.stats.record(exchange.backends, r.backend, v, &diffs);
            for d in diffs.iter().filter(|d| d.counts()) {
                let key = (b.name.clone(), d.kind, d.path.clone().unwrap_or_default());
                *self.summary.differences.entry(key).or_default() += 1;
            }
            verdicts.push((r.backend, v));
            differences.extend(diffs);
        }
        Some((verdicts, differences))
    }
}

impl<H: Hooks> Hooks for Compare<H> {
    fn select_backends(&mut self, request: &Request<'_>, backends: &[Backend]) -> Selection {
        self.inner.select_backends(request, backends)
    }

    fn munge_request(&mut self, backend: &Backend, request: &Request<'_>, rewrite: &mut HeadRewrite) {
        self.inner.munge_request(backend, request, rewrite)
    }

    fn backends_finished(&mut self, exchange: &Exchange<'_>) {
        // A record is built only for a log to write it to.
        if self.log.is_none() {
            let verdicts = self.judge(exchange).map(|(v, _)| v).unwrap_or_default();
            self.tell_access_log(exchange, &verdicts);
        } else {
            match self.evaluate(exchange) {
                Some(record) => {
                    if let Some(log) = self.log.as_mut() {
                        log.write(&record);
                    }
                }
                None => self.tell_access_log(exchange, &[]),
            }
        }
        self.inner.backends_finished(exchange);
    }

    fn request_done(&mut self, served: &Served<'_>) {
        if let Some(access) = self.access.as_mut() {
            access.served(served);
        }
        self.inner.request_done(served);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mine = self.access.as_ref().and_then(AccessLog::next_deadline);
        [mine, self.inner.next_deadline()].into_iter().flatten().min()
    }

    fn on_deadline(&mut self, now: Instant) {
        if let Some(access) = self.access.as_mut() {
            access.on_deadline(now);
        }
        if self.inner.next_deadline().is_some_and(|t| t <= now) {
            self.inner.on_deadline(now);
        }
    }
}
