//! The quinn 0.11 runtime adapter: QUIC over loopback with both endpoints
//! driven by multipool. Every check waits on an outcome (an echo, a close
//! reason, a channel), never on time; each test runs under the hang guard.

mod common;

use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::{guard, on_thread};
use futures::future::try_join_all;
use multipool::{JoinHandle, Priority, Runtime};
use multipool_compat::quinn::QuinnRuntime;
use quinn::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use quinn::{
    ClientConfig, ConnectError, Connection, ConnectionError, Endpoint, EndpointConfig, IdleTimeout,
    Incoming, ServerConfig, TransportConfig,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The most a stream carries in these tests.
const MAX_STREAM: usize = 1 << 20;

fn runtime() -> Runtime {
    Runtime::builder().workers(2).build().unwrap()
}

/// A server config and a client config trusting it, for "localhost";
/// both with `transport`, if given.
fn configs(transport: Option<TransportConfig>) -> (ServerConfig, ClientConfig) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_der = CertificateDer::from(cert.cert);
    let key = PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
    let mut server = ServerConfig::with_single_cert(vec![cert_der.clone()], key.into()).unwrap();
    let mut roots = quinn::rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let mut client = ClientConfig::with_root_certificates(Arc::new(roots)).unwrap();
    if let Some(transport) = transport {
        let transport = Arc::new(transport);
        server.transport_config(transport.clone());
        client.transport_config(transport);
    }
    (server, client)
}

/// A loopback endpoint driven by `runtime`.
fn endpoint(runtime: &Arc<QuinnRuntime>, server: Option<ServerConfig>) -> Endpoint {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    Endpoint::new(EndpointConfig::default(), server, socket, runtime.clone()).unwrap()
}

/// An echo server on `server`: each bidirectional stream gets back what
/// it sent. Each connection's close reason goes to `closed`, once its task
/// has let go of it. The task ends, with every task it started, once the
/// endpoint is closed.
fn serve_echo(
    rt: &Runtime,
    server: Endpoint,
    closed: mpsc::Sender<ConnectionError>,
) -> JoinHandle<()> {
    rt.spawn(async move {
        let mut connections = Vec::new();
        while let Some(incoming) = server.accept().await {
            let closed = closed.clone();
            connections.push(multipool::spawn(serve_connection(incoming, closed)).start());
        }
        for connection in connections {
            connection.await.unwrap();
        }
    })
    .start()
}

async fn serve_connection(incoming: Incoming, closed: mpsc::Sender<ConnectionError>) {
    let connection = incoming.await.expect("server handshake");
    let mut streams = Vec::new();
    let reason = loop {
        match connection.accept_bi().await {
            Ok((mut send, mut recv)) => streams.push(
                multipool::spawn(async move {
                    let data = recv.read_to_end(MAX_STREAM).await?;
                    send.write_all(&data).await?;
                    send.finish()?;
                    Ok::<_, Error>(())
                })
                .start(),
            ),
            Err(reason) => break reason,
        }
    };
    for stream in streams {
        // A stream cut short by the close is not this task's failure.
        let _ = stream.await.unwrap();
    }
    drop(connection);
    let _ = closed.send(reason);
}

/// Opens a bidirectional stream on `connection`, sends `data`, and returns
/// what comes back.
async fn echo(connection: &Connection, data: &[u8]) -> Result<Vec<u8>, Error> {
    let (mut send, mut recv) = connection.open_bi().await?;
    send.write_all(data).await?;
    send.finish()?;
    Ok(recv.read_to_end(MAX_STREAM).await?)
}

/// A payload of `len` bytes that differs from stream to stream.
fn payload(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + seed * 7) as u8).collect()
}

struct Pair {
    client: Endpoint,
    /// The client's config, for more clients.
    client_config: ClientConfig,
    /// The server's endpoint (the echo task holds a clone).
    server: Endpoint,
    server_addr: SocketAddr,
    /// The echo task.
    server_task: JoinHandle<()>,
    /// The close reason of each server-side connection.
    server_closed: mpsc::Receiver<ConnectionError>,
}

