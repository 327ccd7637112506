//! tokio, hyper and async-std/smol interop for the
//! [`multipool`](https://docs.rs/multipool) executor.
//!
//! Every module sits behind a feature of the same name; none is on by
//! default.
//!
//! | feature | module | what it gives |
//! |---|---|---|
//! | `tokio` | [`tokio`] | [`BuilderExt::enable_tokio`](crate::tokio::BuilderExt::enable_tokio): a tokio context on every worker thread and in every `block_on`, so `tokio::net`, `tokio::time`, `tokio::spawn` and libraries built on them (reqwest) work in any multipool task, at no cost per poll; [`Compat`](crate::tokio::Compat) for single futures and for bridging `AsyncRead`/`AsyncWrite` |
//! | `hyper` | [`hyper`] | [`HyperExecutor`](crate::hyper::HyperExecutor), [`HyperTimer`](crate::hyper::HyperTimer), [`FuturesIo`](crate::hyper::FuturesIo): hyper 1.x servers and clients with every connection task on multipool |
//! | `async-std` | [`async_std`] | async-std and smol (async-io) futures on multipool: what works as it is, and the caveats |
//! | `executor-trait` | [`executor_trait`] | [`MultipoolExecutor`](crate::executor_trait::MultipoolExecutor): the executor-trait 2.x `FullExecutor`, for lapin and other libraries that take one |
//! | `libp2p` | [`libp2p`] | [`Libp2pExecutor`](crate::libp2p::Libp2pExecutor): the `libp2p_swarm::Executor` for `libp2p_swarm::Config::with_executor`, with every connection task of a libp2p `Swarm` on multipool |
//! | `quinn` | [`quinn`] | [`QuinnRuntime`](crate::quinn::QuinnRuntime): `quinn::Runtime` for quinn 0.11, so QUIC endpoints run their drivers and timers on multipool, with UDP through async-io |
//!
//! ```toml
//! [dependencies]
//! multipool = "0.3"
//! multipool-compat = { version = "0.3", features = ["tokio", "hyper"] }
//! ```
//!
//! # Invariants
//!
//! * The core `multipool` crate never depends on tokio; this crate plugs in
//!   through the runtime builder's generic hooks
//!   ([`Builder::wrap_thread`](multipool::Builder::wrap_thread),
//!   [`Builder::park_with`](multipool::Builder::park_with),
//!   [`Builder::on_busy_tick`](multipool::Builder::on_busy_tick) and
//!   [`Builder::on_shutdown`](multipool::Builder::on_shutdown)).
//! * Nothing here adds work to the poll of a task on a runtime built with
//!   [`enable_tokio`](crate::tokio::BuilderExt::enable_tokio): the tokio
//!   context is entered once per thread, not once per poll.
//! * A tokio runtime this crate creates is shut down with the multipool
//!   runtime that uses it, without panicking or hanging, whatever thread
//!   drops that runtime.
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "async-std")]
pub mod async_std;
#[cfg(feature = "executor-trait")]
pub mod executor_trait;
#[cfg(feature = "hyper")]
pub mod hyper;
#[cfg(feature = "libp2p")]
pub mod libp2p;
#[cfg(feature = "quinn")]
pub mod quinn;
#[cfg(feature = "tokio")]
pub mod tokio;
