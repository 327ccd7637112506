//! quinn 0.11 (QUIC) on multipool: [`QuinnRuntime`].
//!
//! [`QuinnRuntime`] implements `quinn::Runtime`, the trait through which a
//! quinn `Endpoint` spawns its driver tasks, arms its timers, reads the
//! clock and wraps its UDP socket:
//!
//! * every task quinn spawns (one per endpoint, one per connection) runs on
//!   multipool, at the priority you choose;
//! * every timer (loss detection, idle timeout, keep-alive, pacing) is a
//!   [`multipool::time::Sleep`] on multipool's timer wheel, re-armed in
//!   place with [`Sleep::reset`](multipool::time::Sleep::reset) when quinn
//!   moves the deadline;
//! * [`now`](quinn::Runtime::now) reads the runtime's clock
//!   ([`multipool::time::now`]);
//! * the UDP socket is an [`async_io::Async`]`<std::net::UdpSocket>`, with
//!   quinn-udp's `UdpSocketState` for segmentation offload (GSO/GRO), ECN
//!   and the destination address of each datagram, as quinn's own
//!   async-io (smol, async-std) runtimes do.
//!
//! This feature brings no TLS: quinn is a dependency with its default
//! features off. Turn on the crypto provider you want in your own manifest
//! (`quinn = { version = "0.11", features = ["rustls-ring"] }`, say).
//!
//! ```
//! use std::sync::Arc;
//!
//! use multipool::Priority;
//! use multipool_compat::quinn::QuinnRuntime;
//! use quinn::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
//! use quinn::{ClientConfig, Endpoint, EndpointConfig, ServerConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A self-signed certificate for "localhost" (rcgen).
//! let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
//! let cert_der = CertificateDer::from(cert.cert);
//! let key = PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
//! let server_config = ServerConfig::with_single_cert(vec![cert_der.clone()], key.into())?;
//! let mut roots = quinn::rustls::RootCertStore::empty();
//! roots.add(cert_der)?;
//! let client_config = ClientConfig::with_root_certificates(Arc::new(roots))?;
//!
//! let rt = multipool::Runtime::builder().workers(2).build()?;
//! let runtime = Arc::new(QuinnRuntime::on(rt.handle()).priority(Priority::High));
//!
//! let server = Endpoint::new(
//!     EndpointConfig::default(),
//!     Some(server_config),
//!     std::net::UdpSocket::bind("127.0.0.1:0")?,
//!     runtime.clone(),
//! )?;
//! let server_addr = server.local_addr()?;
//! // An echo server: one task per connection, one per stream. It ends once
//! // the endpoint is closed.
//! let serving = server.clone();
//! let server_task = rt
//!     .spawn(async move {
//!         while let Some(incoming) = serving.accept().await {
//!             multipool::spawn(async move {
//!                 let Ok(connection) = incoming.await else { return };
//!                 while let Ok((mut send, mut recv)) = connection.accept_bi().await {
//!                     multipool::spawn(async move {
//!                         let data = recv.read_to_end(1 << 20).await?;
//!                         send.write_all(&data).await?;
//!                         send.finish()?;
//!                         Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//!                     })
//!                     .detach();
//!                 }
//!             })
//!             .detach();
//!         }
//!     })
//!     .start();
//!
//! let mut client = Endpoint::new(
//!     EndpointConfig::default(),
//!     None,
//!     std::net::UdpSocket::bind("127.0.0.1:0")?,
//!     runtime,
//! )?;
//! client.set_default_client_config(client_config);
//! let echoed = rt.block_on(async {
//!     let connection = client.connect(server_addr, "localhost")?.await?;
//!     let (mut send, mut recv) = connection.open_bi().await?;
//!     send.write_all(b"hello over QUIC").await?;
//!     send.finish()?;
//!     let echoed = recv.read_to_end(1 << 20).await?;
//!     // Close both ends and let the tasks holding them finish.
//!     connection.close(0u32.into(), b"done");
//!     server.close(0u32.into(), b"bye");
//!     server_task.await?;
//!     client.wait_idle().await;
//!     Ok::<_, Box<dyn std::error::Error>>(echoed)
//! })?;
//! assert_eq!(echoed, b"hello over QUIC");
//! # Ok(())
//! # }
//! ```
//!
//! # Invariants
//!
//! * [`spawn`](quinn::Runtime::spawn) never blocks and never panics. A
//!   full queue does not refuse the task: it is queued beyond
//!   [`max_queued`](multipool::Builder::max_queued), as
//!   [`Spawn::detach`](multipool::Spawn::detach) queues, since quinn keeps
//!   no handle and a refused driver would end its endpoint or connection
//!   unseen. The task is dropped only when its pool refuses it otherwise
//!   (the runtime shut down, or began to).
//! * A timer registers with the runtime where it is first polled. quinn
//!   polls its timers only in its connection drivers, which are tasks this
//!   adapter spawned, so they land on the adapter's runtime (or, from
//!   [`QuinnRuntime::new`], on the runtime current where quinn spawned the
//!   driver).
//! * [`now`](quinn::Runtime::now) reads the clock of the adapter's runtime
//!   (from [`QuinnRuntime::new`]: of the runtime current where it is
//!   called, the global one outside any), the clock its timers fire by.
//!   quinn 0.11's `Instant` is `std::time::Instant` (everywhere but in a
//!   browser, which multipool does not run in), and multipool's clock
//!   hands out `std::time::Instant`s, so deadlines pass between the two
//!   with no conversion, and none is lost.
//! * [`wrap_udp_socket`](quinn::Runtime::wrap_udp_socket) fails with an
//!   `io::Error` (no endpoint is made) when the runtime has shut down, as
//!   then nothing would drive the endpoint; it also fails if the socket
//!   cannot be registered with async-io or quinn-udp cannot configure it.
//! * A receive error other than "would block" skips the datagram and reads
//!   on, as quinn's own runtimes do (quinn's endpoint driver stops for good
//!   on such an error, while most are about one datagram: an ICMP
//!   "unreachable" that Linux reports on the next receive, say).
//! * Any number of connection drivers may wait for the socket to become
//!   writable at once; each is woken (async-io's `writable_owned`, one
//!   waker per waiter, not the socket's single `poll_writable` slot).
//! * Dropping or shutting down the runtime cancels quinn's drivers with
//!   every other task. Endpoints and connections held outside its tasks
//!   outlive their drivers but no longer make progress (quinn's `connect`
//!   reports the endpoint as stopping), as with any runtime. For tasks that
//!   still hold them, see [Shutting down](#shutting-down).
//! * Nothing here uses `unsafe`.
//!
//! # Shutting down
//!
//! Closing the endpoints (`Endpoint::close`, then `Endpoint::wait_idle`)
//! before dropping the runtime lets peers see a clean close. Dropping the
//! runtime while its tasks still wait on quinn is fine too: quinn's
//! endpoint driver, as it is dropped, wakes the task waiting in `accept`
//! while it holds the endpoint's lock, and multipool drops that task (whose
//! `Endpoint` takes the same lock) only after the driver's destructor has
//! returned. Endpoints, connections and streams held outside the runtime's
//! tasks outlive their drivers and fail cleanly.
//!
//! # Caveats
//!
//! * The socket's readiness comes from async-io's reactor (its `async-io`
//!   thread), not from multipool; see [`async_std`](crate::async_std) (with
//!   feature `async-std`) for how the two coexist.
//! * Paused time (multipool's `test-util`) moves `now` and the timers,
//!   but the packets still travel in real time: a paused runtime that goes
//!   idle while a datagram is on its way jumps to the next timer, which
//!   quinn may read as a loss, or as an idle timeout. Use real time for
//!   tests that exchange packets, with timeouts that assert an outcome
//!   rather than a speed.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use ::quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use ::quinn::{AsyncTimer, AsyncUdpSocket, UdpPoller};
use async_io::{Async, WritableOwned};
use multipool::time::Sleep;
use multipool::{Handle, Priority};

