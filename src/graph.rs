//! [`TaskGraph`]: a directed acyclic graph of tasks that pass their outputs
//! along, run with the runtime's parallelism and each node's priority.
//!
//! ```
//! use multipool::graph::{Node, TaskGraph};
//! use multipool::Priority;
//!
//! let rt = multipool::Runtime::builder().workers(2).build().unwrap();
//! let mut graph: TaskGraph<u64> = TaskGraph::new();
//! let a = graph.add(Node::new(|_| async { Ok(20) }).name("a"));
//! let b = graph.add(Node::new(|_| async { Ok(1) }).name("b").priority(Priority::High));
//! let sum = graph.add(
//!     Node::new(|inputs| async move { Ok(inputs.values().sum::<u64>() * 2) }).after([a, b]),
//! );
//! let result = rt.block_on(graph.run()).unwrap();
//! assert_eq!(result.value(sum), Some(&42));
//! ```
//!
//! # Output typing
//!
//! All nodes of a graph produce the same types: a node is a closure that
//! receives its dependencies' outputs ([`Inputs`]) and returns a future of
//! `Result<T, E>`. Several dependents read one output, so a value is held
//! in an [`Arc<T>`](Arc) and an error in a [`NodeError<E>`] (cheap to
//! clone); what a node produced is a [`NodeOutput<T, E>`]. A graph whose
//! nodes make different things uses an enum for `T`. `E` defaults to
//! [`BoxError`].
//!
//! # How it runs
//!
//! [`run`](TaskGraph::run) checks the graph (a cycle, or an edge to a node
//! of another graph, is a [`GraphError`], and nothing runs), then spawns
//! every node as a multipool task, in dependency order, each with its own
//! options ([`Node::priority`], [`Node::name`], ...), and each
//! [`after`](crate::Spawn::after) the tasks of its inputs: a node is queued
//! by the last of its inputs to finish, so the graph has no coordinator
//! between a node and its dependents, and a waiting node costs no worker
//! time. Spawning waits for room in a bounded queue (a node holds its place
//! until it first runs); awaiting `run` then waits for every node and
//! returns each one's output ([`GraphResult`]).
//!
//! # Failure
//!
//! A node *fails* when its future returns `Err`, panics, times out, is
//! aborted or cancelled by a shutdown. By default its dependents are then
//! cancelled before they run, with a [`JoinError`] for which
//! [`is_dependency_failed`](JoinError::is_dependency_failed) holds (their
//! tasks end with [`Outcome::Cancelled`](crate::task::Outcome::Cancelled),
//! so the runtime's counts of outcomes still add up), and so on
//! transitively. A node built with [`run_anyway`](Node::run_anyway) runs
//! anyway, its failed inputs given to it as `Err`.
//!
//! # Invariants
//!
//! * Each node's output slot is written once, before its task ends: by the
//!   node itself (its value, its `Err`, or its panic's message), or, when
//!   its future is dropped unfinished, by the node's destructor with the
//!   reason its task reports (cancelled, timed out, ...); by `run` for a
//!   node whose spawn was refused. Dependents are released after the end
//!   of their inputs' tasks, so every input they read is written.
//! * The output in [`GraphResult`] is the one of the node's task handle:
//!   a panic's payload is there (an input carries a copy of its message).
//! * Dropping the future of `run` aborts the nodes it started.

use std::any::Any;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::error::panic_message;
use crate::runtime::{current_cancel_error, key_hash, Home};
use crate::sync::{Arc, OnceLock};
use crate::task::JoinHandle;
use crate::{Handle, JoinError, Priority};

/// The default error type of a node: any error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a node produced: its value, or why it has none. Shared by its
/// dependents, hence the `Arc`.
pub type NodeOutput<T, E = BoxError> = Result<Arc<T>, NodeError<E>>;

type NodeFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;
type NodeFn<T, E> = Box<dyn FnOnce(Inputs<T, E>) -> NodeFuture<T, E> + Send>;

/// Tells the graphs apart, so a node id of another graph is an error.
static NEXT_GRAPH: AtomicU64 = AtomicU64::new(1);

