//! Task priorities.

/// How urgently a task should run.
///
/// Each worker keeps one run-queue per level and always serves the highest
/// non-empty level first, so a [`High`](Priority::High) task that becomes
/// runnable is polled before any queued [`Normal`](Priority::Normal) or
/// [`Low`](Priority::Low) work. The level is stored in the task, so a task
/// woken later goes back to its own level.
///
/// ```
/// use multipool::Priority;
///
/// let rt = multipool::Runtime::builder().workers(1).build().unwrap();
/// let answer = rt.block_on(async {
///     multipool::spawn(async { 42 }).priority(Priority::High).await
/// });
/// assert_eq!(answer.unwrap(), 42);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Latency-sensitive work: served before everything else.
    High,
    /// The default level.
    #[default]
    Normal,
    /// Background work: served when nothing more urgent is queued.
    Low,
}

impl Priority {
    /// Number of levels; the length of every per-level array.
    pub(crate) const COUNT: usize = 3;

    /// All levels, most urgent first: the order in which queues are served.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// Index of this level in per-level arrays (0 is the most urgent).
    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    pub(crate) const fn from_index(index: u8) -> Priority {
        match index {
            0 => Priority::High,
            1 => Priority::Normal,
            _ => Priority::Low,
        }
    }
}
