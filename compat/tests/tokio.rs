//! tokio on multipool: the runtime-wide context, the per-future `Compat`,
//! and shutting down with tokio work in flight.

mod common;

use std::thread;
use std::time::Duration;

use common::{drop_signal, guard, on_thread, HANG};
use futures::{AsyncReadExt as _, AsyncWriteExt as _};
use multipool::Runtime;
use multipool_compat::tokio::{BuilderExt, CompatExt, TokioContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> Runtime {
    Runtime::builder()
        .workers(2)
        .enable_tokio()
        .build()
        .unwrap()
}

fn thread_name() -> String {
    thread::current().name().unwrap_or("").to_owned()
}

/// Whether `name` is a thread that drives the owned tokio runtime: an idle
/// multipool worker (in its park hook) or the fallback thread.
fn drives_tokio(name: &str) -> bool {
    name == "multipool-tokio-io" || name.starts_with("multipool-worker-")
}

#[test]
fn tokio_timers_and_spawn_inside_multipool_tasks() {
    let rt = runtime();
    rt.block_on(guard(async {
        let task = multipool::spawn(async {
            assert!(multipool::worker_index().is_some());
            let start = tokio::time::Instant::now();
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert!(start.elapsed() >= Duration::from_millis(5));

            let never = std::future::pending::<()>();
            let elapsed = tokio::time::timeout(Duration::from_millis(1), never).await;
            assert!(elapsed.is_err());

            let mut interval = tokio::time::interval(Duration::from_millis(1));
            for _ in 0..3 {
                interval.tick().await;
            }

            // tokio::spawn runs on the threads driving the owned tokio
            // runtime: idle workers, or the fallback thread.
            let name = tokio::spawn(async { thread_name() }).await.unwrap();
            assert!(drives_tokio(&name), "{name}");
            let blocking = tokio::task::spawn_blocking(|| 6 * 7).await.unwrap();
            // Runs in place on the multipool worker.
            let in_place = tokio::task::block_in_place(multipool::worker_index);
            assert!(in_place.is_some());
            blocking
        });
        assert_eq!(task.await.unwrap(), 42);
    }));
}

#[test]
fn tokio_tcp_echo_server_on_multipool() {
    let rt = runtime();
    rt.block_on(guard(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        multipool::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                multipool::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    tokio::io::copy(&mut read, &mut write).await.unwrap();
                })
                .detach();
            }
        })
        .detach();

        let clients: Vec<_> = (0..50u32)
            .map(|i| {
                multipool::spawn(async move {
                    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let message = format!("hello {i}").repeat(100);
                    stream.write_all(message.as_bytes()).await.unwrap();
                    stream.shutdown().await.unwrap();
                    let mut echoed = String::new();
                    stream.read_to_string(&mut echoed).await.unwrap();
                    echoed == message
                })
                .start()
            })
            .collect();
        for client in clients {
            assert!(client.await.unwrap());
        }
    }));
}

#[multipool::test(workers = 2, tokio)]
async fn the_tokio_macro_option() {
    let name = tokio::spawn(async { thread_name() }).await.unwrap();
    assert!(drives_tokio(&name), "{name}");
    let on_worker = multipool::spawn(async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        tokio::runtime::Handle::try_current().is_ok()
    });
    assert!(on_worker.await.unwrap());
}

#[test]
fn a_tokio_handle_of_your_own() {
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("users-tokio")
        .enable_all()
        .build()
        .unwrap();
    let rt = Runtime::builder()
        .workers(1)
        .tokio_handle(tokio_rt.handle().clone())
        .build()
        .unwrap();
    let name = rt.block_on(guard(multipool::spawn(async {
        tokio::spawn(async { thread_name() }).await.unwrap()
    })));
    assert_eq!(name.unwrap(), "users-tokio");
    drop(rt);
    // Still the user's: it survives the multipool runtime.
    assert_eq!(
        tokio_rt.block_on(async { tokio::spawn(async { 1 }).await.unwrap() }),
        1
    );
}

#[test]
fn a_tokio_runtime_given_to_multipool_is_shut_down_with_it() {
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("given-tokio")
        .enable_all()
        .build()
        .unwrap();
    let rt = Runtime::builder()
        .workers(1)
        .tokio_context(TokioContext::from_runtime(tokio_rt))
        .build()
        .unwrap();
    let (signal, dropped) = drop_signal();
    let name = rt.block_on(guard(async move {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _signal = signal;
            started_tx.send(thread_name()).unwrap();
            std::future::pending::<()>().await;
        });
        started_rx.await.unwrap()
    }));
    assert_eq!(name, "given-tokio");
    drop(rt);
    // The tokio task was dropped by the time the runtime's drop returned.
    assert!(dropped.try_recv().is_ok());
}

