//! What a priority buys: the schedule latency of a stream of `High` tasks
//! while a flood of `Low` work keeps both workers busy, under three
//! policies, as a table on stdout and a picture (the latency CDF per
//! priority, one panel per policy) in `docs/latency_report.svg`.
//!
//! ```sh
//! cargo run --release --example latency_report
//! ```
//!
//! The load, the same in each run (2 workers, `ROUNDS` slices of `SLICE`,
//! each on a fresh runtime, the three policies taking turns so that a
//! busy moment of the machine falls on all of them alike):
//! * a flood: a feeder thread keeps `BACKLOG` tasks alive, each spinning
//!   `LOW_WORK` (CPU-bound, one poll), at `Low`;
//! * a stream: another thread spawns one task spinning `HIGH_WORK` every
//!   `HIGH_EVERY`, at `High`.
//!
//! Both threads are outside the pool, so every task goes through the
//! pool's shared queues. The runs:
//! * (a) the default policy: levels in order, lower levels keeping a
//!   minimum share of the polls;
//! * (b) `Builder::strict_priority()`: levels in order, no share;
//! * (c) everything at `Normal`: one FIFO queue. Its histogram mixes both
//!   streams; in a FIFO, a task of the stream waits as long as any other.
//!
//! The latencies come from `Builder::enable_latency_histograms` and
//! `RuntimeMetrics::schedule_latency(p).buckets()` (spawn or wake-up to
//! the start of the poll; buckets within 25%, so the CDF is a staircase of
//! that resolution), the slices' buckets added up; p50 and p99 are read
//! from them as `Histogram::percentile` reads its own. Absolute figures depend on the machine (a shared
//! 2-core one preempts workers); the gap between the policies does not.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use multipool::{Builder, Histogram, Priority, Runtime};
use plotters::prelude::*;

const WORKERS: usize = 2;
const ROUNDS: u32 = 5;
const SLICE: Duration = Duration::from_millis(500);
const BACKLOG: usize = 200;
const LOW_WORK: Duration = Duration::from_micros(50);
const HIGH_WORK: Duration = Duration::from_micros(10);
const HIGH_EVERY: Duration = Duration::from_millis(1);

/// The x axis, in microseconds.
const X_MIN: f64 = 1.0;
const X_MAX: f64 = 1e5;

struct Policy {
    title: &'static str,
    builder: fn() -> Builder,
    /// The levels of the flood and of the stream.
    flood: Priority,
    stream: Priority,
}

const POLICIES: [Policy; 3] = [
    Policy {
        title: "(a) default: minimum shares",
        builder: Runtime::builder,
        flood: Priority::Low,
        stream: Priority::High,
    },
    Policy {
        title: "(b) strict_priority()",
        builder: || Runtime::builder().strict_priority(),
        flood: Priority::Low,
        stream: Priority::High,
    },
    Policy {
        title: "(c) everything at Normal",
        builder: Runtime::builder,
        flood: Priority::Normal,
        stream: Priority::Normal,
    },
];

fn spin(duration: Duration) {
    let start = Instant::now();
    while start.elapsed() < duration {
        std::hint::spin_loop();
    }
}

/// Latency buckets added up over several runs: bucket start (ns) →
/// (bucket end, count).
#[derive(Default)]
struct Latencies(BTreeMap<u128, (Duration, u64)>);

impl Latencies {
    fn add(&mut self, histogram: &Histogram) {
        for (range, n) in histogram.buckets() {
            self.0
                .entry(range.start.as_nanos())
                .or_insert((range.end, 0))
                .1 += n;
        }
    }

    fn count(&self) -> u64 {
        self.0.values().map(|&(_, n)| n).sum()
    }

    /// As `Histogram::percentile`: the upper end of the bucket holding
    /// the `q`-th value.
    fn percentile(&self, q: f64) -> Duration {
        let count = self.count();
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count.max(1));
        let mut seen = 0;
        for &(end, n) in self.0.values() {
            seen += n;
            if seen >= rank {
                return end.saturating_sub(Duration::from_nanos(1));
            }
        }
        Duration::ZERO
    }

    /// The CDF as points (latency in µs, fraction), for a log x axis:
    /// each bucket's start at the fraction below it, its end at the
    /// fraction up to it (linear between them).
    fn cdf(&self) -> Vec<(f64, f64)> {
        let total = self.count() as f64;
        let clamp = |d: Duration| (d.as_secs_f64() * 1e6).clamp(X_MIN, X_MAX);
        let mut points = vec![(X_MIN, 0.0)];
        let mut seen = 0;
        for (&start, &(end, n)) in &self.0 {
            let start = Duration::from_nanos(start as u64);
            points.push((clamp(start), seen as f64 / total));
            seen += n;
            points.push((clamp(end), seen as f64 / total));
        }
        points.push((X_MAX, 1.0));
        points
    }
}

