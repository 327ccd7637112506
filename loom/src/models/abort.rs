//! Model 4: `JoinHandle::abort` against `Registration::register`, a
//! finished task's slot being reused, and `Registry::close`, on the real
//! `runtime::scheduler::registry` code.
//!
//! Hand-written copies (same atomics and orderings) of, in multipool
//! (`src/runtime/task/`, `src/task/join.rs`): `TaskMeta::set_cancel`, the
//! `registry_key` field, `Registration::register`, `Registration::drop`
//! and `JoinHandle::abort`. A task's waker counts its wake-ups; its owner
//! (`TaskMeta::owner_id`, the metadata's address, unique among live tasks)
//! is a distinct number per task.
//!
//! Assumptions of the fixed protocol, which the real code must keep:
//! * `Registration::drop` resets `registry_key` to `usize::MAX` (a `SeqCst`
//!   swap) and then removes the entry under the shard lock;
//! * `Registry::wake(key, owner)` wakes the entry only if it belongs to
//!   `owner`, checked under the shard lock, so an `abort` that read the key
//!   before the reset, and wakes after the slot was reused, wakes nobody;
//! * `abort` sets the reason (`SeqCst` compare-exchange) before it loads the
//!   key (`SeqCst`); `register` stores the key (`SeqCst`) before it loads
//!   the reason (`SeqCst`).

use std::task::{Wake, Waker};

use loom::sync::atomic::{AtomicU8, AtomicUsize, Ordering::*};
use loom::sync::Arc;
use loom::thread;

use super::{check, seq_cst_order};
use crate::registry::Registry;

const NONE: u8 = 0;
const ABORTED: u8 = 1;
const SHUTDOWN: u8 = 2;

/// A task's waker: counts wake-ups. (`std::task::Wake` takes `std`'s
/// `Arc`; the count inside is loom's.)
struct Probe {
    woken: AtomicUsize,
}

impl Wake for Probe {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.woken.fetch_add(1, SeqCst);
    }
}

/// What of `TaskMeta` the protocol uses, and the task's waker.
struct Task {
    owner: usize,
    cancel: AtomicU8,
    registry_key: AtomicUsize,
    probe: std::sync::Arc<Probe>,
    waker: Waker,
}

impl Task {
    fn new(owner: usize) -> Self {
        let probe = std::sync::Arc::new(Probe {
            woken: AtomicUsize::new(0),
        });
        Task {
            owner,
            cancel: AtomicU8::new(NONE),
            registry_key: AtomicUsize::new(usize::MAX),
            waker: Waker::from(probe.clone()),
            probe,
        }
    }

    fn woken(&self) -> usize {
        self.probe.woken.load(SeqCst)
    }

    /// `TaskMeta::set_cancel`.
    fn set_cancel(&self, reason: u8) {
        let _ = self.cancel.compare_exchange(NONE, reason, SeqCst, SeqCst);
    }

    /// `Registration::register`: whether the task was registered.
    fn register(&self, registry: &Registry) -> bool {
        match registry.insert(self.waker.clone(), self.owner) {
            Ok(key) => {
                self.registry_key.store(key, SeqCst);
                // The key store and the reason load are a store-buffering
                // pair with `abort`'s reason write and key load: with all
                // four `SeqCst`, `S` orders them so that at least one side
                // sees the other's write. loom treats `SeqCst` accesses as
                // `AcqRel` and would allow both to miss; a `fence(SeqCst)`
                // between each side's write and read gives exactly the same
                // guarantee for this pattern.
                seq_cst_order();
                if self.cancel.load(SeqCst) != NONE {
                    self.waker.wake_by_ref();
                }
                true
            }
            Err((_closed, clone)) => {
                drop(clone);
                self.set_cancel(SHUTDOWN);
                self.waker.wake_by_ref();
                false
            }
        }
    }

    /// `Registration::drop` of a registered task.
    fn unregister(&self, registry: &Registry) {
        let key = self.registry_key.swap(usize::MAX, SeqCst);
        registry.remove(key);
    }

    /// `JoinHandle::abort`.
    fn abort(&self, registry: &Registry) {
        self.set_cancel(ABORTED);
        // The other half of the pair in `register`.
        seq_cst_order();
        registry.wake(self.registry_key.load(SeqCst), self.owner);
    }
}

/// Abort against the task's first `Pending` registering it: the aborted
/// task is always woken (abort finds the key, or register sees the reason).
#[test]
fn abort_vs_register() {
    check("abort: abort vs register", None, || {
        let registry = Arc::new(Registry::new(1));
        let task = Arc::new(Task::new(1));
        let poll = {
            let (registry, task) = (registry.clone(), task.clone());
            thread::spawn(move || assert!(task.register(&registry)))
        };
        task.abort(&registry);
        poll.join().unwrap();
        assert!(task.woken() >= 1, "an aborted task was never woken");
        task.unregister(&registry);
    });
}

/// `abort` on a task that finishes meanwhile, while another task registers
/// and may reuse its registry slot: the other task is never woken.
#[test]
fn abort_after_finish_vs_slot_reuse() {
    check(
        "abort: abort of a finishing task vs slot reuse",
        None,
        || {
            let registry = Arc::new(Registry::new(1));
            let finishing = Arc::new(Task::new(1));
            assert!(finishing.register(&registry));
            let stranger = Arc::new(Task::new(2));
            let finish = {
                let (registry, finishing) = (registry.clone(), finishing.clone());
                thread::spawn(move || finishing.unregister(&registry))
            };
            let reuse = {
                let (registry, stranger) = (registry.clone(), stranger.clone());
                thread::spawn(move || assert!(stranger.register(&registry)))
            };
            finishing.abort(&registry);
            finish.join().unwrap();
            reuse.join().unwrap();
            assert_eq!(
                stranger.woken(),
                0,
                "abort woke a task that reused the slot"
            );
            assert!(finishing.woken() <= 1);
            stranger.unregister(&registry);
        },
    );
}

/// Shutdown closing the registry against a task registering and another
/// one unregistering: each registered task is woken exactly once (by the
/// close, or by itself when the closed registry refuses it), an
/// unregistered one is not woken, and the registry ends empty.
#[test]
fn close_vs_register_and_unregister() {
    check(
        "abort: Registry::close vs register + unregister",
        None,
        || {
            let registry = Arc::new(Registry::new(1));
            let leaving = Arc::new(Task::new(1));
            assert!(leaving.register(&registry));
            let arriving = Arc::new(Task::new(2));
            let leave = {
                let (registry, leaving) = (registry.clone(), leaving.clone());
                thread::spawn(move || leaving.unregister(&registry))
            };
            let arrive = {
                let (registry, arriving) = (registry.clone(), arriving.clone());
                thread::spawn(move || arriving.register(&registry))
            };
            // `Pool::shutdown`: wake what the close collected, outside its lock.
            for waker in registry.close() {
                waker.wake();
            }
            leave.join().unwrap();
            let registered = arrive.join().unwrap();
            assert_eq!(arriving.woken(), 1, "registered: {registered}");
            assert!(leaving.woken() <= 1);
            assert!(registry.close().is_empty(), "a task registered after close");
            if registered {
                arriving.unregister(&registry);
            }
        },
    );
}
