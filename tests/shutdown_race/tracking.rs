//! Tracking every spawn attempt: what each task is and may end as, the
//! guard inside its future that records its polls and drop, and the shared
//! state of a round that settles every handle exactly once.

use std::collections::BTreeMap;
use std::fmt;
use std::panic;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, ThreadId};

use futures::channel::oneshot;
use multipool::{Handle, JoinError, JoinHandle, SpawnError};

/// What a tracked task is, for its expected outcomes and for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// Spawned from a foreign thread (placed, with a non-`Local` placement).
    Remote,
    /// `Spawn::worker(i)` from a foreign thread.
    Pinned,
    /// `Spawn::key(k)` from a foreign thread.
    Keyed,
    /// With `Spawn::timeout`.
    Timed,
    /// `spawn_blocking`, from a foreign thread or from a task.
    Blocking,
    /// `Handle::spawn_batch`.
    Batch,
    /// `Spawn::try_start`.
    TryStart,
    /// Panics in its poll.
    Panicker,
    /// Refused at spawn: `worker(i)` beyond the permanent workers, a zero
    /// timeout, an unknown pool.
    Refused,
    /// A pool task that spawns locals, children and blocking calls, and
    /// awaits a local's handle.
    Nest,
    /// `spawn_local` from inside a nest.
    Local,
    /// A pool task spawned from inside a nest (maybe pinned or timed).
    Child,
    /// A child awaiting a oneshot whose sender a local task holds: dropping
    /// the local wakes it.
    Listener,
    /// Holds the runtime and shuts it down when told to.
    Killer,
}

/// The outcome of one spawn attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Outcome {
    Completed,
    Aborted,
    TimedOut,
    Rejected,
    Shutdown,
    Panicked,
}

/// What a task body does before it returns its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    Ready,
    Yield(u32),
    /// A `multipool::time::sleep` of this many microseconds.
    Sleep(u64),
    /// Waits for a oneshot that the waker thread completes (or drops).
    Foreign,
    /// Never completes: only cancellation ends it.
    Pending,
    /// Yields once, then panics.
    Panic,
}

/// One spawn attempt: what is expected of it and what happened to it.
pub(crate) struct Entry {
    pub(crate) id: usize,
    pub(crate) kind: Kind,
    /// Its body panics: the one task kind allowed a panic outcome.
    pub(crate) panics: bool,
    /// It has a `Spawn::timeout`: the one kind allowed a time-out.
    pub(crate) timed: bool,
    /// It asks for something the runtime refuses: it must never run.
    pub(crate) refused: bool,
    /// It must complete (a killer: nothing else shuts its runtime down).
    pub(crate) must_complete: bool,
    /// The waker thread may abort it.
    pub(crate) abortable: bool,
    /// For local tasks: the thread of the worker that spawned it.
    pub(crate) home: Option<ThreadId>,
    /// Set just before `abort()` is called on its handle.
    pub(crate) abort_requested: AtomicBool,
    /// Its body ran to the end.
    pub(crate) finished: AtomicBool,
    /// Times its future (or closure) was dropped.
    pub(crate) drops: AtomicUsize,
    /// Outcomes recorded (exactly one is expected).
    pub(crate) outcomes: AtomicUsize,
    pub(crate) first_poll_thread: OnceLock<ThreadId>,
    pub(crate) drop_thread: Mutex<Option<ThreadId>>,
    /// The panic of `Handle::enter` in its destructor, if it panicked.
    pub(crate) drop_enter_failed: Mutex<Option<String>>,
}

impl Entry {
    /// The value a completed task must return.
    fn value(&self) -> u64 {
        self.id as u64 * 7 + 3
    }

    /// Whether `outcome` (with `result`) is one this task could have;
    /// `Some(why not)` otherwise.
    fn check(&self, outcome: Outcome, result: &Result<u64, String>) -> Option<String> {
        let finished = self.finished.load(SeqCst);
        if outcome != Outcome::Completed && finished {
            return Some(format!("ran to the end, yet its handle says {result:?}"));
        }
        if self.must_complete && outcome != Outcome::Completed {
            return Some(format!("had to complete, but its handle says {result:?}"));
        }
        match outcome {
            Outcome::Completed => {
                let value = *result.as_ref().expect("completed");
                if self.refused || self.panics {
                    Some("completed although it should never have run to the end".into())
                } else if !finished {
                    Some(format!("completed with {value} without running its body"))
                } else if value != self.value() {
                    Some(format!("completed with {value}, not {}", self.value()))
                } else {
                    None
                }
            }
            Outcome::Aborted if !self.abort_requested.load(SeqCst) => {
                Some("reports an abort nobody asked for".into())
            }
            Outcome::TimedOut if !self.timed => Some("timed out without a timeout".into()),
            Outcome::Rejected if !self.refused => Some(format!("was rejected: {result:?}")),
            Outcome::Panicked if !self.panics => Some(format!("panicked: {result:?}")),
            _ => None,
        }
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task #{} ({:?}{}{}{}; first polled: {}, finished: {}, dropped {}x, abort asked: {})",
            self.id,
            self.kind,
            if self.timed { ", timed" } else { "" },
            if self.panics { ", panics" } else { "" },
            if self.refused { ", refused" } else { "" },
            self.first_poll_thread.get().is_some(),
            self.finished.load(SeqCst),
            self.drops.load(SeqCst),
            self.abort_requested.load(SeqCst),
        )
    }
}

/// Lives inside a tracked future (or closure): records its first poll, its
/// end and its drop.
pub(crate) struct Guard {
    pub(crate) entry: Arc<Entry>,
}

impl Guard {
    pub(crate) fn polled(&self) {
        let _ = self.entry.first_poll_thread.set(thread::current().id());
    }

