//! tokio on multipool: a tokio context for a whole runtime, or for one future.
//!
//! # Runtime-wide: [`BuilderExt::enable_tokio`]
//!
//! ```
//! use multipool_compat::tokio::BuilderExt;
//!
//! let rt = multipool::Runtime::builder().workers(2).enable_tokio().build().unwrap();
//! rt.block_on(async {
//!     // tokio's timer, from a multipool task, with no wrapper.
//!     let slept = multipool::spawn(async {
//!         tokio::time::sleep(std::time::Duration::from_millis(1)).await;
//!         "slept"
//!     });
//!     assert_eq!(slept.await.unwrap(), "slept");
//!     // tokio::spawn works too; its task runs where tokio is driven.
//!     assert_eq!(tokio::spawn(async { 7 }).await.unwrap(), 7);
//! });
//! ```
//!
//! Every worker thread of the runtime, and every `Runtime::block_on` /
//! `Handle::block_on` call, holds a tokio `EnterGuard` for its whole life
//! (through [`Builder::wrap_thread`](multipool::Builder::wrap_thread)). So
//! `tokio::net`, `tokio::time`, `tokio::spawn`, `tokio::task::block_in_place`,
//! `tokio::runtime::Handle::current()` and libraries built on them
//! (hyper-util's `TokioIo`/`TokioTimer`/`TokioExecutor` and legacy client,
//! which the tests cover; reqwest needs nothing more) work in every task,
//! and a poll costs exactly what it costs without the option.
//!
//! The tokio runtime that drives I/O and timers (and runs whatever is given
//! to `tokio::spawn`) is, by default, one that multipool owns: a
//! `current_thread` tokio runtime, all drivers enabled, that multipool's own
//! workers drive, as tokio's workers drive theirs:
//!
//! * an idle worker runs it instead of sleeping (the
//!   [`Builder::park_with`](multipool::Builder::park_with) hook), until the
//!   worker is unparked or its next multipool timer is due; a task woken by
//!   an I/O event there lands on that worker's own queue and runs on it, no
//!   wake-up crossing threads. One idle worker at a time drives it (tokio
//!   lets one thread at a time drive a `current_thread` runtime); other
//!   idle workers sleep the default way meanwhile, as tokio's idle workers
//!   that do not hold its driver do. A worker whose next timer is less than
//!   1 ms away (tokio's timer tick) sleeps the default way too, so
//!   multipool timers stay exact;
//! * a busy worker takes a non-blocking turn of it between two polls, about
//!   every 100 µs of polling
//!   ([`Builder::on_busy_tick`](multipool::Builder::on_busy_tick)), so I/O
//!   keeps flowing while every worker is busy (with `Low` work, say);
//! * a fallback thread named `multipool-tokio-io` drives it when no worker
//!   has entered the hook or taken a turn for 1 ms (every worker stuck in a
//!   long poll, or the clock paused with `test-util`, where the park hook is
//!   not used), and lets go as soon as one does. So tokio is never left
//!   undriven for longer than that.
//!
//! It is created when the first thread of the multipool runtime starts (so
//! not at all for a builder that is never built) and shut down with the
//! multipool runtime. [`TokioContext`] chooses otherwise: a multi-thread
//! tokio runtime with threads of its own
//! ([`TokioContext::worker_threads`], the behaviour before this driver), or
//! a tokio [`Handle`](::tokio::runtime::Handle) or
//! [`Runtime`](::tokio::runtime::Runtime) of your own, which is used as it
//! is (a `current_thread` runtime of your own is not driven by multipool:
//! drive it yourself, with its `block_on`).
//!
//! # Per future: [`Compat`]
//!
//! For a future run on a multipool runtime without the option, or on any
//! other executor, [`CompatExt::compat`] enters a tokio context around each
//! poll (and around the drop) of that one future: the current tokio context
//! if the thread has one (then nothing is entered: no cost), else the
//! [`Handle`](::tokio::runtime::Handle) given to
//! [`compat_with`](CompatExt::compat_with), else a fallback tokio runtime
//! started on first use (one worker thread, `multipool-compat-tokio`, never
//! shut down). [`Compat`] also converts between tokio's and futures-io's
//! `AsyncRead`/`AsyncWrite`/`AsyncBufRead`.
//!
//! # Invariants and caveats
//!
//! * A tokio resource binds to the tokio runtime entered where it is
//!   *created*: `tokio::time::sleep(d)` built outside any context panics with
//!   tokio's "there is no reactor running" message, even if it is later
//!   wrapped in [`Compat`]. Create tokio resources inside the wrapped
//!   `async` block.
//! * `tokio::spawn` runs its task wherever tokio is driven: on a multipool
//!   worker (in its park hook or busy turn, outside any multipool task) or
//!   on the fallback thread; for CPU work, priorities and work stealing use
//!   `multipool::spawn`. A tokio task must not block: it holds up the worker
//!   (and tokio's driver) it runs on. `tokio::task::block_in_place` inside a
//!   tokio task panics on a `current_thread` runtime; use
//!   [`TokioContext::worker_threads`] for code that needs it. Inside a tokio
//!   task, `multipool::spawn` and `multipool::Handle::current()` target this
//!   runtime wherever tokio runs the task: on a worker, on the fallback
//!   thread, or on the threads of an owned multi-thread tokio runtime,
//!   which enter it (see `home`). On the threads of a tokio `Handle` or
//!   `Runtime` of your own, no multipool runtime is entered: capture a
//!   `multipool::Handle` there.
//! * `tokio::task::block_in_place` in a multipool task runs its closure in
//!   place: the worker is blocked for that time (multipool does not hand its
//!   queue to another thread). `tokio::task::spawn_local` and `LocalSet`
//!   still need a tokio `LocalSet`.
//! * `multipool::block_on` on a thread that is *running* a tokio runtime
//!   (a tokio worker, or inside tokio's `block_on`) blocks that thread. On a
//!   multi-thread tokio runtime with another free worker this works; on a
//!   `current_thread` runtime, a future that waits for tokio I/O or a tokio
//!   timer then never completes, since the blocked thread is the one that
//!   drives them. Await the multipool future instead (a
//!   [`JoinHandle`](multipool::JoinHandle) is an ordinary future), or call it
//!   inside `tokio::task::spawn_blocking`.
//! * Calling tokio's `Runtime::block_on`/`Handle::block_on` on a multipool
//!   worker blocks that worker (tokio does not see it as a runtime thread, so
//!   it does not panic): a future that needs that worker then waits for
//!   ever. `multipool::block_on` on a worker panics with a clear message.
//! * A user-supplied tokio `Handle` does not keep its runtime alive; once
//!   that runtime shuts down, tokio calls on multipool threads panic with
//!   tokio's "A Tokio 1.x context was found, but it is being shutdown."

mod compat;
mod config;
mod driver;
mod home;
mod lifecycle;

pub use compat::{Compat, CompatExt};
pub use config::{BuilderExt, TokioContext};
