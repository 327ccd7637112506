//! Helpers shared by the integration tests. Each test binary uses a subset.
#![allow(dead_code)]

use std::panic;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

pub mod settings;
pub mod time;

/// Runs `f` on its own thread; panics if it has not finished after `secs`,
/// so a lost wake-up fails the test instead of hanging CI. The limit is
/// generous: the outcome never depends on how fast the machine is. Under
/// miri, which interprets every step, it is twenty times longer.
pub fn watchdog<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let secs = if cfg!(miri) { secs * 20 } else { secs };
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let value = f();
        let _ = tx.send(());
        value
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Ok(value) => value,
            Err(payload) => panic::resume_unwind(payload),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("stuck for {secs} s: a wake-up was lost"),
    }
}

/// Counts drops, to prove a future was dropped (exactly once).
pub struct DropCounter(pub Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A gate that threads (or tasks, in a real blocking call) wait on until the
/// test opens it.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn wait(&self) {
        let (open, cv) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
    }

    pub fn open(&self) {
        let (open, cv) = &*self.0;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
}

/// A worker held in a blocking call, so that what is spawned meanwhile is
/// queued rather than run. See [`hold_worker`].
pub struct HeldWorker {
    release: mpsc::Sender<()>,
    task: multipool::JoinHandle<()>,
}

/// Holds one worker of `rt` (at Normal priority); returns once the worker
/// holds, never before: a worker still starting could otherwise take work
/// the test meant to queue.
pub fn hold_worker(rt: &multipool::Runtime) -> HeldWorker {
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    let task = rt
        .spawn(async move {
            started_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        })
        .start();
    started_rx.recv().unwrap();
    HeldWorker { release, task }
}

impl HeldWorker {
    /// Lets the worker go and waits until the holding task has finished.
    pub fn release(self) {
        self.release.send(()).unwrap();
        multipool::block_on(self.task).unwrap();
    }
}

/// A bound for [`wait_until`] in a test whose watchdog (60 s) already
/// bounds it: as long as that watchdog, so the outcome never depends on how
/// fast the machine is.
pub const WATCHDOG_WAIT: Duration = Duration::from_secs(60);

/// Waits until `condition` holds or `limit` passes, looking again every
/// 100 µs; returns whether it held. For state the runtime reaches by
/// itself (a gauge settling), never to let time pass.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while !condition() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_micros(100));
    }
    true
}

/// splitmix64: spreads consecutive seeds over the whole range.
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xorshift64*: small, fast and good enough to pick test cases; the same
/// seed gives the same draws on every run.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Never zero: zero is xorshift's fixed point.
        Rng(splitmix64(seed) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn usize_below(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.usize_below(items.len())]
    }
}
