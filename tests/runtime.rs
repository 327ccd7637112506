//! Builder, Handle, block_on, the global runtime and thread naming.

use std::sync::mpsc;
use std::thread;

use futures::task::SpawnExt;
use multipool::{Handle, Runtime};

#[test]
fn zero_workers_is_a_build_error_naming_the_setting() {
    let err = Runtime::builder().workers(0).build().unwrap_err();
    assert_eq!(err.setting(), Some("workers"));
    assert_eq!(
        err.to_string(),
        "invalid runtime setting `workers`: must be at least 1, got 0"
    );
    let err = Runtime::builder().thread_name("").build().unwrap_err();
    assert_eq!(err.setting(), Some("thread_name"));
    let err = Runtime::builder().workers(1_000_000).build().unwrap_err();
    assert!(err.to_string().contains("at most"), "{err}");
}

#[test]
fn default_workers_is_available_parallelism() {
    let rt = Runtime::new().unwrap();
    let expected = thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(rt.handle().metrics().num_workers(), expected);
}

#[test]
fn worker_threads_are_named_and_indexed() {
    let rt = Runtime::builder()
        .workers(3)
        .thread_name("named")
        .build()
        .unwrap();
    let (name, index) = rt
        .block_on(rt.spawn(async {
            (
                thread::current().name().map(str::to_owned),
                multipool::worker_index(),
            )
        }))
        .unwrap();
    let index = index.expect("tasks run on workers");
    assert!(index < 3);
    assert_eq!(name.unwrap(), format!("named-{index}"));
    assert_eq!(multipool::worker_index(), None);
}

#[test]
fn block_on_enters_the_runtime() {
    let rt = Runtime::builder()
        .workers(1)
        .thread_name("entered")
        .build()
        .unwrap();
    assert!(Handle::try_current().is_err());
    rt.block_on(async {
        let handle = Handle::current();
        assert_eq!(handle.metrics().num_workers(), 1);
        let name = multipool::spawn(async { thread::current().name().unwrap().to_owned() })
            .await
            .unwrap();
        assert_eq!(name, "entered-0");
    });
    assert!(
        Handle::try_current().is_err(),
        "block_on leaves the runtime on return"
    );
}

#[test]
fn tasks_see_their_runtime_as_current() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let handle = rt.handle();
    let inner = multipool::block_on(handle.spawn(async {
        // Spawned from inside a task: same runtime.
        multipool::spawn(async { Handle::current().metrics().num_workers() })
            .await
            .unwrap()
    }))
    .unwrap();
    assert_eq!(inner, 2);
}

#[test]
fn try_current_outside_a_runtime_explains_itself() {
    let err = Handle::try_current().unwrap_err();
    assert!(
        err.to_string().contains("no multipool runtime is entered"),
        "{err}"
    );
    let panic = std::panic::catch_unwind(Handle::current).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(message.contains("no multipool runtime is entered"));
}

#[test]
fn handle_enter_scopes_the_current_runtime() {
    let a = Runtime::builder()
        .workers(1)
        .thread_name("rt-a")
        .build()
        .unwrap();
    let b = Runtime::builder()
        .workers(1)
        .thread_name("rt-b")
        .build()
        .unwrap();
    let name = || async { thread::current().name().unwrap().to_owned() };
    {
        let _a = a.handle().enter();
        assert_eq!(
            multipool::block_on(multipool::spawn(name())).unwrap(),
            "rt-a-0"
        );
        {
            let _b = b.handle().enter();
            assert_eq!(
                multipool::block_on(multipool::spawn(name())).unwrap(),
                "rt-b-0"
            );
        }
        assert_eq!(
            multipool::block_on(multipool::spawn(name())).unwrap(),
            "rt-a-0"
        );
    }
    assert!(Handle::try_current().is_err());
}

#[test]
#[cfg_attr(
    miri,
    ignore = "the global runtime's workers outlive `main`, which miri reports as an error"
)]
fn global_runtime_needs_no_setup() {
    let (name, worker) = multipool::block_on(multipool::spawn(async {
        (
            thread::current().name().unwrap().to_owned(),
            multipool::worker_index(),
        )
    }))
    .unwrap();
    assert!(name.starts_with("multipool-global-"), "{name}");
    assert!(worker.is_some());
    // From several plain threads at once.
    let threads: Vec<_> = (0..4u64)
        .map(|i| thread::spawn(move || multipool::block_on(multipool::spawn(async move { i * 2 }))))
        .collect();
    let sum: u64 = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .sum();
    assert_eq!(sum, 12);
}

#[test]
fn block_on_on_a_worker_panics_with_a_clear_message() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let err = rt
        .block_on(rt.spawn(async { multipool::block_on(async { 1 }) }))
        .unwrap_err();
    assert!(err.is_panic());
    assert!(
        err.to_string()
            .contains("`block_on` called on a multipool worker thread"),
        "{err}"
    );
    let err = rt
        .block_on(rt.spawn(async {
            let rt2 = Runtime::builder().workers(1).build().unwrap();
            rt2.block_on(async { 1 })
        }))
        .unwrap_err();
    assert!(err.to_string().contains("worker thread"), "{err}");
    // The worker is still there.
    assert_eq!(rt.block_on(rt.spawn(async { 3 })).unwrap(), 3);
}

#[test]
fn nested_block_on_off_the_workers_works() {
    let value = multipool::block_on(async { multipool::block_on(async { 5 }) + 1 });
    assert_eq!(value, 6);
}

#[test]
fn handle_works_from_other_threads_and_as_futures_spawn() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let handle = rt.handle();
    let (tx, rx) = mpsc::channel();
    let spawner = thread::spawn(move || {
        let h = handle.clone();
        handle.spawn(async move { tx.send(1).unwrap() }).detach();
        // `futures::task::Spawn`, as used by futures-based libraries.
        let remote = h.spawn_with_handle(async { 41 }).unwrap();
        multipool::block_on(remote) + 1
    });
    assert_eq!(spawner.join().unwrap(), 42);
    assert_eq!(rx.recv().unwrap(), 1);
    assert!(futures::task::Spawn::status(&rt.handle()).is_ok());
}

#[test]
fn runtime_metrics_reflect_live_tasks() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let handle = rt.handle();
    assert_eq!(handle.metrics().num_alive_tasks(), 0);
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    let task = rt.spawn(async move { rx.await.unwrap() }).start();
    assert_eq!(handle.metrics().num_alive_tasks(), 1);
    tx.send(()).unwrap();
    rt.block_on(task).unwrap();
    assert_eq!(handle.metrics().num_alive_tasks(), 0);
    assert!(format!("{handle:?}").contains("workers: 1"));
}
