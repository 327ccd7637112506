//! The libp2p adapter: `exec` on its own, and two real `Swarm`s (in-memory
//! transport, plaintext authentication, yamux, ping) whose connection
//! tasks all go through it. Every wait is on an event or a channel, never
//! on time.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::{guard, on_thread};
use futures::future::{select, Either};
use futures::StreamExt;
use libp2p_core::transport::{MemoryTransport, Transport};
use libp2p_core::{upgrade, Multiaddr, PeerId};
use libp2p_swarm::{Executor, Swarm, SwarmEvent};
use multipool::{Priority, Runtime};
use multipool_compat::libp2p::Libp2pExecutor;

#[test]
fn exec_runs_the_future_on_a_worker_at_the_priority() {
    on_thread("exec", || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let metrics = rt.handle().metrics();
        let before = metrics.spawned_count(Priority::High);
        let exec = Libp2pExecutor::on(rt.handle()).priority(Priority::High);
        let (tx, rx) = futures::channel::oneshot::channel();
        exec.exec(Box::pin(async move {
            let in_task = multipool::task::try_id().is_some();
            tx.send((multipool::worker_index(), in_task)).unwrap();
        }));
        let (worker, in_task) = rt.block_on(guard(rx)).unwrap();
        assert!(worker.is_some(), "ran off the workers");
        assert!(in_task);
        assert_eq!(metrics.spawned_count(Priority::High), before + 1);
    });
}

/// A full queue does not refuse `exec`: libp2p cannot hear of a refusal.
#[test]
fn exec_past_a_full_queue_still_runs_the_task() {
    on_thread("full", || {
        let rt = Runtime::builder().workers(1).max_queued(1).build().unwrap();
        let exec = Libp2pExecutor::on(rt.handle());
        // Hold the only worker, so what is queued stays queued.
        let (release, held) = mpsc::channel::<()>();
        let blocker = rt.spawn(async move { held.recv().unwrap() }).start();
        while rt.handle().metrics().num_queued() != 0 {
            std::thread::yield_now();
        }
        let (tx, rx) = mpsc::channel();
        for i in 0..3 {
            let tx = tx.clone();
            exec.exec(Box::pin(async move { tx.send(i).unwrap() }));
        }
        assert_eq!(rt.handle().metrics().num_queued(), 3, "past the bound of 1");
        release.send(()).unwrap();
        rt.block_on(blocker).unwrap();
        let mut ran: Vec<i32> = (0..3).map(|_| rx.recv().unwrap()).collect();
        ran.sort_unstable();
        assert_eq!(ran, [0, 1, 2]);
    });
}

/// After shutdown `exec` neither panics nor runs the future: it is dropped.
#[test]
fn exec_after_shutdown_drops_the_future() {
    on_thread("shutdown", || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let handle = rt.handle();
        let exec = Libp2pExecutor::on(handle.clone());
        rt.shutdown_timeout(common::HANG);
        assert!(handle.is_shutdown());
        let (signal, dropped) = common::drop_signal();
        let (ran_tx, ran_rx) = mpsc::channel::<()>();
        exec.exec(Box::pin(async move {
            let _signal = signal;
            ran_tx.send(()).unwrap();
        }));
        dropped
            .recv_timeout(common::HANG)
            .expect("the future was kept");
        assert!(ran_rx.try_recv().is_err(), "the future ran");
    });
}

/// A `Libp2pExecutor` that counts its `exec` calls, and the futures that
/// started on a multipool worker.
#[derive(Clone)]
struct Counting {
    inner: Libp2pExecutor,
    execs: Arc<AtomicUsize>,
    on_worker: Arc<AtomicUsize>,
}

impl Counting {
    fn new(inner: Libp2pExecutor) -> Self {
        Counting {
            inner,
            execs: Arc::default(),
            on_worker: Arc::default(),
        }
    }
}

impl Executor for Counting {
    fn exec(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        self.execs.fetch_add(1, Ordering::SeqCst);
        let on_worker = self.on_worker.clone();
        self.inner.exec(Box::pin(async move {
            if multipool::worker_index().is_some() {
                on_worker.fetch_add(1, Ordering::SeqCst);
            }
            future.await
        }));
    }
}