    /// Marks the body as run to its end; returns the task's value.
    pub(crate) fn finish(&self) -> u64 {
        self.entry.finished.store(true, SeqCst);
        self.entry.value()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        *self.entry.drop_thread.lock().unwrap() = Some(thread::current().id());
        self.entry.drops.fetch_add(1, SeqCst);
        // A destructor may use the runtime (here: enter it), wherever the
        // runtime drops the future, cancellation at shutdown included.
        let entered = panic::catch_unwind(|| {
            if let Ok(handle) = Handle::try_current() {
                drop(handle.enter());
            }
        });
        if let Err(payload) = entered {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            *self.entry.drop_enter_failed.lock().unwrap() = Some(message);
        }
    }
}

/// Totals of outcomes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Counts(pub(crate) BTreeMap<Outcome, usize>);

impl Counts {
    pub(crate) fn add(&mut self, outcome: Outcome) {
        *self.0.entry(outcome).or_default() += 1;
    }

    pub(crate) fn total(&self) -> usize {
        self.0.values().sum()
    }

    pub(crate) fn merge(&mut self, other: &Counts) {
        for (&outcome, &n) in &other.0 {
            *self.0.entry(outcome).or_default() += n;
        }
    }
}

/// The shared state of one round.
pub(crate) struct Round {
    /// Permanent workers: pinning beyond them is refused.
    pub(crate) workers: usize,
    /// Every spawn attempt, by id.
    pub(crate) entries: Mutex<Vec<Arc<Entry>>>,
    /// Handles not yet resolved (the waker thread aborts some of them).
    pub(crate) handles: Mutex<Vec<(Arc<Entry>, JoinHandle<u64>)>>,
    /// Senders of the oneshots that `Work::Foreign` tasks wait on.
    pub(crate) senders: Mutex<Vec<oneshot::Sender<()>>>,
    pub(crate) counts: Mutex<Counts>,
    /// Outcomes recorded so far (compared with the attempts).
    pub(crate) settled: AtomicUsize,
    /// Top-level spawns begun by the spawner threads (the shutdown point).
    pub(crate) top_level: AtomicUsize,
    pub(crate) failures: Mutex<Vec<String>>,
}

impl Round {
    pub(crate) fn new(workers: usize) -> Self {
        Round {
            workers,
            entries: Mutex::new(Vec::new()),
            handles: Mutex::new(Vec::new()),
            senders: Mutex::new(Vec::new()),
            counts: Mutex::new(Counts::default()),
            settled: AtomicUsize::new(0),
            top_level: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
        }
    }

    /// Counts a spawn attempt before it is made.
    pub(crate) fn track(
        &self,
        kind: Kind,
        work: Work,
        timed: bool,
        home: Option<ThreadId>,
    ) -> Guard {
        let mut entries = self.entries.lock().unwrap();
        let entry = Arc::new(Entry {
            id: entries.len(),
            kind,
            panics: work == Work::Panic,
            timed,
            refused: kind == Kind::Refused,
            must_complete: kind == Kind::Killer,
            abortable: kind != Kind::Killer,
            home,
            abort_requested: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            drops: AtomicUsize::new(0),
            outcomes: AtomicUsize::new(0),
            first_poll_thread: OnceLock::new(),
            drop_thread: Mutex::new(None),
            drop_enter_failed: Mutex::new(None),
        });
        entries.push(entry.clone());
        Guard { entry }
    }

    pub(crate) fn attempts(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    /// Keeps a handle to resolve (and maybe abort) later.
    pub(crate) fn keep(&self, entry: &Arc<Entry>, handle: JoinHandle<u64>) {
        self.handles.lock().unwrap().push((entry.clone(), handle));
    }

    /// A receiver for `Work::Foreign`; the waker thread gets the sender.
    pub(crate) fn foreign(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.senders.lock().unwrap().push(tx);
        rx
    }

    pub(crate) fn fail(&self, message: String) {
        self.failures.lock().unwrap().push(message);
    }

    /// Records the outcome of a resolved handle.
    pub(crate) fn settle(&self, entry: &Entry, result: Result<u64, JoinError>) {
        let outcome = match &result {
            Ok(_) => Outcome::Completed,
            Err(e) if e.is_panic() => Outcome::Panicked,
            Err(e) if e.is_timeout() => Outcome::TimedOut,
            Err(e) if e.is_rejected() => Outcome::Rejected,
            Err(e) if e.is_shutdown() => Outcome::Shutdown,
            Err(e) if e.is_cancelled() => Outcome::Aborted,
            Err(e) => {
                self.fail(format!("{entry:?}: unclassifiable error {e:?}"));
                return;
            }
        };
        self.record(entry, outcome, &result.map_err(|e| format!("{e:?}")));
    }

    /// Records a `try_start` refusal (its future was dropped unpolled).
    pub(crate) fn settle_refusal(&self, entry: &Entry, error: SpawnError) {
        let outcome = if error.is_shutdown() {
            Outcome::Shutdown
        } else if error.is_rejected() {
            Outcome::Rejected
        } else {
            self.fail(format!("{entry:?}: try_start refused with {error:?}"));
            return;
        };
        self.record(entry, outcome, &Err(format!("{error:?}")));
    }

    fn record(&self, entry: &Entry, outcome: Outcome, result: &Result<u64, String>) {
        if let Some(why) = entry.check(outcome, result) {
            self.fail(format!("{entry:?}: {why}"));
        }
        self.count(entry, outcome);
    }

    fn count(&self, entry: &Entry, outcome: Outcome) {
        if entry.outcomes.fetch_add(1, SeqCst) != 0 {
            self.fail(format!("{entry:?}: resolved twice"));
        }
        self.counts.lock().unwrap().add(outcome);
        self.settled.fetch_add(1, SeqCst);
    }
}
