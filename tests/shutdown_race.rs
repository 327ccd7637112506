//! The shutdown race: a runtime is shut down while foreign threads and its
//! own tasks spawn every kind of task onto it, wake those tasks from
//! foreign threads and abort them.
//!
//! Each round builds a runtime from a seed (workers, placement, elastic or
//! fixed, how and when it is shut down), starts spawner threads that spawn
//! remote, placed, pinned, keyed, timed, blocking, batched, refused and
//! panicking tasks plus "nests" (pool tasks that spawn local tasks, pool
//! children and blocking calls, and await a local task's handle), and a
//! waker thread that completes the oneshots tasks wait on and aborts
//! handles. Then the runtime goes away, in one of these ways: dropped on a
//! plain thread, `shutdown_background` there, `shutdown_timeout`, or moved
//! into one of its own tasks and dropped there (in a pool task, a local
//! task or a blocking call) or shut down there with `shutdown_background`.
//!
//! What every round checks, whatever the interleaving:
//! * **conservation**: every spawn attempt (counted by the test before it
//!   calls the runtime) ends in exactly one outcome: completed, aborted,
//!   timed out, rejected, shut down or panicked; and each outcome is one
//!   that task could have (only an aborted task reports an abort, only a
//!   timed task a time-out, a completed task ran its body to the end and
//!   returned its own value, a cancelled one did not);
//! * **drops**: every future (and blocking closure) is dropped exactly
//!   once; a local task's future is first polled and dropped on the thread
//!   of the worker that spawned it (its home); and each destructor can use
//!   the runtime (`Handle::enter` inside it does not panic, wherever the
//!   runtime drops the future);
//! * **gauges**: after shutdown `num_alive_tasks()` is 0 and so is
//!   `num_timers()`;
//! * **resolution**: every handle resolves (a handle still pending after
//!   `RESOLVE_LIMIT` fails the round, naming the task).
//!
//! Rounds are generated from a deterministic RNG (xorshift64*, seeded by a
//! splitmix64 of the round number), so a failing round prints its seed.
//! The seed fixes the configuration and the choices of every thread, not
//! the OS's interleaving; replaying a seed runs it many times:
//!
//! ```text
//! SHUTDOWN_RACE_SEED=0x1234 cargo test --test shutdown_race -- --nocapture
//! SHUTDOWN_RACE_ROUNDS=5000 cargo test --test shutdown_race -- --nocapture
//! SHUTDOWN_RACE_KEEP_GOING=1 ...   # count failing rounds instead of stopping
//! ```
//!
//! Nothing here sleeps to let things happen: the shutdown point is a count
//! of spawns, waits are on conditions with a bound, and every round runs
//! under the watchdog.

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex, Once, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use common::{splitmix64, wait_until, watchdog, Rng};
use futures::channel::oneshot;
use multipool::{Handle, JoinError, JoinHandle, Placement, Priority, Runtime, SpawnError};

/// Rounds run by default (the issue asks for at least 1 000).
const DEFAULT_ROUNDS: usize = 2_000;
/// Rounds run by default when replaying one seed.
const DEFAULT_REPLAYS: usize = 200;
/// The seed of round 0; round `i` uses `splitmix64(BASE_SEED + i)`.
const BASE_SEED: u64 = 0x5EED_0000_0000_0011;
/// How long a round may take to resolve all its handles after shutdown.
/// Far beyond what any round needs (milliseconds): reaching it means a
/// handle never resolves.
const RESOLVE_LIMIT: Duration = Duration::from_secs(10);
/// The watchdog around a whole round (which includes `RESOLVE_LIMIT`).
const ROUND_WATCHDOG_SECS: u64 = 60;
/// Marks the panics this test injects, so the panic hook keeps them quiet.
const INJECTED: &str = "injected panic (shutdown race)";

// ---------------------------------------------------------------------------
// Deterministic randomness.

/// The shutdown race's own draws, on the shared RNG.
trait RaceDraws {
    fn priority(&mut self) -> Priority;
    fn work(&mut self) -> Work;
    fn fork(&mut self) -> u64;
}

impl RaceDraws for Rng {
    fn priority(&mut self) -> Priority {
        self.pick(&[Priority::High, Priority::Normal, Priority::Low])
    }

