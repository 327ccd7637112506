//! The `tracing` feature: a span per task and events for its wakers, in the
//! shape tokio emits them (`tokio/src/util/trace.rs`,
//! `tokio/src/runtime/task/waker.rs`), so tokio-console's
//! `console-subscriber` shows multipool's tasks as it shows tokio's.
//!
//! What is emitted:
//! * at spawn, a span on target `tokio::task` (`tokio::task::blocking` for
//!   `spawn_blocking`, as tokio), named `runtime.spawn`, with no parent, and
//!   the fields `kind` (`"task"`, `"blocking"`, `"local"`), `task.name`
//!   (empty when unnamed), `task.id` (the task's [`Id`](super::Id)),
//!   `size.bytes` (of the user's future), `loc.file`, `loc.line`, `loc.col`;
//! * the span is entered around every poll of the task's future, which
//!   includes the drop of that future (inside the last poll), and closes
//!   when the task ends: the wrapper, which owns it, is dropped when the
//!   future completes, not when the `JoinHandle` goes away (in the task's
//!   header, `TaskMeta`, it would live as long as the handle, and the
//!   console would show finished tasks as idle);
//! * on target `tokio::task::waker`, an event `op = "waker.clone"`,
//!   `"waker.drop"`, `"waker.wake"` or `"waker.wake_by_ref"` with
//!   `task.id` = the span's id, for each of these operations on a waker of
//!   the task that its future was given.
//!
//! async-task owns the waker of a task (its vtable lives in the task's
//! allocation), so multipool cannot see what is done with that waker. A
//! traced task's future is therefore polled with a waker of this module
//! ([`TracedWaker`]) that reports each operation and forwards it to the
//! task's own waker. It is made once per task, at its first poll, and the
//! same one is given to every poll, so `Waker::will_wake` holds across
//! polls as without tracing. The runtime's own uses of the task's waker
//! (its registry entry, a `Spawn::timeout` timer) are not the future's and
//! are not reported: the console's waker count is that of the future's
//! wakers, as with tokio.
//!
//! Whether a task is traced is decided at its spawn, by `tracing` itself
//! (no runtime setting): the span is made by `trace_span!` on the spawning
//! thread, which gives `Span::none()` unless that thread's subscriber wants
//! `TRACE` spans on `tokio::task`. So a subscriber installed while the
//! runtime runs sees the tasks spawned from then on, and with none (or one
//! filtering at a coarser level) a spawn pays the level check of
//! `trace_span!` (a relaxed load and a branch; with the enter and exit of
//! the disabled span, about 2 ns measured in a release build) and a poll a
//! few branches (entering and leaving a disabled span, finding it has no
//! id); the
//! task's future keeps the task's own waker, so wakes cost nothing more.
//! Each task's wrapper is 48 bytes larger (the `Span` and the traced
//! waker's slot). A traced task costs what the subscriber does with its
//! span and events, plus one allocation (its traced waker, at its first
//! poll); and a `JoinHandle` that it awaits takes the guarded path (a
//! second allocation), since its waker is no longer the task's own.
//!
//! Without the feature none of this is compiled: the wrapper's field is
//! `()`. Not traced: `block_on`'s future, which is no task (tokio gives it
//! a span of kind `block_on`).

use std::mem::ManuallyDrop;
use std::panic::Location;
use std::sync::Arc;
use std::task::{RawWaker, RawWakerVTable, Waker};

use tracing::Span;

use super::TaskMeta;

/// What kind of task a span describes (the `kind` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A pool task (`spawn`).
    Task,
    /// A `spawn_blocking` task.
    Blocking,
    /// A `spawn_local` task.
    Local,
}

/// The span of a task and the waker its traced polls hand out.
pub(super) struct TaskTrace {
    pub(super) span: Span,
    /// Made at the first poll of a task whose span is enabled.
    pub(super) waker: Option<Arc<TracedWaker>>,
}

