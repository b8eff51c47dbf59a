//! `run(plan, options, shutdown)`: one game day, start to finish. Provision
//! the topology, put a proxy in front of every node, drive the load while the
//! conductor plays the faults, then judge and write the report. Whatever
//! happens — pass, fail, error, Ctrl-C — the proxies are deleted and every
//! node stopped before this returns.

use crate::conductor::{self, FaultError, FaultRecord, LedgerCheck, Scheduled};
use crate::lab::Lab;
use crate::load::{self, LoadSpec};
use crate::proxy::control::{ControlError, NetFault};
use crate::proxy::toxic::ToxicKind;
use crate::recorder::Recorder;
use crate::report::summary::{
    self, LedgerSummary, LoadSummary, NodeSummary, ProxySummary, Summary, TopologySummary,
};
use crate::report::{console, RunReport};
use crate::scenario::plan::{Fault, NodeFault, RunPlan, WorkloadPlan};
use crate::scenario::raw::Backend;
use crate::scenario::topology_name;
use crate::telemetry::{self, NodeSample, ServerEvent};
use crate::topology::TopologyError;
use crate::workload::cache_aside::CacheAside;
use crate::workload::lock::{GcPause, Lock};
use crate::workload::ratelimit::RateLimit;
use crate::workload::session::Session;
use crate::workload::stampede::Stampede;
use crate::workload::{AnyWorkload, Workload};
use rand::Rng;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::Instant;

/// Choices made on the command line rather than in the scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Report directory; default `reports/<UTC time>-<scenario>/`.
    pub out_dir: Option<PathBuf>,
    pub backend: Option<Backend>,
    pub seed: Option<u64>,
    /// Use this Toxiproxy API instead of the embedded one.
    pub toxiproxy_url: Option<String>,
    /// Print a progress line per second and the tables at the end.
    pub progress: bool,
    /// The command line confirms the scenario's `allow_destructive`.
    pub allow_destructive: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot provision the topology: {0}")]
    Provision(String),
    #[error("fault proxy: {0}")]
    Proxy(#[from] ControlError),
    #[error("{0}")]
    Fault(#[from] FaultError),
    #[error("load: {0}")]
    Load(#[from] load::LoadError),
    #[error("cannot write the report to {dir}: {err}")]
    Report { dir: PathBuf, err: std::io::Error },
    #[error("interrupted before the load started; nothing was left running")]
    Interrupted,
}

impl RunError {
    /// The process exit code DESIGN.md assigns to this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Unsupported(_) => 2,
            RunError::Interrupted => 130,
            _ => 3,
        }
    }
}

impl From<TopologyError> for RunError {
    fn from(e: TopologyError) -> Self {
        match e {
            TopologyError::Unsupported(m) => RunError::Unsupported(m),
            other => RunError::Provision(other.to_string()),
        }
    }
}

/// How a run that got as far as a report ended.
#[derive(Debug)]
pub struct RunOutcome {
    pub passed: bool,
    pub interrupted: bool,
    pub dir: PathBuf,
    pub summary: Summary,
}

/// `reports/<UTC time>-<name>`.
pub fn default_dir(plan: &RunPlan) -> PathBuf {
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(['-', ':'], "");
    Path::new("reports").join(format!("{stamp}-{}", plan.name))
}

