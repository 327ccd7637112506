//! A build pipeline as a task graph: parse, then compile the modules in
//! parallel, then link, then test and package side by side, and a report
//! that runs whatever happened. Run twice: once clean, once with a module
//! that fails to compile, whose failure cancels everything downstream of it
//! (the report still runs, with the failures as its inputs).
//!
//! Run with `cargo run --example pipeline`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multipool::graph::{GraphResult, Node, NodeId, TaskGraph};
use multipool::Priority;

/// What the nodes of this graph make: one type for the whole graph, so an
/// enum of the kinds of artifact.
#[derive(Debug)]
enum Artifact {
    Modules(Vec<String>),
    Object { module: String, bytes: usize },
    Binary { bytes: usize },
    TestsPassed(usize),
    Package(String),
    Report(String),
}

impl std::fmt::Display for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Artifact::Modules(modules) => write!(f, "modules {}", modules.join(", ")),
            Artifact::Object { module, bytes } => write!(f, "{module}.o ({bytes} bytes)"),
            Artifact::Binary { bytes } => write!(f, "app ({bytes} bytes)"),
            Artifact::TestsPassed(count) => write!(f, "{count} tests passed"),
            Artifact::Package(name) => write!(f, "{name}"),
            Artifact::Report(text) => write!(f, "{text}"),
        }
    }
}

type Error = String;

/// When each node started and finished, and on which worker.
#[derive(Clone)]
struct Log {
    start: Instant,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Log {
    fn new() -> Self {
        Log {
            start: Instant::now(),
            lines: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn note(&self, what: &str) {
        let line = format!(
            "{:>6.1} ms  worker {}  {what}",
            self.start.elapsed().as_secs_f64() * 1e3,
            multipool::worker_index().map_or("-".into(), |index| index.to_string()),
        );
        self.lines.lock().unwrap().push(line);
    }

    /// Runs `work` as a node's body, noting its start and end.
    async fn step<F>(&self, name: String, work: F) -> Result<Artifact, Error>
    where
        F: std::future::Future<Output = Result<Artifact, Error>>,
    {
        self.note(&format!("start  {name}"));
        let result = work.await;
        match &result {
            Ok(_) => self.note(&format!("done   {name}")),
            Err(error) => self.note(&format!("FAILED {name}: {error}")),
        }
        result
    }
}

/// Some work: `ms` milliseconds of waiting (a real build would run a
/// compiler here, on `spawn_blocking`).
async fn work(ms: u64) {
    multipool::time::sleep(Duration::from_millis(ms)).await;
}

const MODULES: [&str; 6] = ["lexer", "parser", "types", "codegen", "runtime", "cli"];

/// The graph, and its nodes with their names, in the order to print them.
type Pipeline = (TaskGraph<Artifact, Error>, Vec<(NodeId, String)>);

fn pipeline(log: &Log, broken: Option<&'static str>) -> Pipeline {
    let mut graph = TaskGraph::new();
    let mut shown = Vec::new();

    let l = log.clone();
    let parse = graph.add(
        Node::new(move |_| async move {
            l.step("parse".into(), async {
                work(5).await;
                Ok(Artifact::Modules(
                    MODULES.iter().map(|m| m.to_string()).collect(),
                ))
            })
            .await
        })
        .name("parse")
        .priority(Priority::High),
    );
    shown.push((parse, "parse".to_string()));

    let mut objects = Vec::new();
    for (index, module) in MODULES.into_iter().enumerate() {
        let l = log.clone();
        let object = graph.add(
            Node::new(move |inputs| async move {
                l.step(format!("compile {module}"), async move {
                    let Some(Artifact::Modules(modules)) = inputs.values().next() else {
                        return Err("no module list".to_string());
                    };
                    assert!(modules.iter().any(|m| m == module));
                    work(10 + 5 * index as u64).await;
                    if broken == Some(module) {
                        return Err(format!("{module}.rs:12: expected `;`"));
                    }
                    Ok(Artifact::Object {
                        module: module.to_string(),
                        bytes: 1_000 * (index + 1),
                    })
                })
                .await
            })
            .name(format!("compile {module}"))
            .after([parse]),
        );
        objects.push(object);
        shown.push((object, format!("compile {module}")));
    }

    let l = log.clone();
    let link = graph.add(
        Node::new(move |inputs| async move {
            l.step("link".into(), async move {
                work(10).await;
                let bytes = inputs
                    .values()
                    .map(|object| match object {
                        Artifact::Object { bytes, .. } => *bytes,
                        _ => 0,
                    })
                    .sum();
                Ok(Artifact::Binary { bytes })
            })
            .await
        })
        .name("link")
        .priority(Priority::High)
        .after(objects.iter().copied()),
    );
    shown.push((link, "link".to_string()));

    let l = log.clone();
    let test = graph.add(
        Node::new(move |_| async move {
            l.step("test".into(), async {
                work(20).await;
                Ok(Artifact::TestsPassed(128))
            })
            .await
        })
        .name("test")
        .after([link]),
    );
    let l = log.clone();
    let package = graph.add(
        Node::new(move |inputs| async move {
            l.step("package".into(), async move {
                work(5).await;
                let Some(Artifact::Binary { bytes }) = inputs.values().next() else {
                    return Err("no binary".to_string());
                };
                Ok(Artifact::Package(format!(
                    "app-0.1.0.tar.gz ({bytes} bytes)"
                )))
            })
            .await
        })
        .name("package")
        .priority(Priority::Low)
        .after([link]),
    );
    shown.extend([(test, "test".to_string()), (package, "package".to_string())]);

    let l = log.clone();
    let names = [(test, "test"), (package, "package")];
    let report = graph.add(
        Node::new(move |inputs| async move {
            l.step("report".into(), async move {
                let name = |node| names.iter().find(|(id, _)| *id == node).map(|(_, n)| *n);
                let failed: Vec<String> = inputs
                    .failures()
                    .map(|(node, error)| format!("{}: {error}", name(node).unwrap_or("?")))
                    .collect();
                Ok(Artifact::Report(if failed.is_empty() {
                    "all green".to_string()
                } else {
                    format!("{} step(s) failed: {}", failed.len(), failed.join("; "))
                }))
            })
            .await
        })
        .name("report")
        .priority(Priority::Low)
        .after([test, package])
        .run_anyway(),
    );
    shown.push((report, "report".to_string()));
    (graph, shown)
}

fn print(log: &Log, result: &GraphResult<Artifact, Error>, shown: &[(NodeId, String)]) {
    println!("order:");
    for line in log.lines.lock().unwrap().iter() {
        println!("  {line}");
    }
    println!("outputs:");
    for (node, name) in shown {
        match result.get(*node).unwrap() {
            Ok(artifact) => println!("  {name:<16} ok   {artifact}"),
            Err(error) => println!("  {name:<16} err  {error}"),
        }
    }
}

#[multipool::main(workers = 4)]
async fn main() {
    println!("== clean build ==");
    let log = Log::new();
    let (graph, shown) = pipeline(&log, None);
    let result = graph.run().await.expect("the pipeline is acyclic");
    print(&log, &result, &shown);
    assert!(result.is_ok());

    println!("\n== `types` fails to compile ==");
    let log = Log::new();
    let (graph, shown) = pipeline(&log, Some("types"));
    let result = graph.run().await.expect("the pipeline is acyclic");
    print(&log, &result, &shown);
    let cancelled = result
        .failures()
        .filter(|(_, error)| error.is_dependency_failed())
        .count();
    println!("\n{cancelled} step(s) cancelled because an input failed");
}