/// An echo server and a client, both on `runtime`.
fn pair(rt: &Runtime, runtime: &Arc<QuinnRuntime>, transport: Option<TransportConfig>) -> Pair {
    let (server_config, client_config) = configs(transport);
    let server = endpoint(runtime, Some(server_config));
    let server_addr = server.local_addr().unwrap();
    let (closed_tx, server_closed) = mpsc::channel();
    let server_task = serve_echo(rt, server.clone(), closed_tx);
    let mut client = endpoint(runtime, None);
    client.set_default_client_config(client_config.clone());
    Pair {
        client,
        client_config,
        server,
        server_addr,
        server_task,
        server_closed,
    }
}

/// Closes both endpoints and waits until no task of `rt` holds a quinn
/// object any more, so that dropping `rt` cancels only quinn's drivers
/// (see `dropping_the_runtime_while_a_task_holds_an_endpoint_does_not_hang`).
fn shut_down(rt: &Runtime, client: &Endpoint, server: &Endpoint, server_task: JoinHandle<()>) {
    client.close(0u32.into(), b"bye");
    server.close(0u32.into(), b"bye");
    rt.block_on(guard(async {
        server_task.await.unwrap();
        client.wait_idle().await;
        server.wait_idle().await;
    }));
}

#[test]
fn echo_over_loopback_with_both_endpoints_on_multipool() {
    on_thread("echo", || {
        let rt = runtime();
        let metrics = rt.handle().metrics();
        let runtime = Arc::new(QuinnRuntime::on(rt.handle()).priority(Priority::High));
        let Pair {
            client,
            server,
            server_addr,
            server_task,
            server_closed,
            ..
        } = pair(&rt, &runtime, None);
        // Endpoint::new spawned the two endpoint drivers, at the priority.
        assert_eq!(metrics.spawned_count(Priority::High), 2);

        rt.block_on(guard(async {
            let connection = client.connect(server_addr, "localhost")?.await?;
            let echoed = echo(&connection, b"hello over QUIC").await?;
            assert_eq!(echoed, b"hello over QUIC");
            connection.close(0u32.into(), b"done");
            Ok::<_, Error>(())
        }))
        .unwrap();

        // The server saw the client's close.
        assert!(matches!(
            server_closed.recv().unwrap(),
            ConnectionError::ApplicationClosed(_)
        ));
        // Plus a connection driver on each side: every task quinn spawned
        // ran on multipool at the adapter's priority (the test's own tasks
        // are at `Normal`).
        assert!(metrics.spawned_count(Priority::High) >= 4);
        shut_down(&rt, &client, &server, server_task);
    });
}

#[test]
fn many_concurrent_streams_on_many_connections() {
    const CONNECTIONS: usize = 4;
    const STREAMS: usize = 16;
    on_thread("concurrent", || {
        let rt = runtime();
        let metrics = rt.handle().metrics();
        let runtime = Arc::new(QuinnRuntime::on(rt.handle()).priority(Priority::Low));
        let Pair {
            client,
            client_config,
            server,
            server_addr,
            server_task,
            server_closed,
        } = pair(&rt, &runtime, None);
        // A second client endpoint, on the same runtime.
        let mut second = endpoint(&runtime, None);
        second.set_default_client_config(client_config);

        let total = rt
            .block_on(guard(async {
                let connecting = (0..CONNECTIONS).map(|c| {
                    let endpoint = if c % 2 == 0 { &client } else { &second };
                    async move { Ok::<_, Error>(endpoint.connect(server_addr, "localhost")?.await?) }
                });
                let connections = try_join_all(connecting).await?;
                let streams = connections.iter().enumerate().flat_map(|(c, connection)| {
                    (0..STREAMS).map(move |s| async move {
                        let seed = c * STREAMS + s;
                        // From a byte to a few hundred KiB: some streams
                        // need flow-control credit along the way.
                        let sent = payload(seed, (seed * 7919) % 300_000 + 1);
                        let echoed = echo(connection, &sent).await?;
                        assert_eq!(echoed, sent, "stream {s} of connection {c}");
                        Ok::<_, Error>(sent.len())
                    })
                });
                let lengths = try_join_all(streams).await?;
                for connection in &connections {
                    connection.close(0u32.into(), b"done");
                }
                Ok::<_, Error>(lengths.len())
            }))
            .unwrap();
        assert_eq!(total, CONNECTIONS * STREAMS);
        // Three endpoint drivers and two drivers per connection.
        assert!(metrics.spawned_count(Priority::Low) >= (3 + 2 * CONNECTIONS) as u64);
        second.close(0u32.into(), b"bye");
        rt.block_on(guard(second.wait_idle()));
        shut_down(&rt, &client, &server, server_task);
        // The server served each connection to its end. (Which end: the
        // client's close, or the server's own if loopback dropped that
        // packet in the burst, as UDP may.)
        assert_eq!(server_closed.try_iter().count(), CONNECTIONS);
    });
}

