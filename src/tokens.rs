//! How a service's sockets map onto the token range the host gave it
//! (shared by the proxy and the router).

use mio::Token;

/// How a service's sockets map onto the token range the host gave it:
/// `start` is the listener, then each session slot takes `per_session`
/// tokens (its client, then one per backend: the router has one).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tokens {
    start: usize,
    per_session: usize,
    slots: usize,
}

/// What a token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Listener,
    Client(usize),
    Backend(usize, usize),
}

impl Tokens {
    /// The layout for `backends` backends in `start..start + len`.
    pub(crate) fn new(start: usize, len: usize, backends: usize) -> Self {
        let per_session = 1 + backends;
        Tokens {
            start,
            per_session,
            slots: len.saturating_sub(1) / per_session,
        }
    }

    /// How many sessions fit in the range.
    pub(crate) fn slots(&self) -> usize {
        self.slots
    }

    pub(crate) fn listener(&self) -> Token {
        Token(self.start)
    }

    pub(crate) fn client(&self, slot: usize) -> Token {
        Token(self.start + 1 + slot * self.per_session)
    }

    pub(crate) fn backend(&self, slot: usize, backend: usize) -> Token {
        Token(self.start + 2 + slot * self.per_session + backend)
    }

    /// What `token` stands for, or `None` when it is not in the range.
    pub(crate) fn decode(&self, token: Token) -> Option<Target> {
        let offset = token.0.checked_sub(self.start)?;
        if offset == 0 {
            return Some(Target::Listener);
        }
        let (slot, role) = ((offset - 1) / self.per_session, (offset - 1) % self.per_session);
        if slot >= self.slots {
            return None;
        }
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
        let t = Tokens::new(100, 1 + 3 * 10, 2);
        assert_eq!(t.slots(), 10);
        assert_eq!(t.decode(Token(99)), None);
        assert_eq!(t.decode(t.listener()), Some(Target::Listener));
        for slot in 0..10 {
            assert_eq!(t.decode(t.client(slot)), Some(Target::Client(slot)));
            for b in 0..2 {
                assert_eq!(t.decode(t.backend(slot, b)), Some(Target::Backend(slot, b)));
            }
        }
        assert_eq!(t.decode(Token(100 + 1 + 3 * 10)), None);
    }
}
