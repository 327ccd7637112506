//! Bad input never panics, hangs, or silently means something else.
//!
//! One test per row of the README's "Guarantees → Bad input" table: every
//! builder setting at 0, 1, its maximum and `Duration::MAX` (or
//! `Duration::ZERO`), and names with a NUL byte. Each either is a
//! [`BuildError`] naming the setting, or builds a runtime that works (a task
//! is spawned and checked) with the documented meaning. Rows already covered
//! elsewhere name the test that covers them in the table. Anything that
//! could hang runs under the watchdog; what could abort the process runs in
//! a child process.

mod common;

use common::{hold_worker, watchdog};

use std::thread;
use std::time::Duration;

use multipool::{BuildError, Builder, PoolBuilder, Priority, PriorityFirst, Runtime, WeightedFair};

/// The largest share the worker's wrapping tick arithmetic handles.
const MAX_SHARE: u32 = i32::MAX as u32;

/// Smallest and largest accepted thread stack sizes.
const MIN_STACK: usize = 256 * 1024;
const MAX_STACK: usize = usize::MAX / 4;

/// `builder` is refused: the error names `setting` and says `message`.
#[track_caller]
fn rejects(builder: Builder, setting: &str, message: &str) -> BuildError {
    let err = builder.build().map(drop).unwrap_err();
    assert_eq!(err.setting(), Some(setting), "{err}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("invalid runtime setting `{setting}`: ")),
        "{text}"
    );
    assert!(text.contains(message), "{text:?} lacks {message:?}");
    err
}

/// `builder` builds a runtime whose default pool runs a task, and a
/// blocking call; returns the runtime for more checks.
#[track_caller]
fn works(builder: Builder) -> Runtime {
    let rt = builder.build().unwrap();
    assert_eq!(rt.block_on(rt.spawn(async { 6 * 7 })).unwrap(), 42);
    assert_eq!(rt.block_on(rt.handle().spawn_blocking(|| 7)).unwrap(), 7);
    rt
}

/// A runtime with one named pool `p`, configured by `configure`.
fn with_pool(configure: impl FnOnce(PoolBuilder) -> PoolBuilder) -> Builder {
    Runtime::builder().workers(1).pool("p", configure)
}

/// `builder` (see [`with_pool`]) builds, and pool `p` runs a task.
#[track_caller]
fn pool_works(builder: Builder) {
    let rt = builder.build().unwrap();
    let name = rt.block_on(
        rt.spawn(async { multipool::Handle::current().pool_name().to_owned() })
            .pool("p"),
    );
    assert_eq!(name.unwrap(), "p");
}

// ---------------------------------------------------------------------------
// Worker counts
// ---------------------------------------------------------------------------

#[test]
fn workers_zero_one_and_max() {
    rejects(
        Runtime::builder().workers(0),
        "workers",
        "must be at least 1, got 0",
    );
    let rt = works(Runtime::builder().workers(1));
    assert_eq!(rt.handle().num_workers(), 1);
    rejects(
        Runtime::builder().workers(usize::MAX),
        "workers",
        &format!("must be at most 4096, got {}", usize::MAX),
    );
    rejects(
        Runtime::builder().workers(4097),
        "workers",
        "must be at most 4096",
    );
    rejects(with_pool(|p| p.workers(0)), "workers", "got 0 (pool `p`)");
    rejects(
        with_pool(|p| p.workers(usize::MAX)),
        "workers",
        "(pool `p`)",
    );
    pool_works(with_pool(|p| p.workers(1)));
}

#[test]
fn min_workers_zero_one_and_max() {
    rejects(
        Runtime::builder().min_workers(0).max_workers(2),
        "min_workers",
        "must be at least 1",
    );
    let rt = works(Runtime::builder().min_workers(1).max_workers(2));
    assert_eq!(rt.handle().min_workers(), 1);
    // Named for what was set, not for the `max_workers` it implies.
    rejects(
        Runtime::builder().min_workers(usize::MAX),
        "min_workers",
        &format!("must be at most 4096, got {}", usize::MAX),
    );
    rejects(
        Runtime::builder().min_workers(3).max_workers(2),
        "min_workers",
        "must not exceed max_workers (2), got 3",
    );
    rejects(
        with_pool(|p| p.min_workers(usize::MAX)),
        "min_workers",
        "(pool `p`)",
    );
    pool_works(with_pool(|p| p.min_workers(1).max_workers(2)));
}

