//! Backend host names resolved again while running, never on the event
//! loop.
//!
//! A backend given as `HOST:PORT` with a name (not an IP literal) is looked
//! up at start by the config readers; [`Names`] looks it up again every
//! interval, and sooner (at most every [`RESOLVE_RETRY_GAP`]) after its
//! owner saw a connect to it fail. Lookups (`getaddrinfo` through
//! [`ToSocketAddrs`], which blocks) run on one thread per [`Names`], fed by
//! a channel; the loop never waits for it and needs no waker: its owner
//! calls [`Names::tick`] when [`Names::deadline`] has passed, and a lookup
//! under way is looked for every [`RESOLVE_POLL`].
//!
//! An answer that still holds the address in use changes nothing (round
//! robin DNS reorders its answers); otherwise the first address of the
//! answer is the new one, logged at info, and handed to the owner as a
//! [`Change`]. A lookup that fails, or finds no address, keeps the last
//! good address and logs a warning, at most every [`RESOLVE_WARN_INTERVAL`]
//! per name. With no name to look up there is no thread. Dropping [`Names`]
//! stops its thread: at once when it is idle; one in the middle of a lookup
//! ends when the lookup does, and nothing waits for it.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

/// How often a backend's host name is looked up again by default.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
/// Shortest interval accepted (a smaller one would keep the resolver busy).
pub const MIN_RESOLVE_INTERVAL: Duration = Duration::from_millis(100);
/// Shortest time between two lookups of one name asked for by connect
/// failures (a dead backend must not turn every request into a lookup).
pub const RESOLVE_RETRY_GAP: Duration = Duration::from_secs(1);
/// While a lookup is under way, how often its answer is looked for.
pub const RESOLVE_POLL: Duration = Duration::from_millis(100);
/// Shortest time between two warnings about one name that does not
/// resolve; the next one says how many failed lookups were not logged.
pub const RESOLVE_WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Looks up `HOST:PORT`: every address it gives, in its order. The
/// resolver thread calls it; tests give their own.
pub type Lookup = Arc<dyn Fn(&str) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// The system's resolver (`getaddrinfo`, through [`ToSocketAddrs`]).
pub fn system_lookup() -> Lookup {
    Arc::new(|host_port: &str| host_port.to_socket_addrs().map(Iterator::collect))
}

/// One backend to look up again.
#[derive(Debug, Clone)]
pub struct Name {
    /// The owner's index for it (a backend's index).
    pub index: usize,
    /// The backend's name, for the log.
    pub label: String,
    /// `HOST:PORT` as given.
    pub host_port: String,
    /// The address in use now (the lookup at start).
    pub addr: SocketAddr,
}

impl Name {
    /// The host alone, for the log.
    fn host(&self) -> &str {
        self.host_port
            .rsplit_once(':')
            .map_or(self.host_port.as_str(), |(h, _)| h)
    }
}

/// A backend whose name now resolves to another address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The owner's index ([`Name::index`]).
    pub index: usize,
    /// The address used until now.
    pub old: SocketAddr,
    /// The address to use from now on.
    pub new: SocketAddr,
}

/// What the loop knows of one name.
#[derive(Debug)]
struct Entry {
    name: Name,
    /// A lookup was sent and not answered yet.
    asked: bool,
    /// When the last lookup was sent.
    asked_at: Option<Instant>,
    /// When the next lookup is due by the interval.
    due: Instant,
    /// A connect failure asked for an early lookup.
    wanted: bool,
    /// When the last warning about a failed lookup was logged.
    warned_at: Option<Instant>,
    /// Failed lookups not logged since.
    unlogged: u64,
}

impl Entry {
    /// When a lookup asked for by a connect failure may be sent.
    fn retry_at(&self, now: Instant) -> Instant {
        self.asked_at.map_or(now, |t| t + RESOLVE_RETRY_GAP)
    }
}

type Answer = (usize, io::Result<Vec<SocketAddr>>);

