//! Helpers shared by the compat tests.
#![allow(dead_code)]

use std::future::IntoFuture;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Hang guard: no test here waits on time to make progress, so reaching
/// this means a deadlock.
pub const HANG: Duration = Duration::from_secs(30);

/// Awaits `future`, failing the test if it takes longer than [`HANG`].
pub async fn guard<F: IntoFuture>(future: F) -> F::Output {
    multipool::time::timeout(HANG, future.into_future())
        .await
        .expect("hang guard: the future did not complete")
}

/// Runs `f` on a thread of its own, failing the test if it does not return
/// within [`HANG`] (a thread that hangs is left behind; the test fails).
pub fn on_thread<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        })
        .unwrap();
    match rx.recv_timeout(HANG) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("hang guard: `{name}` did not return"),
    }
}

/// A value that reports its drop through a channel.
pub struct DropSignal(pub Option<mpsc::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// A [`DropSignal`] and the receiver that sees its drop.
pub fn drop_signal() -> (DropSignal, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    (DropSignal(Some(tx)), rx)
}
