//! `gameday bench`: measurements against peers run on the same machine in
//! the same invocation, printed as ratios (the machines are shared and
//! noisy, so only same-run ratios mean anything).
//!
//! - `load`: gameday's maximum GET throughput (goose users, the real
//!   recorder) vs `redis-benchmark -t get` at the same connection count,
//!   against the same local redis-server.
//! - `proxy`: PING latency and `redis-benchmark` throughput through the
//!   embedded proxy (no toxics) vs straight to the server.

use crate::bench_peer::{redis_benchmark, GetOnly};
use crate::load::{self, LoadSpec};
use crate::proxy::control::ProxyControl;
use crate::proxy::EmbeddedProxy;
use crate::recorder::Recorder;
use crate::topology::plan::TopologyPlan;
use crate::topology::process::RedisProcess;
use crate::vocab::topo::Role;
use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, clap::Subcommand)]
pub enum Which {
    /// Max GET throughput: gameday's load engine vs redis-benchmark.
    Load {
        #[arg(long, default_value_t = 50)]
        connections: usize,
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
    /// Latency and throughput added by the embedded proxy.
    Proxy {
        #[arg(long, default_value_t = 20000)]
        pings: usize,
        #[arg(long, default_value_t = 50)]
        connections: usize,
    },
}

pub async fn run(which: Which) -> anyhow::Result<u8> {
    match which {
        Which::Load {
            connections,
            seconds,
        } => bench_load(connections, seconds).await,
        Which::Proxy { pings, connections } => bench_proxy(pings, connections).await,
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
    seconds: u64,
    goose_metrics: bool,
) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let workload = GetOnly { addr, t0 };
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

async fn bench_load(connections: usize, seconds: u64) -> anyhow::Result<u8> {
    let node = RedisProcess::start("bench", Role::Primary, &TopologyPlan::standalone()).await?;
    let addr = node.addr;
    println!("bench load: {connections} connections, one local redis-server on {addr}");
    let peer =
        tokio::task::spawn_blocking(move || redis_benchmark(addr, connections, 200_000)).await??;
    println!("  redis-benchmark -c {connections} -t get        {peer:>10.0} req/s");
    let ours = engine_throughput(addr, connections, seconds, true).await?;
    println!(
        "  gameday (goose + recorder + goose metrics)  {ours:>10.0} ops/s   ratio {:.2}",
        ours / peer
    );
    let bare = engine_throughput(addr, connections, seconds, false).await?;
    println!(
        "  gameday (goose + recorder only)           {bare:>10.0} ops/s   ratio {:.2}",
        bare / peer
    );
    println!(
        "ratio gameday/redis-benchmark: {:.2} (target >= 1.0)",
        ours / peer
    );
    Ok(0)
}

async fn ping_p50(addr: SocketAddr, pings: usize) -> anyhow::Result<(u64, u64)> {
    let mut conn = crate::redis_admin::connect(addr).await?;
    let mut hist = Histogram::<u64>::new(3)?;
    for _ in 0..pings {
        let start = std::time::Instant::now();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        hist.record(start.elapsed().as_micros() as u64)?;
    }
    Ok((hist.value_at_quantile(0.5), hist.value_at_quantile(0.99)))
}

async fn bench_proxy(pings: usize, connections: usize) -> anyhow::Result<u8> {
    let node = RedisProcess::start("bench", Role::Primary, &TopologyPlan::standalone()).await?;
    let direct = node.addr;
    let embedded = EmbeddedProxy::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let control = ProxyControl::connect_async(&embedded.url()).await?;
    let proxied = control
        .call(move |c| c.create_proxy("bench", direct))
        .await?;
    println!("bench proxy: redis-server {direct}, embedded proxy {proxied}");
    let (d50, d99) = ping_p50(direct, pings).await?;
    let (p50, p99) = ping_p50(proxied, pings).await?;
    println!(
        "  PING p50 direct {d50} us, proxied {p50} us: added {} us (p99 {d99} -> {p99} us)",
        p50.saturating_sub(d50)
    );
    let td = tokio::task::spawn_blocking(move || redis_benchmark(direct, connections, 200_000))
        .await??;
    let tp = tokio::task::spawn_blocking(move || redis_benchmark(proxied, connections, 200_000))
        .await??;
    println!("  redis-benchmark -c {connections} GET: direct {td:.0} req/s, proxied {tp:.0} req/s, ratio {:.2}", tp / td);
    println!(
        "proxy added p50 latency: {} us (Toxiproxy's claim: < 100 us); throughput ratio {:.2}",
        p50.saturating_sub(d50),
        tp / td
    );
    Ok(0)
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
