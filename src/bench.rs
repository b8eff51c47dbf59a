//! `gameday bench`: measurements against peers run on the same machine in
//! the same invocation, printed as ratios (the machines are shared and
//! noisy, so only same-run ratios mean anything).
//!
//! - `load`: gameday's maximum GET throughput (goose users, the real
//!   recorder) vs `redis-benchmark -t get` at the same connection count,
//!   against the same local redis-server.
//! - `proxy` (bench_proxy.rs): the embedded proxy's cost and its toxics'
//!   accuracy.

use crate::bench_peer::{redis_benchmark_pipelined, GetOnly};
use crate::load::{self, LoadSpec};
use crate::recorder::Recorder;
use crate::topology::plan::TopologyPlan;
use crate::topology::process::RedisProcess;
use crate::vocab::topo::Role;
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, clap::Subcommand)]
pub enum Which {
    /// Max GET throughput: gameday's load engine vs redis-benchmark (and
    /// memtier_benchmark when it is on PATH).
    Load {
        #[arg(long, default_value_t = 50)]
        connections: usize,
        /// GETs per round trip, as redis-benchmark -P and memtier --pipeline.
        #[arg(long, default_value_t = 1)]
        pipeline: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Time until each topology is ready (assembled through its proxies).
    Ready {
        #[arg(long, value_enum, default_value = "process")]
        backend: crate::vocab::topo::Backend,
        /// Starts per topology; the median is reported.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// Max requests/s at the reference shop's /healthz: gameday vs wrk.
    Http {
        #[arg(long, default_value_t = 50)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// The regression gate's false-positive rate and smallest detected
    /// latency regression, over real runs.
    Gate(crate::bench_gate::GateBench),
    /// The open-model scheduler at a high arrival rate: achieved vs
    /// offered and its lateness, vs the closed model and a bare sleep loop.
    Open {
        #[arg(long, default_value_t = 50_000.0)]
        rate: f64,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        max_in_flight: usize,
    },
    /// Memory over a long cache-aside run: RSS at 1, 10 and M minutes.
    Soak(crate::bench_soak::SoakBench),
    /// What the embedded proxy costs (latency, throughput, CPU) and how
    /// exact its latency and bandwidth toxics are.
    Proxy(crate::bench_proxy::ProxyBench),
}

pub async fn run(which: Which) -> anyhow::Result<u8> {
    match which {
        Which::Load {
            connections,
            pipeline,
            seconds,
        } => bench_load(connections, pipeline, seconds).await,
        Which::Proxy(args) => crate::bench_proxy::bench_proxy(args).await,
        Which::Ready { backend, repeat } => bench_ready(backend, repeat).await,
        Which::Http {
            connections,
            seconds,
        } => crate::bench_http::bench_http(connections, seconds).await,
        Which::Gate(args) => crate::bench_gate::bench_gate(args).await,
        Which::Soak(args) => crate::bench_soak::bench_soak(args).await,
        Which::Open {
            rate,
            seconds,
            max_in_flight,
        } => crate::bench_open::bench_open(rate, seconds, max_in_flight).await,
    }
}

async fn engine_throughput(
    addr: SocketAddr,
    users: usize,
    pipeline: usize,
    seconds: u64,
    goose_metrics: bool,
) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let workload = GetOnly { addr, t0, pipeline };
    let recorder = Arc::new(Mutex::new(Recorder::new(t0, &["get"])));
    let spec = LoadSpec {
        goose_metrics,
        ..LoadSpec::closed(users, None, Duration::from_secs(seconds))
    };
    load::drive(std::sync::Arc::new(workload), &spec, recorder.clone(), t0).await?;
    let rec = recorder.lock().expect("recorder lock");
    let get = rec.phases()[0]
        .ops
        .get("get")
        .context("no GET was recorded")?;
    if get.errors > 0 {
        bail!("{} of {} GETs failed", get.errors, get.count);
    }
    Ok(get.count as f64 / seconds as f64)
}

async fn bench_load(connections: usize, pipeline: usize, seconds: u64) -> anyhow::Result<u8> {
    let node = RedisProcess::start("bench", Role::Primary, &TopologyPlan::standalone()).await?;
    let addr = node.addr;
    let p = pipeline.max(1);
    println!(
        "bench load: {connections} connections, pipeline {p}, one local redis-server on {addr}"
    );
    let n = 200_000 * p as u64;
    let peer =
        tokio::task::spawn_blocking(move || redis_benchmark_pipelined(addr, connections, p, n))
            .await??;
    println!("  redis-benchmark -c {connections} -P {p} -t get   {peer:>10.0} req/s");
    let memtier =
        tokio::task::spawn_blocking(move || memtier(addr, connections, p, seconds)).await?;
    match &memtier {
        Some(Ok(m)) => {
            println!("  memtier_benchmark -t 1 -c {connections} --pipeline {p}  {m:>10.0} req/s")
        }
        Some(Err(e)) => println!("  memtier_benchmark failed: {e:#}"),
        None => println!("  memtier_benchmark: not on PATH (not in this machine's registries)"),
    }
    let ours = engine_throughput(addr, connections, p, seconds, true).await?;
    println!(
        "  gameday (goose + recorder + goose metrics)  {ours:>10.0} ops/s   ratio {:.2}",
        ours / peer
    );
    let bare = engine_throughput(addr, connections, p, seconds, false).await?;
    println!(
        "  gameday (goose + recorder only)           {bare:>10.0} ops/s   ratio {:.2}",
        bare / peer
    );
    println!(
        "ratio gameday/redis-benchmark: {:.2} (target >= 1.0)",
        ours / peer
    );
    if let Some(Ok(m)) = memtier {
        println!("ratio gameday/memtier: {:.2} (target >= 1.0)", ours / m);
    }
    Ok(0)
}

/// `memtier_benchmark` (one thread, GETs only) when it is on PATH: its
/// total ops/s. `None` when it is not installed.
fn memtier(
    addr: SocketAddr,
    connections: usize,
    pipeline: usize,
    seconds: u64,
) -> Option<anyhow::Result<f64>> {
    let out = std::process::Command::new("memtier_benchmark")
        .args(["-s", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-t", "1", "-c", &connections.to_string()])
        .args(["--pipeline", &pipeline.to_string(), "--ratio", "0:1"])
        .args(["--test-time", &seconds.to_string(), "--hide-histogram"])
        .output();
    let out = match out {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        other => other,
    };
    Some((|| {
        let out = out.context("cannot run memtier_benchmark")?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("{text}{}", String::from_utf8_lossy(&out.stderr));
        }
        // The "Totals" row of its table: the second column is ops/sec.
        text.lines()
            .find(|l| l.starts_with("Totals"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("cannot read memtier's output: {text}"))
    })())
}

async fn bench_ready(backend: crate::vocab::topo::Backend, repeat: usize) -> anyhow::Result<u8> {
    use crate::vocab::topo::TopologyKind::*;
    println!("bench ready: {backend:?} backend, median of {repeat} starts (provision + proxies + assembly)");
    // The targets the project set for the docker backend (none for replicated).
    let targets = [
        (Standalone, Some(2.0)),
        (Replicated, None),
        (Sentinel, Some(8.0)),
        (Cluster, Some(10.0)),
    ];
    for (kind, target_s) in targets {
        let mut times = Vec::new();
        for _ in 0..repeat.max(1) {
            let (_tx, rx) = tokio::sync::watch::channel(false);
            let started = std::time::Instant::now();
            let plan = TopologyPlan {
                backend,
                ..TopologyPlan::of_kind(kind)
            };
            let lab = crate::lab::Lab::start(&plan, "bench", rx).await?;
            times.push(started.elapsed().as_secs_f64());
            lab.stop().await;
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let versus = target_s.map_or(String::new(), |t: f64| {
            format!(
                "   (docker-backend target < {t:.0}s; ratio to target {:.2})",
                median / t
            )
        });
        println!("  {:<11} {median:>6.2}s{versus}", kind.as_str());
    }
    Ok(0)
}
