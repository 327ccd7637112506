//! Feature `metrics`: `RuntimeMetrics::export` records, through the
//! `metrics` facade, the same figures the getters read, under the
//! documented names and labels; `export_every` records on a period and
//! stops when its handle is dropped or the runtime shuts down.
//!
//! Exports go to a `DebuggingRecorder` local to the test's thread (so
//! tests run in parallel without seeing each other's metrics), except in
//! the one test of `export_every`, whose thread sees only the global
//! recorder.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::watchdog;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use multipool::task::Outcome;
use multipool::{Priority, Runtime, RuntimeMetrics};

/// A metric as exported: its name and labels, sorted.
type Key = (String, Vec<(String, String)>);

fn key(name: &str, labels: &[(&str, &str)]) -> Key {
    let mut labels: Vec<_> = labels
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

/// What one recorder holds now.
fn read(recorder: &DebuggingRecorder) -> HashMap<Key, DebugValue> {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(composite, _unit, _help, value)| {
            let key = composite.key();
            let mut labels: Vec<_> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((key.name().to_owned(), labels), value)
        })
        .collect()
}

/// Exports `metrics` to a fresh recorder and reads it back.
fn export(metrics: &RuntimeMetrics) -> HashMap<Key, DebugValue> {
    let recorder = DebuggingRecorder::new();
    metrics::with_local_recorder(&recorder, || metrics.export());
    read(&recorder)
}

fn counter(exported: &HashMap<Key, DebugValue>, name: &str, labels: &[(&str, &str)]) -> u64 {
    match exported.get(&key(name, labels)) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name} {labels:?}: expected a counter, found {other:?}"),
    }
}

fn gauge(exported: &HashMap<Key, DebugValue>, name: &str, labels: &[(&str, &str)]) -> f64 {
    match exported.get(&key(name, labels)) {
        Some(DebugValue::Gauge(x)) => x.0,
        other => panic!("{name} {labels:?}: expected a gauge, found {other:?}"),
    }
}

const PRIORITIES: [(Priority, &str); 3] = [
    (Priority::High, "high"),
    (Priority::Normal, "normal"),
    (Priority::Low, "low"),
];

#[test]
fn counters_and_gauges_match_the_getters() {
    watchdog(60, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        rt.block_on(async {
            for _ in 0..100 {
                multipool::spawn(async {}).await.unwrap();
            }
            for _ in 0..10 {
                multipool::spawn(async {})
                    .priority(Priority::High)
                    .await
                    .unwrap();
            }
            for _ in 0..5 {
                multipool::spawn(multipool::task::yield_now())
                    .priority(Priority::Low)
                    .await
                    .unwrap();
            }
            let err = multipool::spawn(async { panic!("boom") })
                .await
                .unwrap_err();
            assert!(err.is_panic());
            let pending = multipool::spawn(std::future::pending::<()>()).start();
            pending.abort();
            assert!(pending.await.unwrap_err().is_cancelled());
        });
        let metrics = rt.handle().metrics();
        // Nothing runs once both workers park: the counts stand still.
        let start = Instant::now();
        while metrics.num_parked_workers() < 2 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the workers never park"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let exported = export(&metrics);
        let pool = ("pool", "default");

        assert_eq!(
            counter(
                &exported,
                "multipool_spawned_tasks_total",
                &[pool, ("priority", "normal")]
            ),
            102
        );
        for (priority, name) in PRIORITIES {
            assert_eq!(
                counter(
                    &exported,
                    "multipool_spawned_tasks_total",
                    &[pool, ("priority", name)]
                ),
                metrics.spawned_count(priority)
            );
            assert_eq!(
                counter(
                    &exported,
                    "multipool_polls_total",
                    &[pool, ("priority", name)]
                ),
                metrics.poll_count(priority)
            );
        }
        assert_eq!(
            counter(
                &exported,
                "multipool_polls_total",
                &[pool, ("priority", "low")]
            ),
            10,
            "each Low task yields once"
        );
        for (outcome, name) in [
            (Outcome::Completed, "completed"),
            (Outcome::Cancelled, "cancelled"),
            (Outcome::Panicked, "panicked"),
            (Outcome::TimedOut, "timed_out"),
            (Outcome::Rejected, "rejected"),
            (Outcome::Shutdown, "shutdown"),
        ] {
            assert_eq!(
                counter(
                    &exported,
                    "multipool_tasks_ended_total",
                    &[pool, ("outcome", name)]
                ),
                metrics.outcome_count(outcome),
                "{name}"
            );
        }
        assert_eq!(
            counter(
                &exported,
                "multipool_tasks_ended_total",
                &[pool, ("outcome", "completed")]
            ),
            115
        );

        assert_eq!(gauge(&exported, "multipool_workers", &[pool]), 2.0);
        assert_eq!(gauge(&exported, "multipool_max_workers", &[pool]), 2.0);
        assert_eq!(gauge(&exported, "multipool_alive_tasks", &[pool]), 0.0);
        assert_eq!(
            gauge(&exported, "multipool_global_queue_depth", &[pool]),
            0.0
        );
        assert_eq!(gauge(&exported, "multipool_timers", &[pool]), 0.0);
        assert_eq!(gauge(&exported, "multipool_blocking_threads", &[]), 0.0);
        assert_eq!(
            counter(&exported, "multipool_workers_started_total", &[pool]),
            2
        );
        assert!(!exported.contains_key(&key("multipool_max_queued", &[pool])));

        // Per worker: the polls match, and add up.
        let mut polls = 0;
        for worker in 0..metrics.max_workers() {
            let index = worker.to_string();
            let labels = [pool, ("worker", index.as_str())];
            let worker_polls = counter(&exported, "multipool_worker_polls_total", &labels);
            assert_eq!(worker_polls, metrics.worker_poll_count(worker));
            polls += worker_polls;
            // Parks go on while the workers idle: the export saw no more
            // than there are now.
            assert!(
                counter(&exported, "multipool_worker_parks_total", &labels)
                    <= metrics.worker_park_count(worker)
            );
            let busy = counter(
                &exported,
                "multipool_worker_busy_microseconds_total",
                &labels,
            );
            assert!(busy as u128 <= metrics.worker_total_busy_duration(worker).as_micros());
            for name in [
                "multipool_worker_local_queue_depth",
                "multipool_worker_stolen_tasks_total",
                "multipool_worker_steals_total",
                "multipool_worker_noops_total",
            ] {
                assert!(
                    exported.contains_key(&key(name, &labels)),
                    "{name} {labels:?}"
                );
            }
        }
        let by_priority: u64 = Priority::ALL.iter().map(|&p| metrics.poll_count(p)).sum();
        assert_eq!(polls, by_priority);

        // No histograms, no summaries.
        assert!(!exported
            .keys()
            .any(|(name, _)| name.starts_with("multipool_schedule_latency")));
    });
}