impl TaskTrace {
    /// The span of a new task (see the module docs for its fields).
    pub(super) fn new(kind: Kind, meta: &TaskMeta, size: usize) -> Self {
        let name = meta.name().map_or("", |name| &**name);
        let id = meta.id().as_u64();
        let location: &Location<'_> = meta.location();
        let kind_name = match kind {
            Kind::Task => "task",
            Kind::Blocking => "blocking",
            Kind::Local => "local",
        };
        let span = match kind {
            // `parent: None`: a task spawned inside another task's poll is
            // not that task's child (its span would keep the other open).
            Kind::Task | Kind::Local => tracing::trace_span!(
                target: "tokio::task",
                parent: None,
                "runtime.spawn",
                kind = %kind_name,
                task.name = %name,
                task.id = id,
                size.bytes = size,
                loc.file = location.file(),
                loc.line = location.line(),
                loc.col = location.column(),
            ),
            Kind::Blocking => tracing::trace_span!(
                target: "tokio::task::blocking",
                parent: None,
                "runtime.spawn",
                kind = %kind_name,
                task.name = %name,
                task.id = id,
                size.bytes = size,
                loc.file = location.file(),
                loc.line = location.line(),
                loc.col = location.column(),
            ),
        };
        TaskTrace { span, waker: None }
    }
}

/// The waker that a traced task's future is polled with: `waker` (that of
/// the task, `cx`'s), or `None` when the task's span is disabled, in which
/// case the future gets `waker` itself.
pub(super) fn traced_waker(
    span: &Span,
    slot: &mut Option<Arc<TracedWaker>>,
    waker: &Waker,
) -> Option<ManuallyDrop<Waker>> {
    let traced = match slot {
        Some(traced) => traced,
        None => {
            let id = span.id()?.into_u64();
            slot.insert(Arc::new(TracedWaker {
                inner: waker.clone(),
                span_id: id,
            }))
        }
    };
    let data = Arc::as_ptr(traced).cast::<()>();
    // SAFETY: `data` points at a `TracedWaker` that `slot` keeps alive while
    // the returned waker is used (for one poll); the waker is never dropped
    // (`ManuallyDrop`), so it releases no reference it does not own, and
    // the vtable's `clone` takes one of its own.
    Some(ManuallyDrop::new(unsafe {
        Waker::from_raw(RawWaker::new(data, &VTABLE))
    }))
}

/// Reports the operations on a traced task's waker, then does them on the
/// task's own.
pub(super) struct TracedWaker {
    inner: Waker,
    /// The id of the task's span, which the events name as `task.id`.
    span_id: u64,
}

impl TracedWaker {
    fn trace(&self, op: &'static str) {
        tracing::trace!(target: "tokio::task::waker", op = op, task.id = self.span_id);
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop_waker);

// Each function gets a `data` pointer made by `traced_waker` (or by `clone`):
// that of an `Arc<TracedWaker>`, with one strong reference owned by the
// waker unless it is the borrowed one of `traced_waker`, which is never
// dropped or woken by value.

unsafe fn clone(data: *const ()) -> RawWaker {
    let traced = data.cast::<TracedWaker>();
    // SAFETY: `data` is a live `TracedWaker` (see above).
    unsafe {
        (*traced).trace("waker.clone");
        Arc::increment_strong_count(traced);
    }
    RawWaker::new(data, &VTABLE)
}

unsafe fn wake(data: *const ()) {
    // SAFETY: waking by value consumes the waker's own reference (see
    // above). As `std::task::Waker::wake`, it is not also a drop: the
    // console counts a `waker.wake` as one.
    let traced = unsafe { Arc::from_raw(data.cast::<TracedWaker>()) };
    traced.trace("waker.wake");
    traced.inner.wake_by_ref();
}

unsafe fn wake_by_ref(data: *const ()) {
    // SAFETY: `data` is a live `TracedWaker` (see above).
    let traced = unsafe { &*data.cast::<TracedWaker>() };
    traced.trace("waker.wake_by_ref");
    traced.inner.wake_by_ref();
}

unsafe fn drop_waker(data: *const ()) {
    let traced = data.cast::<TracedWaker>();
    // SAFETY: the waker owns one reference (see above), released here.
    unsafe {
        (*traced).trace("waker.drop");
        Arc::decrement_strong_count(traced);
    }
}