/// A node of a [`TaskGraph`], as [`TaskGraph::add`] returns it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    graph: u64,
    index: usize,
}

impl NodeId {
    /// The node's position in its graph: 0 for the first node added, and
    /// so on.
    pub fn index(self) -> usize {
        self.index
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.index)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.index)
    }
}

/// What a node does when one of its inputs failed; see the
/// [module docs](self#failure).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnDependencyFailure {
    /// It is cancelled before it runs; its handle reports
    /// [`JoinError::is_dependency_failed`]. The default.
    #[default]
    Cancel,
    /// It runs anyway, its failed inputs given to it as `Err`.
    Run,
}

/// Why a node has no value.
pub enum NodeError<E = BoxError> {
    /// Its future returned this error.
    Failed(Arc<E>),
    /// Its task ended without an output: it panicked, timed out, was
    /// aborted, refused, cancelled because an input failed
    /// ([`JoinError::is_dependency_failed`]), or its runtime shut down.
    Task(Arc<JoinError>),
}

impl<E> NodeError<E> {
    /// The error the node's future returned, if that is why.
    pub fn error(&self) -> Option<&E> {
        match self {
            NodeError::Failed(error) => Some(error),
            NodeError::Task(_) => None,
        }
    }

    /// Why the node's task ended without an output, if that is why.
    pub fn join_error(&self) -> Option<&JoinError> {
        match self {
            NodeError::Failed(_) => None,
            NodeError::Task(error) => Some(error),
        }
    }

    /// Whether the node was cancelled because one of its inputs failed.
    pub fn is_dependency_failed(&self) -> bool {
        self.join_error()
            .is_some_and(JoinError::is_dependency_failed)
    }
}

impl<E> Clone for NodeError<E> {
    fn clone(&self) -> Self {
        match self {
            NodeError::Failed(error) => NodeError::Failed(error.clone()),
            NodeError::Task(error) => NodeError::Task(error.clone()),
        }
    }
}

impl<E: fmt::Debug> fmt::Debug for NodeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Failed(error) => f.debug_tuple("Failed").field(error).finish(),
            NodeError::Task(error) => f.debug_tuple("Task").field(error).finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for NodeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Failed(error) => write!(f, "node failed: {error}"),
            NodeError::Task(error) => error.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for NodeError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NodeError::Failed(error) => Some(&**error),
            NodeError::Task(error) => Some(&**error),
        }
    }
}

/// A graph that cannot run: nothing was spawned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GraphError {
    /// The edges form a cycle. `nodes` lists it in running order: each
    /// node is an input of the next, and the last an input of the first;
    /// `names` are their names (or `#index` for a node without one).
    Cycle {
        /// The nodes of the cycle.
        nodes: Vec<NodeId>,
        /// The same nodes' names.
        names: Vec<String>,
    },
    /// An edge names a node that is not in this graph (an id of another
    /// graph).
    UnknownNode {
        /// The unknown node.
        node: NodeId,
    },
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphError::Cycle { names, .. } => {
                f.write_str("the task graph has a cycle: ")?;
                for name in names {
                    write!(f, "`{name}` → ")?;
                }
                match names.first() {
                    Some(first) => write!(f, "`{first}`"),
                    None => Ok(()),
                }
            }
            GraphError::UnknownNode { node } => write!(
                f,
                "the task graph has an edge to node {node}, which is not one of its nodes"
            ),
        }
    }
}

impl std::error::Error for GraphError {}

/// One node: its work, its task's options and its inputs.
///
/// ```
/// use std::time::Duration;
/// use multipool::graph::{Node, TaskGraph};
/// use multipool::Priority;
///
/// let mut graph: TaskGraph<String> = TaskGraph::new();
/// let fetch = graph.add(
///     Node::new(|_| async { Ok("data".to_string()) })
///         .name("fetch")
///         .priority(Priority::High)
///         .timeout(Duration::from_secs(5)),
/// );
/// let report = graph.add(
///     Node::new(move |inputs| async move {
///         match inputs.get(fetch).unwrap() {
///             Ok(data) => Ok(format!("report of {data}")),
///             Err(_) => Ok("no data".to_string()),
///         }
///     })
///     .after([fetch])
///     .run_anyway(),
/// );
/// let result = multipool::block_on(graph.run()).unwrap();
/// assert_eq!(result.value(report).unwrap(), "report of data");
/// ```
pub struct Node<T, E = BoxError> {
    run: NodeFn<T, E>,
    name: Option<String>,
    priority: Priority,
    timeout: Option<Duration>,
    pool: Option<String>,
    home: Home,
    after: Vec<NodeId>,
    on_failure: OnDependencyFailure,
}

