//! `gameday bench proxy`: what the embedded proxy costs and how exact its
//! toxics are, against the same redis-server reached directly, in the same
//! invocation:
//!
//! - throughput: `redis-benchmark -t get` at 1, 4 and 50 connections, with
//!   and without pipelining, direct vs proxied, and the CPU the proxy and
//!   the server spend per million proxied requests;
//! - added latency: PING p50 on one connection;
//! - latency toxic: a 10 ms toxic's p50/p99 over 10 ms plus the base RTT;
//! - bandwidth toxic: the achieved rate of one large GET against the rate.

use crate::bench_peer::redis_benchmark_pipelined;
use crate::proxy::control::{NetFault, ProxyControl};
use crate::proxy::toxic::{Stream, ToxicKind};
use crate::proxy::EmbeddedProxy;
use crate::topology::plan::TopologyPlan;
use crate::topology::process::RedisProcess;
use crate::vocab::topo::Role;
use anyhow::Context;
use hdrhistogram::Histogram;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct ProxyBench {
    /// PINGs for the added-latency figure.
    #[arg(long, default_value_t = 20000)]
    pings: usize,
    /// Requests per unpipelined throughput case (×16 when pipelined).
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// Skip the toxic accuracy cases (latency, bandwidth).
    #[arg(long)]
    no_toxics: bool,
}

/// The (connections, pipeline) cases of the throughput table.
const CASES: [(usize, usize); 5] = [(1, 1), (4, 1), (50, 1), (4, 16), (50, 16)];

/// Seconds of CPU (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').context("odd /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("short /proc stat")?.parse::<f64>()?)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((ticks(11)? + ticks(12)?) / hz)
}

pub async fn bench_proxy(args: ProxyBench) -> anyhow::Result<u8> {
    let node = RedisProcess::start("bench", Role::Primary, &TopologyPlan::standalone()).await?;
    let direct = node.addr;
    let embedded = EmbeddedProxy::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let control = ProxyControl::connect_async(&embedded.url()).await?;
    let proxied = control
        .call(move |c| c.create_proxy("bench", direct))
        .await?;
    println!("bench proxy: redis-server {direct}, embedded proxy {proxied} (in this process)");
    let (d50, d99) = ping_quantiles(direct, args.pings).await?;
    let (p50, p99) = ping_quantiles(proxied, args.pings).await?;
    let added = p50.saturating_sub(d50);
    println!(
        "  PING p50 direct {d50} us, proxied {p50} us: added {added} us (p99 {d99} -> {p99} us; target added p50 <= 10 us)"
    );
    throughput_table(direct, proxied, node.pid(), args.requests).await?;
    if !args.no_toxics {
        latency_toxic(&control, proxied).await?;
        bandwidth_toxic(&control, direct, proxied).await?;
    }
    println!("proxy added p50 latency: {added} us (Toxiproxy's claim: < 100 us)");
    Ok(0)
}

/// The throughput table: ratio proxied/direct per case, and CPU per
/// million proxied requests of the proxy (this process) and the server.
async fn throughput_table(
    direct: SocketAddr,
    proxied: SocketAddr,
    server_pid: u32,
    requests: u64,
) -> anyhow::Result<()> {
    println!("  | connections | pipeline | direct req/s | proxied req/s | ratio | target | proxy CPU s / 1M | redis CPU s / 1M |");
    println!("  |---|---|---|---|---|---|---|---|");
    let me = std::process::id();
    for (c, p) in CASES {
        // One connection is slow; fewer requests keep the case short.
        let n = requests / if c == 1 { 4 } else { 1 } * p as u64;
        let td = tokio::task::spawn_blocking(move || redis_benchmark_pipelined(direct, c, p, n))
            .await??;
        let (mine0, redis0) = (cpu_seconds(me)?, cpu_seconds(server_pid)?);
        let tp = tokio::task::spawn_blocking(move || redis_benchmark_pipelined(proxied, c, p, n))
            .await??;
        let per_m = 1e6 / n as f64;
        let mine = (cpu_seconds(me)? - mine0) * per_m;
        let redis = (cpu_seconds(server_pid)? - redis0) * per_m;
        let target = if p > 1 { 0.8 } else { 0.65 };
        let target = if c == 1 {
            "-".to_string()
        } else {
            format!(">= {target}")
        };
        println!(
            "  | {c} | {p} | {td:.0} | {tp:.0} | {:.2} | {target} | {mine:.2} | {redis:.2} |",
            tp / td
        );
    }
    Ok(())
}

async fn ping_quantiles(addr: SocketAddr, pings: usize) -> anyhow::Result<(u64, u64)> {
    let hist = ping_hist(addr, pings).await?;
    Ok((hist.value_at_quantile(0.5), hist.value_at_quantile(0.99)))
}

fn toxic(kind: ToxicKind) -> NetFault {
    NetFault::Toxic {
        kind,
        streams: vec![Stream::Downstream],
        toxicity: 1.0,
        path: Default::default(),
    }
}