#[test]
fn idle_timeout_fires_on_the_multipool_timer() {
    const IDLE: Duration = Duration::from_millis(300);
    on_thread("idle", || {
        let rt = runtime();
        let runtime = Arc::new(QuinnRuntime::on(rt.handle()));
        let mut transport = TransportConfig::default();
        transport.max_idle_timeout(Some(IdleTimeout::try_from(IDLE).unwrap()));
        transport.keep_alive_interval(None);
        let Pair {
            client,
            server,
            server_addr,
            server_task,
            server_closed,
            ..
        } = pair(&rt, &runtime, Some(transport));

        let (reason, idle_for) = rt
            .block_on(guard(async {
                let connection = client.connect(server_addr, "localhost")?.await?;
                // Before the echo: its packets, the last the connection
                // sees, come after this instant. (Taken after the echo,
                // it came after the reply, by as long as the task took to
                // run again: 0.5 ms short of the timeout in one CI run.)
                let quiet_since = Instant::now();
                assert_eq!(echo(&connection, b"ping").await?, b"ping");
                // Nothing more is sent: only the idle timer can end it.
                let reason = connection.closed().await;
                Ok::<_, Error>((reason, quiet_since.elapsed()))
            }))
            .unwrap();
        assert!(
            matches!(reason, ConnectionError::TimedOut),
            "closed by {reason:?}"
        );
        // quinn waits at least the negotiated timeout after the last
        // packet, which came after `quiet_since`, and multipool's timers
        // never fire early.
        assert!(idle_for >= IDLE, "timed out after {idle_for:?}");
        // The server's side times out too.
        assert!(matches!(
            server_closed.recv().unwrap(),
            ConnectionError::TimedOut
        ));
        shut_down(&rt, &client, &server, server_task);
    });
}

#[test]
fn spawn_runs_on_the_given_runtime_at_its_priority() {
    on_thread("spawn", || {
        let rt = runtime();
        let metrics = rt.handle().metrics();
        let runtime: Arc<dyn quinn::Runtime> =
            Arc::new(QuinnRuntime::on(rt.handle()).priority(Priority::Low));
        let before = metrics.spawned_count(Priority::Low);
        let (tx, rx) = mpsc::channel();
        // From a thread outside any runtime.
        runtime.spawn(Box::pin(async move {
            let id = multipool::task::try_id();
            tx.send((multipool::worker_index(), id.is_some())).unwrap();
        }));
        let (worker, in_task) = rx.recv_timeout(common::HANG).unwrap();
        assert!(worker.is_some(), "ran off the workers");
        assert!(in_task);
        assert_eq!(metrics.spawned_count(Priority::Low), before + 1);
    });
}

#[test]
fn default_adapter_spawns_onto_the_current_runtime() {
    on_thread("default", || {
        let rt = runtime();
        let metrics = rt.handle().metrics();
        let runtime: Arc<dyn quinn::Runtime> = Arc::new(QuinnRuntime::new());
        let before = metrics.spawned_tasks_count();
        let on_rt = rt.block_on(guard(async move {
            let (tx, rx) = futures::channel::oneshot::channel();
            runtime.spawn(Box::pin(async move {
                tx.send(multipool::worker_index()).unwrap();
            }));
            rx.await.unwrap()
        }));
        assert!(on_rt.is_some());
        assert_eq!(metrics.spawned_tasks_count(), before + 1);
    });
}

