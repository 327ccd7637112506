//! The task bodies of a round: plain tracked tasks, blocking calls, local
//! tasks, nests (pool tasks that spawn locals, children and blocking calls)
//! and the killer task that holds the runtime and shuts it down from
//! inside.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use futures::channel::oneshot;
use multipool::{JoinHandle, Runtime};

use crate::common::Rng;
use crate::config::{RaceDraws, Shutdown};
use crate::tracking::{Entry, Kind, Round, Work};
use crate::INJECTED;

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
pub(crate) fn task(
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
pub(crate) fn blocking_call(
    round: &Arc<Round>,
    seed: u64,
) -> (Arc<Entry>, impl FnOnce() -> u64 + Send) {
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
pub(crate) fn nest(round: &Arc<Round>, seed: u64, depth: u32) -> (Arc<Entry>, BoxedBody) {
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
pub(crate) fn killer(
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
