//! multipool's metrics in Prometheus' text format: a small mixed workload,
//! one export into a Prometheus recorder, and the page a scrape would get.
//!
//! ```sh
//! cargo run --example metrics_prometheus --features metrics
//! ```
//!
//! The recorder is built without its HTTP listener (the dev-dependency
//! has default features off); a service would install one with
//! `PrometheusBuilder::install` (feature `http-listener`) and call
//! `export_every` once, as the end of this example does.

use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusBuilder;
use multipool::{Priority, Runtime};

fn spin(duration: Duration) {
    let start = Instant::now();
    while start.elapsed() < duration {
        std::hint::spin_loop();
    }
}

fn main() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    metrics::set_global_recorder(recorder).expect("no other recorder is installed");

    let rt = Runtime::builder()
        .workers(2)
        .enable_latency_histograms()
        .build()
        .unwrap();
    // Exports now and every 100 ms from a thread of its own, until dropped.
    let exporter = rt
        .handle()
        .metrics()
        .export_every(Duration::from_millis(100))
        .unwrap();

    rt.block_on(async {
        let background: Vec<_> = (0..200)
            .map(|_| {
                multipool::spawn(async {
                    for _ in 0..5 {
                        spin(Duration::from_micros(50));
                        multipool::task::yield_now().await;
                    }
                })
                .priority(Priority::Low)
                .start()
            })
            .collect();
        for _ in 0..50 {
            multipool::spawn(async {})
                .priority(Priority::High)
                .await
                .unwrap();
            multipool::time::sleep(Duration::from_millis(1)).await;
        }
        // One that never ends, cancelled: `outcome="cancelled"` counts it.
        let stuck = multipool::spawn(std::future::pending::<()>()).start();
        stuck.abort();
        assert!(stuck.await.unwrap_err().is_cancelled());
        for task in background {
            task.await.unwrap();
        }
    });

    // The last figures, whatever the period: export once more by hand.
    drop(exporter);
    rt.handle().metrics().export();
    print!("{}", prometheus.render());
}