/// `quinn::Runtime` on multipool: pass it, in an `Arc`, to
/// `quinn::Endpoint::new`.
///
/// By [`Default`]/[`new`](Self::new) onto the runtime current where quinn
/// spawns a task (the global one outside any runtime, as
/// `multipool::spawn`), or [`on`](Self::on) a given runtime; at
/// [`Priority::Normal`] unless set with [`priority`](Self::priority). The
/// same API as [`HyperExecutor`](crate::hyper::HyperExecutor) and
/// [`MultipoolExecutor`](crate::executor_trait::MultipoolExecutor).
///
/// With a runtime given ([`on`](Self::on)), `Endpoint::new` works from any
/// thread, inside a runtime or not. With [`new`](Self::new), call it (and
/// `Endpoint::connect`, which spawns the connection's driver) inside the
/// runtime that should run the endpoint.
///
/// ```
/// use std::sync::Arc;
///
/// use multipool::Priority;
/// use multipool_compat::quinn::QuinnRuntime;
///
/// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
/// let runtime = QuinnRuntime::on(rt.handle()).priority(Priority::High);
/// // What `quinn::Endpoint::new` takes.
/// let runtime: Arc<dyn quinn::Runtime> = Arc::new(runtime);
/// let (tx, rx) = std::sync::mpsc::channel();
/// runtime.spawn(Box::pin(async move { tx.send(multipool::worker_index()).unwrap() }));
/// assert_eq!(rx.recv().unwrap(), Some(0));
/// assert_eq!(rt.handle().metrics().spawned_count(Priority::High), 1);
/// ```
#[derive(Clone, Default)]
pub struct QuinnRuntime {
    handle: Option<Handle>,
    priority: Priority,
}

