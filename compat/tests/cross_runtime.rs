//! Spawning and awaiting across multipool, tokio and async-std, in every
//! direction, and async-std's (async-io's) I/O and timers on multipool.

mod common;

use std::time::{Duration, Instant};

use common::{guard, HANG};
use futures::{AsyncReadExt, AsyncWriteExt};
use multipool::Runtime;
use multipool_compat::tokio::BuilderExt;

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn async_std_tcp_and_timers_on_multipool() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    rt.block_on(guard(async {
        let listener = async_std::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        multipool::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                multipool::spawn(async move {
                    let mut buf = Vec::new();
                    stream.read_to_end(&mut buf).await.unwrap();
                    stream.write_all(&buf).await.unwrap();
                })
                .detach();
            }
        })
        .detach();
        let clients: Vec<_> = (0..20u8)
            .map(|i| {
                multipool::spawn(async move {
                    assert!(multipool::worker_index().is_some());
                    let mut stream = async_std::net::TcpStream::connect(addr).await.unwrap();
                    stream.write_all(&[i; 500]).await.unwrap();
                    stream.shutdown(std::net::Shutdown::Write).unwrap();
                    let mut back = Vec::new();
                    stream.read_to_end(&mut back).await.unwrap();
                    back == [i; 500]
                })
                .start()
            })
            .collect();
        for client in clients {
            assert!(client.await.unwrap());
        }

        let timers = multipool::spawn(async {
            let start = Instant::now();
            async_std::task::sleep(Duration::from_millis(3)).await;
            async_io::Timer::after(Duration::from_millis(3)).await;
            let timed_out =
                async_std::future::timeout(Duration::from_millis(1), std::future::pending::<()>())
                    .await;
            assert!(timed_out.is_err());
            start.elapsed()
        });
        assert!(timers.await.unwrap() >= Duration::from_millis(7));
    }));
}

#[test]
fn multipool_and_async_std_spawn_onto_each_other() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let handle = rt.handle();
    // async-std task inside a multipool task; its handle awaited there.
    let n = rt.block_on(guard(multipool::spawn(async {
        async_std::task::spawn(async { 20 }).await + 1
    })));
    assert_eq!(n.unwrap(), 21);
    // A multipool task spawned inside an async-std task, awaited there.
    let n = async_std::task::block_on(async_std::task::spawn(async move {
        let entered = handle.spawn(async { multipool::worker_index().is_some() });
        let global = multipool::spawn(async { 2 });
        (entered.await.unwrap(), global.await.unwrap())
    }));
    assert_eq!(n, (true, 2));
}

#[test]
fn multipool_and_tokio_spawn_onto_each_other() {
    let rt = Runtime::builder()
        .workers(2)
        .thread_name("mp")
        .enable_tokio()
        .build()
        .unwrap();
    let handle = rt.handle();
    let tokio = tokio_rt();

    // tokio → multipool: inside a tokio task, `multipool::spawn` goes to
    // the entered runtime, else the global one; the handle is awaited on
    // tokio.
    let on = tokio.block_on(async move {
        tokio::spawn(async move {
            let global = multipool::spawn(async { thread_name() }).await.unwrap();
            let _enter = handle.enter();
            let entered = multipool::spawn(async { thread_name() }).start();
            drop(_enter);
            (global, entered.await.unwrap())
        })
        .await
        .unwrap()
    });
    assert!(on.0.starts_with("multipool-global-"), "{}", on.0);
    assert!(on.1.starts_with("mp-"), "{}", on.1);

    // multipool → tokio: a handle of another tokio runtime, awaited in a
    // multipool task, and a tokio::spawn (the owned runtime) likewise.
    let other = tokio.handle().clone();
    let n = rt.block_on(guard(multipool::spawn(async move {
        let a = other.spawn(async { 1 }).await.unwrap();
        let b = tokio::spawn(async { 2 }).await.unwrap();
        a + b
    })));
    assert_eq!(n.unwrap(), 3);
}

#[test]
fn multipool_block_on_on_a_tokio_worker_works() {
    let tokio = tokio_rt();
    let rt = Runtime::builder()
        .workers(1)
        .enable_tokio()
        .build()
        .unwrap();
    let handle = rt.handle();
    let n = tokio.block_on(async move {
        tokio::spawn(async move {
            // Blocks this tokio worker; the other one keeps tokio going.
            multipool::block_on(async {
                let task = handle.spawn(async {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    40
                });
                tokio::time::sleep(Duration::from_millis(1)).await;
                task.await.unwrap() + 2
            })
        })
        .await
        .unwrap()
    });
    assert_eq!(n, 42);
}

#[test]
fn tokio_block_on_on_a_multipool_worker_works() {
    let rt = Runtime::builder()
        .workers(2)
        .enable_tokio()
        .build()
        .unwrap();
    let tokio = tokio_rt();
    let other = tokio.handle().clone();
    let n = rt.block_on(guard(multipool::spawn(async move {
        // Blocks this multipool worker only; tokio does not see a runtime
        // thread here, so it allows it.
        tokio::runtime::Handle::current().block_on(async {
            tokio::time::sleep(Duration::from_millis(1)).await;
        });
        other.block_on(async { tokio::spawn(async { 5 }).await.unwrap() })
    })));
    assert_eq!(n.unwrap(), 5);
}

#[test]
fn multipool_block_on_on_a_multipool_worker_panics_clearly() {
    let rt = Runtime::builder()
        .workers(1)
        .enable_tokio()
        .build()
        .unwrap();
    let err = rt
        .block_on(guard(multipool::spawn(async {
            multipool::block_on(async {});
        })))
        .unwrap_err();
    let panic = err.into_panic();
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap();
    assert!(message.contains("multipool worker thread"), "{message}");
}

#[test]
fn tokio_and_async_std_join_handles_on_multipool_and_back() {
    // From a plain thread: each executor awaiting the others' handles.
    let tokio = tokio_rt();
    let rt = Runtime::builder().workers(1).build().unwrap();
    let tokio_task = tokio.spawn(async { "tokio" });
    let async_std_task = async_std::task::spawn(async { "async-std" });
    let multipool_task = rt.spawn(async { "multipool" }).start();
    let got = rt.block_on(guard(async move {
        let a = tokio_task.await.unwrap();
        let b = async_std_task.await;
        (a, b)
    }));
    assert_eq!(got, ("tokio", "async-std"));
    let got = tokio.block_on(async { tokio::time::timeout(HANG, multipool_task).await });
    assert_eq!(got.unwrap().unwrap(), "multipool");
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_owned()
}