impl<T, E> Node<T, E>
where
    T: Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// A node that runs `f` with its inputs' outputs, in its own task.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: FnOnce(Inputs<T, E>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        Node {
            run: Box::new(move |inputs| Box::pin(f(inputs))),
            name: None,
            priority: Priority::default(),
            timeout: None,
            pool: None,
            home: Home::default(),
            after: Vec::new(),
            on_failure: OnDependencyFailure::default(),
        }
    }

    /// Its task's priority (see [`Spawn::priority`](crate::Spawn::priority)).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Its task's name (see [`Spawn::name`](crate::Spawn::name)), also used in errors.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Its task's deadline (see [`Spawn::timeout`](crate::Spawn::timeout)), counted from when the
    /// node starts to run, not while it waits for its inputs.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The runtime's pool its task runs in (see [`Spawn::pool`](crate::Spawn::pool)).
    pub fn pool(mut self, name: impl Into<String>) -> Self {
        self.pool = Some(name.into());
        self
    }

    /// Pins its task to a worker (see [`Spawn::worker`](crate::Spawn::worker)).
    pub fn worker(mut self, index: usize) -> Self {
        self.home = Home::Worker(index);
        self
    }

    /// Pins its task to the worker `key` hashes to (see [`Spawn::key`](crate::Spawn::key)).
    pub fn key(mut self, key: impl std::hash::Hash) -> Self {
        self.home = Home::Key(key_hash(&key));
        self
    }

    /// Makes the outputs of `nodes` its inputs, in this order (after any
    /// given before; a node given twice is one input). Same as
    /// [`TaskGraph::edge`] from each of them.
    pub fn after(mut self, nodes: impl IntoIterator<Item = NodeId>) -> Self {
        self.after.extend(nodes);
        self
    }

    /// Runs the node even if an input failed, giving it the failed inputs
    /// as `Err`; same as
    /// `.on_dependency_failure(OnDependencyFailure::Run)`.
    pub fn run_anyway(self) -> Self {
        self.on_dependency_failure(OnDependencyFailure::Run)
    }

    /// What the node does when one of its inputs failed (default:
    /// [`OnDependencyFailure::Cancel`]).
    pub fn on_dependency_failure(mut self, policy: OnDependencyFailure) -> Self {
        self.on_failure = policy;
        self
    }
}

impl<T, E> fmt::Debug for Node<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("priority", &self.priority)
            .field("timeout", &self.timeout)
            .field("pool", &self.pool)
            .field("after", &self.after)
            .field("on_failure", &self.on_failure)
            .finish_non_exhaustive()
    }
}

/// The outputs of a node's inputs, in the order its edges were declared.
///
/// With the default failure policy every input is a value; a node built
/// with [`Node::run_anyway`] may also find errors.
pub struct Inputs<T, E = BoxError> {
    entries: Vec<(NodeId, NodeOutput<T, E>)>,
}

impl<T, E> Inputs<T, E> {
    /// The number of inputs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the node has no inputs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The output of input `node`, or `None` if it is not an input.
    pub fn get(&self, node: NodeId) -> Option<Result<&T, &NodeError<E>>> {
        self.entries
            .iter()
            .find(|(id, _)| *id == node)
            .map(|(_, output)| output.as_deref())
    }

