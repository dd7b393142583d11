//! A short human-readable summary of compared traffic (`kage demo`, `kage
//! replay`): per backend requests, statuses and p50/p99, then the verdicts
//! and the differences by path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::Kind;

/// One backend's column of the summary.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// The backend's name.
    pub name: String,
    /// Responses per status (0: none).
    pub statuses: BTreeMap<u16, usize>,
    /// Total times of complete responses.
    pub totals: Vec<Duration>,
}

impl Tally {
    /// An empty tally for `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Tally {
            name: name.into(),
            ..Tally::default()
        }
    }

    /// Counts one response.
    pub fn add(&mut self, status: Option<u16>, total: Option<Duration>) {
        *self.statuses.entry(status.unwrap_or(0)).or_default() += 1;
        self.totals.extend(total);
    }

    fn requests(&self) -> usize {
        self.statuses.values().sum()
    }
}

/// The summary text.
pub fn render(
    tallies: &[Tally],
    verdicts: &[(String, Vec<(&'static str, u64)>)],
    differences: &BTreeMap<(String, Kind, String), u64>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<10} {:>8}  {:<18} {:>8} {:>8}",
        "backend", "requests", "statuses", "p50", "p99"
    );
    for t in tallies {
        let statuses: Vec<String> = t
            .statuses
            .iter()
            .map(|(c, n)| {
                if *c == 0 {
                    format!("none x{n}")
                } else {
                    format!("{c} x{n}")
                }
            })
            .collect();
        let mut totals = t.totals.clone();
        totals.sort();
        let _ = writeln!(
            s,
            "{:<10} {:>8}  {:<18} {:>8} {:>8}",
            t.name,
            t.requests(),
            statuses.join(", "),
            percentile(&totals, 0.50),
            percentile(&totals, 0.99)
        );
    }
    for (name, counts) in verdicts {
        let counts: Vec<String> = counts.iter().map(|(v, n)| format!("{n} {v}")).collect();
        let _ = writeln!(s, "\ncomparisons of {name} with the master: {}", counts.join(", "));
    }
    let _ = writeln!(s, "differences found, by path:");
    if differences.is_empty() {
        let _ = writeln!(s, "  none");
    }
    for ((who, kind, path), n) in differences {
        let kind = format!("{kind:?}").to_lowercase();
        let path = if path.is_empty() { "-" } else { path };
        let _ = writeln!(s, "  {who:<8} {kind:<7} {path:<20} {n}");
    }
    s
}

fn percentile(sorted: &[Duration], q: f64) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    format!("{:.2} ms", sorted[i].as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rows_verdicts_and_paths() {
        let mut m = Tally::new("master");
        for ms in 1..=100 {
            m.add(Some(200), Some(Duration::from_millis(ms)));
        }
        m.add(None, None);
        let mut diffs = BTreeMap::new();
        diffs.insert(("new".to_string(), Kind::Body, "/price".to_string()), 7);
        let text = render(&[m], &[("new".into(), vec![("match", 3), ("mismatch", 7)])], &diffs);
        assert!(
            text.contains("master          101  none x1, 200 x100  50.00 ms 99.00 ms"),
            "{text}"
        );
        assert!(
            text.contains("comparisons of new with the master: 3 match, 7 mismatch"),
            "{text}"
        );
        assert!(text.contains("  new      body    /price               7"), "{text}");
    }
}