    /// What a task body does; never `Panic` (only panickers panic).
    fn work(&mut self) -> Work {
        match self.below(10) {
            0..=2 => Work::Ready,
            3 | 4 => Work::Yield(1 + self.below(3) as u32),
            5 | 6 => Work::Sleep(self.below(1_500)),
            7 | 8 => Work::Foreign,
            _ => Work::Pending,
        }
    }

    /// A seed for a thread or a task of its own.
    fn fork(&mut self) -> u64 {
        self.next()
    }
}

// ---------------------------------------------------------------------------
// Round configuration.

/// How the runtime of a round goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Shutdown {
    /// `drop(rt)` on the test's (plain) thread.
    Drop,
    /// `rt.shutdown_background()` on the test's thread.
    Background,
    /// `rt.shutdown_timeout(d)` on the test's thread.
    Timeout(Duration),
    /// Moved into a pool task and dropped there.
    DropInTask,
    /// Moved into a local task (`spawn_local`) and dropped there.
    DropInLocalTask,
    /// Moved into a `spawn_blocking` closure and dropped there.
    DropInBlocking,
    /// Moved into a pool task, which calls `shutdown_background` (what the
    /// crate documents for shutting down from inside a task).
    BackgroundInTask,
}

impl Shutdown {
    /// Whether the runtime is moved into a task of its own.
    fn is_inside(self) -> bool {
        matches!(
            self,
            Shutdown::DropInTask
                | Shutdown::DropInLocalTask
                | Shutdown::DropInBlocking
                | Shutdown::BackgroundInTask
        )
    }
}

/// Everything a seed decides before the round starts.
#[derive(Debug)]
struct Config {
    /// Permanent workers (`min_workers`).
    workers: usize,
    /// An elastic pool (one more worker allowed, 1 ms idle timeout).
    elastic: bool,
    placement: Placement,
    shutdown: Shutdown,
    spawners: usize,
    /// Top-level spawns per spawner thread.
    per_spawner: usize,
    /// The shutdown starts once this many top-level spawns have begun.
    shutdown_after: usize,
    /// Actions of the waker thread before the shutdown is over.
    waker_steps: usize,
}

impl Config {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let workers = 1 + rng.usize_below(3);
        let elastic = rng.one_in(4);
        let placement = rng.pick(&[
            Placement::Local,
            Placement::RoundRobin,
            Placement::LeastLoaded,
        ]);
        let shutdown = match rng.below(9) {
            0 | 1 => Shutdown::Drop,
            2 => Shutdown::Background,
            3 => Shutdown::Timeout(Duration::from_micros(rng.pick(&[0, 300, 1_500]))),
            4 | 5 => Shutdown::DropInTask,
            6 => Shutdown::DropInLocalTask,
            7 => Shutdown::DropInBlocking,
            _ => Shutdown::BackgroundInTask,
        };
        let spawners = 1 + rng.usize_below(2);
        let per_spawner = 4 + rng.usize_below(17);
        let shutdown_after = rng.usize_below(spawners * per_spawner + 1);
        let waker_steps = rng.usize_below(40);
        Config {
            workers,
            elastic,
            placement,
            shutdown,
            spawners,
            per_spawner,
            shutdown_after,
            waker_steps,
        }
    }
}

// ---------------------------------------------------------------------------
// Tracking every spawn attempt.

/// What a tracked task is, for its expected outcomes and for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
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
enum Outcome {
    Completed,
    Aborted,
    TimedOut,
    Rejected,
    Shutdown,
    Panicked,
}

/// What a task body does before it returns its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
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
struct Entry {
    id: usize,
    kind: Kind,
    /// Its body panics: the one task kind allowed a panic outcome.
    panics: bool,
    /// It has a `Spawn::timeout`: the one kind allowed a time-out.
    timed: bool,
    /// It asks for something the runtime refuses: it must never run.
    refused: bool,
    /// It must complete (a killer: nothing else shuts its runtime down).
    must_complete: bool,
    /// The waker thread may abort it.
    abortable: bool,
    /// For local tasks: the thread of the worker that spawned it.
    home: Option<ThreadId>,
    /// Set just before `abort()` is called on its handle.
    abort_requested: AtomicBool,
    /// Its body ran to the end.
    finished: AtomicBool,
    /// Times its future (or closure) was dropped.
    drops: AtomicUsize,
    /// Outcomes recorded (exactly one is expected).
    outcomes: AtomicUsize,
    first_poll_thread: OnceLock<ThreadId>,
    drop_thread: Mutex<Option<ThreadId>>,
    /// The panic of `Handle::enter` in its destructor, if it panicked.
    drop_enter_failed: Mutex<Option<String>>,
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
struct Guard {
    entry: Arc<Entry>,
}

impl Guard {
    fn polled(&self) {
        let _ = self.entry.first_poll_thread.set(thread::current().id());
    }