#[test]
fn max_workers_zero_one_and_max() {
    rejects(
        Runtime::builder().max_workers(0),
        "max_workers",
        "must be at least 1, got 0",
    );
    let rt = works(Runtime::builder().max_workers(1));
    assert_eq!(
        (rt.handle().min_workers(), rt.handle().max_workers()),
        (1, 1)
    );
    rejects(
        Runtime::builder().max_workers(usize::MAX),
        "max_workers",
        &format!("must be at most 4096, got {}", usize::MAX),
    );
    // The idle state packs counts in 16 bits: 100 000 used to panic there.
    rejects(
        Runtime::builder().max_workers(100_000),
        "max_workers",
        "at most 4096",
    );
    rejects(with_pool(|p| p.max_workers(0)), "max_workers", "(pool `p`)");
}

// ---------------------------------------------------------------------------
// idle_timeout
// ---------------------------------------------------------------------------

/// Makes the elastic pool of `rt` (min 1, max 2) add its second worker:
/// the only worker is held in a blocking call while a task waits.
fn grow_to_two(rt: &Runtime) {
    let held = hold_worker(rt);
    let waiting = rt.spawn(async { 1 }).start();
    // Only an added worker can run it.
    assert_eq!(multipool::block_on(waiting).unwrap(), 1);
    assert_eq!(rt.handle().workers_started(), 2);
    held.release();
}

#[test]
fn idle_timeout_zero_is_rejected() {
    rejects(
        Runtime::builder().idle_timeout(Duration::ZERO),
        "idle_timeout",
        "must be longer than zero",
    );
    rejects(
        with_pool(|p| p.idle_timeout(Duration::ZERO)),
        "idle_timeout",
        "(pool `p`)",
    );
}

#[test]
fn idle_timeout_of_a_nanosecond_retires_added_workers_at_once() {
    watchdog(60, || {
        let rt = works(
            Runtime::builder()
                .min_workers(1)
                .max_workers(2)
                .idle_timeout(Duration::from_nanos(1)),
        );
        grow_to_two(&rt);
        let handle = rt.handle();
        while handle.workers_retired() == 0 {
            thread::yield_now();
        }
        for i in 0..20 {
            assert_eq!(rt.block_on(rt.spawn(async move { i })).unwrap(), i);
        }
    });
}

/// `Instant + idle_timeout` used to overflow at the added worker's first
/// park: it panicked, stayed listed as a sleeper, and later spawns were
/// never served.
#[test]
fn idle_timeout_max_means_added_workers_never_retire() {
    watchdog(60, || {
        let rt = works(
            Runtime::builder()
                .min_workers(1)
                .max_workers(2)
                .idle_timeout(Duration::MAX),
        );
        grow_to_two(&rt);
        let handle = rt.handle();
        // Both park; the added one computes its retirement deadline.
        while handle.num_parked_workers() < 2 {
            thread::yield_now();
        }
        for i in 0..20 {
            assert_eq!(rt.block_on(rt.spawn(async move { i })).unwrap(), i);
        }
        assert_eq!(handle.workers_retired(), 0);
        assert_eq!(handle.num_workers(), 2);
    });
}

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

#[test]
fn thread_names_empty_nul_and_long() {
    rejects(
        Runtime::builder().thread_name(""),
        "thread_name",
        "must not be empty",
    );
    // std's thread builder panics on a NUL byte; `build` used to reach it.
    rejects(
        Runtime::builder().thread_name("app\0worker"),
        "thread_name",
        "must not contain a NUL byte, got \"app\\0worker\"",
    );
    rejects(
        with_pool(|p| p.thread_name("\0")),
        "thread_name",
        "NUL byte, got \"\\0\" (pool `p`)",
    );
    // A name longer than the OS keeps is truncated by the OS, not refused.
    let long = "w".repeat(1000);
    let rt = works(Runtime::builder().workers(1).thread_name(long.clone()));
    let name = rt.block_on(rt.spawn(async { thread::current().name().map(str::to_owned) }));
    assert_eq!(name.unwrap().unwrap(), format!("{long}-0"));
}

