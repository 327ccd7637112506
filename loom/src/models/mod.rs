//! The models, and the stand-ins they share.
//!
//! # What the stand-ins assume
//!
//! * [`Queue`] stands in for crossbeam-deque 0.8's `Injector` (the pool's
//!   injectors and a worker's inboxes) with the orderings of its source:
//!   `push` claims a slot with a `SeqCst` read-modify-write of `tail`, then
//!   fills it with a `Release` store; `steal` loads `head` (`Acquire`),
//!   issues `fence(SeqCst)`, loads `tail` (`Relaxed`), claims the slot with
//!   a `SeqCst` compare-exchange of `head` and waits (`Acquire`) until the
//!   slot is filled; `is_empty` loads `head` and `tail` with `SeqCst`. It is
//!   unbounded in crossbeam and holds [`CAP`] tasks here: the models push
//!   fewer.
//! * A worker's own deque is touched by its own thread only in these models
//!   (nobody steals from it), so it is a plain `VecDeque` of that thread.
//! * [`Parker`] stands in for the `parking` crate: `unpark` leaves a token,
//!   `park` returns once it can take one.
//! * loom treats `SeqCst` loads, stores and read-modify-writes as `AcqRel`
//!   (loom's README: it does not model the single total order `S` of `SeqCst`
//!   operations), while `fence(SeqCst)` is modelled in full. Where a
//!   protocol's correctness rests on `S` ordering accesses to *two*
//!   locations, the model adds [`seq_cst_order`] (a `fence(SeqCst)`) next to
//!   the accesses, and its comment gives the C11 argument that makes the
//!   fence a faithful stand-in there. Nowhere else is a fence added.
//!
//! Every model runs through [`check`], which bounds it (see there) and
//! prints how many executions loom explored.

mod abort;
mod idle;
mod life;
mod retire;
mod shutdown;

use std::sync::atomic::AtomicUsize as StdAtomicUsize;
use std::time::{Duration, Instant};

use loom::sync::atomic::{fence, AtomicUsize, Ordering::*};
use loom::sync::{Condvar, Mutex};

/// How many tasks a [`Queue`] holds.
pub(crate) const CAP: usize = 4;

/// Explores `model` with loom and prints what it covered.
///
/// Bounds: at most `bound` preemptions per execution (`None`: every
/// interleaving; used for the small models), unless `LOOM_MAX_PREEMPTIONS`
/// sets one for all; and `LOOM_MAX_DURATION` seconds (default 60) of
/// exploration per model, after which a model stops early and says so.
/// loom reads both, and `LOOM_MAX_BRANCHES`, from the environment.
pub(crate) fn check(name: &str, bound: Option<usize>, model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(bound);
    let limit = *builder.max_duration.get_or_insert(Duration::from_secs(60));
    // loom looks at the clock only at each checkpoint interval.
    builder.checkpoint_interval = builder.checkpoint_interval.min(200);
    let bound = match builder.preemption_bound {
        Some(bound) => format!("at most {bound} preemptions"),
        None => "no preemption bound".to_owned(),
    };
    let iterations = std::sync::Arc::new(StdAtomicUsize::new(0));
    let counter = iterations.clone();
    let start = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Relaxed);
        model();
    });
    let elapsed = start.elapsed();
    let iterations = iterations.load(Relaxed);
    let how = if elapsed >= limit {
        "stopped at the time bound"
    } else {
        "complete"
    };
    eprintln!(
        "loom model {name}: {iterations} executions in {:.1} s, {how} ({bound})",
        elapsed.as_secs_f64()
    );
}

/// Stands in for the single total order of `SeqCst` operations where loom
/// cannot see it (see the module docs); each call site says why it is
/// faithful there.
pub(crate) fn seq_cst_order() {
    fence(SeqCst);
}

/// What a steal found (crossbeam's `Steal`).
pub(crate) enum Steal {
    Empty,
    Success(usize),
    Retry,
}

/// crossbeam's `Injector`, for task ids (see the module docs).
pub(crate) struct Queue {
    head: AtomicUsize,
    tail: AtomicUsize,
    /// `0` until the pusher fills the slot with `task + 1`.
    slots: [AtomicUsize; CAP],
}

impl Queue {
    pub(crate) fn new() -> Self {
        Queue {
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            slots: std::array::from_fn(|_| AtomicUsize::new(0)),
        }
    }

    /// `Injector::push`: its successful `compare_exchange_weak(SeqCst)` of
    /// `tail`, then the slot write and `fetch_or(WRITE, Release)`.
    pub(crate) fn push(&self, task: usize) {
        let tail = self.tail.fetch_add(1, SeqCst);
        assert!(tail < CAP, "the model queue is full");
        self.slots[tail].store(task + 1, Release);
    }

    /// `Injector::steal`.
    pub(crate) fn steal(&self) -> Steal {
        let head = self.head.load(Acquire);
        fence(SeqCst);
        let tail = self.tail.load(Relaxed);
        if head == tail {
            return Steal::Empty;
        }
        if self
            .head
            .compare_exchange(head, head + 1, SeqCst, Acquire)
            .is_err()
        {
            return Steal::Retry;
        }
        // `Slot::wait_write`.
        loop {
            let value = self.slots[head].load(Acquire);
            if value != 0 {
                return Steal::Success(value - 1);
            }
            loom::thread::yield_now();
        }
    }

    /// `steal` until it does not say `Retry`, as every caller in the pool
    /// does.
    pub(crate) fn pop(&self) -> Option<usize> {
        loop {
            match self.steal() {
                Steal::Success(task) => return Some(task),
                Steal::Empty => return None,
                Steal::Retry => {}
            }
        }
    }

    /// `Injector::is_empty`.
    pub(crate) fn is_empty(&self) -> bool {
        let head = self.head.load(SeqCst);
        let tail = self.tail.load(SeqCst);
        head == tail
    }
}

/// The `parking` crate's `Parker`/`Unparker` pair (see the module docs).
pub(crate) struct Parker {
    token: Mutex<bool>,
    signal: Condvar,
}

impl Parker {
    pub(crate) fn new() -> Self {
        Parker {
            token: Mutex::new(false),
            signal: Condvar::new(),
        }
    }

    pub(crate) fn park(&self) {
        let mut token = self.token.lock().unwrap();
        while !*token {
            token = self.signal.wait(token).unwrap();
        }
        *token = false;
    }

    pub(crate) fn unpark(&self) {
        *self.token.lock().unwrap() = true;
        self.signal.notify_one();
    }
}