#[test]
fn shutdown_with_tokio_work_in_flight() {
    let rt = runtime();
    let (tokio_task, tokio_dropped) = drop_signal();
    let (mp_task, mp_dropped) = drop_signal();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    rt.block_on(guard(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ready = ready_tx.clone();
        // A multipool task in a tokio accept and a tokio timer.
        multipool::spawn(async move {
            let _signal = mp_task;
            ready.send(()).unwrap();
            tokio::select! {
                _ = listener.accept() => {}
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
        })
        .detach();
        // A tokio task waiting on a tokio timer.
        tokio::spawn(async move {
            let _signal = tokio_task;
            ready_tx.send(()).unwrap();
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        // Blocking work in flight too.
        tokio::task::spawn_blocking(|| {});
    }));
    ready_rx.recv_timeout(HANG).unwrap();
    ready_rx.recv_timeout(HANG).unwrap();
    on_thread("drop-runtime", move || drop(rt));
    mp_dropped.recv_timeout(HANG).unwrap();
    tokio_dropped.recv_timeout(HANG).unwrap();
}

#[test]
fn dropping_the_runtime_inside_async_contexts_does_not_panic() {
    // Inside a tokio task on a tokio worker: tokio forbids blocking drops
    // there; the owned runtime must be shut down in the background.
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio_rt.block_on(async {
        let dropped = tokio::spawn(async {
            let rt = runtime();
            // `rt.spawn`: on a tokio thread no multipool runtime is entered,
            // so `multipool::spawn` would go to the global runtime.
            let value = rt
                .spawn(async {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    1
                })
                .start();
            // Awaiting a multipool handle on tokio.
            let value = value.await.unwrap();
            drop(rt);
            value
        });
        assert_eq!(
            tokio::time::timeout(HANG, dropped).await.unwrap().unwrap(),
            1
        );
    });
    // Inside another multipool runtime's block_on, and inside one of this
    // runtime's own tokio tasks.
    let outer = runtime();
    outer.block_on(guard(async {
        let inner = runtime();
        inner.block_on(async { tokio::time::sleep(Duration::from_millis(1)).await });
        drop(inner);
    }));
    let rt = runtime();
    let handle = rt.handle();
    let (tx, rx) = std::sync::mpsc::channel();
    let rt_slot = std::sync::Arc::new(std::sync::Mutex::new(Some(rt)));
    let slot = rt_slot.clone();
    handle.block_on(async move {
        tokio::spawn(async move {
            // Drops the multipool runtime on the tokio runtime it owns.
            drop(slot.lock().unwrap().take());
            tx.send(()).unwrap();
        });
    });
    rx.recv_timeout(HANG).unwrap();
    assert!(handle.is_shutdown());
}

#[test]
fn a_cloned_builder_shares_one_tokio_runtime_until_the_last_runtime_stops() {
    let builder = Runtime::builder().workers(1).enable_tokio();
    let first = builder.clone().build().unwrap();
    let second = builder.build().unwrap();
    let first_name = first.block_on(async { tokio::spawn(async { thread_name() }).await });
    drop(first);
    // The second runtime's tokio context still works.
    let second_name = second.block_on(guard(multipool::spawn(async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        tokio::spawn(async { thread_name() }).await
    })));
    assert!(drives_tokio(&first_name.unwrap()));
    assert!(drives_tokio(&second_name.unwrap().unwrap()));
}

#[test]
fn compat_brings_a_tokio_context_to_a_plain_runtime() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(guard(async {
        assert!(tokio::runtime::Handle::try_current().is_err());
        let task = multipool::spawn(
            async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                // tokio::spawn inside goes to the fallback runtime.
                tokio::spawn(async { thread_name() }).await.unwrap()
            }
            .compat(),
        );
        assert_eq!(task.await.unwrap(), "multipool-compat-tokio");
    }));

    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("explicit-tokio")
        .enable_all()
        .build()
        .unwrap();
    let name = rt.block_on(guard(
        async { tokio::spawn(async { thread_name() }).await.unwrap() }
            .compat_with(tokio_rt.handle().clone()),
    ));
    assert_eq!(name, "explicit-tokio");
}

#[test]
fn compat_drops_tokio_resources_inside_the_context() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(guard(async {
        // Polled once (registering a tokio timer), then dropped.
        let mut sleep =
            Box::pin(async { tokio::time::sleep(Duration::from_secs(3600)).await }.compat());
        assert!(futures::poll!(sleep.as_mut()).is_pending());
        drop(sleep);
    }));
}

#[test]
fn compat_bridges_io_traits_both_ways() {
    multipool::block_on(guard(async {
        // tokio I/O through futures-io's traits.
        let (a, b) = tokio::io::duplex(16);
        let (mut a, mut b) = (a.compat(), b.compat());
        let writer = multipool::spawn(async move {
            a.write_all(&[7; 1000]).await.unwrap();
            a.close().await.unwrap();
        })
        .start();
        let mut buf = Vec::new();
        b.read_to_end(&mut buf).await.unwrap();
        assert_eq!(buf, [7; 1000]);
        writer.await.unwrap();

        // futures-io (async-io) I/O through tokio's traits.
        let listener = async_io::Async::<std::net::TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
        let addr = listener.get_ref().local_addr().unwrap();
        let server = multipool::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = stream.compat();
            let mut line = String::new();
            tokio::io::AsyncBufReadExt::read_line(
                &mut tokio::io::BufReader::new(&mut stream),
                &mut line,
            )
            .await
            .unwrap();
            stream
                .write_all(line.to_uppercase().as_bytes())
                .await
                .unwrap();
            stream.shutdown().await.unwrap();
        })
        .start();
        let mut client = async_io::Async::<std::net::TcpStream>::connect(addr)
            .await
            .unwrap()
            .compat();
        client.write_all(b"shout\n").await.unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).await.unwrap();
        assert_eq!(reply, "SHOUT\n");
        server.await.unwrap();
    }));
}