#[test]
fn pool_names_empty_default_duplicate_and_nul() {
    rejects(
        Runtime::builder().pool("", |p| p),
        "pool",
        "must not be empty",
    );
    rejects(
        Runtime::builder().pool("default", |p| p),
        "pool",
        "already a pool named `default`",
    );
    rejects(
        Runtime::builder().pool("a", |p| p).pool("a", |p| p),
        "pool",
        "already a pool named `a`",
    );
    // The pool's default thread names are made from its name.
    rejects(
        Runtime::builder().pool("a\0b", |p| p.workers(1)),
        "pool",
        "must not contain a NUL byte, got \"a\\0b\"",
    );
    // Refused even with a thread name of its own: names are shown in errors.
    rejects(
        Runtime::builder().pool("\0", |p| p.workers(1).thread_name("fine")),
        "pool",
        "NUL byte",
    );
    pool_works(with_pool(|p| p.workers(1)));
}

// ---------------------------------------------------------------------------
// Queue bounds and priorities
// ---------------------------------------------------------------------------

#[test]
fn max_queued_zero_one_and_max() {
    rejects(
        Runtime::builder().max_queued(0),
        "max_queued",
        "must be at least 1",
    );
    rejects(with_pool(|p| p.max_queued(0)), "max_queued", "(pool `p`)");
    watchdog(60, || {
        // One task waits; the next is refused.
        let rt = works(Runtime::builder().workers(1).max_queued(1));
        assert_eq!(rt.handle().max_queued(), Some(1));
        let held = hold_worker(&rt);
        let queued = rt.spawn(async { 1 }).try_start().unwrap();
        assert!(rt.spawn(async {}).try_start().unwrap_err().is_full());
        let refused = rt.block_on(rt.spawn(async {}).start()).unwrap_err();
        assert!(refused.is_rejected(), "{refused}");
        held.release();
        assert_eq!(multipool::block_on(queued).unwrap(), 1);
    });
    // As good as unbounded.
    let rt = works(Runtime::builder().workers(1).max_queued(usize::MAX));
    let handles: Vec<_> = (0..1000)
        .map(|i| rt.spawn(async move { i }).try_start().unwrap())
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(rt.block_on(handle).unwrap(), i);
    }
}

#[test]
fn priorities_empty_is_rejected() {
    rejects(
        Runtime::builder().priorities([]),
        "priorities",
        "at least one priority",
    );
    rejects(with_pool(|p| p.priorities([])), "priorities", "(pool `p`)");
    pool_works(with_pool(|p| p.priorities([Priority::Normal])));
    // One level: tasks of the others are refused.
    let rt = with_pool(|p| p.priorities([Priority::Normal]))
        .build()
        .unwrap();
    let err = rt
        .block_on(rt.spawn(async {}).pool("p").priority(Priority::High))
        .unwrap_err();
    assert!(err.is_rejected(), "{err}");
}

// ---------------------------------------------------------------------------
// min_share
// ---------------------------------------------------------------------------

#[test]
fn min_share_zero_and_one_are_rejected() {
    for level in [Priority::Normal, Priority::Low] {
        rejects(
            Runtime::builder().min_share(level, 0),
            "min_share",
            "must be at least 2",
        );
        rejects(Runtime::builder().min_share(level, 1), "min_share", "got 1");
        rejects(
            with_pool(|p| p.min_share(level, 1)),
            "min_share",
            "(pool `p`)",
        );
        works(Runtime::builder().workers(1).min_share(level, 2));
    }
}

#[test]
fn min_share_for_high_is_rejected() {
    for one_in in [0, 1, 2, u32::MAX] {
        rejects(
            Runtime::builder().min_share(Priority::High, one_in),
            "min_share",
            "High is always served first",
        );
    }
}

#[test]
fn min_share_normal_and_low_both_one_in_two_is_rejected() {
    rejects(
        Runtime::builder()
            .min_share(Priority::Normal, 2)
            .min_share(Priority::Low, 2),
        "min_share",
        "leaving High none",
    );
    works(
        Runtime::builder()
            .workers(1)
            .min_share(Priority::Normal, 2)
            .min_share(Priority::Low, 3),
    );
}

