//! How a service's sockets map onto the token range the host gave it
//! (shared by the proxy and the router).

use mio::Token;

/// How a service's sockets map onto the token range the host gave it:
/// `start` is the listener, then each session slot takes `per_session`
/// tokens (its client, then one per backend: the router has one), then
/// each pending slot takes one token per backend (the proxy's exchanges
/// whose client has moved on while shadows still answer).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tokens {
    start: usize,
    backends: usize,
    slots: usize,
    pending: usize,
}

/// What a token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Listener,
    Client(usize),
    Backend(usize, usize),
    /// A backend of a pending exchange: (pending slot, backend).
    Pending(usize, usize),
}

impl Tokens {
    /// The layout for `backends` backends and up to `pending` pending slots
    /// in `start..start + len`. Sessions come first: when the range cannot
    /// hold the pending slots and one session, there are no pending slots.
    pub(crate) fn new(start: usize, len: usize, backends: usize, pending: usize) -> Self {
        let per_session = 1 + backends;
        let room = len.saturating_sub(1);
        let pending_tokens = pending.saturating_mul(backends);
        let (slots, pending) = match room.checked_sub(pending_tokens) {
            Some(rest) if rest >= per_session => (rest / per_session, pending),
            _ => (room / per_session, 0),
        };
        Tokens {
            start,
            backends,
            slots,
            pending,
        }
    }

    fn per_session(&self) -> usize {
        1 + self.backends
    }

    /// How many sessions fit in the range.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    /// How many pending exchanges fit in the range.
    pub(crate) fn pending_slots(&self) -> usize {
        self.pending
    }

    pub(crate) fn listener(&self) -> Token {
        Token(self.start)
    }

    pub(crate) fn client(&self, slot: usize) -> Token {
        Token(self.start + 1 + slot * self.per_session())
    }

    pub(crate) fn backend(&self, slot: usize, backend: usize) -> Token {
        Token(self.start + 2 + slot * self.per_session() + backend)
    }

    pub(crate) fn pending(&self, slot: usize, backend: usize) -> Token {
        Token(self.start + 1 + self.slots * self.per_session() + slot * self.backends + backend)
    }

    /// What `token` stands for, or `None` when it is not in the range.
    pub(crate) fn decode(&self, token: Token) -> Option<Target> {
        let offset = token.0.checked_sub(self.start)?;
        if offset == 0 {
            return Some(Target::Listener);
        }
        let offset = offset - 1;
        let sessions = self.slots * self.per_session();
        if offset >= sessions {
            let offset = offset - sessions;
            let slot = offset.checked_div(self.backends)?;
            if slot >= self.pending {
                return None;
            }
            return Some(Target::Pending(slot, offset % self.backends));
        }
        let (slot, role) = (offset / self.per_session(), offset % self.per_session());
        Some(if role == 0 {
            Target::Client(slot)
        } else {
            Target::Backend(slot, role - 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_layout_round_trips() {
        let t = Tokens::new(100, 1 + 3 * 10 + 2 * 4, 2, 4);
        assert_eq!(t.slots(), 10);
        assert_eq!(t.pending_slots(), 4);
        assert_eq!(t.decode(Token(99)), None);
        assert_eq!(t.decode(t.listener()), Some(Target::Listener));
        for slot in 0..10 {
            assert_eq!(t.decode(t.client(slot)), Some(Target::Client(slot)));
            for b in 0..2 {
                assert_eq!(t.decode(t.backend(slot, b)), Some(Target::Backend(slot, b)));
            }
        }
        for slot in 0..4 {
            for b in 0..2 {
                assert_eq!(t.decode(t.pending(slot, b)), Some(Target::Pending(slot, b)));
            }
        }
        assert_eq!(t.decode(Token(100 + 1 + 3 * 10 + 2 * 4)), None);
    }

    #[test]
    fn a_small_range_keeps_sessions_and_drops_pending_slots() {
        let t = Tokens::new(0, 1 + 3 * 2, 2, 100);
        assert_eq!((t.slots(), t.pending_slots()), (2, 0));
        assert_eq!(t.decode(Token(7)), None);
        let router = Tokens::new(0, 1 + 2 * 5, 1, 0);
        assert_eq!((router.slots(), router.pending_slots()), (5, 0));
        assert_eq!(router.decode(Token(11)), None);
    }
}
