//! `gameday bench open`: the open-model scheduler at a high arrival rate
//! against one local redis-server, which is not the bottleneck there
//! (redis-benchmark, measured first, says how far from it we are).
//!
//! Printed, each measured in this run: achieved (completed / offered) and
//! the scheduler's lateness p99 for the open model; achieved for the
//! closed model at the same rate with as many users as slots; and the
//! lateness of a bare loop that only sleeps to the same arrival times, the
//! floor any scheduler on this kernel has.

use crate::bench_peer::{redis_benchmark, GetOnly};
use crate::load::{self, ArrivalProcess, LoadSpec, Model, OpenPlan, COMPLETED, OFFERED, SHED};
use crate::recorder::Recorder;
use crate::topology::plan::TopologyPlan;
use crate::topology::process::RedisProcess;
use crate::vocab::topo::Role;
use anyhow::Context;
use hdrhistogram::Histogram;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What one model achieved: (offered, completed, shed, lateness p99 µs).
async fn measure(
    addr: std::net::SocketAddr,
    model: Model,
    users: usize,
    rate: f64,
    seconds: u64,
) -> anyhow::Result<(u64, u64, u64, Option<u64>)> {
    let t0 = Instant::now();
    let recorder = Arc::new(Mutex::new(Recorder::new(t0, &["get"])));
    let spec = LoadSpec {
        model,
        ..LoadSpec::closed(users, Some(rate), Duration::from_secs(seconds))
    };
    load::drive_model(
        Arc::new(GetOnly {
            addr,
            t0,
            pipeline: 1,
        }),
        &spec,
        recorder.clone(),
        t0,
    )
    .await?;
    let rec = recorder.lock().unwrap_or_else(|p| p.into_inner());
    let run = &rec.phases()[0];
    let get = run.ops.get("get").context("no GET was recorded")?;
    anyhow::ensure!(
        get.errors == 0,
        "{} of {} GETs failed",
        get.errors,
        get.count
    );
    let late = run
        .ops
        .get(crate::load::OPEN_OPS[2])
        .map(|o| o.hist.value_at_quantile(0.99));
    Ok((
        run.counter(OFFERED),
        run.counter(COMPLETED),
        run.counter(SHED),
        late,
    ))
}

/// The lateness p99 (µs) of a loop that sleeps to each arrival time and
/// does nothing else.
fn bare_lateness_p99(rate: f64, seconds: u64) -> u64 {
    let mut hist = Histogram::<u64>::new(3).expect("valid precision");
    let t0 = std::time::Instant::now();
    let end = seconds * 1_000_000;
    let mut arrivals =
        load::Arrivals::new(ArrivalProcess::Constant, load::Shape::constant(rate), 0).peekable();
    while let Some(&at) = arrivals.peek() {
        if at >= end {
            break;
        }
        let now = t0.elapsed().as_micros() as u64;
        if at > now + 5 {
            std::thread::sleep(Duration::from_micros(at - now));
            continue;
        }
        let now = t0.elapsed().as_micros() as u64;
        while let Some(&a) = arrivals.peek() {
            if a > now || a >= end {
                break;
            }
            arrivals.next();
            hist.saturating_record(now - a);
        }
    }
    hist.value_at_quantile(0.99)
}

pub async fn bench_open(rate: f64, seconds: u64, max_in_flight: usize) -> anyhow::Result<u8> {
    anyhow::ensure!(
        rate > 0.0 && max_in_flight > 0,
        "--rate and --max-in-flight must be above 0"
    );
    let node = RedisProcess::start("bench", Role::Primary, &TopologyPlan::standalone()).await?;
    let addr = node.addr;
    println!("bench open: {rate:.0} arrivals/s for {seconds} s, {max_in_flight} slots, one local redis-server on {addr}");
    let peak = tokio::task::spawn_blocking(move || redis_benchmark(addr, max_in_flight, 200_000))
        .await??;
    println!(
        "  redis-benchmark -c {max_in_flight} -t get (the server's ceiling)  {peak:>10.0} req/s"
    );
    let open = Model::Open(OpenPlan {
        max_in_flight,
        max_queue: max_in_flight * 16,
        arrivals: ArrivalProcess::Constant,
    });
    let (offered, completed, shed, late) =
        measure(addr, open, max_in_flight, rate, seconds).await?;
    let achieved = completed as f64 / offered.max(1) as f64;
    let late = late.unwrap_or(0);
    println!(
        "  open model     offered {offered:>8}  completed {completed:>8}  shed {shed:>6}  achieved {:>6.2}%  lateness p99 {late} µs",
        achieved * 100.0
    );
    let (c_off, c_done, _, _) = measure(addr, Model::Closed, max_in_flight, rate, seconds).await?;
    let scheduled = rate * seconds as f64;
    println!(
        "  closed model   began {c_off:>8} of {scheduled:.0} scheduled  completed {c_done:>8}  achieved {:>6.2}%",
        c_done as f64 * 100.0 / scheduled
    );
    let bare = tokio::task::spawn_blocking(move || bare_lateness_p99(rate, seconds)).await?;
    println!("  a bare sleep loop to the same arrival times: lateness p99 {bare} µs");
    println!(
        "achieved/offered: {achieved:.4} (target >= 0.99); lateness p99: {late} µs (target < 1000), {:.2}× the bare loop's",
        late as f64 / bare.max(1) as f64
    );
    Ok(0)
}
