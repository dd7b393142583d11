//! Connections whose pump yielded with work left (a busy splice), pumped
//! again on the service's next turn: no edge is needed to resume them, and
//! the others get their turn first.

use std::time::Instant;

/// The slots to pump again, and since when one waits.
#[derive(Debug, Default)]
pub(crate) struct Hot {
    slots: Vec<usize>,
    /// The previous turn's list, kept to reuse its allocation.
    spare: Vec<usize>,
    /// When the first of `slots` yielded: a deadline already past.
    since: Option<Instant>,
}

impl Hot {
    /// Slot `slot` yielded at `now`; the caller keeps it from being added
    /// twice.
    pub(crate) fn push(&mut self, slot: usize, now: Instant) {
        self.slots.push(slot);
        self.since.get_or_insert(now);
    }

    /// The service's next deadline while any slot waits (already past).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.since
    }

    /// The slots to pump now; give the list back with
    /// [`put_back`](Self::put_back).
    pub(crate) fn take(&mut self) -> Vec<usize> {
        self.since = None;
        std::mem::replace(&mut self.slots, std::mem::take(&mut self.spare))
    }

    /// Keeps a taken list's allocation for the next turn.
    pub(crate) fn put_back(&mut self, mut taken: Vec<usize>) {
        taken.clear();
        self.spare = taken;
    }
}
