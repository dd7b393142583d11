//! What the client saw of each request (status, body bytes, time), told
//! to [`Hooks::request_done`] once when its response is over.

use super::*;

/// The client's side of the request under way.
#[derive(Debug, Clone, Copy)]
pub(super) struct Account {
    /// A request (or a final answer) is being accounted for.
    open: bool,
    /// Its head was read (else: a bad head or a 408).
    request: bool,
    shadowed: bool,
    status: Option<u16>,
    /// Response head bytes queued for the client (interim ones included).
    head_bytes: u64,
    /// Response bytes written to the client.
    sent: u64,
    since: Instant,
}

impl Account {
    pub(super) fn new(now: Instant) -> Self {
        Account {
            open: false,
            request: false,
            shadowed: false,
            status: None,
            head_bytes: 0,
            sent: 0,
            since: now,
        }
    }

    /// A response head of `len` bytes queued for the client; `status`
    /// for a final one.
    pub(super) fn head(&mut self, status: Option<u16>, len: usize) {
        self.head_bytes += len as u64;
        if status.is_some() {
            self.status = status;
        }
    }

    /// Bytes written to the client.
    pub(super) fn sent(&mut self, n: usize) {
        self.sent += n as u64;
    }
}

impl Session {
    /// A request's head was read at the start of `self.head_since`.
    pub(super) fn account_request(&mut self, shadowed: bool) {
        self.account = Account {
            open: true,
            request: true,
            shadowed,
            ..Account::new(self.head_since)
        };
    }

    /// The proxy answers `status` itself with a head of `head_len` bytes;
    /// without a request under way (a bad head, a 408) it is accounted
    /// on its own.
    pub(super) fn account_reply(&mut self, status: u16, head_len: usize) {
        if !self.account.open {
            self.account = Account {
                open: true,
                ..Account::new(self.head_since)
            };
        }
        self.account.head(Some(status), head_len);
    }

    /// The client's response is over: the hooks hear of it, once.
    pub(super) fn account_done<H: Hooks>(&mut self, cx: &mut Cx<'_, H>, complete: bool) {
        let a = self.account;
        if !a.open {
            return;
        }
        self.account.open = false;
        let served = Served {
            id: if a.request { self.exchange_id } else { 0 },
            request: a.request.then(|| Request::new(&self.req, &self.req_bytes, self.peer)),
            peer: self.peer,
            status: a.status,
            body_bytes: a.sent.saturating_sub(a.head_bytes),
            duration: cx.now.saturating_duration_since(a.since),
            complete: complete && a.status.is_some(),
            shadowed: a.request && a.shadowed,
        };
        cx.hooks.request_done(&served);
    }
}
