//! The life of the tokio runtime that a multipool runtime's threads enter:
//! the `impl` of [`BuilderExt`], whose hooks ([`Shared`], one per
//! `tokio_context` call) create an owned runtime when the first thread
//! needs it, enter it on every thread for the thread's whole life (the
//! `wrap_thread` wrapper), and shut it down.
//!
//! Invariants:
//!
//! * The fallback thread stops when the owned runtime is shut down; the
//!   runtime is shut down only once no thread is inside its `block_on`
//!   (tokio requires its core back): by the shutting-down thread after the
//!   fallback thread exited, or else by the fallback thread itself as it
//!   leaves (in the background).
//! * The `wrap_thread` wrapper counts the threads inside it (`users`). The
//!   tokio runtime this crate owns (or was given) is shut down once the
//!   multipool runtime has shut down *and* no thread is inside a wrapper any
//!   more; so a builder cloned and built twice shares one tokio runtime,
//!   stopped after the last of them, and a `Handle::block_on` still running
//!   when the runtime is dropped keeps its tokio context until it returns.
//! * An owned tokio runtime that was shut down is created again if a thread
//!   needs it later (a second build of a cloned builder, a `block_on` through
//!   a `Handle` that outlived its runtime), and shut down again when that
//!   thread leaves.
//! * Shutting a tokio runtime down never panics and never waits for the
//!   calling thread itself: on one of that runtime's threads, or in any tokio
//!   task, it is stopped in the background; elsewhere a plain thread waits
//!   for it, at most [`TokioContext::shutdown_timeout`].

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use multipool::Builder;
use tokio::runtime::{Handle, Runtime};

use super::config::{BuilderExt, Source, TokioContext};
use super::driver::{busy_tick, park_hook, tokio_parks, Driver, DriverGuard};
use super::home::Home;

impl BuilderExt for Builder {
    fn tokio_context(self, context: TokioContext) -> Builder {
        let driven = matches!(context.source, Source::Owned) && context.worker_threads.is_none();
        let shared = Arc::new(Shared::new(context));
        let on_shutdown = shared.clone();
        let builder = self
            .wrap_thread(move |body| {
                let (handle, driver) = shared.acquire();
                let _leave = Leave(&shared);
                let _enter = handle.enter();
                let _driver = DriverGuard::set(driver);
                body();
            })
            .on_shutdown(move || on_shutdown.runtime_shut_down());
        if driven {
            builder.park_with(park_hook).on_busy_tick(busy_tick)
        } else {
            builder
        }
    }
}

/// What the hooks of one builder share.
struct Shared {
    state: Mutex<State>,
    /// `Some`: the owned runtime is a multi-thread one with this many
    /// workers; `None`: it is a [`Driver`].
    worker_threads: Option<usize>,
    shutdown_timeout: Duration,
    /// Marks the threads of the runtime this owns (see [`OWN_THREADS`]).
    id: usize,
    /// The multipool runtime that this one's other threads enter.
    home: Arc<Home>,
}

struct State {
    /// Whether to create a runtime when there is none.
    owned: bool,
    /// The runtime to shut down, if this one owns it.
    runtime: Option<Owned>,
    /// The handle entered on the threads.
    handle: Option<Handle>,
    /// Threads inside the `wrap_thread` wrapper right now.
    users: usize,
    /// The multipool runtime has shut down (at least once: the builder may
    /// have been cloned and built again).
    closed: bool,
}

thread_local! {
    /// On a thread of a tokio runtime created here, the `Shared::id` that
    /// created it; 0 elsewhere.
    static OWN_THREADS: Cell<usize> = const { Cell::new(0) };
}

/// A tokio runtime a [`Shared`] owns.
enum Owned {
    /// Runs on threads of its own (or is the user's to drive).
    Plain(Runtime),
    /// Driven by idle workers and a fallback thread, which sends on the
    /// channel as it exits.
    Driven {
        driver: Arc<Driver>,
        fallback: thread::Thread,
        exited: mpsc::Receiver<()>,
    },
}

/// Source of `Shared::id`s; 0 means "none".
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