impl QuinnRuntime {
    /// A runtime adapter spawning onto the current runtime, at normal
    /// priority.
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// use multipool_compat::quinn::QuinnRuntime;
    ///
    /// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
    /// rt.block_on(async {
    ///     // Inside `rt`: quinn's driver runs on `rt`.
    ///     let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     let endpoint = quinn::Endpoint::new(
    ///         quinn::EndpointConfig::default(),
    ///         None,
    ///         socket,
    ///         Arc::new(QuinnRuntime::new()),
    ///     )
    ///     .unwrap();
    ///     assert!(endpoint.local_addr().unwrap().ip().is_loopback());
    /// });
    /// assert_eq!(rt.handle().metrics().spawned_tasks_count(), 1);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A runtime adapter spawning onto `handle`'s runtime (or pool: a
    /// handle from [`Handle::named_pool`] puts quinn's tasks on that pool).
    pub fn on(handle: Handle) -> Self {
        QuinnRuntime {
            handle: Some(handle),
            priority: Priority::Normal,
        }
    }

    /// The priority of the tasks it spawns: quinn's endpoint and
    /// connection drivers, which do all of quinn's packet processing.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
}

impl fmt::Debug for QuinnRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuinnRuntime")
            .field("handle", &self.handle)
            .field("priority", &self.priority)
            .finish()
    }
}

impl ::quinn::Runtime for QuinnRuntime {
    fn new_timer(&self, deadline: Instant) -> Pin<Box<dyn AsyncTimer>> {
        // Registers at its first poll, in the connection driver (see the
        // module invariants).
        Box::pin(QuinnTimer(multipool::time::sleep_until(deadline)))
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        let spawn = match &self.handle {
            Some(handle) => handle.spawn(future),
            None => multipool::spawn(future),
        };
        // Past a full queue: quinn keeps no handle to its drivers, and a
        // refusal would end an endpoint or a connection unseen.
        spawn.priority(self.priority).detach();
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let shut_down = match &self.handle {
            Some(handle) => handle.is_shutdown(),
            None => Handle::try_current().is_ok_and(|handle| handle.is_shutdown()),
        };
        if shut_down {
            // Endpoint::new would spawn its driver into a runtime that
            // drops it, and hand back an endpoint that never moves.
            return Err(io::Error::other(
                "multipool runtime has shut down: no endpoint can be driven on it",
            ));
        }
        Ok(Arc::new(UdpSocket::new(socket)?))
    }

    fn now(&self) -> Instant {
        match &self.handle {
            // quinn reads the clock from its drivers (already inside the
            // runtime) and from the threads that call `connect` or
            // `accept` (perhaps outside it): entering the runtime reads
            // its clock wherever this is called.
            Some(handle) => {
                let _enter = handle.enter();
                multipool::time::now()
            }
            None => multipool::time::now(),
        }
    }
}

/// A multipool [`Sleep`] as a quinn timer.
#[derive(Debug)]
struct QuinnTimer(Sleep);

impl AsyncTimer for QuinnTimer {
    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        // `Sleep` is `Unpin`; re-armed in place, no new registration.
        Pin::new(&mut self.get_mut().0).reset(deadline);
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}

/// A UDP socket registered with async-io, sending and receiving through
/// quinn-udp.
#[derive(Debug)]
struct UdpSocket {
    io: Arc<Async<std::net::UdpSocket>>,
    state: UdpSocketState,
}

impl UdpSocket {
    fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        // Configures the socket for quinn-udp (offloads, ECN, packet
        // info), then registers it, non-blocking, with async-io.
        let state = UdpSocketState::new((&socket).into())?;
        let io = Async::new(socket)?;
        Ok(UdpSocket {
            io: Arc::new(io),
            state,
        })
    }
}

impl AsyncUdpSocket for UdpSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(WritablePoller {
            io: self.io.clone(),
            waiting: None,
        })
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.state.send((&*self.io).into(), transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            // Ready once per readiness event async-io delivers; pending
            // (and armed again) otherwise, so this loop does not spin.
            ready!(self.io.poll_readable(cx))?;
            match self.state.recv((&*self.io).into(), bufs, meta) {
                Ok(count) => return Poll::Ready(Ok(count)),
                // Spurious readiness, or a datagram's own error (see the
                // module invariants): wait for the next one.
                Err(_) => continue,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }

    fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }
}

/// Waits, for one connection driver, until the socket is writable.
struct WritablePoller {
    io: Arc<Async<std::net::UdpSocket>>,
    /// The wait under way, kept across polls; a new one starts after each
    /// `Ready`.
    waiting: Option<WritableOwned<std::net::UdpSocket>>,
}

impl UdpPoller for WritablePoller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let io = &this.io;
        let waiting = this
            .waiting
            .get_or_insert_with(|| io.clone().writable_owned());
        let writable = ready!(Pin::new(waiting).poll(cx));
        this.waiting = None;
        Poll::Ready(writable)
    }
}

impl fmt::Debug for WritablePoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WritablePoller")
            .field("io", &self.io)
            .field("waiting", &self.waiting.is_some())
            .finish()
    }
}