    /// Every input with its output, in order.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, Result<&T, &NodeError<E>>)> + '_ {
        self.entries
            .iter()
            .map(|(id, output)| (*id, output.as_deref()))
    }

    /// The values of the inputs that have one, in order.
    pub fn values(&self) -> impl Iterator<Item = &T> + '_ {
        self.entries
            .iter()
            .filter_map(|(_, output)| output.as_deref().ok())
    }

    /// The inputs that failed, in order.
    pub fn failures(&self) -> impl Iterator<Item = (NodeId, &NodeError<E>)> + '_ {
        self.entries
            .iter()
            .filter_map(|(id, output)| output.as_ref().err().map(|error| (*id, error)))
    }

    /// The inputs, owned.
    pub fn into_vec(self) -> Vec<(NodeId, NodeOutput<T, E>)> {
        self.entries
    }
}

impl<T: fmt::Debug, E: fmt::Debug> fmt::Debug for Inputs<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(id, output)| (id, output)))
            .finish()
    }
}

/// What every node of a graph produced; returned by [`TaskGraph::run`].
pub struct GraphResult<T, E = BoxError> {
    graph: u64,
    outputs: Vec<NodeOutput<T, E>>,
}

impl<T, E> GraphResult<T, E> {
    fn output(&self, node: NodeId) -> Option<&NodeOutput<T, E>> {
        if node.graph != self.graph {
            return None;
        }
        self.outputs.get(node.index)
    }

    /// The output of `node`; `None` if it is not a node of this graph.
    pub fn get(&self, node: NodeId) -> Option<Result<&T, &NodeError<E>>> {
        self.output(node).map(|output| output.as_deref())
    }

    /// The value of `node`, if it has one.
    pub fn value(&self, node: NodeId) -> Option<&T> {
        self.get(node)?.ok()
    }

    /// Why `node` has no value, if it has none.
    pub fn error(&self, node: NodeId) -> Option<&NodeError<E>> {
        self.get(node)?.err()
    }

    /// Whether every node produced a value.
    pub fn is_ok(&self) -> bool {
        self.outputs.iter().all(Result::is_ok)
    }

    /// The nodes that have no value, in the order they were added.
    pub fn failures(&self) -> impl Iterator<Item = (NodeId, &NodeError<E>)> + '_ {
        self.iter()
            .filter_map(|(id, output)| output.err().map(|error| (id, error)))
    }

    /// Every node with its output, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, Result<&T, &NodeError<E>>)> + '_ {
        let graph = self.graph;
        self.outputs
            .iter()
            .enumerate()
            .map(move |(index, output)| (NodeId { graph, index }, output.as_deref()))
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.outputs.len()
    }

    /// Whether the graph had no nodes.
    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// Every node's output, owned, in the order they were added. A value
    /// no dependent kept is the only reference to it (`Arc::try_unwrap`
    /// takes it out).
    pub fn into_outputs(self) -> Vec<(NodeId, NodeOutput<T, E>)> {
        let graph = self.graph;
        self.outputs
            .into_iter()
            .enumerate()
            .map(|(index, output)| (NodeId { graph, index }, output))
            .collect()
    }
}

impl<T: fmt::Debug, E: fmt::Debug> fmt::Debug for GraphResult<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A DAG of tasks that pass outputs along; see the [module docs](self).
pub struct TaskGraph<T, E = BoxError> {
    graph: u64,
    nodes: Vec<Node<T, E>>,
    /// Edges declared with [`edge`](Self::edge), beside those of
    /// [`Node::after`]: `(from, to)`.
    edges: Vec<(NodeId, NodeId)>,
}

impl<T, E> Default for TaskGraph<T, E>
where
    T: Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E> fmt::Debug for TaskGraph<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGraph")
            .field("nodes", &self.nodes)
            .field("edges", &self.edges)
            .finish()
    }
}

/// A checked graph: each node's inputs, and an order that puts every node
/// after its inputs.
struct Plan {
    inputs: Vec<Arc<[usize]>>,
    order: Vec<usize>,
}