/// A swarm with a fixed ed25519 identity (`seed`): in-memory transport,
/// plaintext, yamux, ping, its connection tasks spawned through `exec`.
fn swarm(seed: u8, exec: Counting) -> Swarm<libp2p_ping::Behaviour> {
    let key = libp2p_identity::Keypair::ed25519_from_bytes([seed; 32]).unwrap();
    let peer = key.public().to_peer_id();
    let transport = MemoryTransport::default()
        .upgrade(upgrade::Version::V1)
        .authenticate(libp2p_plaintext::Config::new(&key))
        .multiplex(libp2p_yamux::Config::default())
        .boxed();
    // A connection whose handlers do not ask to keep it is closed when
    // idle (ping does not ask): keep it for as long as a test may last, so
    // that both pings are answered whatever the order of events.
    let config = libp2p_swarm::Config::with_executor(exec)
        .with_idle_connection_timeout(Duration::from_secs(3600));
    Swarm::new(
        transport,
        libp2p_ping::Behaviour::new(libp2p_ping::Config::new()),
        peer,
        config,
    )
}

/// What one swarm has seen of the other.
#[derive(Debug, Default)]
struct Seen {
    connected: bool,
    pinged: bool,
}

impl Seen {
    /// Records `event`, from the swarm whose remote is `remote`; panics
    /// on a failure.
    fn record(&mut self, remote: PeerId, event: SwarmEvent<libp2p_ping::Event>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                assert_eq!(peer_id, remote);
                self.connected = true;
            }
            SwarmEvent::Behaviour(libp2p_ping::Event { peer, result, .. }) => {
                assert_eq!(peer, remote);
                result.expect("ping failed");
                self.pinged = true;
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dial failed: {error}"),
            SwarmEvent::IncomingConnectionError { error, .. } => {
                panic!("incoming connection failed: {error}")
            }
            SwarmEvent::ConnectionClosed { cause, .. } => panic!("connection closed: {cause:?}"),
            _ => {}
        }
    }

    fn done(&self) -> bool {
        self.connected && self.pinged
    }
}

#[test]
fn two_swarms_connect_and_ping_with_every_connection_task_on_multipool() {
    on_thread("swarms", || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let metrics = rt.handle().metrics();
        let before = metrics.spawned_count(Priority::High);
        let exec = Libp2pExecutor::on(rt.handle()).priority(Priority::High);
        let (listener_exec, dialer_exec) = (Counting::new(exec.clone()), Counting::new(exec));
        let mut listener = swarm(1, listener_exec.clone());
        let mut dialer = swarm(2, dialer_exec.clone());
        let (listener_id, dialer_id) = (*listener.local_peer_id(), *dialer.local_peer_id());

        // Both swarms are driven from one multipool task (spawned at
        // normal priority, so that the high-priority count is the
        // adapter's alone); their connection tasks run on their own.
        let driver = rt.spawn(async move {
            // `/memory/0`: the transport picks a free port.
            listener.listen_on("/memory/0".parse().unwrap()).unwrap();
            let address: Multiaddr = loop {
                match listener.select_next_some().await {
                    SwarmEvent::NewListenAddr { address, .. } => break address,
                    SwarmEvent::ListenerError { error, .. } => panic!("listen failed: {error}"),
                    _ => {}
                }
            };
            dialer.dial(address).unwrap();
            let (mut at_listener, mut at_dialer) = (Seen::default(), Seen::default());
            while !(at_listener.done() && at_dialer.done()) {
                match select(listener.select_next_some(), dialer.select_next_some()).await {
                    Either::Left((event, _)) => at_listener.record(dialer_id, event),
                    Either::Right((event, _)) => at_dialer.record(listener_id, event),
                }
            }
            (
                listener.network_info().num_peers(),
                dialer.network_info().num_peers(),
            )
        });
        let peers = rt.block_on(guard(driver.start())).unwrap();
        assert_eq!(peers, (1, 1));

        // One connection: on each side, its pending task (the upgrade:
        // plaintext, yamux) and then its established task, both through
        // the adapter, both started on a worker.
        for (side, exec) in [("listener", &listener_exec), ("dialer", &dialer_exec)] {
            let execs = exec.execs.load(Ordering::SeqCst);
            assert!(execs >= 2, "{side}: {execs} exec calls");
            assert_eq!(
                exec.on_worker.load(Ordering::SeqCst),
                execs,
                "{side}: off the workers"
            );
        }
        let execs =
            listener_exec.execs.load(Ordering::SeqCst) + dialer_exec.execs.load(Ordering::SeqCst);
        assert_eq!(metrics.spawned_count(Priority::High), before + execs as u64);
    });
}
