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

/// One value per priority level, indexed by [`Priority::index`].
pub(crate) type PerLevel<T> = [T; Priority::COUNT];

/// The level indices, most urgent first: `0..Priority::COUNT`.
pub(crate) fn levels() -> std::ops::Range<usize> {
    0..Priority::COUNT
}

/// A set of priority levels: bit `L` stands for level `L`. Also the value
/// of an `AtomicU8` holding such a set (see [`LevelSet::bits`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LevelSet(u8);

impl LevelSet {
    /// No level.
    pub(crate) const EMPTY: LevelSet = LevelSet(0);
    /// Every level.
    pub(crate) const ALL: LevelSet = LevelSet((1 << Priority::COUNT) - 1);

    pub(crate) const fn from_bits(bits: u8) -> LevelSet {
        LevelSet(bits)
    }

    pub(crate) const fn bits(self) -> u8 {
        self.0
    }

    /// The set holding only level `level`.
    pub(crate) const fn level(level: usize) -> LevelSet {
        LevelSet(1 << level)
    }

    pub(crate) const fn contains(self, level: usize) -> bool {
        self.0 & (1 << level) != 0
    }

    pub(crate) const fn with(self, priority: Priority) -> LevelSet {
        LevelSet(self.0 | 1 << priority.index())
    }

    pub(crate) const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Priority> for LevelSet {
    fn from_iter<I: IntoIterator<Item = Priority>>(priorities: I) -> Self {
        priorities.into_iter().fold(LevelSet::EMPTY, LevelSet::with)
    }
}
