//! A ready-made host for the proxy and the router: owns a
//! [`Poll`], runs until told to stop through a [`StopHandle`].

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll, Registry, Token, Waker};

/// Events taken from the poller per wake-up.
pub const EVENTS_PER_POLL: usize = 1024;

/// How long a fast shutdown waits for connections before closing them.
pub const FAST_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Stop accepting, let in-flight exchanges finish, then exit.
    Graceful,
    /// Stop accepting, close whatever is left after a grace period.
    Fast,
}

/// Something that runs on a mio loop inside a range of tokens.
pub trait Service {
    /// How many tokens it wants.
    fn tokens_needed(&self) -> usize;
    /// Registers its sockets with tokens inside `tokens`.
    fn register(&mut self, registry: &Registry, tokens: Range<usize>) -> io::Result<()>;
    /// Handles an event; false when the token is not its own.
    fn handle_event(&mut self, registry: &Registry, event: &Event) -> bool;
    /// When it next needs [`on_timeout`](Self::on_timeout).
    fn next_deadline(&self) -> Option<Instant>;
    /// Applies deadlines due at `now`.
    fn on_timeout(&mut self, registry: &Registry, now: Instant);
    /// Begins shutting down.
    fn shutdown(&mut self, registry: &Registry, mode: ShutdownMode, now: Instant);
    /// Shut down and idle: the loop may end.
    fn is_done(&self) -> bool;
}

const WAKER: Token = Token(0);
const RUN: u8 = 0;
const GRACEFUL: u8 = 1;
const FAST: u8 = 2;

/// Tells a running [`Server`] to stop, from any thread.
#[derive(Clone)]
pub struct StopHandle {
    waker: Arc<Waker>,
    flag: Arc<AtomicU8>,
}

impl StopHandle {
    /// Asks for a shutdown of this kind (a fast one wins over a graceful one).
    pub fn stop(&self, mode: ShutdownMode) {
        let value = if mode == ShutdownMode::Fast { FAST } else { GRACEFUL };
        self.flag.fetch_max(value, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

/// A mio loop for one or more [`Service`]s.
pub struct Server {
    poll: Poll,
    waker: Arc<Waker>,
    flag: Arc<AtomicU8>,
}

impl Server {
    /// A new poller with its stop waker.
    pub fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Server {
            poll,
            waker,
            flag: Arc::new(AtomicU8::new(RUN)),
        })
    }

    /// The poller's registry (to register other sources before running).
    pub fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    /// A handle that stops [`run`](Self::run).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            waker: self.waker.clone(),
            flag: self.flag.clone(),
        }
    }

    /// Registers the services in consecutive token ranges starting at
    /// `first_token` (token 0 is the stop waker) and runs until they are all
    /// done after a stop.
    pub fn run(&mut self, services: &mut [&mut dyn Service], first_token: usize) -> io::Result<()> {
        let mut next = first_token.max(1);
        for s in services.iter_mut() {
            let end = next + s.tokens_needed();
            s.register(self.poll.registry(), next..end)?;
            next = end;
        }
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        let mut stopping = RUN;
        loop {
            let deadline = services.iter().filter_map(|s| s.next_deadline()).min();
            // Past deadlines mean "poll without waiting"; future ones get half a
            // millisecond more so that a millisecond timeout does not wake early.
            let timeout = deadline.map(|d| {
                let now = Instant::now();
                if d <= now {
                    Duration::ZERO
                } else {
                    d - now + Duration::from_micros(500)
                }
            });
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            for event in events.iter() {
                if event.token() == WAKER {
                    continue;
                }
                for s in services.iter_mut() {
                    if s.handle_event(self.poll.registry(), event) {
                        break;
                    }
                }
            }
            let now = Instant::now();
            let asked = self.flag.load(Ordering::SeqCst);
            if asked > stopping {
                stopping = asked;
                let mode = if asked == FAST {
                    ShutdownMode::Fast
                } else {
                    ShutdownMode::Graceful
                };
                for s in services.iter_mut() {
                    s.shutdown(self.poll.registry(), mode, now);
                }
            }
            for s in services.iter_mut() {
                if s.next_deadline().is_some_and(|d| d <= now) {
                    s.on_timeout(self.poll.registry(), now);
                }
            }
            if stopping != RUN && services.iter().all(|s| s.is_done()) {
                return Ok(());
            }
        }
    }
}