impl Shared {
    fn new(context: TokioContext) -> Self {
        let (owned, runtime, handle) = match context.source {
            Source::Owned => (true, None, None),
            Source::Handle(handle) => (false, None, Some(handle)),
            Source::Runtime(runtime) => {
                let handle = runtime.handle().clone();
                (false, Some(Owned::Plain(runtime)), Some(handle))
            }
        };
        Shared {
            state: Mutex::new(State {
                owned,
                runtime,
                handle,
                users: 0,
                closed: false,
            }),
            worker_threads: context.worker_threads,
            shutdown_timeout: context.shutdown_timeout,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            home: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent if a holder panicked: every update is a
        // single assignment.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The handle to enter on a thread that is starting, and the driver of
    /// its runtime if it is a [`Driver`]; counts the thread.
    ///
    /// # Panics
    ///
    /// Panics if an owned tokio runtime has to be created and cannot be.
    fn acquire(&self) -> (Handle, Option<Arc<Driver>>) {
        // Before a tokio runtime is built below: its threads enter it.
        self.home.set_from_current();
        let mut state = self.lock();
        let handle = match &state.handle {
            Some(handle) => handle.clone(),
            None => {
                let runtime = self.build_runtime();
                let handle = match &runtime {
                    Owned::Plain(runtime) => runtime.handle().clone(),
                    Owned::Driven { driver, .. } => driver.runtime().handle().clone(),
                };
                state.runtime = Some(runtime);
                state.handle = Some(handle.clone());
                handle
            }
        };
        let driver = match &state.runtime {
            Some(Owned::Driven { driver, .. }) => Some(driver.clone()),
            _ => None,
        };
        state.users += 1;
        (handle, driver)
    }

    fn build_runtime(&self) -> Owned {
        let id = self.id;
        let failed = |err: std::io::Error| -> ! {
            panic!("multipool-compat: failed to start a tokio runtime: {err}")
        };
        let Some(threads) = self.worker_threads else {
            // Its threads are those of `spawn_blocking` (the fallback
            // thread enters the home itself, see `Driver::fallback`).
            let home = self.home.clone();
            let runtime = ::tokio::runtime::Builder::new_current_thread()
                .thread_name("multipool-tokio-io")
                .enable_all()
                .on_thread_start(move || {
                    OWN_THREADS.with(|own| own.set(id));
                    home.enter_for_thread();
                })
                // A worker driving tokio from its park hook is busy while
                // tokio runs tasks, idle while it waits for events (see the
                // module docs). Elsewhere (the fallback thread, a busy
                // worker's turn) these do nothing.
                .on_thread_park(move || tokio_parks(id, false))
                .on_thread_unpark(move || tokio_parks(id, true))
                .build()
                .unwrap_or_else(|err| failed(err));
            let driver = Arc::new(Driver::new(runtime, id, self.home.clone()));
            let (exit_tx, exited) = mpsc::channel();
            let fallback = driver.clone();
            let thread = thread::Builder::new()
                .name("multipool-tokio-io".into())
                .spawn(move || {
                    OWN_THREADS.with(|own| own.set(id));
                    fallback.fallback();
                    // Possibly the last reference: see `Driver`'s drop.
                    drop(fallback);
                    let _ = exit_tx.send(());
                })
                .unwrap_or_else(|err| failed(err));
            return Owned::Driven {
                driver,
                fallback: thread.thread().clone(),
                exited,
            };
        };
        let home = self.home.clone();
        let runtime = ::tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("multipool-tokio-io")
            .enable_all()
            .on_thread_start(move || {
                OWN_THREADS.with(|own| own.set(id));
                home.enter_for_thread();
            })
            .build()
            .unwrap_or_else(|err| failed(err));
        Owned::Plain(runtime)
    }

    /// A thread leaves the wrapper.
    fn release(&self) {
        let mut state = self.lock();
        state.users -= 1;
        self.shut_down_if_unused(state);
    }

    /// The `on_shutdown` hook.
    fn runtime_shut_down(&self) {
        self.home.clear();
        let mut state = self.lock();
        state.closed = true;
        self.shut_down_if_unused(state);
    }

    fn shut_down_if_unused(&self, mut state: MutexGuard<'_, State>) {
        if !state.closed || state.users > 0 {
            return;
        }
        let runtime = state.runtime.take();
        if state.owned {
            // Created again if a thread needs it later.
            state.handle = None;
        }
        drop(state);
        match runtime {
            None => {}
            Some(Owned::Plain(runtime)) => self.shut_down(runtime),
            Some(Owned::Driven {
                driver,
                fallback,
                exited,
            }) => {
                driver.stop();
                // No worker is in the park hook any more (none is inside
                // the wrapper); once the fallback thread has left its
                // `block_on`, nothing else uses the runtime. Wait for that
                // only where blocking is fine, and not for ever.
                let may_wait =
                    fallback.id() != thread::current().id() && ::tokio::task::try_id().is_none();
                if may_wait && exited.recv_timeout(self.shutdown_timeout).is_ok() {
                    if let Ok(mut driver) = Arc::try_unwrap(driver) {
                        if let Some(runtime) = driver.runtime.take() {
                            self.shut_down(runtime);
                        }
                    }
                }
                // Otherwise the fallback thread, holding the last reference,
                // shuts the runtime down in the background as it leaves.
            }
        }
    }

    /// Shuts `runtime` down without panicking, whatever this thread is.
    fn shut_down(&self, runtime: Runtime) {
        let on_own_thread = OWN_THREADS.with(Cell::get) == self.id;
        if on_own_thread || ::tokio::task::try_id().is_some() {
            // Waiting here would wait for this very thread, or block a tokio
            // worker; tokio allows this one in any context.
            runtime.shutdown_background();
            return;
        }
        // `shutdown_timeout` panics on a thread running a tokio runtime
        // (inside its `block_on`, say), so it runs on a plain thread.
        let timeout = self.shutdown_timeout;
        let slot = Arc::new(Mutex::new(Some(runtime)));
        let taken = slot.clone();
        let waiter = thread::Builder::new()
            .name("multipool-tokio-shutdown".into())
            .spawn(move || {
                if let Some(runtime) = take(&taken) {
                    runtime.shutdown_timeout(timeout);
                }
            });
        match waiter {
            Ok(waiter) => {
                let _ = waiter.join();
            }
            Err(_) => {
                if let Some(runtime) = take(&slot) {
                    runtime.shutdown_background();
                }
            }
        }
    }
}

fn take(slot: &Mutex<Option<Runtime>>) -> Option<Runtime> {
    slot.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// Calls [`Shared::release`] when the thread leaves the wrapper, also by
/// unwinding.
struct Leave<'a>(&'a Shared);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}
