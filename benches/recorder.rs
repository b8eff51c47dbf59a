//! What recording one op costs (issue 14: under 1 µs at the median): alone,
//! and through the one lock every user of a run shares, with 50 threads
//! recording at once on this machine's cores.

use criterion::{criterion_group, criterion_main, Criterion};
use gameday::testing::{Counter, Outcome, Recorder, Sample, Trace};
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One cache-aside GET that hit: a sample and a counter, as a user files it.
fn get_at(t_us: u64) -> Trace {
    Trace {
        samples: vec![Sample {
            op: "get",
            intended_us: t_us,
            start_us: t_us,
            end_us: t_us + 180,
            outcome: Outcome::Ok,
        }],
        counters: vec![Counter("hits")],
    }
}

fn recorder() -> Recorder {
    let mut rec = Recorder::new(tokio::time::Instant::now(), &["get"]);
    // A fault phase, as in a game day: a sample is filed under two phases.
    rec.begin_phase("fault:slow", 0);
    rec
}

fn alone(c: &mut Criterion) {
    let mut rec = recorder();
    // 50 000 ops/s of intended starts: a new second every 50 000 ops.
    let mut t = 0;
    let mut trace = get_at(0);
    c.bench_function("record one GET", |b| {
        b.iter(|| {
            t += 20;
            trace.samples[0].intended_us = t;
            trace.samples[0].start_us = t;
            trace.samples[0].end_us = t + 180;
            rec.record(black_box(&trace));
        })
    });
}

fn shared(c: &mut Criterion) {
    const THREADS: u64 = 50;
    c.bench_function("record one GET, 50 threads behind the lock", |b| {
        b.iter_custom(|iters| {
            let rec = Arc::new(Mutex::new(recorder()));
            let per = iters.div_ceil(THREADS);
            let start = Instant::now();
            let threads: Vec<_> = (0..THREADS)
                .map(|u| {
                    let rec = rec.clone();
                    std::thread::spawn(move || {
                        let mut trace = get_at(0);
                        for i in 0..per {
                            let t = (i * THREADS + u) * 20;
                            trace.samples[0].intended_us = t;
                            trace.samples[0].start_us = t;
                            trace.samples[0].end_us = t + 180;
                            rec.lock().unwrap().record(&trace);
                        }
                    })
                })
                .collect();
            threads.into_iter().for_each(|t| t.join().unwrap());
            let took = start.elapsed();
            // Per op: the wall time over every op the threads recorded.
            Duration::from_secs_f64(took.as_secs_f64() * iters as f64 / (per * THREADS) as f64)
        })
    });
}

criterion_group!(benches, alone, shared);
criterion_main!(benches);
