//! `gameday bench gate`: how good the default regression gate is on this
//! machine. A small cache-aside scenario runs against a redis-server behind
//! a proxy the bench owns (so the cause is injected without changing the
//! scenario): baselines, then identical candidates (their failures are the
//! false-positive rate), then candidates with more latency on every reply,
//! step by step (the smallest one the gate fails is its sensitivity, in %
//! of the baselines' p99).

use crate::gate::decide::Verdict;
use crate::proxy::control::{NetFault, ProxyControl};
use crate::proxy::toxic::{Stream, ToxicKind};
use crate::proxy::EmbeddedProxy;
use crate::topology::plan::TopologyPlan;
use crate::topology::process::RedisProcess;
use crate::vocab::topo::Role;
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What `gameday bench gate` takes.
#[derive(Debug, Clone, clap::Args)]
pub struct GateBench {
    #[arg(long, default_value_t = 5)]
    pub baselines: usize,
    /// Candidates identical to the baselines.
    #[arg(long, default_value_t = 20)]
    pub identical: usize,
    /// Length of each run.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Latency on every reply of every run, ms (0: the bare loopback).
    #[arg(long, default_value_t = 0)]
    pub base_latency_ms: u32,
    /// Added latency of the regressed candidates, ms, smallest first.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,5")]
    pub steps: Vec<u32>,
}

fn scenario(front: SocketAddr, seconds: u64) -> String {
    format!(
        r#"name = "bench-gate"
description = "cache-aside on an external node behind the bench's proxy"
duration = "{seconds}s"

[topology]
kind = "standalone"
backend = "external"

[[topology.endpoint]]
node = "lab"
role = "primary"
addr = "{front}"

[load]
users = 8
rate = 200

[workload]
kind = "cache-aside"
keys = 100
read_ratio = 0.9
ttl = "4s"
op_timeout = "200ms"
on_redis_error = {{ policy = "fallback" }}
"#
    )
}

fn latency(ms: u32) -> NetFault {
    NetFault::Toxic {
        kind: ToxicKind::Latency {
            latency: u64::from(ms),
            jitter: 0,
        },
        streams: vec![Stream::Downstream],
        toxicity: 1.0,
        path: Default::default(),
    }
}

struct Bench {
    control: ProxyControl,
    scenario: PathBuf,
    runs: PathBuf,
    applied: Option<NetFault>,
}

impl Bench {
    /// Sets the latency every reply gets from now on.
    async fn set_latency(&mut self, ms: u32) -> anyhow::Result<()> {
        if let Some(old) = self.applied.take() {
            self.control.call(move |c| c.clear("lab", &old)).await?;
        }
        if ms > 0 {
            let f = latency(ms);
            let g = f.clone();
            self.control.call(move |c| c.apply("lab", &g)).await?;
            self.applied = Some(f);
        }
        Ok(())
    }

    /// One run of the scenario by this very binary, which must pass.
    async fn run(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.runs.join(name);
        let exe = std::env::current_exe().context("cannot find the gameday binary")?;
        let status = tokio::process::Command::new(exe)
            .args(["run", "--quiet"])
            .arg(&self.scenario)
            .arg("--out")
            .arg(&dir)
            .env("GAMEDAY_COMMIT", name)
            .stdout(std::process::Stdio::null())
            .status()
            .await?;
        if status.code() != Some(0) {
            bail!("run {name} did not pass: {status}");
        }
        Ok(dir)
    }
}

/// The caller's (p50, p99) over a run's whole load, µs.
fn caller_latency(dir: &Path) -> anyhow::Result<(f64, f64)> {
    let run = crate::gate::store::Run::read(dir)?;
    let op = run
        .summary
        .phases
        .iter()
        .find(|p| p.name == "run")
        .and_then(|p| p.ops.get(crate::vocab::outcome::CALLER_OP))
        .with_context(|| format!("{} has no caller latency", dir.display()))?;
    Ok((op.p50_us as f64, op.p99_us as f64))
}

/// The verdicts of a candidate's comparison: (failed metrics, warnings).
fn judge(candidate: &Path, baselines: &[PathBuf]) -> anyhow::Result<(Vec<String>, usize)> {
    let c = crate::gate::compare(candidate, baselines)?;
    let failed = c
        .decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Fail)
        .map(|d| d.metric.clone())
        .collect();
    Ok((failed, c.count(Verdict::Warn)))
}