impl<T, E> TaskGraph<T, E>
where
    T: Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    /// An empty graph.
    pub fn new() -> Self {
        TaskGraph {
            graph: NEXT_GRAPH.fetch_add(1, Ordering::Relaxed),
            nodes: Vec::new(),
            edges: Vec::new(),
        }
    }

    /// Adds a node; returns its id, for edges and for its output.
    pub fn add(&mut self, node: Node<T, E>) -> NodeId {
        let id = NodeId {
            graph: self.graph,
            index: self.nodes.len(),
        };
        self.nodes.push(node);
        id
    }

    /// Makes the output of `from` an input of `to` (after the inputs given
    /// to `to` with [`Node::after`]). An edge that would close a cycle, or
    /// names a node of another graph, is reported by
    /// [`validate`](Self::validate) and [`run`](Self::run).
    pub fn edge(&mut self, from: NodeId, to: NodeId) -> &mut Self {
        self.edges.push((from, to));
        self
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Checks that the graph can run: every edge joins two of its nodes,
    /// and the edges form no cycle.
    ///
    /// ```
    /// use multipool::graph::{GraphError, Node, TaskGraph};
    ///
    /// let mut graph: TaskGraph<()> = TaskGraph::new();
    /// let a = graph.add(Node::new(|_| async { Ok(()) }).name("a"));
    /// let b = graph.add(Node::new(|_| async { Ok(()) }).name("b").after([a]));
    /// graph.edge(b, a);
    /// let err = graph.validate().unwrap_err();
    /// assert!(matches!(&err, GraphError::Cycle { nodes, .. } if nodes.len() == 2));
    /// assert_eq!(err.to_string(), "the task graph has a cycle: `a` → `b` → `a`");
    /// ```
    pub fn validate(&self) -> Result<(), GraphError> {
        self.plan().map(drop)
    }

    fn plan(&self) -> Result<Plan, GraphError> {
        let count = self.nodes.len();
        let known = |node: NodeId| {
            if node.graph == self.graph && node.index < count {
                Ok(node.index)
            } else {
                Err(GraphError::UnknownNode { node })
            }
        };
        let mut inputs: Vec<Vec<usize>> = self
            .nodes
            .iter()
            .map(|node| {
                node.after
                    .iter()
                    .map(|&from| known(from))
                    .collect::<Result<_, _>>()
            })
            .collect::<Result<_, _>>()?;
        for &(from, to) in &self.edges {
            let from = known(from)?;
            inputs[known(to)?].push(from);
        }
        // A node given twice is one input: `seen[from]` is the last node
        // that `from` was found an input of.
        let mut seen = vec![usize::MAX; count];
        for (to, list) in inputs.iter_mut().enumerate() {
            list.retain(|&from| std::mem::replace(&mut seen[from], to) != to);
        }
        // Kahn's algorithm: a node is ready once all its inputs are placed.
        let mut dependents = vec![Vec::new(); count];
        let mut waiting: Vec<usize> = inputs.iter().map(Vec::len).collect();
        for (to, list) in inputs.iter().enumerate() {
            for &from in list {
                dependents[from].push(to);
            }
        }
        let mut order: Vec<usize> = (0..count).filter(|&index| waiting[index] == 0).collect();
        let mut next = 0;
        while next < order.len() {
            let done = order[next];
            next += 1;
            for &to in &dependents[done] {
                waiting[to] -= 1;
                if waiting[to] == 0 {
                    order.push(to);
                }
            }
        }
        if order.len() < count {
            return Err(self.cycle(&inputs, &waiting));
        }
        Ok(Plan {
            inputs: inputs.into_iter().map(Arc::from).collect(),
            order,
        })
    }

    /// A cycle among the nodes Kahn's algorithm could not place: each of
    /// them has an input that could not be placed either, so following
    /// such inputs must come back to a node already seen.
    fn cycle(&self, inputs: &[Vec<usize>], waiting: &[usize]) -> GraphError {
        let stuck = |index: usize| waiting[index] > 0;
        let start = (0..inputs.len())
            .find(|&index| stuck(index))
            .expect("a node is stuck");
        let mut path = vec![start];
        let mut position = vec![usize::MAX; inputs.len()];
        position[start] = 0;
        loop {
            let last = *path.last().expect("the path starts with a node");
            let input = *inputs[last]
                .iter()
                .find(|&&input| stuck(input))
                .expect("a stuck node has a stuck input");
            if position[input] != usize::MAX {
                // The cycle, from its inputs' side: reverse it to list it
                // in running order.
                let mut cycle = path.split_off(position[input]);
                cycle.reverse();
                // From its first node added, so the report is stable.
                let first = (0..cycle.len()).min_by_key(|&at| cycle[at]).unwrap_or(0);
                cycle.rotate_left(first);
                let nodes = cycle
                    .iter()
                    .map(|&index| NodeId {
                        graph: self.graph,
                        index,
                    })
                    .collect::<Vec<_>>();
                let names = nodes.iter().map(|&node| self.label(node)).collect();
                return GraphError::Cycle { nodes, names };
            }
            position[input] = path.len();
            path.push(input);
        }
    }

    fn label(&self, node: NodeId) -> String {
        match &self.nodes[node.index].name {
            Some(name) => name.clone(),
            None => node.to_string(),
        }
    }

    /// Runs the graph on the current runtime (as [`spawn`](crate::spawn)
    /// does: the one entered on this thread, or the global one): checks
    /// it, spawns every node, waits for all of them, and returns their
    /// outputs. `Err` if the graph cannot run (see
    /// [`validate`](Self::validate)); a node that fails is not an `Err`
    /// here, but its output in the [`GraphResult`].
    ///
    /// Dropping the returned future aborts the nodes already started.
    pub async fn run(self) -> Result<GraphResult<T, E>, GraphError> {
        self.run_with(None).await
    }

    /// [`run`](Self::run) on the runtime of `handle`.
    pub async fn run_on(self, handle: &Handle) -> Result<GraphResult<T, E>, GraphError> {
        self.run_with(Some(handle.clone())).await
    }

    async fn run_with(self, target: Option<Handle>) -> Result<GraphResult<T, E>, GraphError> {
        let plan = self.plan()?;
        let graph = self.graph;
        let count = self.nodes.len();
        let slots: Arc<[OnceLock<NodeOutput<T, E>>]> =
            (0..count).map(|_| OnceLock::new()).collect();
        let mut nodes: Vec<Option<Node<T, E>>> = self.nodes.into_iter().map(Some).collect();
        let mut started = Started {
            handles: (0..count).map(|_| None).collect(),
        };
        let mut refused: Vec<Option<Arc<JoinError>>> = vec![None; count];
        for &index in &plan.order {
            let node = nodes[index].take().expect("each node is spawned once");
            let inputs = plan.inputs[index].clone();
            let task = NodeTask {
                graph,
                index,
                slots: slots.clone(),
                inputs: inputs.clone(),
                state: NodeState::Start(node.run),
                polled: false,
            };
            let mut spawn = match &target {
                Some(handle) => handle.spawn(task),
                None => crate::spawn(task),
            }
            .priority(node.priority)
            .home(node.home);
            if let Some(name) = node.name {
                spawn = spawn.name(name);
            }
            if let Some(timeout) = node.timeout {
                spawn = spawn.timeout(timeout);
            }
            if let Some(pool) = node.pool {
                spawn = spawn.pool(pool);
            }
            for &input in inputs.iter() {
                if let Some(handle) = &started.handles[input] {
                    spawn = spawn.after(handle);
                }
            }
            if node.on_failure == OnDependencyFailure::Cancel && !inputs.is_empty() {
                let slots = slots.clone();
                spawn = spawn.dependency_gate(Box::new(move || {
                    inputs
                        .iter()
                        .any(|&input| !matches!(slots[input].get(), Some(Ok(_))))
                }));
            }
            let mut handle = spawn.into_future().started().await;
            if handle.is_refused() {
                // Never created: its dependents read why from its slot.
                let error = Arc::new(
                    (&mut handle)
                        .await
                        .expect_err("a refused spawn has no output"),
                );
                let _ = slots[index].set(Err(NodeError::Task(error.clone())));
                refused[index] = Some(error);
            } else {
                started.handles[index] = Some(handle);
            }
        }
        let mut outputs = Vec::with_capacity(count);
        for index in 0..count {
            let output = match (started.handles[index].as_mut(), refused[index].take()) {
                (Some(handle), _) => match handle.await {
                    Ok(()) => slots[index]
                        .get()
                        .cloned()
                        .unwrap_or_else(|| unreachable!("a node that completed wrote its output")),
                    Err(error) => Err(NodeError::Task(Arc::new(error))),
                },
                (None, Some(error)) => Err(NodeError::Task(error)),
                (None, None) => unreachable!("every node was spawned"),
            };
            started.handles[index] = None;
            outputs.push(output);
        }
        Ok(GraphResult { graph, outputs })
    }
}

