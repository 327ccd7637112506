//! The `tracing` feature: task spans and waker events in the shape
//! tokio-console's `console-subscriber` reads.
//!
//! One subscriber for the whole process (worker threads use the global
//! default), recording every span and event; each test finds its own tasks
//! by their ids. Every order asserted on is decided by the tasks
//! themselves (one thread's events are recorded in order); no sleeps.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};

use common::watchdog;
use multipool::{Priority, Runtime};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span as the subscriber saw it.
#[derive(Debug, Clone, Default)]
struct SpanRecord {
    span_id: u64,
    name: &'static str,
    target: &'static str,
    root: bool,
    fields: HashMap<String, String>,
    enters: usize,
    exits: usize,
    closed: bool,
}

/// An event as the subscriber saw it.
#[derive(Debug, Clone)]
struct EventRecord {
    target: &'static str,
    fields: HashMap<String, String>,
}

#[derive(Default)]
struct Recorded {
    /// Every span, in creation order (span ids are reused after a close).
    spans: Vec<SpanRecord>,
    /// Index in `spans` of each open span, by span id.
    open: HashMap<u64, usize>,
    events: Vec<EventRecord>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.to_string());
    }
}

struct Recorder;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: LayerContext<'_, S>) {
        let mut span = SpanRecord {
            span_id: id.into_u64(),
            name: attrs.metadata().name(),
            target: attrs.metadata().target(),
            root: attrs.is_root(),
            ..SpanRecord::default()
        };
        attrs.record(&mut Fields(&mut span.fields));
        let mut recorded = recorded();
        let index = recorded.spans.len();
        recorded.spans.push(span);
        recorded.open.insert(id.into_u64(), index);
    }

    fn on_enter(&self, id: &Id, _: LayerContext<'_, S>) {
        let mut recorded = recorded();
        if let Some(&index) = recorded.open.get(&id.into_u64()) {
            recorded.spans[index].enters += 1;
        }
    }

    fn on_exit(&self, id: &Id, _: LayerContext<'_, S>) {
        let mut recorded = recorded();
        if let Some(&index) = recorded.open.get(&id.into_u64()) {
            recorded.spans[index].exits += 1;
        }
    }

    fn on_close(&self, id: Id, _: LayerContext<'_, S>) {
        let mut recorded = recorded();
        if let Some(index) = recorded.open.remove(&id.into_u64()) {
            recorded.spans[index].closed = true;
        }
    }

    fn on_event(&self, event: &Event<'_>, _: LayerContext<'_, S>) {
        let mut record = EventRecord {
            target: event.metadata().target(),
            fields: HashMap::new(),
        };
        event.record(&mut Fields(&mut record.fields));
        recorded().events.push(record);
    }
}

static RECORDED: OnceLock<Mutex<Recorded>> = OnceLock::new();

fn recorded() -> MutexGuard<'static, Recorded> {
    RECORDED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Installs the recording subscriber as the global default (once).
fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Recorder))
            .expect("no other global subscriber in this test binary");
    });
}

/// The span of the task with id `task_id`.
fn span_of(task_id: multipool::task::Id) -> SpanRecord {
    let task_id = task_id.as_u64().to_string();
    let recorded = recorded();
    let spans: Vec<_> = recorded
        .spans
        .iter()
        .filter(|span| span.name == "runtime.spawn")
        .filter(|span| span.fields.get("task.id") == Some(&task_id))
        .cloned()
        .collect();
    assert_eq!(spans.len(), 1, "one span for task {task_id}: {spans:?}");
    spans.into_iter().next().unwrap()
}

/// The `op`s of the waker events of the task whose span is `span_id`, in
/// the order they were emitted.
fn waker_ops(span_id: u64) -> Vec<String> {
    let span_id = span_id.to_string();
    recorded()
        .events
        .iter()
        .filter(|event| event.target == "tokio::task::waker")
        .filter(|event| event.fields.get("task.id") == Some(&span_id))
        .map(|event| event.fields["op"].clone())
        .collect()
}

fn runtime() -> Runtime {
    install();
    Runtime::builder().workers(2).build().unwrap()
}

/// Pending `polls` times, doing `each(poll, cx)` at each of those polls;
/// then ready.
struct PendingWith<W> {
    polls: usize,
    done: usize,
    each: W,
}

impl<W: FnMut(usize, &mut Context<'_>) + Unpin> Future for PendingWith<W> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.done == self.polls {
            return Poll::Ready(());
        }
        let poll = self.done;
        self.done += 1;
        (self.each)(poll, cx);
        Poll::Pending
    }
}