/// Above `2^31 - 1` the worker's wrapping tick comparison read the turn as
/// already due, so the level was served on every tick, ahead of High;
/// `u32::MAX` silently meant "no share".
#[test]
fn min_share_above_two_to_the_31_is_rejected() {
    for one_in in [MAX_SHARE + 1, MAX_SHARE + 2, u32::MAX] {
        for level in [Priority::Normal, Priority::Low] {
            rejects(
                Runtime::builder().min_share(level, one_in),
                "min_share",
                &format!("must be at most 2147483647 (2^31 - 1), got {one_in}"),
            );
        }
    }
}

/// The largest share is a rare turn, not one on every tick: a Low task
/// queued before a burst of High tasks still runs after all of them.
#[test]
fn min_share_at_its_maximum_keeps_high_first() {
    watchdog(60, || {
        let rt = works(
            Runtime::builder()
                .workers(1)
                .min_share(Priority::Low, MAX_SHARE),
        );
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = hold_worker(&rt);
        let push = |label: &'static str| {
            let order = order.clone();
            async move { order.lock().unwrap().push(label) }
        };
        let low = rt.spawn(push("low")).priority(Priority::Low).start();
        let highs: Vec<_> = (0..32)
            .map(|_| rt.spawn(push("high")).priority(Priority::High).start())
            .collect();
        held.release();
        multipool::block_on(low).unwrap();
        for high in highs {
            multipool::block_on(high).unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!(order.len(), 33);
        assert_eq!(order.last(), Some(&"low"), "{order:?}");
    });
}

/// `PriorityFirst` and `WeightedFair` take any value; the arithmetic is
/// exact in `u128` (the overflow itself is tested in `pool::scheduler`).
#[test]
fn scheduler_policies_take_any_share_or_weight() {
    for one_in in [0, 1, u64::MAX] {
        works(
            Runtime::builder()
                .workers(1)
                .scheduler(PriorityFirst::new().min_share(Priority::Low, one_in)),
        );
    }
    for weight in [0, 1, u32::MAX] {
        works(
            Runtime::builder()
                .workers(1)
                .scheduler(WeightedFair::new(weight, weight, weight)),
        );
    }
}

// ---------------------------------------------------------------------------
// Thread stack size
// ---------------------------------------------------------------------------

#[test]
fn thread_stack_size_zero_one_and_max() {
    // Below the minimum a worker overflows its stack: the process aborted.
    for size in [0, 1, 4096, MIN_STACK - 1] {
        rejects(
            Runtime::builder().thread_stack_size(size),
            "thread_stack_size",
            &format!("must be at least {MIN_STACK} bytes"),
        );
    }
    works(Runtime::builder().workers(1).thread_stack_size(MIN_STACK));
    // The C library's size arithmetic overflows near usize::MAX (musl then
    // makes std panic).
    for size in [MAX_STACK + 1, usize::MAX] {
        rejects(
            Runtime::builder().thread_stack_size(size),
            "thread_stack_size",
            "must be at most",
        );
    }
}

/// A size in range that the OS cannot map is the OS's error, returned.
#[cfg(target_pointer_width = "64")]
#[test]
fn thread_stack_size_the_os_cannot_map_is_a_thread_spawn_error() {
    // 2^62 bytes: more than any 64-bit address space holds.
    let err = Runtime::builder()
        .workers(1)
        .thread_stack_size(MAX_STACK)
        .build()
        .map(drop)
        .unwrap_err();
    assert_eq!(err.setting(), None, "{err}");
    assert!(
        err.to_string()
            .starts_with("failed to start a worker thread: "),
        "{err}"
    );
    let source = std::error::Error::source(&err).expect("the io::Error");
    assert!(source.downcast_ref::<std::io::Error>().is_some());
}

// ---------------------------------------------------------------------------
// Blocking pool
// ---------------------------------------------------------------------------