/// The handles of the nodes `run` started; dropped early (the future of
/// `run` dropped), it aborts those not finished.
struct Started {
    handles: Vec<Option<JoinHandle<()>>>,
}

impl Drop for Started {
    fn drop(&mut self) {
        for handle in self.handles.iter().flatten() {
            if !handle.is_finished() {
                handle.abort();
            }
        }
    }
}

/// A node's task: builds its inputs at its first poll, runs its future,
/// and writes its output slot (see the module docs).
struct NodeTask<T, E> {
    graph: u64,
    index: usize,
    slots: Arc<[OnceLock<NodeOutput<T, E>>]>,
    inputs: Arc<[usize]>,
    state: NodeState<T, E>,
    /// Polled at least once: a drop without a cancel reason is then a
    /// timeout (see `Drop`).
    polled: bool,
}

enum NodeState<T, E> {
    Start(NodeFn<T, E>),
    Running(NodeFuture<T, E>),
    Done,
}

impl<T, E> NodeTask<T, E> {
    fn write(&self, output: NodeOutput<T, E>) {
        let _ = self.slots[self.index].set(output);
    }

    fn inputs(&self) -> Inputs<T, E> {
        let entries = self
            .inputs
            .iter()
            .map(|&index| {
                let id = NodeId {
                    graph: self.graph,
                    index,
                };
                // Written before its task ended, which released this one.
                let output = self.slots[index]
                    .get()
                    .cloned()
                    .unwrap_or_else(|| Err(NodeError::Task(Arc::new(JoinError::shutdown()))));
                (id, output)
            })
            .collect();
        Inputs { entries }
    }