#[test]
fn tokio_is_driven_while_every_worker_is_blocked() {
    // The only worker blocks until a tokio task finishes TCP and timer
    // work: nobody idle drives tokio, so the fallback thread must.
    let rt = Runtime::builder()
        .workers(1)
        .enable_tokio()
        .build()
        .unwrap();
    rt.block_on(guard(multipool::spawn(async {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let accept = tokio::spawn(async move { listener.accept().await.unwrap().0 });
            let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut server = accept.await.unwrap();
            client.write_all(b"ping").await.unwrap();
            let mut buf = [0; 4];
            server.read_exact(&mut buf).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
            flag.store(buf == *b"ping", std::sync::atomic::Ordering::SeqCst);
        });
        let give_up = std::time::Instant::now() + HANG;
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(std::time::Instant::now() < give_up, "tokio was not driven");
            std::hint::spin_loop();
        }
    })))
    .unwrap();
}

#[test]
fn a_tokio_task_on_the_fallback_thread_spawns_on_its_own_runtime() {
    // The only worker blocks until a tokio task has spawned a multipool
    // task, so the tokio task runs on the fallback thread. There,
    // `multipool::spawn` must target this runtime (whose tasks have the
    // tokio context: the child's tokio sleep would panic on the global
    // runtime), and so must `Handle::current()`.
    let rt = Runtime::builder()
        .workers(1)
        .thread_name("home")
        .enable_tokio()
        .build()
        .unwrap();
    let (report_tx, report_rx) = std::sync::mpsc::channel();
    rt.block_on(guard(multipool::spawn(async move {
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        tokio::spawn(async move {
            let ran_on = thread_name();
            let workers =
                multipool::Handle::try_current().map(|handle| handle.metrics().num_workers());
            let child = multipool::spawn(async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                thread_name()
            })
            .start();
            release_tx.send(()).unwrap();
            report_tx.send((ran_on, workers.ok(), child.await)).unwrap();
        });
        // Holds the only worker until the tokio task has spawned.
        release_rx
            .recv_timeout(HANG)
            .expect("the tokio task never ran");
    })))
    .unwrap();
    let (ran_on, workers, child) = report_rx.recv_timeout(HANG).unwrap();
    assert_eq!(ran_on, "multipool-tokio-io");
    assert_eq!(
        workers,
        Some(1),
        "the fallback thread has no (or the wrong) multipool runtime"
    );
    assert_eq!(child.unwrap(), "home-0");
}

#[test]
fn a_tokio_task_on_tokio_worker_threads_spawns_on_its_own_runtime() {
    // With tokio's own worker threads, a tokio task's `multipool::spawn`
    // targets this runtime too.
    let rt = Runtime::builder()
        .workers(1)
        .thread_name("home")
        .tokio_context(TokioContext::new().worker_threads(1))
        .build()
        .unwrap();
    let (ran_on, child) = rt
        .block_on(guard(async {
            tokio::spawn(async {
                let child = multipool::spawn(async {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    thread_name()
                });
                (thread_name(), child.await)
            })
            .await
        }))
        .unwrap();
    assert_eq!(ran_on, "multipool-tokio-io");
    assert_eq!(child.unwrap(), "home-0");
}

#[test]
fn tokio_io_wakes_tasks_on_busy_and_idle_workers_alike() {
    // Busy workers (a Low task yielding in a loop) drive tokio between
    // polls; the echo round trips complete either way.
    let rt = runtime();
    rt.block_on(guard(async {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinners: Vec<_> = (0..2)
            .map(|_| {
                let stop = stop.clone();
                multipool::spawn(async move {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let start = std::time::Instant::now();
                        while start.elapsed() < Duration::from_micros(200) {}
                        multipool::task::yield_now().await;
                    }
                })
                .priority(multipool::Priority::Low)
                .start()
            })
            .collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = multipool::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let (mut read, mut write) = stream.split();
            tokio::io::copy(&mut read, &mut write).await.unwrap();
        })
        .start();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        for i in 0..200u32 {
            stream.write_all(&i.to_le_bytes()).await.unwrap();
            let mut buf = [0; 4];
            stream.read_exact(&mut buf).await.unwrap();
            assert_eq!(u32::from_le_bytes(buf), i);
        }
        drop(stream);
        server.await.unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for spinner in spinners {
            spinner.await.unwrap();
        }
    }));
}