pub async fn bench_gate(args: GateBench) -> anyhow::Result<u8> {
    if args.baselines < 3 {
        bail!("--baselines must be at least 3 (the gate's default minimum)");
    }
    let node =
        RedisProcess::start("bench-gate", Role::Primary, &TopologyPlan::standalone()).await?;
    let proxy = EmbeddedProxy::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let control = ProxyControl::connect_async(&proxy.url()).await?;
    let upstream = node.addr;
    let front = control
        .call(move |c| c.create_proxy("lab", upstream))
        .await?;
    let tmp = tempfile::tempdir()?;
    let scenario_path = tmp.path().join("bench-gate.toml");
    std::fs::write(&scenario_path, scenario(front, args.seconds))?;
    let mut bench = Bench {
        control,
        scenario: scenario_path,
        runs: tmp.path().join("runs"),
        applied: None,
    };
    bench.set_latency(args.base_latency_ms).await?;
    let total = args.baselines + args.identical + args.steps.len();
    eprintln!(
        "bench gate: {total} runs of {} s ({} baselines, {} identical candidates, steps {:?} ms over a base of {} ms)",
        args.seconds, args.baselines, args.identical, args.steps, args.base_latency_ms
    );
    // The first run after a start is slower (caches, pages, pools).
    bench.run("warm-up").await?;
    // Baselines spread among the identical candidates (b1 c1 c2 c3 c4 b2
    // ...), as a CI store's baselines come from other times than the
    // candidate: a slow spell of the machine falls on both.
    let per = args.identical.div_ceil(args.baselines);
    let (mut baselines, mut same, mut tails) = (Vec::new(), Vec::new(), Vec::new());
    for i in 1..=args.baselines {
        let dir = bench.run(&format!("b{i}")).await?;
        let (p50, p99) = caller_latency(&dir)?;
        eprintln!(
            "bench gate: baseline {i}/{}: caller p50 {p50:.0} µs, p99 {p99:.0} µs",
            args.baselines
        );
        baselines.push(dir);
        tails.push(p99);
        while same.len() < (i * per).min(args.identical) {
            same.push(bench.run(&format!("c{}", same.len() + 1)).await?);
        }
    }
    tails.sort_by(f64::total_cmp);
    let p99 = tails[tails.len() / 2];
    let (mut false_alarms, mut warned) = (0usize, 0usize);
    for (i, dir) in same.iter().enumerate() {
        let (failed, warnings) = judge(dir, &baselines)?;
        let (p50, p99) = caller_latency(dir)?;
        false_alarms += usize::from(!failed.is_empty());
        warned += usize::from(warnings > 0);
        eprintln!(
            "bench gate: identical {}/{}: caller p50 {p50:.0} µs, p99 {p99:.0} µs: {} failed {failed:?}, {warnings} warnings",
            i + 1,
            args.identical,
            failed.len()
        );
    }
    let mut rows = Vec::new();
    for &extra in &args.steps {
        bench.set_latency(args.base_latency_ms + extra).await?;
        let dir = bench.run(&format!("slow{extra}ms")).await?;
        let (failed, _) = judge(&dir, &baselines)?;
        rows.push((extra, failed));
    }
    bench.set_latency(0).await?;
    print_table(&args, p99, false_alarms, warned, &rows);
    drop(proxy);
    drop(node);
    Ok(0)
}

fn print_table(
    args: &GateBench,
    p99_us: f64,
    false_alarms: usize,
    warned: usize,
    rows: &[(u32, Vec<String>)],
) {
    let pct = |ms: u32| f64::from(ms) * 1000.0 / p99_us * 100.0;
    println!(
        "gate sensitivity (baselines' run p99 {:.0} µs, {} baselines):",
        p99_us, args.baselines
    );
    println!("| added latency | % of p99 | verdict | failed metrics |");
    println!("|---|---|---|---|");
    for (ms, failed) in rows {
        println!(
            "| {ms} ms | {:.0}% | {} | {} |",
            pct(*ms),
            if failed.is_empty() {
                "pass"
            } else {
                "regression"
            },
            failed.join(", ")
        );
    }
    let smallest = rows.iter().find(|(_, f)| !f.is_empty()).map(|(ms, _)| *ms);
    match smallest {
        Some(ms) => println!(
            "smallest regression detected: +{ms} ms = {:.0}% of p99",
            pct(ms)
        ),
        None => println!("no step was detected"),
    }
    println!(
        "false positives: {false_alarms}/{} identical candidates failed ({:.1}%); {warned} had a warning",
        args.identical,
        if args.identical == 0 {
            0.0
        } else {
            false_alarms as f64 * 100.0 / args.identical as f64
        }
    );
}
