//! Bad input never panics, hangs, or silently means something else: the
//! README's "Guarantees → Bad input" row for when the OS refuses a thread.
//! The monitor of an elastic pool reports the first refusal of a streak and
//! the pool goes on with the workers it has; a `spawn_blocking` call whose
//! thread is refused fails instead of waiting for ever.
//!
//! What could abort the process runs in a child process (this test binary,
//! run again for one test), under the watchdog.

mod common;

/// Tests that cap the address space (`RLIMIT_AS`) run in a child process:
/// the cap would break every other test of this binary.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod refused_threads {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use crate::common::watchdog;
    use multipool::Runtime;

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
            while rt.handle().metrics().num_blocked_workers() == 0 {
                thread::sleep(Duration::from_millis(1));
            }
            cap_address_space();
            // It waits: the monitor tries to add a worker, and cannot.
            let waiting = rt.spawn(async { 7 }).start();
            rt.block_on(blocked).unwrap();
            assert_eq!(rt.block_on(waiting).unwrap(), 7);
            assert_eq!(
                rt.handle().metrics().workers_started(),
                1,
                "no thread was started"
            );
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
            assert_eq!(handle.metrics().num_blocking_threads(), 0);
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