/// The resolver thread and its two channels.
struct Worker {
    ask: Option<Sender<(usize, String)>>,
    answers: Receiver<Answer>,
    /// Set when the owner goes: the thread starts no other lookup.
    stop: Arc<AtomicBool>,
    /// The thread is in a lookup.
    busy: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    fn spawn(lookup: Lookup) -> io::Result<Worker> {
        let (ask, asks) = channel::<(usize, String)>();
        let (tell, answers) = channel::<Answer>();
        let stop = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicBool::new(false));
        let (s, b) = (stop.clone(), busy.clone());
        let thread = std::thread::Builder::new().name("kage-resolve".into()).spawn(move || {
            while let Ok((i, host_port)) = asks.recv() {
                // Busy before looking at stop, the owner sets stop before
                // looking at busy (both SeqCst): the owner joins only a
                // thread that will start no lookup.
                b.store(true, Ordering::SeqCst);
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let answer = lookup(&host_port);
                b.store(false, Ordering::SeqCst);
                if tell.send((i, answer)).is_err() {
                    return;
                }
            }
        })?;
        Ok(Worker {
            ask: Some(ask),
            answers,
            stop,
            busy,
            thread: Some(thread),
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Closing the channel ends the thread's wait for work.
        self.ask = None;
        if let Some(thread) = self.thread.take() {
            if self.busy.load(Ordering::SeqCst) {
                debug!("resolver: a lookup is under way; the thread ends when it does");
            } else {
                let _ = thread.join();
            }
        }
    }
}

/// The names of one owner (a proxy) to look up again, and its resolver
/// thread (see the [module docs](self)).
pub struct Names {
    entries: Vec<Entry>,
    interval: Duration,
    worker: Option<Worker>,
    /// When to look for answers to lookups under way.
    poll_at: Option<Instant>,
    /// When it was made: a deadline already past.
    started: Instant,
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Names")
            .field("entries", &self.entries)
            .field("interval", &self.interval)
            .field("thread", &self.worker.is_some())
            .finish()
    }
}

impl Names {
    /// Names to look up every `interval` with `lookup`; IP literals among
    /// them are left out. Starts the resolver thread when one is left.
    pub fn new(names: Vec<Name>, interval: Duration, lookup: Lookup, now: Instant) -> io::Result<Names> {
        let entries: Vec<Entry> = names
            .into_iter()
            .filter(|n| n.host_port.parse::<SocketAddr>().is_err())
            .map(|name| Entry {
                name,
                asked: false,
                asked_at: None,
                due: now + interval,
                wanted: false,
                warned_at: None,
                unlogged: 0,
            })
            .collect();
        let worker = match entries.is_empty() {
            true => None,
            false => Some(Worker::spawn(lookup)?),
        };
        Ok(Names {
            entries,
            interval,
            worker,
            poll_at: None,
            started: now,
        })
    }

    /// Nothing to look up (and no thread).
    pub fn is_empty(&self) -> bool {
        self.worker.is_none()
    }

    /// A resolver thread is running.
    pub fn has_thread(&self) -> bool {
        self.worker.is_some()
    }

    /// When [`tick`](Self::tick) has work: an answer to look for, a lookup
    /// due by the interval, or one a connect failure asks for
    /// (`failed(index)` says whether one was seen since the last tick).
    pub fn deadline(&self, failed: impl Fn(usize) -> bool) -> Option<Instant> {
        self.worker.as_ref()?;
        let mut at = self.poll_at;
        for e in self.entries.iter().filter(|e| !e.asked) {
            let mut due = e.due;
            if e.wanted || failed(e.name.index) {
                if let Some(t) = e.asked_at {
                    due = due.min(t + RESOLVE_RETRY_GAP);
                } else {
                    // Due at once: an instant already past, and the same at
                    // every call (`Instant::now()` here would be later than
                    // the caller's now, so never due: a busy poll).
                    return Some(self.started);
                }
            }
            at = Some(at.map_or(due, |a| a.min(due)));
        }
        at
    }