#[test]
fn latency_histograms_become_summaries() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(2)
            .enable_latency_histograms()
            .latency_sampling(1)
            .build()
            .unwrap();
        rt.block_on(async {
            for _ in 0..100 {
                multipool::spawn(async {})
                    .priority(Priority::High)
                    .await
                    .unwrap();
            }
        });
        let metrics = rt.handle().metrics();
        let exported = export(&metrics);
        let pool = ("pool", "default");
        for (summary, histogram) in [
            (
                "multipool_schedule_latency_seconds",
                metrics.schedule_latency(Priority::High).unwrap(),
            ),
            (
                "multipool_poll_time_seconds",
                metrics.poll_time(Priority::High).unwrap(),
            ),
        ] {
            let labels = [pool, ("priority", "high")];
            assert_eq!(histogram.count(), 100);
            assert_eq!(
                counter(&exported, &format!("{summary}_count"), &labels),
                100
            );
            let sum = gauge(&exported, &format!("{summary}_sum"), &labels);
            let mean = histogram.mean().as_secs_f64();
            assert!(
                (sum / 100.0 - mean).abs() <= 1e-9,
                "{summary}: sum {sum} s, mean {mean} s"
            );
            for (q, label) in [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99")] {
                assert_eq!(
                    gauge(
                        &exported,
                        summary,
                        &[pool, ("priority", "high"), ("quantile", label)]
                    ),
                    histogram.percentile(q).as_secs_f64(),
                    "{summary} q{label}"
                );
            }
            // A level that ran nothing: a count and a sum of 0, no quantiles.
            let labels = [pool, ("priority", "low")];
            assert_eq!(counter(&exported, &format!("{summary}_count"), &labels), 0);
            assert_eq!(gauge(&exported, &format!("{summary}_sum"), &labels), 0.0);
            assert!(!exported.contains_key(&key(
                summary,
                &[pool, ("priority", "low"), ("quantile", "0.5")]
            )));
        }
    });
}