#[test]
fn max_blocking_threads_zero_one_and_max() {
    rejects(
        Runtime::builder().max_blocking_threads(0),
        "max_blocking_threads",
        "must be at least 1, got 0",
    );
    watchdog(60, || {
        // One thread runs the calls one after the other.
        let rt = works(Runtime::builder().workers(1).max_blocking_threads(1));
        let handle = rt.handle();
        let calls: Vec<_> = (0..10).map(|i| handle.spawn_blocking(move || i)).collect();
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(multipool::block_on(call).unwrap(), i);
        }
        assert!(handle.num_blocking_threads() <= 1);
        // No cap but the load: threads start only when none is idle.
        works(
            Runtime::builder()
                .workers(1)
                .max_blocking_threads(usize::MAX),
        );
    });
}

#[test]
fn blocking_keep_alive_zero_and_a_nanosecond() {
    rejects(
        Runtime::builder().blocking_keep_alive(Duration::ZERO),
        "blocking_keep_alive",
        "must be longer than zero",
    );
    watchdog(60, || {
        let rt = works(
            Runtime::builder()
                .workers(1)
                .blocking_keep_alive(Duration::from_nanos(1)),
        );
        let handle = rt.handle();
        for i in 0..10 {
            assert_eq!(
                multipool::block_on(handle.spawn_blocking(move || i)).unwrap(),
                i
            );
        }
    });
}

/// `Instant + keep_alive` used to overflow once the first blocking thread
/// went idle: it counted itself idle, panicked, and every later call
/// waited for it for ever.
#[test]
fn blocking_keep_alive_max_means_threads_never_expire() {
    watchdog(60, || {
        let rt = works(
            Runtime::builder()
                .workers(1)
                .blocking_keep_alive(Duration::MAX),
        );
        let handle = rt.handle();
        for i in 0..10 {
            assert_eq!(
                multipool::block_on(handle.spawn_blocking(move || i)).unwrap(),
                i
            );
        }
        // The threads stay (how many depends on whether a call came before
        // the previous thread was back to idle).
        assert!(handle.num_blocking_threads() >= 1);
        drop(rt); // shutdown still ends the idle thread
    });
}

#[test]
fn max_blocking_queued_zero_one_and_max() {
    rejects(
        Runtime::builder().max_blocking_queued(0),
        "max_blocking_queued",
        "must be at least 1",
    );
    watchdog(60, || {
        // One call waits; the next is refused.
        let rt = works(
            Runtime::builder()
                .workers(1)
                .max_blocking_threads(1)
                .max_blocking_queued(1),
        );
        let handle = rt.handle();
        let gate = common::Gate::default();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let g = gate.clone();
        let running = handle.spawn_blocking(move || {
            started_tx.send(()).unwrap();
            g.wait();
        });
        started_rx.recv().unwrap();
        let queued = handle.spawn_blocking(|| 1);
        let err = multipool::block_on(handle.spawn_blocking(|| 2)).unwrap_err();
        assert!(err.is_rejected(), "{err}");
        gate.open();
        multipool::block_on(running).unwrap();
        assert_eq!(multipool::block_on(queued).unwrap(), 1);
    });
    watchdog(60, || {
        let rt = works(
            Runtime::builder()
                .workers(1)
                .max_blocking_threads(1)
                .max_blocking_queued(usize::MAX),
        );
        let handle = rt.handle();
        let calls: Vec<_> = (0..200).map(|i| handle.spawn_blocking(move || i)).collect();
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(multipool::block_on(call).unwrap(), i);
        }
    });
}

// ---------------------------------------------------------------------------
// Settings without a bad value
// ---------------------------------------------------------------------------

/// Pinning more workers than there are CPUs wraps around the CPUs.
#[cfg(target_os = "linux")]
#[test]
fn pin_workers_with_more_workers_than_cpus_wraps() {
    let cpus = thread::available_parallelism().map_or(1, usize::from);
    works(Runtime::builder().workers(cpus + 1).pin_workers(true));
}

// ---------------------------------------------------------------------------
// Paused time (feature `test-util`)
// ---------------------------------------------------------------------------

#[cfg(feature = "test-util")]
mod paused {
    use super::*;

    use std::future::Future;
    use std::time::Instant;

    use futures::poll;
    use multipool::time::{advance, now, resume, sleep, sleep_until, timeout};

    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