    /// Takes in the answers that came and sends the lookups that are due;
    /// `take_failed(index)` says (and forgets) whether a connect to that
    /// backend failed since the last tick. Returns the addresses that
    /// changed (already logged).
    pub fn tick(&mut self, now: Instant, mut take_failed: impl FnMut(usize) -> bool) -> Vec<Change> {
        let mut changes = Vec::new();
        let Some(worker) = self.worker.as_ref() else {
            return changes;
        };
        let mut gone = false;
        loop {
            match worker.answers.try_recv() {
                Ok((i, answer)) => {
                    if let Some(e) = self.entries.get_mut(i) {
                        e.asked = false;
                        changes.extend(take_answer(e, answer, now));
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    gone = true;
                    break;
                }
            }
        }
        if gone {
            warn!("resolver thread stopped; backend addresses are no longer looked up again");
            self.worker = None;
            self.poll_at = None;
            return changes;
        }
        let mut asked = false;
        for (i, e) in self.entries.iter_mut().enumerate() {
            if e.asked {
                asked = true;
                continue;
            }
            e.wanted |= take_failed(e.name.index);
            if now < e.due && !(e.wanted && now >= e.retry_at(now)) {
                continue;
            }
            let sent = worker
                .ask
                .as_ref()
                .is_some_and(|ask| ask.send((i, e.name.host_port.clone())).is_ok());
            if sent {
                debug!("backend {}: looking up {} again", e.name.label, e.name.host_port);
                e.asked = true;
                e.asked_at = Some(now);
                e.due = now + self.interval;
                e.wanted = false;
                asked = true;
            }
        }
        self.poll_at = asked.then_some(now + RESOLVE_POLL);
        changes
    }
}

/// Applies one lookup's answer to its entry; the change, if any.
fn take_answer(e: &mut Entry, answer: io::Result<Vec<SocketAddr>>, now: Instant) -> Option<Change> {
    let err = match answer {
        Ok(addrs) if addrs.contains(&e.name.addr) => {
            debug!(
                "backend {}: {} still resolves to {}",
                e.name.label,
                e.name.host(),
                e.name.addr
            );
            return None;
        }
        Ok(addrs) => match addrs.first() {
            Some(&new) => {
                let old = std::mem::replace(&mut e.name.addr, new);
                info!(
                    "backend {}: {} now resolves to {new} (was {old})",
                    e.name.label,
                    e.name.host()
                );
                return Some(Change {
                    index: e.name.index,
                    old,
                    new,
                });
            }
            None => "no address".to_string(),
        },
        Err(err) => err.to_string(),
    };
    let due = e
        .warned_at
        .is_none_or(|t| now.saturating_duration_since(t) >= RESOLVE_WARN_INTERVAL);
    if due {
        let more = match std::mem::take(&mut e.unlogged) {
            0 => String::new(),
            n => format!(" ({n} more failed lookup(s) not logged since the last line)"),
        };
        warn!(
            "backend {}: cannot resolve {} ({err}); keeping {}{more}",
            e.name.label,
            e.name.host(),
            e.name.addr
        );
        e.warned_at = Some(now);
    } else {
        e.unlogged += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn name(host_port: &str, a: &str) -> Name {
        Name {
            index: 3,
            label: "api".into(),
            host_port: host_port.into(),
            addr: addr(a),
        }
    }

    /// Ticks until a lookup was answered (the thread is real).
    fn settle(names: &mut Names, now: Instant) -> Vec<Change> {
        let mut changes = names.tick(now, |_| false);
        let t = Instant::now();
        while names.poll_at.is_some() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
            changes.extend(names.tick(now, |_| false));
        }
        changes
    }

    #[test]
    fn ip_literals_need_no_thread() {
        let names = Names::new(
            vec![name("127.0.0.1:80", "127.0.0.1:80"), name("[::1]:80", "[::1]:80")],
            DEFAULT_RESOLVE_INTERVAL,
            system_lookup(),
            Instant::now(),
        )
        .unwrap();
        assert!(!names.has_thread());
        assert_eq!(names.deadline(|_| true), None);
    }

    #[test]
    fn a_change_is_reported_once_and_a_reordered_answer_is_none() {
        let answer = Arc::new(Mutex::new(vec![addr("10.0.0.1:80")]));
        let a = answer.clone();
        let lookup: Lookup = Arc::new(move |_| Ok(a.lock().unwrap().clone()));
        let start = Instant::now();
        let interval = Duration::from_secs(30);
        let mut names = Names::new(vec![name("api.test:80", "10.0.0.1:80")], interval, lookup, start).unwrap();
        assert_eq!(names.deadline(|_| false), Some(start + interval));
        // Not due yet: nothing is asked.
        assert!(names.tick(start, |_| false).is_empty());
        assert_eq!(names.poll_at, None);
        *answer.lock().unwrap() = vec![addr("10.0.0.2:80"), addr("10.0.0.1:80")];
        assert!(
            settle(&mut names, start + interval).is_empty(),
            "still among the answers"
        );
        *answer.lock().unwrap() = vec![addr("10.0.0.2:80")];
        let changes = settle(&mut names, start + interval * 2);
        assert_eq!(
            changes,
            vec![Change {
                index: 3,
                old: addr("10.0.0.1:80"),
                new: addr("10.0.0.2:80")
            }]
        );
        assert!(settle(&mut names, start + interval * 3).is_empty());
    }

    #[test]
    fn a_connect_failure_asks_sooner_but_at_most_every_retry_gap() {
        let count = Arc::new(Mutex::new(0));
        let c = count.clone();
        let lookup: Lookup = Arc::new(move |_| {
            *c.lock().unwrap() += 1;
            Err(io::Error::other("no such host"))
        });
        let start = Instant::now();
        let mut names = Names::new(
            vec![name("api.test:80", "10.0.0.1:80")],
            Duration::from_secs(30),
            lookup,
            start,
        )
        .unwrap();
        // A failure before any lookup: due at once.
        // Due before a now taken first, and the same at every call: a
        // caller comparing with its own now must find it due.
        let before = Instant::now();
        let due = names.deadline(|_| true);
        assert!(due.is_some_and(|d| d <= before), "due at once");
        assert_eq!(names.deadline(|_| true), due, "the same at every call");
        names.tick(start, |_| true);
        settle(&mut names, start);
        assert_eq!(*count.lock().unwrap(), 1);
        assert_eq!(names.deadline(|_| true), Some(start + RESOLVE_RETRY_GAP));
        // Within the gap a failure waits; after it, it is looked up.
        names.tick(start + RESOLVE_RETRY_GAP / 2, |_| true);
        settle(&mut names, start + RESOLVE_RETRY_GAP / 2);
        assert_eq!(*count.lock().unwrap(), 1);
        settle(&mut names, start + RESOLVE_RETRY_GAP);
        assert_eq!(*count.lock().unwrap(), 2);
        // The failed lookups kept the address.
        assert_eq!(names.entries[0].name.addr, addr("10.0.0.1:80"));
        assert_eq!(names.entries[0].unlogged, 1);
    }

    #[test]
    fn drop_does_not_wait_for_a_lookup_that_hangs() {
        let (entered_tx, entered) = channel();
        let lookup: Lookup = Arc::new(move |_| {
            let _ = entered_tx.send(());
            std::thread::sleep(Duration::from_secs(3600));
            Ok(Vec::new())
        });
        let start = Instant::now();
        let mut names = Names::new(
            vec![name("api.test:80", "10.0.0.1:80")],
            MIN_RESOLVE_INTERVAL,
            lookup,
            start,
        )
        .unwrap();
        names.tick(start + MIN_RESOLVE_INTERVAL, |_| false);
        entered.recv_timeout(Duration::from_secs(5)).unwrap();
        let t = Instant::now();
        drop(names);
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn drop_joins_an_idle_thread() {
        let lookup: Lookup = Arc::new(|_| Ok(Vec::new()));
        let mut names = Names::new(
            vec![name("api.test:80", "10.0.0.1:80")],
            DEFAULT_RESOLVE_INTERVAL,
            lookup,
            Instant::now(),
        )
        .unwrap();
        let thread = names.worker.as_mut().and_then(|w| w.thread.take()).unwrap();
        drop(names);
        // The channel closed: the thread's wait for work ends.
        thread.join().unwrap();
    }
}