/// A 10 ms latency toxic, 4 connections PINGing at once: p50 and p99 over
/// 10 ms plus the proxied base RTT.
async fn latency_toxic(control: &ProxyControl, proxied: SocketAddr) -> anyhow::Result<()> {
    const CONNS: usize = 4;
    const PINGS: usize = 250;
    // The base RTT is measured the same way, with no toxic.
    let base = pings_at_once(proxied, CONNS, PINGS * 4).await?;
    let base50 = base.value_at_quantile(0.5);
    let fault = toxic(ToxicKind::Latency {
        latency: 10,
        jitter: 0,
    });
    let on = fault.clone();
    control.call(move |c| c.apply("bench", &on)).await?;
    let hist = pings_at_once(proxied, CONNS, PINGS).await;
    control.call(move |c| c.clear("bench", &fault)).await?;
    let hist = hist?;
    let floor = 10_000 + base50;
    let over = |q: f64| hist.value_at_quantile(q) as f64 - floor as f64;
    println!(
        "  latency toxic 10 ms, {CONNS} connections, {} PINGs: p50 +{:.2} ms, p99 +{:.2} ms over 10 ms + the base RTT at {CONNS} connections, {base50} us (targets +0.30 / +0.60; Toxiproxy 2.12 measured +0.50 / +0.82)",
        hist.len(),
        over(0.5) / 1000.0,
        over(0.99) / 1000.0
    );
    let bare = bare_timer_lateness(PINGS).await?;
    println!(
        "  the machine's floor: a bare 10 ms timerfd sleep wakes late by p50 {:.2} ms, p99 {:.2} ms",
        bare.value_at_quantile(0.5) as f64 / 1000.0,
        bare.value_at_quantile(0.99) as f64 / 1000.0
    );
    Ok(())
}

/// How late a plain 10 ms sleep on a timerfd wakes (µs), `n` times in a
/// row: what a delay costs on this machine before any proxy code runs.
async fn bare_timer_lateness(n: usize) -> anyhow::Result<Histogram<u64>> {
    let mut hist = Histogram::<u64>::new(3)?;
    let mut delay = tokio_timerfd::Delay::new(std::time::Instant::now())?;
    for _ in 0..n {
        let due = std::time::Instant::now() + Duration::from_millis(10);
        delay.reset(due);
        (&mut delay).await?;
        hist.record(due.elapsed().as_micros() as u64)?;
    }
    Ok(hist)
}

/// `pings` PINGs on each of `conns` connections at once, one histogram.
async fn pings_at_once(
    addr: SocketAddr,
    conns: usize,
    pings: usize,
) -> anyhow::Result<Histogram<u64>> {
    let runs: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(ping_hist(addr, pings)))
        .collect();
    let mut hist = Histogram::<u64>::new(3)?;
    for run in runs {
        hist.add(run.await??)?;
    }
    Ok(hist)
}

async fn ping_hist(addr: SocketAddr, pings: usize) -> anyhow::Result<Histogram<u64>> {
    let mut conn = crate::redis_admin::connect(addr).await?;
    let mut hist = Histogram::<u64>::new(3)?;
    for _ in 0..pings {
        let start = std::time::Instant::now();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        hist.record(start.elapsed().as_micros() as u64)?;
    }
    Ok(hist)
}

/// One GET of a value sized for about two seconds at each rate, through a
/// bandwidth toxic: the achieved rate against the toxic's.
async fn bandwidth_toxic(
    control: &ProxyControl,
    direct: SocketAddr,
    proxied: SocketAddr,
) -> anyhow::Result<()> {
    // (rate KB/s, seconds of transfer)
    let cases: [(u64, f64); 4] = [(10, 2.0), (1_000, 2.0), (10_000, 2.0), (100_000, 1.0)];
    let mut setter = crate::redis_admin::connect(direct).await?;
    for (rate, secs) in cases {
        let bytes = (rate as f64 * 1000.0 * secs) as usize;
        let _: () = redis::cmd("SET")
            .arg("bench:bandwidth")
            .arg(vec![b'x'; bytes])
            .query_async(&mut setter)
            .await?;
        let fault = toxic(ToxicKind::Bandwidth { rate });
        let on = fault.clone();
        control.call(move |c| c.apply("bench", &on)).await?;
        let mut conn = crate::redis_admin::connect(proxied).await?;
        let start = std::time::Instant::now();
        let got: Vec<u8> = tokio::time::timeout(
            Duration::from_secs_f64(secs * 3.0 + 5.0),
            redis::cmd("GET")
                .arg("bench:bandwidth")
                .query_async(&mut conn),
        )
        .await
        .context("the GET through the bandwidth toxic took over 3× its due time")??;
        let took = start.elapsed().as_secs_f64();
        control.call(move |c| c.clear("bench", &fault)).await?;
        // The reply's framing is a few bytes on top of the value.
        let achieved = got.len() as f64 / took / 1000.0;
        println!(
            "  bandwidth toxic {rate} KB/s: {} bytes in {took:.3} s = {achieved:.1} KB/s, {:+.1}% (target within 5%)",
            got.len(),
            (achieved / rate as f64 - 1.0) * 100.0
        );
    }
    Ok(())
}