#[test]
fn a_named_pool_is_the_pool_label() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(1)
            .pool("cpu", |pool| pool.workers(1).max_queued(64))
            .build()
            .unwrap();
        rt.block_on(async {
            for _ in 0..7 {
                multipool::spawn(async {}).pool("cpu").await.unwrap();
            }
        });
        let exported = export(&rt.handle().named_pool("cpu").unwrap().metrics());
        let pool = ("pool", "cpu");
        assert_eq!(
            counter(
                &exported,
                "multipool_spawned_tasks_total",
                &[pool, ("priority", "normal")]
            ),
            7
        );
        assert_eq!(gauge(&exported, "multipool_max_queued", &[pool]), 64.0);
        assert!(!exported
            .keys()
            .any(|(_, labels)| labels.contains(&("pool".into(), "default".into()))));
    });
}

#[test]
fn prometheus_renders_the_export() {
    watchdog(60, || {
        let rt = Runtime::builder()
            .workers(2)
            .enable_latency_histograms()
            .latency_sampling(1)
            .build()
            .unwrap();
        rt.block_on(async {
            for _ in 0..100 {
                multipool::spawn(async {}).await.unwrap();
            }
        });
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || rt.handle().metrics().export());
        let text = handle.render();
        for line in [
            "# TYPE multipool_spawned_tasks_total counter",
            "multipool_spawned_tasks_total{pool=\"default\",priority=\"normal\"} 100",
            "multipool_tasks_ended_total{pool=\"default\",outcome=\"completed\"} 100",
            "# TYPE multipool_workers gauge",
            "multipool_workers{pool=\"default\"} 2",
            "multipool_schedule_latency_seconds_count{pool=\"default\",priority=\"normal\"} 100",
            "# HELP multipool_alive_tasks Tasks spawned and not yet ended",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line `{line}` in:\n{text}"
            );
        }
        assert!(text.contains(
            "multipool_schedule_latency_seconds{pool=\"default\",priority=\"normal\",quantile=\"0.99\"} "
        ));
    });
}

/// The only test that installs a global recorder: `export_every`'s thread
/// sees no other.
#[test]
fn export_every_records_on_its_period_and_stops() {
    watchdog(60, || {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().unwrap();
        let spawned =
            |priority: &str| {
                let want = key(
                    "multipool_spawned_tasks_total",
                    &[("pool", "periodic"), ("priority", priority)],
                );
                snapshotter.snapshot().into_vec().into_iter().find_map(
                    |(composite, _, _, value)| {
                        let k = composite.key();
                        let mut labels: Vec<_> = k
                            .labels()
                            .map(|l| (l.key().to_owned(), l.value().to_owned()))
                            .collect();
                        labels.sort();
                        ((k.name().to_owned(), labels) == want).then_some(value)
                    },
                )
            };
        let wait_for = |what: &dyn Fn() -> bool| {
            let start = Instant::now();
            while !what() {
                assert!(start.elapsed() < Duration::from_secs(30), "not exported");
                std::thread::sleep(Duration::from_millis(1));
            }
        };

        let rt = Runtime::builder()
            .workers(1)
            .pool("periodic", |pool| pool.workers(1))
            .build()
            .unwrap();
        let exporter = rt
            .handle()
            .named_pool("periodic")
            .unwrap()
            .metrics()
            .export_every(Duration::from_millis(5))
            .unwrap();
        // The first export is at once.
        wait_for(&|| spawned("high") == Some(DebugValue::Counter(0)));
        for expected in [3, 6] {
            rt.block_on(async {
                for _ in 0..3 {
                    multipool::spawn(async {})
                        .pool("periodic")
                        .priority(Priority::High)
                        .await
                        .unwrap();
                }
            });
            wait_for(&|| spawned("high") == Some(DebugValue::Counter(expected)));
        }
        assert!(!exporter.is_finished());
        // The thread stops by itself once the runtime has shut down.
        drop(rt);
        wait_for(&|| exporter.is_finished());
        drop(exporter);

        // Dropping the handle wakes the thread: no wait for the period
        // (not even one the clock cannot reach).
        let rt = Runtime::builder().workers(1).build().unwrap();
        for period in [Duration::from_secs(3600), Duration::MAX] {
            let exporter = rt.handle().metrics().export_every(period).unwrap();
            std::thread::sleep(Duration::from_millis(10));
            assert!(!exporter.is_finished(), "{period:?}");
            let start = Instant::now();
            drop(exporter);
            assert!(start.elapsed() < Duration::from_secs(10));
        }
    });
}

#[test]
#[should_panic(expected = "needs a period greater than zero")]
fn a_zero_period_panics() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let _exporter = rt.handle().metrics().export_every(Duration::ZERO);
}
