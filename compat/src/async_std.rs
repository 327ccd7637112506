//! async-std and smol on multipool.
//!
//! async-std (discontinued in favour of smol, still widely used) and smol
//! do their I/O and timers with [`async_io`]: one global reactor, driven by
//! a thread of its own (`async-io`) whenever no thread is inside
//! `async_io::block_on`. Its futures need no runtime context, so they run in
//! multipool tasks as they are, with no wrapper and no builder option:
//!
//! ```
//! use std::time::Duration;
//!
//! let rt = multipool::Runtime::builder().workers(2).build().unwrap();
//! rt.block_on(async {
//!     let listener = async_std::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     let server = multipool::spawn(async move {
//!         let (stream, _) = listener.accept().await.unwrap();
//!         stream.peer_addr().unwrap()
//!     });
//!     let client = async_std::net::TcpStream::connect(addr).await.unwrap();
//!     assert_eq!(server.await.unwrap(), client.local_addr().unwrap());
//!     async_std::task::sleep(Duration::from_millis(1)).await;
//!     async_io::Timer::after(Duration::from_millis(1)).await;
//! });
//! ```
//!
//! Spawning works in both directions, and each side's join handle is an
//! ordinary future that can be awaited on the other:
//!
//! ```
//! let rt = multipool::Runtime::builder().workers(1).build().unwrap();
//! let handle = rt.handle();
//! let n = async_std::task::block_on(async move {
//!     // An async-std task awaiting a multipool task, and the reverse.
//!     let on_multipool = handle.spawn(async { async_std::task::spawn(async { 20 }).await + 1 });
//!     on_multipool.await.unwrap() * 2
//! });
//! assert_eq!(n, 42);
//! ```
//!
//! To serve hyper over an async-io stream, wrap it in
//! [`FuturesIo`](crate::hyper::FuturesIo) (feature `hyper`); for code that
//! wants tokio's I/O traits, [`Compat`](crate::tokio::Compat) (feature
//! `tokio`) converts in both directions.
//!
//! # Caveats
//!
//! * `async_std::task::spawn_local` queues the task on a thread-local
//!   executor that only async-std's own threads (and its `block_on`) run: on
//!   a multipool worker the task never runs. Use `multipool::spawn`.
//! * `async_std::task::current()` and `task_local!` values panic outside a
//!   task spawned by async-std ("`task::current()` called outside the
//!   context of a task"): they do not see multipool tasks.
//! * `async_std::task::block_on`, `smol::block_on` and `async_io::block_on`
//!   on a multipool worker block that worker (multipool cannot detect them,
//!   unlike its own `multipool::block_on`, which panics there): the tasks
//!   queued behind it wait, and one it waits for may never run. `.await`
//!   instead.
//! * `async_std::task::spawn` puts the task on async-std's own thread pool:
//!   it gets no multipool priority, and `multipool::spawn` inside it goes to
//!   the global multipool runtime unless one is entered there.
//! * A feature named `smol` would add nothing: smol's I/O and timers are
//!   async-io's, which this module covers.

pub use async_io;