    /// The node panicked: its dependents get the message, its handle the
    /// payload (the panic goes on to the task wrapper).
    fn panicked(&self, payload: Box<dyn Any + Send>) -> ! {
        let message = panic_message(&*payload)
            .unwrap_or("Box<dyn Any>")
            .to_owned();
        self.write(Err(NodeError::Task(Arc::new(JoinError::panic(Box::new(
            message,
        ))))));
        resume_unwind(payload)
    }
}

impl<T, E> Future for NodeTask<T, E> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.polled = true;
        let polled = catch_unwind(AssertUnwindSafe(|| {
            if let NodeState::Start(_) = this.state {
                let NodeState::Start(run) = std::mem::replace(&mut this.state, NodeState::Done)
                else {
                    unreachable!()
                };
                this.state = NodeState::Running(run(this.inputs()));
            }
            match &mut this.state {
                NodeState::Running(future) => future.as_mut().poll(cx),
                _ => unreachable!("a node is not polled after it completed"),
            }
        }));
        let output = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => output,
            Err(payload) => this.panicked(payload),
        };
        // The future's destructor is the node's too: a panic there fails it.
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| this.state = NodeState::Done)) {
            this.panicked(payload);
        }
        this.write(match output {
            Ok(value) => Ok(Arc::new(value)),
            Err(error) => Err(NodeError::Failed(Arc::new(error))),
        });
        Poll::Ready(())
    }
}

impl<T, E> Drop for NodeTask<T, E> {
    fn drop(&mut self) {
        if self.slots[self.index].get().is_some() {
            return;
        }
        // Dropped unfinished by its task: the reason its handle reports.
        let error = match current_cancel_error() {
            Some(error) => error,
            // Polled, and no reason: its deadline passed.
            None if self.polled => JoinError::timed_out(),
            // Never polled and no reason: not in its own task at all (its
            // spawn was refused); `run` writes the slot.
            None => return,
        };
        self.write(Err(NodeError::Task(Arc::new(error))));
    }
}

impl<T, E> Unpin for NodeTask<T, E> {}

impl<T, E> fmt::Debug for NodeTask<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeTask")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}