/// Runs one scenario; see the module docs.
pub async fn run(
    plan: &RunPlan,
    opts: &RunOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<RunOutcome, RunError> {
    let backend = opts.backend.unwrap_or(plan.topology.backend);
    let run_id = format!("{:08x}", rand::thread_rng().gen::<u32>());
    let dir = opts.out_dir.clone().unwrap_or_else(|| default_dir(plan));
    if backend == Backend::External {
        if let Some(f) = plan.faults.iter().find(|f| f.destructive()) {
            if !(plan.topology.external.allow_destructive && opts.allow_destructive) {
                return Err(RunError::Unsupported(format!(
                    "fault `{}` ({}) acts on the nodes of an external topology: it needs `allow_destructive = true` in [topology] and --allow-destructive on the command line",
                    f.name, f.kind_name
                )));
            }
        }
    }
    let lab = Lab::start(
        &plan.topology,
        backend,
        opts.toxiproxy_url.as_deref(),
        &run_id,
        shutdown.clone(),
    )
    .await?;
    // Every target must resolve to at least one node, and a node fault to
    // nodes it can act on, before anything runs.
    for f in &plan.faults {
        let partition = matches!(
            &f.fault,
            Fault::Net(NetFault::Toxic {
                kind: ToxicKind::Partition { .. },
                ..
            })
        );
        let problem = match &f.fault {
            _ if partition && lab.topology.peer_source.is_none() => Some(
                "cannot be partitioned: a partition needs nodes gameday runs, more than one of them, on Redis 7.0 or later (bind-source-addr)",
            ),
            Fault::Net(_) if lab.targets(&f.target).is_empty() => Some("matches no node of this topology"),
            Fault::Node(_) if lab.target_nodes(&f.target).is_empty() => Some("matches no node of this topology"),
            Fault::Node(NodeFault::Failover(_)) if lab.failover_ctx("").is_none() => {
                Some("cannot fail over: a failover needs a sentinel or cluster topology gameday runs")
            }
            Fault::Node(NodeFault::Kill | NodeFault::Restart | NodeFault::Pause)
                if lab.target_nodes(&f.target).iter().any(|n| !n.owned()) =>
            {
                Some("names nodes gameday does not run: kill, restart and pause need the process or docker backend")
            }
            _ => None,
        };
        if let Some(problem) = problem {
            lab.stop().await;
            return Err(RunError::Unsupported(format!(
                "fault `{}` ({}): target {} {problem}",
                f.name, f.kind_name, f.target
            )));
        }
    }
    let result = if plan.variants.is_empty() {
        drive(plan, opts, backend, &run_id, &dir, &lab, shutdown).await
    } else {
        variants(plan, opts, backend, &run_id, &dir, &lab, shutdown).await
    };
    let failed = !matches!(&result, Ok(o) if o.passed);
    if failed && dir.is_dir() {
        for node in &lab.topology.nodes {
            let _ = std::fs::copy(node.log_path(), dir.join(format!("redis-{}.log", node.id)));
        }
    }
    lab.stop().await;
    result
}

/// Runs each variant after the other against the same lab, each into
/// `<dir>/<variant>/`, then writes the comparison into `dir`.
#[allow(clippy::too_many_arguments)]
async fn variants(
    plan: &RunPlan,
    opts: &RunOptions,
    backend: Backend,
    run_id: &str,
    dir: &Path,
    lab: &Lab,
    shutdown: watch::Receiver<bool>,
) -> Result<RunOutcome, RunError> {
    let mut done: Vec<(String, RunOutcome)> = Vec::new();
    for (name, workload) in &plan.variants {
        if *shutdown.borrow() {
            break;
        }
        if opts.progress {
            eprintln!("gameday: variant {name}");
        }
        let vplan = plan.variant(name, workload);
        let id = format!("{run_id}-{name}");
        let o = drive(
            &vplan,
            opts,
            backend,
            &id,
            &dir.join(name),
            lab,
            shutdown.clone(),
        )
        .await?;
        done.push((name.clone(), o));
    }
    let summaries: Vec<(String, Summary)> = done
        .iter()
        .map(|(n, o)| (n.clone(), o.summary.clone()))
        .collect();
    let all_passed = crate::report::compare::write(dir, &plan.name, &summaries).map_err(|err| {
        RunError::Report {
            dir: dir.to_path_buf(),
            err,
        }
    })?;
    let interrupted = done.iter().any(|(_, o)| o.interrupted) || *shutdown.borrow();
    let passed = all_passed && !interrupted && done.len() == plan.variants.len();
    let Some(mut summary) = done.first().map(|(_, o)| o.summary.clone()) else {
        return Err(RunError::Interrupted);
    };
    summary.verdict = if passed { "pass" } else { "fail" }.into();
    if opts.progress {
        println!("comparison: {}", dir.join("report.html").display());
    }
    Ok(RunOutcome {
        passed,
        interrupted,
        dir: dir.to_path_buf(),
        summary,
    })
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    plan: &RunPlan,
    opts: &RunOptions,
    backend: Backend,
    run_id: &str,
    dir: &Path,
    lab: &Lab,
    shutdown: watch::Receiver<bool>,
) -> Result<RunOutcome, RunError> {
    std::fs::create_dir_all(dir).map_err(|err| RunError::Report {
        dir: dir.to_path_buf(),
        err,
    })?;
    let seed = opts.seed.unwrap_or(plan.seed);
    let t0 = Instant::now();
    let started = SystemTime::now();
    let prefix = format!("gameday:{run_id}:");
    let gc = Arc::new(GcPause::default());
    let workload = match &plan.workload {
        WorkloadPlan::CacheAside(ca) => AnyWorkload::CacheAside(CacheAside::new(
            ca.clone(),
            lab.client.clone(),
            prefix.clone(),
            t0,
            seed,
        )),
        WorkloadPlan::RateLimit(rp) => AnyWorkload::RateLimit(RateLimit::new(
            rp.clone(),
            lab.client.clone(),
            prefix.clone(),
            t0,
            seed,
        )),
        WorkloadPlan::Stampede(sp) => AnyWorkload::Stampede(Stampede::new(
            sp.clone(),
            lab.client.clone(),
            prefix.clone(),
            t0,
            seed,
        )),
        WorkloadPlan::Lock(lp) => AnyWorkload::Lock(Lock::new(
            lp.clone(),
            lab.client.clone(),
            prefix.clone(),
            t0,
            seed,
            gc.clone(),
        )),
        WorkloadPlan::Session(sp) => AnyWorkload::Session(Session::new(
            sp.clone(),
            lab.client.clone(),
            prefix.clone(),
            plan.load.users,
            t0,
            seed,
        )),
    };
    let workload = Arc::new(workload);
    let ledger = workload.ledger();
    let recorder = Arc::new(Mutex::new(Recorder::new(t0, workload.caller_ops())));
    let spec = LoadSpec {
        users: plan.load.users,
        rate: plan.load.rate,
        ramp: plan.load.ramp,
        duration: plan.duration,
        goose_report: Some(dir.join("goose.html")),
        goose_metrics: true,
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_rx_telemetry = stop_rx.clone();
    let stop_rx_events = stop_rx.clone();
    let records = Arc::new(Mutex::new(Vec::<FaultRecord>::new()));
    let schedule = plan
        .faults
        .iter()
        .map(|f| Scheduled {
            plan: f.clone(),
            proxies: match &f.fault {
                Fault::Net(NetFault::Toxic {
                    kind: ToxicKind::Partition { .. },
                    ..
                }) => lab.peer_targets(&f.target),
                _ => lab.targets(&f.target),
            },
            nodes: lab.target_nodes(&f.target),
            failover: lab.failover_ctx(&format!("gameday:{run_id}:")),
            prefix: format!("gameday:{run_id}:"),
            gc: matches!(plan.workload, WorkloadPlan::Lock(_)).then(|| gc.clone()),
        })
        .collect();
    let (fail_tx, mut failed) = tokio::sync::mpsc::channel::<FaultError>(1);
    let conductor = {
        let (control, recorder, records) = (lab.control.clone(), recorder.clone(), records.clone());
        let check = ledger.as_ref().map(|(l, decode)| LedgerCheck {
            ledger: l.clone(),
            decode: *decode,
            client: lab.client.clone(),
        });
        tokio::spawn(async move {
            if let Err(e) =
                conductor::conduct(schedule, control, recorder, t0, stop_rx, records, check).await
            {
                let _ = fail_tx.send(e).await;
            }
        })
    };
    let samples = Arc::new(Mutex::new(Vec::<NodeSample>::new()));
    let telemetry = tokio::spawn(telemetry::watch_nodes(
        lab.telemetry_targets(),
        t0,
        samples.clone(),
        stop_rx_telemetry,
    ));
    let events = Arc::new(Mutex::new(Vec::<ServerEvent>::new()));
    let sentinel_events = tokio::spawn(telemetry::watch_sentinels(
        lab.sentinels(),
        t0,
        events.clone(),
        stop_rx_events,
    ));
    let watchdog = {
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _ = shutdown.wait_for(|s| *s).await;
            goose::trigger_killswitch("gameday: interrupted");
        })
    };
    let ticker = opts
        .progress
        .then(|| tokio::spawn(progress(recorder.clone(), t0, plan.duration)));

    let load_result = tokio::select! {
        r = load::drive(workload.clone(), &spec, recorder.clone(), t0) => r,
        Some(c) = failed.recv() => {
            // A fault that cannot be applied invalidates the run.
            goose::trigger_killswitch("gameday: a fault could not be applied");
            let _ = stop_tx.send(true);
            watchdog.abort();
            if let Some(t) = ticker { t.abort(); }
            return Err(c.into());
        }
    };
    let _ = stop_tx.send(true);
    watchdog.abort();
    if let Some(t) = ticker {
        t.abort();
    }
    let _ = conductor.await;
    let _ = telemetry.await;
    let _ = sentinel_events.await;
    load_result?;
    // The final read-back: every acknowledged write must still be there.
    if let Some((l, decode)) = &ledger {
        if !*shutdown.borrow() {
            l.check(&lab.client, t0, *decode).await;
        }
    }
    if let Ok(e) = failed.try_recv() {
        return Err(e.into());
    }

    let interrupted = *shutdown.borrow();
    let mut rec = Arc::try_unwrap(recorder)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        // A finished task may not have dropped its handle yet: copy instead.
        .unwrap_or_else(|arc| arc.lock().unwrap_or_else(|p| p.into_inner()).clone());
    let end_us = if interrupted {
        rec.now_us()
    } else {
        rec.now_us().min(plan.duration.as_micros() as u64)
    };
    rec.finish(end_us);

    let fault_records = records.lock().expect("records lock").clone();
    let lost = ledger.as_ref().map(|(l, _)| (l.len(), l.lost()));
    let phases = summary::phases(
        plan,
        &rec,
        &fault_records,
        lost.as_ref().map(|(_, (_, _, at))| at.as_slice()),
        &|from, to| workload.phase_metrics(from, to),
    );
    let expectations = summary::evaluate(&plan.expectations, &phases);
    let ledger = lost.map(|(keys, (listed, total, _))| LedgerSummary {
        keys: keys as u64,
        lost_writes: total,
        lost: listed
            .into_iter()
            .map(|mut w| {
                w.phase = phases
                    .iter()
                    .rfind(|p| p.name != "run" && p.start_s <= w.acked_at_s)
                    .map_or("baseline".into(), |p| p.name.clone());
                w
            })
            .collect(),
    });
    let passed = !interrupted && expectations.iter().all(|e| e.passed);
    let summary = Summary {
        schema: summary::SCHEMA.into(),
        scenario: plan.name.clone(),
        variant: plan.variant.clone(),
        description: plan.description.clone(),
        verdict: if passed { "pass" } else { "fail" }.into(),
        interrupted,
        seed,
        run_id: run_id.to_string(),
        started_at: humantime::format_rfc3339_millis(started).to_string(),
        duration_s: end_us as f64 / 1e6,
        backend: format!("{backend:?}").to_lowercase(),
        topology: TopologySummary {
            kind: topology_name(plan.topology.kind).into(),
            image: lab.topology.image().map(String::from),
            nodes: lab
                .wired
                .iter()
                .map(|w| NodeSummary {
                    id: w.endpoint.name.clone(),
                    role: format!("{:?}", w.endpoint.role).to_lowercase(),
                    addr: w.endpoint.addr.to_string(),
                    proxy: w.proxy.clone(),
                    proxy_addr: w.proxy_addr.to_string(),
                })
                .collect(),
        },
        proxy: ProxySummary {
            kind: lab.proxy_kind.into(),
            url: lab.control.url().into(),
            version: lab.proxy_version.clone(),
        },
        load: LoadSummary {
            users: plan.load.users,
            rate: plan.load.rate,
            ramp_s: plan.load.ramp.as_secs_f64(),
        },
        workload: plan.workload.kind_name().into(),
        phases,
        faults: fault_records,
        ledger,
        // Teardown is not part of the run.
        events: std::mem::take(&mut *events.lock().expect("events lock"))
            .into_iter()
            .filter(|e| e.t_s <= end_us as f64 / 1e6)
            .collect(),
        expectations,
    };
    let telemetry = std::mem::take(&mut *samples.lock().expect("telemetry lock"));
    let report = RunReport {
        summary,
        recorder: rec,
        started,
        telemetry,
    };
    report.write(dir).map_err(|err| RunError::Report {
        dir: dir.to_path_buf(),
        err,
    })?;
    if opts.progress {
        let _ = console::print_summary(&report.summary, &mut std::io::stdout());
        println!("report: {}", dir.display());
    }
    Ok(RunOutcome {
        passed,
        interrupted,
        dir: dir.to_path_buf(),
        summary: report.summary,
    })
}

/// Prints one line per completed second to stderr.
async fn progress(recorder: Arc<Mutex<Recorder>>, t0: Instant, duration: Duration) {
    let seconds = duration.as_secs_f64().ceil() as usize;
    for t in 0..seconds {
        tokio::time::sleep_until(t0 + Duration::from_millis(1000 * (t as u64 + 1) + 50)).await;
        let line = console::progress_line(&recorder.lock().expect("recorder lock"), t);
        if let Some(line) = line {
            eprintln!("{line}");
        }
    }
}