#[test]
fn a_named_task_has_a_spawn_span_with_the_fields_tokio_console_reads() {
    watchdog(60, || {
        let rt = runtime();
        // The location is that of the `spawn` call.
        let (spawn, line) = (rt.spawn(async { 42 }), line!());
        let handle = spawn.name("answer").priority(Priority::High).start();
        let id = handle.id();
        assert_eq!(rt.block_on(handle).unwrap(), 42);

        let span = span_of(id);
        assert_eq!(span.target, "tokio::task");
        assert_eq!(span.name, "runtime.spawn");
        assert!(span.root, "a task's span has no parent");
        let field = |name: &str| span.fields.get(name).map(String::as_str);
        assert_eq!(field("kind"), Some("task"));
        assert_eq!(field("task.name"), Some("answer"));
        assert_eq!(field("task.id"), Some(id.as_u64().to_string().as_str()));
        assert_eq!(field("loc.file"), Some(file!()));
        assert_eq!(field("loc.line"), Some(line.to_string().as_str()));
        let column: u32 = field("loc.col").unwrap().parse().unwrap();
        assert!(column > 0);
        assert!(field("size.bytes").is_some());
    });
}

#[test]
fn an_unnamed_task_spawned_inside_a_task_has_an_empty_name_and_no_parent() {
    watchdog(60, || {
        let rt = runtime();
        let outer = rt
            .spawn(async {
                let inner = multipool::spawn(async {}).start();
                let id = inner.id();
                inner.await.unwrap();
                id
            })
            .start();
        let outer_id = outer.id();
        let inner_id = rt.block_on(outer).unwrap();

        let span = span_of(inner_id);
        assert!(span.root, "not a child of the spawning task's span");
        assert_eq!(span.fields["task.name"], "");
        assert_eq!(span.fields["kind"], "task");
        assert_ne!(span.span_id, span_of(outer_id).span_id);
    });
}

#[test]
fn the_span_is_entered_once_per_poll_and_is_current_inside_the_task() {
    watchdog(60, || {
        let rt = runtime();
        let handle = rt
            .spawn(async {
                let mut seen = Vec::new();
                for _ in 0..2 {
                    seen.push(tracing::Span::current().id().map(|id| id.into_u64()));
                    multipool::task::yield_now().await;
                }
                seen.push(tracing::Span::current().id().map(|id| id.into_u64()));
                seen
            })
            .start();
        let id = handle.id();
        let seen = rt.block_on(handle).unwrap();

        let span = span_of(id);
        // Three polls: two yields, then the end.
        assert_eq!(span.enters, 3, "{span:?}");
        assert_eq!(span.exits, 3, "{span:?}");
        assert_eq!(seen, vec![Some(span.span_id); 3]);
    });
}

#[test]
fn the_span_closes_when_the_task_ends_not_when_its_handle_is_dropped() {
    watchdog(60, || {
        let rt = runtime();
        let mut handle = rt.spawn(async { 7 }).start();
        let id = handle.id();
        assert_eq!(rt.block_on(&mut handle).unwrap(), 7);
        assert!(span_of(id).closed, "closed while the handle is alive");
        drop(handle);
    });
}

#[test]
fn waker_operations_of_the_future_are_events_naming_the_span() {
    watchdog(60, || {
        let rt = runtime();
        let handle = rt
            .spawn(PendingWith {
                polls: 2,
                done: 0,
                each: |poll: usize, cx: &mut Context<'_>| match poll {
                    0 => {
                        // By value: a clone, then its wake.
                        let waker = cx.waker().clone();
                        waker.wake();
                    }
                    _ => {
                        drop(cx.waker().clone());
                        cx.waker().wake_by_ref();
                    }
                },
            })
            .start();
        let id = handle.id();
        rt.block_on(handle).unwrap();

        let span = span_of(id);
        assert_eq!(span.enters, 3);
        assert_eq!(
            waker_ops(span.span_id),
            [
                "waker.clone",
                "waker.wake",
                "waker.clone",
                "waker.drop",
                "waker.wake_by_ref"
            ]
        );
    });
}

#[test]
fn a_wake_from_another_task_is_a_waker_wake_event() {
    watchdog(60, || {
        let rt = runtime();
        let (sender, receiver) = futures::channel::oneshot::channel::<u32>();
        let waiting = rt.spawn(async { receiver.await.unwrap() }).start();
        let id = waiting.id();
        // The receiver is polled (and stores its waker) before the send.
        let stored = rt
            .spawn(async move {
                // Each task polls once before it can send: wait until the
                // waiting task's span has been entered.
                while span_polls(id) == 0 {
                    multipool::task::yield_now().await;
                }
                sender.send(5).unwrap();
            })
            .start();
        rt.block_on(stored).unwrap();
        assert_eq!(rt.block_on(waiting).unwrap(), 5);

        let span = span_of(id);
        let ops = waker_ops(span.span_id);
        assert!(ops.contains(&"waker.clone".to_owned()), "{ops:?}");
        assert!(ops.contains(&"waker.wake".to_owned()), "{ops:?}");
    });
}

