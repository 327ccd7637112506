//! Fault injection for tests (feature `fault-injection`).
//!
//! The runtime calls `hit` at named points of its own code. Without the
//! feature `hit` is an empty inline function and costs nothing. With it, a
//! test arms a point with [`arm`], and the next hits of that point panic
//! with a message naming it, so a test can show that the runtime keeps
//! serving, or fails loudly, when code at that point panics: it never hangs
//! and never loses a task silently.
//!
//! | point | where | expected outcome |
//! |---|---|---|
//! | `task.poll` | a task's poll, inside the task's panic guard | the task's handle reports the panic |
//! | `task.drop` | dropping a task's future, inside the guard | the handle reports the panic |
//! | `hook` | every `Builder` thread and shutdown hook | the panic is printed; the runtime serves on |
//! | `scheduler` | a user `Scheduler`'s turn | the worker falls back to the built-in order |
//! | `worker.tick` | the worker loop, between two tasks | the pool shuts down: every handle resolves |
//! | `worker.start` | a new worker thread, before its worker runs | the build fails, or the slot is handed back |
//! | `monitor` | the elastic pool's monitor, once per sample | the panic is printed; the monitor samples on |
//! | `timer.fire` | a worker firing its due timers | the pool shuts down: every handle resolves |
//!
//! Armed points are global to the process: tests that arm them must not
//! run alongside other tests of the same binary (hold a lock).

#[cfg(feature = "fault-injection")]
mod armed {
    use crate::sync::{AtomicBool, Ordering, RtMutex as Mutex};

    /// Whether any point is armed: the one load a `hit` costs otherwise.
    static ANY: AtomicBool = AtomicBool::new(false);
    /// Armed points, each with the number of hits left that panic.
    static POINTS: Mutex<Vec<(&'static str, usize)>> = Mutex::new(Vec::new());

    pub(super) fn arm(point: &'static str, times: usize) {
        let mut points = POINTS.lock();
        points.retain(|(name, _)| *name != point);
        if times > 0 {
            points.push((point, times));
        }
        ANY.store(!points.is_empty(), Ordering::SeqCst);
    }

    pub(super) fn disarm_all() {
        POINTS.lock().clear();
        ANY.store(false, Ordering::SeqCst);
    }

    #[inline]
    pub(super) fn hit(point: &'static str) {
        if ANY.load(Ordering::Relaxed) {
            hit_slow(point);
        }
    }

    #[cold]
    fn hit_slow(point: &'static str) {
        let fire = {
            let mut points = POINTS.lock();
            let fire = match points.iter_mut().find(|(name, _)| *name == point) {
                Some((_, left)) => {
                    *left -= 1;
                    true
                }
                None => false,
            };
            points.retain(|(_, left)| *left > 0);
            ANY.store(!points.is_empty(), Ordering::SeqCst);
            fire
        };
        if fire {
            panic!("multipool fault injected at `{point}`");
        }
    }
}

/// Makes the next `times` hits of `point` panic (`0` disarms it). The points
/// are listed in the module docs.
///
/// ```
/// # #[cfg(feature = "fault-injection")] {
/// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
/// multipool::fault::arm("task.poll", 1);
/// let result = rt.block_on(rt.spawn(async { 1 }));
/// assert!(result.unwrap_err().is_panic());
/// multipool::fault::disarm_all();
/// # }
/// ```
#[cfg(feature = "fault-injection")]
pub fn arm(point: &'static str, times: usize) {
    armed::arm(point, times);
}

/// Disarms every point.
#[cfg(feature = "fault-injection")]
pub fn disarm_all() {
    armed::disarm_all();
}

/// A named fault point; see the module docs.
#[inline(always)]
pub(crate) fn hit(point: &'static str) {
    #[cfg(feature = "fault-injection")]
    armed::hit(point);
    #[cfg(not(feature = "fault-injection"))]
    let _ = point;
}
