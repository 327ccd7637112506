//! Helpers shared by the `bad_input_*` tests: check that a builder is
//! refused with a clear error, or that it builds a runtime that works.

use multipool::{BuildError, Builder, PoolBuilder, Runtime};

/// `builder` is refused: the error names `setting` and says `message`.
#[track_caller]
pub fn rejects(builder: Builder, setting: &str, message: &str) -> BuildError {
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
pub fn works(builder: Builder) -> Runtime {
    let rt = builder.build().unwrap();
    assert_eq!(rt.block_on(rt.spawn(async { 6 * 7 })).unwrap(), 42);
    assert_eq!(rt.block_on(rt.handle().spawn_blocking(|| 7)).unwrap(), 7);
    rt
}

/// A runtime with one named pool `p`, configured by `configure`.
pub fn with_pool(configure: impl FnOnce(PoolBuilder) -> PoolBuilder) -> Builder {
    Runtime::builder().workers(1).pool("p", configure)
}

/// `builder` (see [`with_pool`]) builds, and pool `p` runs a task.
#[track_caller]
pub fn pool_works(builder: Builder) {
    let rt = builder.build().unwrap();
    let name = rt.block_on(
        rt.spawn(async { multipool::Handle::current().pool_name().to_owned() })
            .pool("p"),
    );
    assert_eq!(name.unwrap(), "p");
}
