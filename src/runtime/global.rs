//! The global runtime behind `multipool::spawn` outside any runtime.
//!
//! Started on first use with the default configuration (one worker per
//! available core, threads named `multipool-global-N`) and never shut down:
//! it lives until the process exits, like a `static`.

use super::{Handle, Runtime};
use crate::sync::OnceLock;

static GLOBAL: OnceLock<Runtime> = OnceLock::new();

/// The global runtime's handle, starting the runtime if needed.
///
/// # Panics
///
/// Panics if the operating system refuses to start its worker threads.
pub(crate) fn handle() -> &'static Handle {
    GLOBAL
        .get_or_init(|| {
            Runtime::builder()
                .thread_name("multipool-global")
                .build()
                .unwrap_or_else(|err| panic!("failed to start the global multipool runtime: {err}"))
        })
        .handle_ref()
}
