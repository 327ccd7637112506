//! tonic (gRPC) on multipool: `tonic::transport::Server` unchanged on a
//! runtime built with `enable_tokio()`, and the recipe of
//! `examples/tonic_priority.rs` (tonic's `Routes` served by hyper with
//! `HyperExecutor`, a priority per method); both called through a tonic
//! `Channel` whose tasks run on multipool (`Endpoint::executor`).

mod common;

#[allow(dead_code)]
#[path = "../examples/tonic_priority.rs"]
mod recipe;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::guard;
use futures::channel::mpsc;
use futures::StreamExt;
use hyper::http::uri::PathAndQuery;
use multipool::{Priority, Runtime};
use multipool_compat::tokio::{BuilderExt, TokioContext};
use recipe::demo::{DemoClient, Number, Reply};
use tonic::{Code, Request};

/// Client tasks making unary calls at once, over one shared channel.
const CLIENT_TASKS: usize = 16;
/// Sequential calls in each of them (2 000 in all).
const PER_TASK: usize = 125;
/// Replies in the server stream checked in order.
const STREAM_LEN: u64 = 1_000;
/// Numbers sent up in the client stream and through the bidi one.
const UP_LEN: u64 = 500;

/// Where [`Recorder`] counts the tasks spawned without a name.
const UNNAMED: &str = "(unnamed)";

/// The priorities of the tasks spawned on a runtime, and a signal for
/// each `count` producer (the server stream's) that ends.
struct Recorder {
    spawned: Arc<Mutex<HashMap<String, Vec<Priority>>>>,
    count_ended: mpsc::UnboundedReceiver<()>,
}

/// A fresh runtime (2 workers) with the given tokio context and the hooks
/// of a [`Recorder`].
fn runtime(tokio: TokioContext) -> (Runtime, Recorder) {
    let spawned: Arc<Mutex<HashMap<String, Vec<Priority>>>> = Arc::default();
    let seen = spawned.clone();
    let (ended_tx, count_ended) = mpsc::unbounded();
    let rt = Runtime::builder()
        .workers(2)
        .tokio_context(tokio)
        .on_task_spawn(move |task| {
            let name = task.name().unwrap_or(UNNAMED);
            let mut seen = seen.lock().unwrap();
            seen.entry(name.to_owned())
                .or_default()
                .push(task.priority());
        })
        .on_task_terminate(move |task, _| {
            if task.name() == Some("count") {
                let _ = ended_tx.unbounded_send(());
            }
        })
        .build()
        .unwrap();
    (
        rt,
        Recorder {
            spawned,
            count_ended,
        },
    )
}

/// Whether `reply` came from a multipool task, and from a handler that ran
/// in one if `handler` says it must.
fn on_multipool(reply: &Reply, handler: bool) -> bool {
    reply.work_on_multipool && (reply.handler_on_multipool || !handler)
}