    /// Runs `body` as a task of a runtime whose clock starts paused.
    fn run_paused<F: Future<Output = ()> + Send + 'static>(body: F) {
        watchdog(60, move || {
            let rt = Runtime::builder()
                .workers(2)
                .start_paused(true)
                .build()
                .unwrap();
            let task = rt.spawn(body).start();
            multipool::block_on(task).unwrap();
        });
    }

    /// `time::advance(Duration::MAX)` used to leave the clock where it
    /// was. It now moves to the end of the clock's range: every timer fires,
    /// and time moves no further.
    #[test]
    fn advance_duration_max_moves_to_the_end_of_time() {
        run_paused(async {
            let start = now();
            let mut forever = sleep(Duration::MAX);
            let mut far = sleep_until(start + YEAR * 1000);
            assert!(poll!(&mut forever).is_pending());
            assert!(poll!(&mut far).is_pending());
            advance(Duration::MAX).await;
            let end = now();
            assert!(end - start > YEAR * 30_000, "{:?}", end - start);
            assert!(poll!(&mut forever).is_ready());
            assert!(poll!(&mut far).is_ready());
            // Time cannot move past the end: a new timer is due at once.
            sleep(Duration::from_secs(3600)).await;
            assert!(
                timeout(Duration::from_millis(1), std::future::pending::<()>())
                    .await
                    .is_err()
            );
            advance(Duration::from_secs(1)).await;
            advance(Duration::MAX).await;
            assert_eq!(now(), end);
            // Resuming real time there neither overflows nor goes backwards.
            resume();
            assert_eq!(now(), end);
            sleep(Duration::from_millis(1)).await;
            drop((forever, far));
            assert_eq!(multipool::Handle::current().num_timers(), 0);
        });
    }

    /// A duration that does not overflow `Instant` but passes the end of
    /// the clock's range stops at the end too.
    #[test]
    fn advance_past_the_range_stops_at_its_end() {
        run_paused(async {
            let start = now();
            let Some(_) = start.checked_add(YEAR * 100_000) else {
                return; // this platform's Instant cannot hold it
            };
            advance(YEAR * 100_000).await;
            let end = now();
            assert!(end - start < YEAR * 40_000, "{:?}", end - start);
            advance(Duration::MAX).await;
            assert_eq!(now(), end);
        });
    }

    /// Auto-advance (idle runtime) still moves in order at huge distances.
    #[test]
    fn sleep_duration_max_auto_advances_thirty_years() {
        run_paused(async {
            let start: Instant = now();
            sleep(Duration::MAX).await;
            let slept = now() - start;
            assert!(slept >= YEAR * 29 && slept <= YEAR * 31, "{slept:?}");
        });
    }
}

// ---------------------------------------------------------------------------
// When the OS refuses a thread (child processes)
// ---------------------------------------------------------------------------

