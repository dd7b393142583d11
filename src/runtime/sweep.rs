//! Deadlines of many connections without a timer per connection: after each
//! pump a connection's next deadline is folded into one instant, and a sweep
//! at most every [`SWEEP_INTERVAL`] finds the connections that are due. No
//! allocation per event and no queue that grows with traffic.

use std::time::{Duration, Instant};

/// Shortest time between two sweeps: deadlines are applied at most this
/// late, and a crowd of them costs one pass each time.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(10);

/// The earliest known deadline and the slots a sweep found due.
#[derive(Debug)]
pub(crate) struct Sweep {
    next: Option<Instant>,
    last: Instant,
    /// Kept between sweeps to reuse its allocation.
    due: Vec<usize>,
}

impl Sweep {
    pub(crate) fn new(now: Instant) -> Self {
        Sweep {
            next: None,
            last: now,
            due: Vec::new(),
        }
    }

    /// Folds in one connection's next deadline.
    pub(crate) fn note(&mut self, at: Option<Instant>) {
        if let Some(at) = at {
            self.next = Some(self.next.map_or(at, |n| n.min(at)));
        }
    }

    /// When the next sweep should run.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.next.map(|at| at.max(self.last + SWEEP_INTERVAL))
    }

    /// When a sweep is due at `now`: the slots whose deadline has passed
    /// (the others' deadlines are folded in anew). Otherwise an empty list.
    /// Give the list back with [`put_back`](Self::put_back).
    pub(crate) fn take_due(
        &mut self,
        now: Instant,
        deadlines: impl Iterator<Item = (usize, Option<Instant>)>,
    ) -> Vec<usize> {
        let mut due = std::mem::take(&mut self.due);
        if self.deadline().is_none_or(|at| at > now) {
            return due;
        }
        self.last = now;
        self.next = None;
        for (slot, at) in deadlines {
            match at {
                Some(at) if at <= now => due.push(slot),
                at => self.note(at),
            }
        }
        due
    }

    /// Returns the list [`take_due`](Self::take_due) gave.
    pub(crate) fn put_back(&mut self, mut due: Vec<usize>) {
        due.clear();
        self.due = due;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_due_slots_and_keeps_the_rest() {
        let t0 = Instant::now();
        let mut sweep = Sweep::new(t0);
        assert_eq!(sweep.deadline(), None);
        sweep.note(Some(t0 + Duration::from_millis(50)));
        sweep.note(Some(t0 + Duration::from_millis(20)));
        sweep.note(None);
        assert_eq!(sweep.deadline(), Some(t0 + Duration::from_millis(20)));
        let early = sweep.take_due(t0 + Duration::from_millis(5), [(0, Some(t0))].into_iter());
        assert!(early.is_empty(), "not due yet");
        sweep.put_back(early);
        let now = t0 + Duration::from_millis(30);
        let deadlines = [
            (0, Some(t0 + Duration::from_millis(20))),
            (1, Some(t0 + Duration::from_millis(50))),
            (2, None),
        ];
        let due = sweep.take_due(now, deadlines.into_iter());
        assert_eq!(due, vec![0]);
        sweep.put_back(due);
        assert_eq!(sweep.deadline(), Some(t0 + Duration::from_millis(50)));
        // A deadline already past still waits for the interval after a sweep.
        sweep.note(Some(now));
        assert_eq!(sweep.deadline(), Some(now + SWEEP_INTERVAL));
    }
}