    /// Marks the body as run to its end; returns the task's value.
    fn finish(&self) -> u64 {
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
struct Counts(BTreeMap<Outcome, usize>);

impl Counts {
    fn add(&mut self, outcome: Outcome) {
        *self.0.entry(outcome).or_default() += 1;
    }

    fn total(&self) -> usize {
        self.0.values().sum()
    }

    fn merge(&mut self, other: &Counts) {
        for (&outcome, &n) in &other.0 {
            *self.0.entry(outcome).or_default() += n;
        }
    }
}

/// The shared state of one round.
struct Round {
    /// Permanent workers: pinning beyond them is refused.
    workers: usize,
    /// Every spawn attempt, by id.
    entries: Mutex<Vec<Arc<Entry>>>,
    /// Handles not yet resolved (the waker thread aborts some of them).
    handles: Mutex<Vec<(Arc<Entry>, JoinHandle<u64>)>>,
    /// Senders of the oneshots that `Work::Foreign` tasks wait on.
    senders: Mutex<Vec<oneshot::Sender<()>>>,
    counts: Mutex<Counts>,
    /// Outcomes recorded so far (compared with the attempts).
    settled: AtomicUsize,
    /// Top-level spawns begun by the spawner threads (the shutdown point).
    top_level: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Round {
    fn new(workers: usize) -> Self {
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
    fn track(&self, kind: Kind, work: Work, timed: bool, home: Option<ThreadId>) -> Guard {
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

    fn attempts(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    /// Keeps a handle to resolve (and maybe abort) later.
    fn keep(&self, entry: &Arc<Entry>, handle: JoinHandle<u64>) {
        self.handles.lock().unwrap().push((entry.clone(), handle));
    }

    /// A receiver for `Work::Foreign`; the waker thread gets the sender.
    fn foreign(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.senders.lock().unwrap().push(tx);
        rx
    }

    fn fail(&self, message: String) {
        self.failures.lock().unwrap().push(message);
    }

    /// Records the outcome of a resolved handle.
    fn settle(&self, entry: &Entry, result: Result<u64, JoinError>) {
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
    fn settle_refusal(&self, entry: &Entry, error: SpawnError) {
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

// ---------------------------------------------------------------------------
// Task bodies.

/// Does `work`; `rx` is the oneshot of `Work::Foreign`.
async fn run_work(work: Work, rx: Option<oneshot::Receiver<()>>) {
    match work {
        Work::Ready => {}
        Work::Yield(n) => {
            for _ in 0..n {
                multipool::task::yield_now().await;
            }
        }
        Work::Sleep(micros) => multipool::time::sleep(Duration::from_micros(micros)).await,
        Work::Foreign => {
            // Sent or dropped by the waker thread: either ends the wait.
            let _ = rx.expect("foreign work has a receiver").await;
        }
        Work::Pending => std::future::pending::<()>().await,
        Work::Panic => {
            multipool::task::yield_now().await;
            panic!("{INJECTED}");
        }
    }
}

/// A tracked `Send` task body doing `work`.
fn task(
    round: &Round,
    kind: Kind,
    work: Work,
    timed: bool,
) -> (Arc<Entry>, impl Future<Output = u64> + Send + 'static) {
    let guard = round.track(kind, work, timed, None);
    let entry = guard.entry.clone();
    let rx = (work == Work::Foreign).then(|| round.foreign());
    let future = async move {
        // Captured as a whole: dropping the future unpolled drops it too.
        let guard = guard;
        guard.polled();
        run_work(work, rx).await;
        guard.finish()
    };
    (entry, future)
}

/// A tracked blocking closure: yields its thread a few times, maybe spawns
/// a pool task (a blocking call runs inside its runtime, which may be
/// shutting down meanwhile), then returns its value.
fn blocking_call(round: &Arc<Round>, seed: u64) -> (Arc<Entry>, impl FnOnce() -> u64 + Send) {
    let guard = round.track(Kind::Blocking, Work::Ready, false, None);
    let entry = guard.entry.clone();
    let round = round.clone();
    (entry, move || {
        guard.polled();
        let mut rng = Rng::new(seed);
        for _ in 0..rng.below(3) {
            thread::yield_now();
        }
        if rng.one_in(3) {
            let (entry, future) = task(&round, Kind::Child, rng.work(), false);
            round.keep(&entry, multipool::spawn(future).start());
        }
        guard.finish()
    })
}

/// A tracked `!Send` local task body (it keeps an `Rc` across its awaits),
/// spawned on the worker running this thread; `hold` is a sender it keeps
/// until it is dropped.
fn local_task(
    round: &Round,
    work: Work,
    hold: Option<oneshot::Sender<()>>,
) -> (Arc<Entry>, impl Future<Output = u64> + 'static) {
    let home = thread::current().id();
    let guard = round.track(Kind::Local, work, false, Some(home));
    let entry = guard.entry.clone();
    let rx = (work == Work::Foreign).then(|| round.foreign());
    let future = async move {
        let guard = guard;
        let _hold = hold;
        guard.polled();
        let not_send = Rc::new(Cell::new(0u32));
        run_work(work, rx).await;
        not_send.set(not_send.get() + 1);
        guard.finish()
    };
    (entry, future)
}

/// Awaits a handle from inside a task. If the awaiting task is dropped
/// first (cancelled), the handle is handed to the round to resolve instead,
/// so that its outcome is still counted exactly once.
struct Forward {
    round: Arc<Round>,
    entry: Arc<Entry>,
    handle: Option<JoinHandle<u64>>,
}

impl Future for Forward {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let handle = self.handle.as_mut().expect("polled after it resolved");
        match Pin::new(handle).poll(cx) {
            Poll::Ready(result) => {
                self.handle = None;
                self.round.settle(&self.entry, result);
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.round.keep(&self.entry, handle);
        }
    }
}

/// A boxed task body (nests spawn nests).
type BoxedBody = Pin<Box<dyn Future<Output = u64> + Send + 'static>>;

/// A nest: a pool task that spawns local tasks (awaiting one of them, as
/// the crate's own `spawn_local` example does), a child that a local task's
/// drop wakes, pool children (maybe pinned or timed, maybe nests themselves
/// while `depth` allows) and a blocking call.
fn nest(round: &Arc<Round>, seed: u64, depth: u32) -> (Arc<Entry>, BoxedBody) {
    let guard = round.track(Kind::Nest, Work::Ready, false, None);
    let entry = guard.entry.clone();
    let round = round.clone();
    let future = async move {
        let guard = guard;
        guard.polled();
        let mut rng = Rng::new(seed);
        let mut awaited = None;
        for _ in 0..1 + rng.below(3) {
            let (entry, future) = local_task(&round, rng.work(), None);
            let handle = multipool::spawn_local(future);
            if awaited.is_none() && rng.one_in(2) {
                awaited = Some(Forward {
                    round: round.clone(),
                    entry,
                    handle: Some(handle),
                });
            } else {
                round.keep(&entry, handle);
            }
        }
        if rng.one_in(2) {
            // A local task holds the sender a pool task waits on: when the
            // local task is dropped (cancelled at shutdown, on its worker),
            // the pool task is woken.
            let (tx, rx) = oneshot::channel::<()>();
            let listener_guard = round.track(Kind::Listener, Work::Foreign, false, None);
            let listener_entry = listener_guard.entry.clone();
            let listener = async move {
                let guard = listener_guard;
                guard.polled();
                let _ = rx.await;
                guard.finish()
            };
            let spawn = multipool::spawn(listener);
            let handle = if rng.one_in(3) {
                spawn.worker(0).start()
            } else {
                spawn.start()
            };
            round.keep(&listener_entry, handle);
            let work = rng.pick(&[Work::Pending, Work::Foreign, Work::Yield(1)]);
            let (entry, future) = local_task(&round, work, Some(tx));
            round.keep(&entry, multipool::spawn_local(future));
        }
        if rng.one_in(2) {
            let timed = rng.one_in(3);
            let (entry, future) = task(&round, Kind::Child, rng.work(), timed);
            let mut spawn = multipool::spawn(future).priority(rng.priority());
            match rng.below(4) {
                0 => spawn = spawn.worker(rng.usize_below(round.workers)),
                1 => spawn = spawn.key(rng.next()),
                _ => {}
            }
            if timed {
                spawn = spawn.timeout(Duration::from_micros(1 + rng.below(2_000)));
            }
            round.keep(&entry, spawn.start());
        }
        if rng.one_in(3) {
            let (entry, call) = blocking_call(&round, rng.fork());
            round.keep(&entry, multipool::task::spawn_blocking(call));
        }
        if depth > 0 && rng.one_in(3) {
            // Spawned from a worker: placed by the pool's placement.
            let (entry, future) = nest(&round, rng.fork(), depth - 1);
            let spawn = multipool::spawn(future).priority(rng.priority());
            round.keep(&entry, spawn.start());
        }
        if let Some(local) = awaited {
            local.await;
        }
        guard.finish()
    };
    (entry, Box::pin(future))
}

/// The task that holds the runtime and shuts it down once `kill` fires (or
/// its sender is dropped), in the way `how` says.
fn killer(
    round: &Arc<Round>,
    rt: Runtime,
    kill: oneshot::Receiver<()>,
    how: Shutdown,
) -> (Arc<Entry>, impl Future<Output = u64> + Send + 'static) {
    let guard = round.track(Kind::Killer, Work::Foreign, false, None);
    let entry = guard.entry.clone();
    let round = round.clone();
    let future = async move {
        let guard = guard;
        guard.polled();
        let _ = kill.await;
        match how {
            Shutdown::DropInTask => drop(rt),
            Shutdown::BackgroundInTask => rt.shutdown_background(),
            Shutdown::DropInLocalTask => {
                let home = thread::current().id();
                let local_guard = round.track(Kind::Killer, Work::Ready, false, Some(home));
                let local_entry = local_guard.entry.clone();
                let handle = multipool::spawn_local(async move {
                    let guard = local_guard;
                    guard.polled();
                    let not_send = Rc::new(Cell::new(rt));
                    drop(not_send);
                    guard.finish()
                });
                round.keep(&local_entry, handle);
            }
            Shutdown::DropInBlocking => {
                let blocking_guard = round.track(Kind::Killer, Work::Ready, false, None);
                let blocking_entry = blocking_guard.entry.clone();
                let handle = multipool::task::spawn_blocking(move || {
                    let guard = blocking_guard;
                    guard.polled();
                    drop(rt);
                    guard.finish()
                });
                round.keep(&blocking_entry, handle);
            }
            Shutdown::Drop | Shutdown::Background | Shutdown::Timeout(_) => {
                unreachable!("shut down on the test's thread")
            }
        }
        guard.finish()
    };
    (entry, future)
}

// ---------------------------------------------------------------------------
// The threads of a round.

/// Spawns `count` top-level tasks of every kind from a foreign thread.
fn spawner(round: Arc<Round>, handle: Handle, seed: u64, count: usize) {
    let mut rng = Rng::new(seed);
    for _ in 0..count {
        round.top_level.fetch_add(1, SeqCst);
        spawn_one(&round, &handle, &mut rng);
        if rng.one_in(4) {
            thread::yield_now();
        }
    }
}

fn spawn_one(round: &Arc<Round>, handle: &Handle, rng: &mut Rng) {
    match rng.below(18) {
        0..=3 => {
            let (entry, future) = task(round, Kind::Remote, rng.work(), false);
            let spawn = handle.spawn(future).priority(rng.priority());
            round.keep(&entry, spawn.start());
        }
        4 => {
            let (entry, future) = task(round, Kind::Pinned, rng.work(), false);
            let spawn = handle.spawn(future).worker(rng.usize_below(round.workers));
            round.keep(&entry, spawn.start());
        }
        5 => {
            let (entry, future) = task(round, Kind::Keyed, rng.work(), false);
            let spawn = handle.spawn(future).key(rng.next());
            round.keep(&entry, spawn.start());
        }
        6 | 7 => {
            let sleep = Work::Sleep(rng.below(2_000));
            let work = rng.pick(&[sleep, Work::Pending, Work::Foreign]);
            let (entry, future) = task(round, Kind::Timed, work, true);
            let timeout = Duration::from_micros(1 + rng.below(2_000));
            let spawn = handle.spawn(future).timeout(timeout);
            round.keep(&entry, spawn.start());
        }
        8 => {
            let (entry, call) = blocking_call(round, rng.fork());
            round.keep(&entry, handle.spawn_blocking(call));
        }
        9..=11 => {
            let (entry, future) = nest(round, rng.fork(), 1);
            let spawn = handle.spawn(future);
            let handle = match rng.below(3) {
                0 => spawn.worker(rng.usize_below(round.workers)).start(),
                _ => spawn.start(),
            };
            round.keep(&entry, handle);
        }
        12 => {
            let (entry, future) = task(round, Kind::Panicker, Work::Panic, false);
            round.keep(&entry, handle.spawn(future).start());
        }
        13 => {
            let (entry, future) = task(round, Kind::Refused, Work::Ready, false);
            let spawn = handle.spawn(future);
            let handle = match rng.below(3) {
                0 => spawn.worker(round.workers + rng.usize_below(3)).start(),
                1 => spawn.timeout(Duration::ZERO).start(),
                _ => spawn.pool("no-such-pool").start(),
            };
            round.keep(&entry, handle);
        }
        14 => {
            let (entry, future) = task(round, Kind::TryStart, rng.work(), false);
            match handle.spawn(future).try_start() {
                Ok(handle) => round.keep(&entry, handle),
                Err(error) => round.settle_refusal(&entry, error),
            }
        }
        15 => {
            let tasks: Vec<_> = (0..1 + rng.below(4))
                .map(|_| {
                    let work = rng.pick(&[Work::Ready, Work::Yield(1), Work::Foreign]);
                    task(round, Kind::Batch, work, false)
                })
                .collect();
            let (entries, futures): (Vec<_>, Vec<_>) = tasks.into_iter().unzip();
            let handles = handle.spawn_batch(futures);
            for (entry, handle) in entries.iter().zip(handles) {
                round.keep(entry, handle);
            }
        }
        _ => {
            let (entry, future) = task(round, Kind::Remote, Work::Foreign, false);
            round.keep(
                &entry,
                handle.spawn(future).priority(rng.priority()).start(),
            );
        }
    }
}

/// Completes (or drops) the oneshots tasks wait on and aborts handles,
/// `steps` times while the round runs; once `done` says the shutdown is
/// over, lets every remaining oneshot go.
fn waker(round: Arc<Round>, seed: u64, steps: usize, done: mpsc::Receiver<()>) {
    let mut rng = Rng::new(seed);
    for _ in 0..steps {
        match rng.below(4) {
            0 => {
                let sender = {
                    let mut senders = round.senders.lock().unwrap();
                    let n = senders.len();
                    (n > 0).then(|| senders.swap_remove(rng.usize_below(n)))
                };
                if let Some(sender) = sender {
                    if rng.one_in(4) {
                        drop(sender); // the receiver sees `Canceled`: also a wake-up
                    } else {
                        let _ = sender.send(());
                    }
                }
            }
            1 => {
                // Out of the list while it is aborted: `abort` may cancel
                // the task on this thread (after shutdown it does), and a
                // cancelled nest hands its awaited handle to the list.
                let picked = {
                    let mut handles = round.handles.lock().unwrap();
                    let n = handles.len();
                    (n > 0).then(|| handles.swap_remove(rng.usize_below(n)))
                };
                if let Some((entry, handle)) = picked {
                    if entry.abortable {
                        entry.abort_requested.store(true, SeqCst);
                        handle.abort();
                    }
                    round.keep(&entry, handle);
                }
            }
            _ => thread::yield_now(),
        }
    }
    let _ = done.recv();
    let senders = std::mem::take(&mut *round.senders.lock().unwrap());
    for sender in senders {
        if rng.one_in(2) {
            let _ = sender.send(());
        }
    }
}

// ---------------------------------------------------------------------------
// A round.

/// Polls `future` on this thread until it is ready or `deadline` passes.
/// (`multipool::block_on` with a bound, so that a handle that never
/// resolves is reported by name instead of hanging the round.)
fn resolve_by<F: Future + Unpin>(mut future: F, deadline: Instant) -> Option<F::Output> {
    struct Unpark(thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = Pin::new(&mut future).poll(&mut cx) {
            return Some(output);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::park_timeout(deadline - now);
    }
}

/// What a round did, for the totals.
struct RoundReport {
    shutdown: Shutdown,
    counts: Counts,
}

/// Where a round is, so that a round the watchdog gives up on says where
/// it hung.
type Phase = Arc<Mutex<&'static str>>;

fn enter(phase: &Phase, name: &'static str) {
    *phase.lock().unwrap() = name;
}

/// Runs the round of `seed`; `Err` describes every broken promise.
fn run_round(seed: u64, phase: &Phase) -> Result<RoundReport, String> {
    enter(phase, "building the runtime");
    let config = Config::new(seed);
    let builder = Runtime::builder()
        .placement(config.placement)
        .max_blocking_threads(2);
    let builder = if config.elastic {
        builder
            .min_workers(config.workers)
            .max_workers(config.workers + 1)
            .idle_timeout(Duration::from_millis(1))
    } else {
        builder.workers(config.workers)
    };
    let rt = builder.build().map_err(|e| format!("build: {e}"))?;
    let handle = rt.handle();
    let round = Arc::new(Round::new(config.workers));
    let mut rng = Rng::new(seed ^ 0xA5A5_A5A5);

    // From inside: the runtime moves into one of its own tasks now, and is
    // shut down there when the test says so.
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    let mut rt = Some(rt);
    if config.shutdown.is_inside() {
        let rt = rt.take().expect("not moved yet");
        let (entry, future) = killer(&round, rt, kill_rx, config.shutdown);
        let spawn = handle.spawn(future);
        let killer = if rng.one_in(2) {
            spawn.worker(rng.usize_below(config.workers)).start()
        } else {
            spawn.start()
        };
        round.keep(&entry, killer);
    } else {
        drop(kill_rx);
    }

    let spawners: Vec<_> = (0..config.spawners)
        .map(|_| {
            let (round, handle, seed) = (round.clone(), handle.clone(), rng.fork());
            let count = config.per_spawner;
            thread::spawn(move || spawner(round, handle, seed, count))
        })
        .collect();
    let (done_tx, done_rx) = mpsc::channel();
    let waker = {
        let (round, seed, steps) = (round.clone(), rng.fork(), config.waker_steps);
        thread::spawn(move || waker(round, seed, steps, done_rx))
    };

    // The shutdown point: a number of spawns begun, not a time.
    enter(phase, "waiting for the shutdown point");
    while round.top_level.load(SeqCst) < config.shutdown_after {
        thread::yield_now();
    }
    enter(phase, "shutting down");
    match config.shutdown {
        Shutdown::Drop => drop(rt.take()),
        Shutdown::Background => rt.take().expect("here").shutdown_background(),
        Shutdown::Timeout(limit) => {
            let _ = rt.take().expect("here").shutdown_timeout(limit);
        }
        _ => {
            let _ = kill_tx.send(());
        }
    }
    enter(phase, "joining the spawner threads");
    let mut failures = Vec::new();
    for spawner in spawners {
        if spawner.join().is_err() {
            failures.push("a spawner thread panicked".to_owned());
        }
    }
    enter(phase, "joining the waker thread");
    let _ = done_tx.send(());
    if waker.join().is_err() {
        failures.push("the waker thread panicked".to_owned());
    }

    // Every handle resolves; handles forwarded by cancelled nests may still
    // arrive while shutdown goes on, so loop until every attempt settled.
    enter(phase, "resolving the handles");
    let deadline = Instant::now() + RESOLVE_LIMIT;
    let mut stuck = Vec::new();
    loop {
        let batch = std::mem::take(&mut *round.handles.lock().unwrap());
        if batch.is_empty() {
            if round.settled.load(SeqCst) + stuck.len() >= round.attempts() {
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_micros(100));
            continue;
        }
        for (entry, handle) in batch {
            match resolve_by(handle, deadline) {
                Some(result) => round.settle(&entry, result),
                None => stuck.push(entry),
            }
        }
    }
    for entry in &stuck {
        failures.push(format!("{entry:?}: its handle never resolved"));
    }
    enter(phase, "checking");
    let attempts = round.attempts();
    let counts = round.counts.lock().unwrap().clone();
    if counts.total() + stuck.len() != attempts {
        let unsettled: Vec<_> = round
            .entries
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.outcomes.load(SeqCst) == 0)
            .map(|e| format!("{e:?}"))
            .collect();
        failures.push(format!(
            "conservation: {attempts} spawn attempts, {} outcomes {:?}; unsettled: {unsettled:?}",
            counts.total(),
            counts.0
        ));
    }

    // Gauges: a task is counted out before its handle resolves, so both
    // are 0 once every handle has (and a stranded task shows up here too).
    let alive = handle.num_alive_tasks();
    if alive != 0 {
        let later = stuck.is_empty()
            && wait_until(Duration::from_secs(1), || handle.num_alive_tasks() == 0);
        failures.push(format!(
            "num_alive_tasks() is {alive} after the handles resolved ({} a second later)",
            if later { "0" } else { "still not 0" }
        ));
    }
    if stuck.is_empty() {
        let timers = handle.num_timers();
        if timers != 0 {
            failures.push(format!("num_timers() is {timers} after shutdown"));
        }
        // Drops: exactly once, and local futures on their home thread.
        for entry in round.entries.lock().unwrap().iter() {
            let drops = entry.drops.load(SeqCst);
            if drops != 1 {
                failures.push(format!("{entry:?}: dropped {drops} times"));
            }
            if let Some(panic) = entry.drop_enter_failed.lock().unwrap().as_ref() {
                failures.push(format!(
                    "{entry:?}: `Handle::enter` in its destructor panicked: {panic}"
                ));
            }
            if let Some(home) = entry.home {
                if let Some(&first) = entry.first_poll_thread.get() {
                    if first != home {
                        failures.push(format!("{entry:?}: first polled off its home thread"));
                    }
                }
                let dropped_on = *entry.drop_thread.lock().unwrap();
                if dropped_on.is_some_and(|thread| thread != home) {
                    failures.push(format!("{entry:?}: dropped off its home thread"));
                }
            }
        }
    }
    if !handle.is_shutdown() {
        failures.push("the handle does not report the shutdown".to_owned());
    }
    failures.extend(round.failures.lock().unwrap().drain(..));
    // Let whatever is left of the round go (senders of cancelled tasks).
    drop(std::mem::take(&mut *round.senders.lock().unwrap()));
    if failures.is_empty() {
        Ok(RoundReport {
            shutdown: config.shutdown,
            counts,
        })
    } else {
        failures.truncate(12);
        Err(format!("{config:?}\n  {}", failures.join("\n  ")))
    }
}

/// Keeps the panics this test injects off stderr (the runtime catches them;
/// their handles report them).
fn quiet_injected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if message.is_some_and(|m| m.contains(INJECTED)) {
                return;
            }
            default(info);
        }));
    });
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={value}: not a number")))
}

#[test]
fn shutdown_race() {
    quiet_injected_panics();
    let replay = env_number("SHUTDOWN_RACE_SEED");
    let default_rounds = if replay.is_some() {
        DEFAULT_REPLAYS
    } else {
        DEFAULT_ROUNDS
    };
    let rounds = env_number("SHUTDOWN_RACE_ROUNDS").map_or(default_rounds, |n| n as usize);
    let keep_going = std::env::var_os("SHUTDOWN_RACE_KEEP_GOING").is_some();
    let started = Instant::now();
    let mut totals = Counts::default();
    let mut by_shutdown: BTreeMap<Shutdown, usize> = BTreeMap::new();
    let mut failed = Vec::new();
    for index in 0..rounds {
        let seed = replay.unwrap_or_else(|| splitmix64(BASE_SEED.wrapping_add(index as u64)));
        let phase: Phase = Arc::new(Mutex::new("starting"));
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            let phase = phase.clone();
            watchdog(ROUND_WATCHDOG_SECS, move || run_round(seed, &phase))
        }));
        let error = match outcome {
            Ok(Ok(report)) => {
                totals.merge(&report.counts);
                *by_shutdown.entry(report.shutdown).or_default() += 1;
                continue;
            }
            Ok(Err(error)) => error,
            Err(payload) => payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .map(|message| format!("{message} (while {})", phase.lock().unwrap()))
                .unwrap_or_else(|| "panicked".to_owned()),
        };
        let report = format!(
            "round {index}, seed {seed:#018x} (replay: SHUTDOWN_RACE_SEED={seed:#x}):\n  {error}"
        );
        if !keep_going {
            panic!("{report}");
        }
        eprintln!("{report}");
        failed.push(seed);
    }
    eprintln!(
        "shutdown race: {rounds} rounds in {:.1?}, {} tasks: {:?}; rounds by shutdown: {:?}",
        started.elapsed(),
        totals.total(),
        totals.0,
        by_shutdown
    );
    assert!(
        failed.is_empty(),
        "{} rounds failed: {failed:#x?}",
        failed.len()
    );
}