/// How many polls of task `id` have ended so far (0 if its span is not yet made).
fn span_polls(id: multipool::task::Id) -> usize {
    let task_id = id.as_u64().to_string();
    recorded()
        .spans
        .iter()
        .filter(|span| span.fields.get("task.id") == Some(&task_id))
        .map(|span| span.exits)
        .sum()
}

#[test]
fn blocking_and_local_tasks_have_their_kinds() {
    watchdog(60, || {
        let rt = runtime();
        let blocking = rt.handle().spawn_blocking(|| 3);
        let blocking_id = blocking.id();
        assert_eq!(rt.block_on(blocking).unwrap(), 3);
        let local_id = rt
            .block_on(rt.spawn(async {
                let local = multipool::spawn_local(async { 4 });
                let id = local.id();
                assert_eq!(local.await.unwrap(), 4);
                id
            }))
            .unwrap();

        let blocking = span_of(blocking_id);
        // As tokio: its own target, which `tokio::task` filters include.
        assert_eq!(blocking.target, "tokio::task::blocking");
        assert_eq!(blocking.fields["kind"], "blocking");
        let local = span_of(local_id);
        assert_eq!(local.target, "tokio::task");
        assert_eq!(local.fields["kind"], "local");
    });
}

#[test]
fn a_task_spawned_without_an_interested_subscriber_runs_untraced() {
    watchdog(60, || {
        let rt = runtime();
        // This thread's default says no to everything: the span is
        // disabled, and the task polls with its own waker.
        let handle =
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
                rt.spawn(PendingWith {
                    polls: 1,
                    done: 0,
                    each: |_: usize, cx: &mut Context<'_>| {
                        let waker = cx.waker().clone();
                        waker.wake();
                    },
                })
                .start()
            });
        let id = handle.id();
        rt.block_on(handle).unwrap();
        let task_id = id.as_u64().to_string();
        assert!(!recorded()
            .spans
            .iter()
            .any(|span| span.fields.get("task.id") == Some(&task_id)));
    });
}

#[test]
fn every_waker_clone_is_dropped_or_woken_once_the_tasks_are_gone() {
    watchdog(60, || {
        let rt = runtime();
        let mut ids = Vec::new();
        let mut senders = Vec::new();
        let mut aborted = Vec::new();
        for i in 0..200u64 {
            let handle = match i % 4 {
                // A timer: the wheel holds a clone until it fires.
                0 => rt
                    .spawn(async move {
                        multipool::time::sleep(std::time::Duration::from_millis(i % 3)).await;
                    })
                    .start(),
                // Awaits another task's handle (the guarded path).
                1 => rt
                    .spawn(async {
                        multipool::spawn(async { multipool::task::yield_now().await })
                            .await
                            .unwrap();
                    })
                    .start(),
                // Pending on a channel until aborted: its clone is dropped
                // with its future.
                2 => {
                    let (sender, receiver) = futures::channel::oneshot::channel::<()>();
                    senders.push(sender);
                    let handle = rt
                        .spawn(async move {
                            let _ = receiver.await;
                        })
                        .start();
                    aborted.push(handle.id());
                    handle
                }
                // Pending on a channel that is never sent to: cancelled by
                // the runtime's shutdown.
                _ => {
                    let (sender, receiver) = futures::channel::oneshot::channel::<()>();
                    senders.push(sender);
                    rt.spawn(async move {
                        let _ = receiver.await;
                    })
                    .start()
                }
            };
            ids.push(handle.id());
            if i % 4 == 2 {
                // Once it has stored its waker.
                let id = handle.id();
                rt.block_on(async {
                    while span_polls(id) == 0 {
                        multipool::task::yield_now().await;
                    }
                });
                handle.abort();
                assert!(rt.block_on(handle).unwrap_err().is_cancelled());
            } else if i % 4 != 3 {
                rt.block_on(handle).unwrap();
            }
        }
        drop(rt);
        drop(senders);

        for id in ids {
            let span = span_of(id);
            assert!(span.closed, "{span:?}");
            assert_eq!(span.enters, span.exits);
            let ops = waker_ops(span.span_id);
            let count = |op: &str| ops.iter().filter(|o| *o == op).count();
            assert_eq!(
                count("waker.clone"),
                count("waker.drop") + count("waker.wake"),
                "task {id}: {ops:?}"
            );
        }
        assert_eq!(aborted.len(), 50);
    });
}