#[test]
fn timers_fire_and_reset_in_place() {
    on_thread("timers", || {
        let rt = runtime();
        let runtime = QuinnRuntime::on(rt.handle());
        // Read from outside the runtime: its clock, real time here.
        let before = Instant::now();
        let now = quinn::Runtime::now(&runtime);
        assert!(now >= before);
        let mut timer = quinn::Runtime::new_timer(&runtime, now + Duration::from_secs(3600));
        let fired = rt.block_on(guard(rt.spawn(async move {
            // An hour becomes a millisecond, and a fired timer re-arms.
            let soon = multipool::time::now() + Duration::from_millis(1);
            timer.as_mut().reset(soon);
            std::future::poll_fn(|cx| timer.as_mut().poll(cx)).await;
            let again = multipool::time::now() + Duration::from_millis(1);
            timer.as_mut().reset(again);
            std::future::poll_fn(|cx| timer.as_mut().poll(cx)).await;
            multipool::time::now() >= again
        })));
        assert!(fired.unwrap());
        // A deadline already passed fires at the first poll.
        let mut past = quinn::Runtime::new_timer(&runtime, before);
        rt.block_on(guard(std::future::poll_fn(|cx| past.as_mut().poll(cx))));
    });
}

#[test]
fn dropping_the_runtime_with_open_connections_does_not_hang() {
    on_thread("drop", || {
        let rt = runtime();
        let handle = rt.handle();
        let runtime = Arc::new(QuinnRuntime::on(rt.handle()));
        let (server_config, client_config) = configs(None);
        let server = endpoint(&runtime, Some(server_config));
        let server_addr = server.local_addr().unwrap();
        let mut client = endpoint(&runtime, None);
        client.set_default_client_config(client_config);
        // Both ends of a connection, and of a stream left half-way, held
        // here: dropping the runtime cancels only quinn's drivers.
        let (connections, streams) = rt
            .block_on(guard(async {
                let accepting = async {
                    let connection = server.accept().await.expect("an incoming").await?;
                    let (send, mut recv) = connection.accept_bi().await?;
                    let mut half = [0; 4];
                    recv.read_exact(&mut half).await?;
                    assert_eq!(&half, b"half");
                    Ok::<_, Error>((connection, send, recv))
                };
                let connecting = async {
                    let connection = client.connect(server_addr, "localhost")?.await?;
                    let (mut send, recv) = connection.open_bi().await?;
                    send.write_all(b"half").await?;
                    Ok::<_, Error>((connection, send, recv))
                };
                let (server_side, client_side) = futures::try_join!(accepting, connecting)?;
                Ok::<_, Error>((
                    (server_side.0, client_side.0),
                    (server_side.1, server_side.2, client_side.1, client_side.2),
                ))
            }))
            .unwrap();

        // Cancels the endpoint and connection drivers mid-connection.
        drop(rt);
        assert!(handle.is_shutdown());

        // The endpoint knows its driver is gone: an error, not a hang.
        assert!(matches!(
            client.connect(server_addr, "localhost"),
            Err(ConnectError::EndpointStopping)
        ));
        // An endpoint cannot be made on a runtime that has shut down.
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let error = Endpoint::new(EndpointConfig::default(), None, socket, runtime.clone())
            .expect_err("an endpoint on a runtime that shut down");
        assert!(error.to_string().contains("shut down"), "{error}");
        // Dropping what is left, without its drivers, does not hang either.
        drop(streams);
        drop(connections);
        drop(client);
        drop(server);
    });
}

/// The runtime dropped while one of its tasks awaits `accept` on an
/// endpoint: at shutdown, quinn's endpoint driver is dropped with the
/// endpoint's lock held and wakes the task awaiting `accept`; that task's
/// `Endpoint` takes the same lock when it is dropped. multipool drops a
/// task cancelled inside another cancelled task's destructor only once
/// that destructor has returned (`run_cancelled`), so this ends; it hung
/// before.
#[test]
fn dropping_the_runtime_while_a_task_holds_an_endpoint_does_not_hang() {
    on_thread("drop with a server task", || {
        let rt = runtime();
        let runtime = Arc::new(QuinnRuntime::on(rt.handle()));
        let Pair {
            client,
            server_addr,
            server_closed: _server_closed,
            ..
        } = pair(&rt, &runtime, None);
        rt.block_on(guard(async {
            let connection = client.connect(server_addr, "localhost")?.await?;
            assert_eq!(echo(&connection, b"ping").await?, b"ping");
            Ok::<_, Error>(())
        }))
        .unwrap();
        // The echo task still holds the server's endpoint, in `accept`.
        drop(rt);
    });
}