/// Every kind of call against the server at `addr`, through one channel;
/// `handler`: whether handlers must run in multipool tasks.
async fn exercise(addr: SocketAddr, handler: bool, count_ended: &mut mpsc::UnboundedReceiver<()>) {
    let channel = recipe::channel(addr).await.expect("connect");
    let client = DemoClient::new(channel.clone());

    // 2 000 unary calls from 16 multipool tasks at once, on one channel
    // (one HTTP/2 connection): none fails, each answer is right.
    let started = Instant::now();
    let callers: Vec<_> = (0..CLIENT_TASKS)
        .map(|task| {
            let mut client = client.clone();
            multipool::spawn(async move {
                let mut failures = 0;
                for i in 0..PER_TASK {
                    let value = (task * PER_TASK + i) as u64;
                    match client.square(Number { value }).await {
                        Ok(reply) => {
                            let reply = reply.into_inner();
                            if reply.value != value * value || !on_multipool(&reply, handler) {
                                eprintln!("Square({value}): wrong reply {reply:?}");
                                failures += 1;
                            }
                        }
                        Err(status) => {
                            eprintln!("Square({value}): {status}");
                            failures += 1;
                        }
                    }
                }
                failures
            })
            .start()
        })
        .collect();
    let mut failures = 0;
    for caller in callers {
        failures += caller.await.unwrap();
    }
    assert_eq!(failures, 0, "failed or wrong unary calls");
    eprintln!(
        "  {} unary calls from {CLIENT_TASKS} tasks in {:?}",
        CLIENT_TASKS * PER_TASK,
        started.elapsed()
    );

    // A server stream: every reply, in order.
    let started = Instant::now();
    let mut stream = client
        .clone()
        .count(Number { value: STREAM_LEN })
        .await
        .unwrap()
        .into_inner();
    let mut next = 0;
    while let Some(reply) = stream.message().await.unwrap() {
        assert_eq!(reply.value, next, "stream out of order");
        assert!(on_multipool(&reply, handler), "{reply:?}");
        next += 1;
    }
    assert_eq!(next, STREAM_LEN);
    // Its producer ends once it has sent the last reply.
    count_ended.next().await.unwrap();
    eprintln!("  a stream of {STREAM_LEN} in {:?}", started.elapsed());

    // A stream the client drops after three replies, out of a practically
    // endless one: its producer sees the client go and ends.
    let mut stream = client
        .clone()
        .count(Number { value: u64::MAX })
        .await
        .unwrap()
        .into_inner();
    for expected in 0..3 {
        assert_eq!(stream.message().await.unwrap().unwrap().value, expected);
    }
    drop(stream);
    count_ended.next().await.unwrap();

    // A client stream, and a bidirectional one, in order.
    let up = || futures::stream::iter((1..=UP_LEN).map(|value| Number { value }));
    let sum = client.clone().sum(up()).await.unwrap().into_inner();
    assert_eq!(sum.value, UP_LEN * (UP_LEN + 1) / 2);
    assert!(on_multipool(&sum, handler), "{sum:?}");
    let echoed: Vec<Reply> = client
        .clone()
        .echo(up())
        .await
        .unwrap()
        .into_inner()
        .map(|reply| reply.unwrap())
        .collect()
        .await;
    assert_eq!(
        echoed.iter().map(|reply| reply.value).collect::<Vec<_>>(),
        (1..=UP_LEN).collect::<Vec<_>>()
    );
    assert!(echoed.iter().all(|reply| on_multipool(reply, handler)));

    // Errors: a handler's status, and gRPC's UNIMPLEMENTED for a method the
    // service lacks and for a service the server lacks.
    let status = client
        .clone()
        .square(Number { value: 1 << 40 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange);
    for path in ["/multipool.demo.Demo/Cube", "/other.Service/Square"] {
        let mut raw = tonic::client::Grpc::new(channel.clone());
        raw.ready().await.unwrap();
        let status = raw
            .unary::<Number, Reply, _>(
                Request::new(Number { value: 2 }),
                PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{path}");
    }
}

#[test]
fn tonic_server_unchanged_on_multipool() {
    // `enable_tokio()`'s default (multipool's workers drive tokio, and the
    // server's connection and call tasks, given to `tokio::spawn`, run on
    // them), then tokio threads of its own, which run every one of those.
    // Either way the handlers' spawned work runs in multipool tasks.
    for (config, tokio) in [
        ("enable_tokio", TokioContext::new()),
        ("worker_threads(2)", TokioContext::new().worker_threads(2)),
    ] {
        let started = Instant::now();
        eprintln!("{config}:");
        let (rt, mut recorder) = runtime(tokio);
        rt.block_on(guard(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            multipool::spawn(async move { recipe::serve_unchanged(listener).await.unwrap() })
                .detach();
            exercise(addr, false, &mut recorder.count_ended).await;
        }));
        let spawned = recorder.spawned.lock().unwrap();
        let squares = &spawned["square"];
        assert_eq!(squares.len(), CLIENT_TASKS * PER_TASK);
        assert!(squares.iter().all(|&p| p == Priority::High));
        // The channel's tasks went through its `HyperExecutor`, at High:
        // its buffer, its connection and, hyper's HTTP/2 client does so,
        // about two per call (the request body's pipe among them). They are
        // the only unnamed High tasks here: the server's are tokio's.
        let channel_tasks = spawned[UNNAMED]
            .iter()
            .filter(|&&p| p == Priority::High)
            .count();
        eprintln!("{config}: {channel_tasks} tasks spawned by the channel");
        assert!(channel_tasks >= 2, "the channel's buffer and connection");
        eprintln!("{config}: all in {:?}", started.elapsed());
    }
}

#[test]
fn tonic_through_hyper_with_priorities() {
    let started = Instant::now();
    let (rt, mut recorder) = runtime(TokioContext::new());
    rt.block_on(guard(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        multipool::spawn(recipe::serve(listener, recipe::routes(), Priority::High)).detach();
        // Here the handlers themselves run in multipool tasks (hyper's, for
        // each call, through `HyperExecutor`).
        exercise(addr, true, &mut recorder.count_ended).await;
    }));
    let spawned = recorder.spawned.lock().unwrap();
    // Each method's work at its priority.
    assert_eq!(
        spawned["square"],
        vec![Priority::High; CLIENT_TASKS * PER_TASK]
    );
    assert_eq!(spawned["count"], vec![Priority::Low; 2]);
    assert_eq!(spawned["sum"], vec![Priority::Normal]);
    assert_eq!(spawned["echo"], vec![Priority::Normal]);
    // One connection (the channel's), a multipool task at the listener's
    // priority.
    assert_eq!(spawned["grpc-connection"], vec![Priority::High]);
    eprintln!("all in {:?}", started.elapsed());
}