/// Runs the load under `policy` for one slice; the schedule latency per
/// level.
fn run(policy: &Policy) -> Vec<(Priority, Histogram)> {
    let rt = (policy.builder)()
        .workers(WORKERS)
        .enable_latency_histograms()
        // Every spawn and wake-up, not the default one in 64: the stream
        // is a few thousand tasks, and the report is about their tail.
        .latency_sampling(1)
        .build()
        .expect("a runtime");
    let stop = Arc::new(AtomicBool::new(false));

    let feeder = {
        let handle = rt.handle().clone();
        let stop = stop.clone();
        let flood = policy.flood;
        thread::spawn(move || {
            let metrics = handle.metrics();
            while !stop.load(Ordering::Relaxed) {
                for _ in metrics.num_alive_tasks()..BACKLOG {
                    handle
                        .spawn(async { spin(LOW_WORK) })
                        .priority(flood)
                        .detach();
                }
                thread::sleep(Duration::from_micros(500));
            }
        })
    };
    // Let the flood fill the queues before the stream starts.
    thread::sleep(Duration::from_millis(50));
    let stream = {
        let handle = rt.handle().clone();
        let stop = stop.clone();
        let level = policy.stream;
        thread::spawn(move || {
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                handle
                    .spawn(async { spin(HIGH_WORK) })
                    .priority(level)
                    .detach();
                next += HIGH_EVERY;
                thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };

    thread::sleep(SLICE);
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    stream.join().unwrap();
    let metrics = rt.handle().metrics();
    let histograms = Priority::ALL
        .into_iter()
        .filter_map(|p| Some((p, metrics.schedule_latency(p)?)))
        .filter(|(_, h)| h.count() > 0)
        .collect();
    drop(rt); // cancels the rest of the flood
    histograms
}

/// A level's name in the table and the legend.
fn name(policy: &Policy, priority: Priority) -> String {
    if policy.flood == policy.stream {
        format!("{priority:?} (both streams)")
    } else {
        format!("{priority:?}")
    }
}

fn color(priority: Priority) -> RGBColor {
    match priority {
        Priority::High => RGBColor(214, 39, 40),
        Priority::Normal => RGBColor(44, 160, 44),
        Priority::Low => RGBColor(31, 119, 180),
    }
}

fn micros(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn draw(
    path: &std::path::Path,
    runs: &[(&Policy, Vec<(Priority, Latencies)>)],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1500, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(50);
    title.titled(
        &format!(
            "multipool schedule latency: High stream ({} µs work every {} ms) vs Low flood ({} µs tasks), {WORKERS} workers",
            HIGH_WORK.as_micros(),
            HIGH_EVERY.as_millis(),
            LOW_WORK.as_micros()
        ),
        ("sans-serif", 20),
    )?;
    for (panel, (policy, histograms)) in body.split_evenly((1, runs.len())).iter().zip(runs) {
        let mut chart = ChartBuilder::on(panel)
            .caption(policy.title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((X_MIN..X_MAX).log_scale(), 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc("schedule latency (µs, log scale)")
            .y_desc("fraction of polls")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .draw()?;
        for level in [0.5, 0.99] {
            chart.draw_series(LineSeries::new(
                [(X_MIN, level), (X_MAX, level)],
                BLACK.mix(0.25),
            ))?;
        }
        for (priority, latencies) in histograms {
            let c = color(*priority);
            chart
                .draw_series(LineSeries::new(latencies.cdf(), c.stroke_width(2)))?
                .label(format!(
                    "{}: p50 {}, p99 {}",
                    name(policy, *priority),
                    micros(latencies.percentile(0.5)),
                    micros(latencies.percentile(0.99))
                ))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut runs: Vec<(&Policy, Vec<(Priority, Latencies)>)> =
        POLICIES.iter().map(|policy| (policy, Vec::new())).collect();
    eprintln!(
        "{ROUNDS} rounds of {SLICE:?} per policy ({:?} in all)",
        SLICE * ROUNDS * POLICIES.len() as u32
    );
    for _ in 0..ROUNDS {
        for (policy, latencies) in &mut runs {
            for (priority, histogram) in run(policy) {
                match latencies.iter_mut().find(|(p, _)| *p == priority) {
                    Some((_, sum)) => sum.add(&histogram),
                    None => {
                        let mut sum = Latencies::default();
                        sum.add(&histogram);
                        latencies.push((priority, sum));
                    }
                }
            }
        }
    }
    for (_, latencies) in &mut runs {
        latencies.sort_by_key(|(p, _)| *p);
    }

    println!("| run | priority | polls | p50 | p99 |");
    println!("|---|---|---:|---:|---:|");
    for (policy, latencies) in &runs {
        for (priority, sums) in latencies {
            println!(
                "| {} | {} | {} | {} | {} |",
                policy.title,
                name(policy, *priority),
                sums.count(),
                micros(sums.percentile(0.5)),
                micros(sums.percentile(0.99)),
            );
        }
    }

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/latency_report.svg");
    std::fs::create_dir_all(path.parent().unwrap())?;
    draw(&path, &runs)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