/// Tests that cap the address space (`RLIMIT_AS`) run in a child process:
/// the cap would break every other test of this binary.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod refused_threads {
    use super::*;

    use std::io::{BufRead, BufReader, Write};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;

    const CHILD: &str = "MULTIPOOL_BAD_INPUT_CHILD";
    /// The stack of every thread the runtime starts: far more than the cap
    /// leaves room for.
    const STACK: usize = 256 << 20;

    /// Whether this process is the child running `test`.
    fn in_child() -> bool {
        std::env::var_os(CHILD).is_some()
    }

    /// Caps the address space at what is mapped now plus 32 MiB: room for
    /// small allocations, none for another thread's stack. Every thread of
    /// the runtime must be running by then: a thread maps its signal stack
    /// as it starts, and aborts if it cannot.
    fn cap_address_space() {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split_whitespace().next().unwrap().parse().unwrap();
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
        let limit = libc::rlimit {
            rlim_cur: pages * page + (32 << 20),
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: `limit` is a valid rlimit for the duration of the call.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
    }

    /// Runs the test `name` of this binary in a child process, with its
    /// stdin, stdout and stderr piped; stderr lines are sent to the
    /// returned channel as they come, and all of them returned by the
    /// thread.
    fn spawn_child(
        name: &str,
    ) -> (
        Child,
        mpsc::Receiver<String>,
        thread::JoinHandle<Vec<String>>,
    ) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (line_tx, line_rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stderr).lines() {
                let line = line.unwrap();
                let _ = line_tx.send(line.clone());
                lines.push(line);
            }
            lines
        });
        (child, line_rx, reader)
    }

    /// Waits for the child to exit; asserts it passed.
    fn child_passed(child: Child, reader: thread::JoinHandle<Vec<String>>) -> Vec<String> {
        let output = watchdog(60, move || child.wait_with_output().unwrap());
        let lines = reader.join().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("child done"),
            "{}; stderr: {lines:#?}\nstdout: {stdout}",
            output.status
        );
        lines
    }

    /// The monitor used to swallow the error when the OS refused to start
    /// a worker. Now the first failure of a streak is printed, and the pool
    /// goes on with the workers it has.
    #[test]
    fn monitor_reports_a_refused_thread_and_keeps_serving() {
        const REPORT: &str =
            "multipool: could not add a worker to pool `default`, which goes on with 1";
        if in_child() {
            // `prewarm`: the worker is running when `build` returns.
            let rt = Runtime::builder()
                .min_workers(1)
                .max_workers(2)
                .thread_stack_size(STACK)
                .prewarm(true)
                .build()
                .unwrap();
            // The only worker blocks until the parent has seen the report.
            let (started_tx, started_rx) = mpsc::channel();
            let blocked = rt
                .spawn(async move {
                    started_tx.send(()).unwrap();
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).unwrap();
                })
                .start();
            started_rx.recv().unwrap();
            // Counted by the monitor: its thread is running too.
            while rt.handle().num_blocked_workers() == 0 {
                thread::sleep(Duration::from_millis(1));
            }
            cap_address_space();
            // It waits: the monitor tries to add a worker, and cannot.
            let waiting = rt.spawn(async { 7 }).start();
            rt.block_on(blocked).unwrap();
            assert_eq!(rt.block_on(waiting).unwrap(), 7);
            assert_eq!(rt.handle().workers_started(), 1, "no thread was started");
            println!("child done");
            return;
        }
        let (mut child, lines, reader) =
            spawn_child("refused_threads::monitor_reports_a_refused_thread_and_keeps_serving");
        let reported = loop {
            match lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.starts_with(REPORT) => break true,
                Ok(_) => {}
                Err(_) => break false,
            }
        };
        // Unblocks the child's worker (also when nothing was reported, so
        // the child ends either way).
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(b"go\n");
        drop(stdin);
        let lines = child_passed(child, reader);
        assert!(reported, "no report: {lines:#?}");
        let reports = lines
            .iter()
            .filter(|line| line.starts_with("multipool: could not add"))
            .count();
        assert_eq!(reports, 1, "once per streak: {lines:#?}");
    }

    /// A `spawn_blocking` call whose thread the OS refuses, with no other
    /// blocking thread to run it, resolves with an error instead of waiting
    /// for ever; the runtime goes on.
    #[test]
    fn a_refused_blocking_thread_fails_the_call_and_keeps_serving() {
        if in_child() {
            // `prewarm`: the worker is running when `build` returns.
            let rt = Runtime::builder()
                .workers(1)
                .thread_stack_size(STACK)
                .prewarm(true)
                .build()
                .unwrap();
            cap_address_space();
            let handle = rt.handle();
            for _ in 0..2 {
                let err = rt.block_on(handle.spawn_blocking(|| 1)).unwrap_err();
                // Rejected, not a shutdown: the runtime runs on.
                assert!(err.is_rejected() && !err.is_shutdown(), "{err:?}");
                assert!(!handle.is_shutdown());
            }
            assert_eq!(handle.num_blocking_threads(), 0);
            assert_eq!(rt.block_on(rt.spawn(async { 7 })).unwrap(), 7);
            println!("child done");
            return;
        }
        let (child, _lines, reader) = spawn_child(
            "refused_threads::a_refused_blocking_thread_fails_the_call_and_keeps_serving",
        );
        let lines = child_passed(child, reader);
        let reports = lines
            .iter()
            .filter(|line| line.starts_with("multipool: could not start a blocking thread: "))
            .count();
        assert_eq!(reports, 2, "{lines:#?}");
    }
}
