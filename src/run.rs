//! `run(plan, options, shutdown)` (L5): one game day, start to finish.
//! Provision the topology with a proxy on every path, drive the load while
//! the conductor plays the faults, then judge and write the report.
//! Whatever happens — pass, fail, error, Ctrl-C — the proxies are deleted
//! and every node stopped before this returns.

use crate::conductor::{self, LedgerCheck, Scheduled, Stage};
use crate::fault::{Env, FaultError, FaultRecord};
use crate::lab::{Lab, LabError};
use crate::load::{self, LoadSpec};
use crate::proxy::control::ControlError;
use crate::recorder::Recorder;
use crate::report::summary::{RunFacts, Summary};
use crate::report::{console, RunReport};
use crate::scenario::plan::RunPlan;
use crate::telemetry::{self, NodeSample, ServerEvent};
use crate::vocab::outcome::Counter;
use crate::vocab::topo::Backend;
use crate::workload::lock::GcPause;
use crate::workload::{AnyWorkload, Oracle, Setup, WorkloadError, WorkloadPlan};
use rand::Rng;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How a run reports, chosen on the command line (what it changes of the
/// scenario itself is already in the resolved plan).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Report directory; default `reports/<UTC time>-<scenario>/`.
    pub out_dir: Option<PathBuf>,
    /// Print a progress line per second and the tables at the end.
    pub progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A fault the lab cannot take (exit 2: the scenario must change).
    #[error("fault `{fault}` ({kind}): {problem}")]
    Unfit {
        fault: String,
        kind: &'static str,
        problem: String,
    },
    #[error("fault proxy: {0}")]
    Proxy(#[from] ControlError),
    #[error("{0}")]
    Fault(Box<FaultError>),
    #[error("load: {0}")]
    Load(#[from] load::LoadError),
    #[error("cannot write the report to {}: {source}", dir.display())]
    Report {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted before the load started; nothing was left running")]
    Interrupted,
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
}

impl RunError {
    /// The process exit code: 2 for what the scenario or command line must
    /// change, 130 when interrupted, 3 when the infrastructure failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Unfit { .. } => 2,
            RunError::Interrupted => 130,
            RunError::Lab(e) => e.exit_code(),
            RunError::Workload(e) => e.exit_code(),
            RunError::Proxy(_)
            | RunError::Fault(_)
            | RunError::Load(_)
            | RunError::Report { .. } => 3,
        }
    }
}

impl From<FaultError> for RunError {
    fn from(e: FaultError) -> Self {
        RunError::Fault(Box::new(e))
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

/// What one run is, once its lab is up.
struct Ctx<'a> {
    opts: &'a RunOptions,
    backend: Backend,
    lab: &'a Lab,
    shutdown: watch::Receiver<bool>,
}

/// Runs one scenario; see the module docs.
pub async fn run(
    plan: &RunPlan,
    opts: &RunOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<RunOutcome, RunError> {
    let backend = plan.topology.backend;
    let run_id = format!("{:08x}", rand::thread_rng().gen::<u32>());
    let dir = opts.out_dir.clone().unwrap_or_else(|| default_dir(plan));
    gate_destructive(plan)?;
    plan.workload.preflight()?;
    let lab = Lab::start(&plan.topology, &run_id, shutdown.clone()).await?;
    let ctx = Ctx {
        opts,
        backend,
        lab: &lab,
        shutdown,
    };
    let result = match check_targets(plan, &lab, &run_id) {
        Err(e) => Err(e),
        Ok(()) if plan.variants.is_empty() => drive(plan, &ctx, &run_id, &dir).await,
        Ok(()) => variants(plan, &ctx, &run_id, &dir).await,
    };
    if !matches!(&result, Ok(o) if o.passed) && dir.is_dir() {
        for node in &lab.topology.nodes {
            let _ = std::fs::copy(node.log_path(), dir.join(format!("redis-{}.log", node.id)));
        }
    }
    lab.stop().await;
    result
}

/// On an external topology, a fault that acts on the nodes needs the
/// scenario's `allow_destructive` and the command line's agreement.
fn gate_destructive(plan: &RunPlan) -> Result<(), RunError> {
    if plan.topology.backend != Backend::External {
        return Ok(());
    }
    match plan.faults.iter().find(|f| f.destructive()) {
        Some(f) if !plan.topology.external.allow_destructive => {
            Err(RunError::Unfit {
                fault: f.name.clone(),
                kind: f.kind.as_str(),
                problem: "acts on the nodes of an external topology: it needs `allow_destructive = true` in [topology] and --allow-destructive on the command line".into(),
            })
        }
        _ => Ok(()),
    }
}

/// Every target must resolve to something its fault can act on, before
/// anything runs.
fn check_targets(plan: &RunPlan, lab: &Lab, run_id: &str) -> Result<(), RunError> {
    let gc = Arc::new(GcPause::default());
    for f in &plan.faults {
        if let Some(problem) = f.unfit(&fault_env(f, lab, run_id, &plan.workload, &gc)) {
            return Err(RunError::Unfit {
                fault: f.name.clone(),
                kind: f.kind.as_str(),
                problem: format!("target {} {problem}", f.target),
            });
        }
    }
    Ok(())
}

/// What a fault's target resolves to in this lab.
fn fault_env(
    f: &crate::fault::FaultPlan,
    lab: &Lab,
    run_id: &str,
    workload: &WorkloadPlan,
    gc: &Arc<GcPause>,
) -> Env {
    let prefix = format!("gameday:{run_id}:");
    Env {
        control: lab.control.clone(),
        proxies: if f.on_peer_paths() {
            lab.peer_targets(&f.target)
        } else {
            lab.targets(&f.target)
        },
        nodes: lab.target_nodes(&f.target),
        primary: lab
            .target_nodes(&crate::fault::Target::Primary)
            .into_iter()
            .next(),
        failover: lab.failover_ctx(&prefix),
        prefix,
        gc: workload.pausable().then(|| gc.clone()),
        peer_source: lab.topology.peer_source.is_some(),
        own_proxy: lab.proxy_version.contains("-gameday-"),
    }
}

/// Runs each variant after the other against the same lab, each into
/// `<dir>/<variant>/`, then writes the comparison into `dir`.
async fn variants(
    plan: &RunPlan,
    ctx: &Ctx<'_>,
    run_id: &str,
    dir: &Path,
) -> Result<RunOutcome, RunError> {
    let mut done: Vec<(String, RunOutcome)> = Vec::new();
    for (name, workload) in &plan.variants {
        if *ctx.shutdown.borrow() {
            break;
        }
        if ctx.opts.progress {
            eprintln!("gameday: variant {name}");
        }
        let vplan = plan.variant(name, workload);
        let o = drive(&vplan, ctx, &format!("{run_id}-{name}"), &dir.join(name)).await?;
        let aborted = o.summary.aborted.is_some();
        done.push((name.clone(), o));
        if aborted {
            break;
        }
    }
    let summaries: Vec<(String, Summary)> = done
        .iter()
        .map(|(n, o)| (n.clone(), o.summary.clone()))
        .collect();
    let all_passed = crate::report::compare::write(dir, &plan.name, &summaries)
        .map_err(|source| report_err(dir, source))?;
    let interrupted = done.iter().any(|(_, o)| o.interrupted) || *ctx.shutdown.borrow();
    let passed = all_passed && !interrupted && done.len() == plan.variants.len();
    let Some(mut summary) = done.first().map(|(_, o)| o.summary.clone()) else {
        return Err(RunError::Interrupted);
    };
    summary.aborted = done.iter().find_map(|(_, o)| o.summary.aborted.clone());
    summary.verdict = match (&summary.aborted, passed) {
        (Some(_), _) => "aborted",
        (None, true) => "pass",
        (None, false) => "fail",
    }
    .into();
    if ctx.opts.progress {
        println!("comparison: {}", dir.join("report.html").display());
    }
    Ok(RunOutcome {
        passed,
        interrupted,
        dir: dir.to_path_buf(),
        summary,
    })
}

fn report_err(dir: &Path, source: std::io::Error) -> RunError {
    RunError::Report {
        dir: dir.to_path_buf(),
        source,
    }
}

/// The tasks that run beside the load.
struct Beside {
    stop: watch::Sender<bool>,
    conductor: JoinHandle<()>,
    failed: tokio::sync::mpsc::Receiver<FaultError>,
    records: Arc<Mutex<Vec<FaultRecord>>>,
    telemetry: (JoinHandle<()>, Arc<Mutex<Vec<NodeSample>>>),
    events: (JoinHandle<()>, Arc<Mutex<Vec<ServerEvent>>>),
    watchdog: JoinHandle<()>,
    ticker: Option<JoinHandle<()>>,
}

/// One run against the lab: a target service up (if the scenario has
/// one), the load measured, the service down again.
async fn drive(
    plan: &RunPlan,
    ctx: &Ctx<'_>,
    run_id: &str,
    dir: &Path,
) -> Result<RunOutcome, RunError> {
    std::fs::create_dir_all(dir).map_err(|source| report_err(dir, source))?;
    let target = plan
        .workload
        .start(&ctx.lab.client, dir, &ctx.shutdown)
        .await?;
    let result = measure(plan, ctx, run_id, dir).await;
    target.stop().await;
    result
}

/// How the run's load is driven.
fn load_spec(plan: &RunPlan, dir: &Path, shutdown: tokio::sync::watch::Receiver<bool>) -> LoadSpec {
    LoadSpec {
        users: plan.load.users,
        rate: plan.load.rate,
        ramp: plan.load.ramp,
        duration: plan.duration,
        begin: Duration::ZERO,
        model: plan.load.model,
        stages: plan.load.stages.clone(),
        seed: plan.seed,
        goose_report: Some(dir.join("goose.html")),
        goose_metrics: true,
        stop: Some(shutdown),
    }
}

/// The load's stages as the recorder files them: name and window (µs).
fn stage_windows(plan: &RunPlan) -> Vec<(String, u64, u64)> {
    let us = |d: Duration| d.as_micros() as u64;
    plan.load
        .stages
        .iter()
        .map(|s| (s.name.clone(), us(s.start), us(s.end)))
        .collect()
}

/// The load against the lab, with the faults beside it: the table of
/// contents.
async fn measure(
    plan: &RunPlan,
    ctx: &Ctx<'_>,
    run_id: &str,
    dir: &Path,
) -> Result<RunOutcome, RunError> {
    let seed = plan.seed;
    let calibrator = crate::testbed::Calibrator::start().await;
    let (t0, started) = (Instant::now(), SystemTime::now());
    let gc = Arc::new(GcPause::default());
    let any = new_workload(plan, ctx, run_id, t0, &gc);
    let workload = any.oracle();
    let recorder = Arc::new(Mutex::new(
        Recorder::new(t0, workload.caller_ops()).with_stages(&stage_windows(plan)),
    ));
    let mut beside = start_beside(plan, ctx, run_id, workload, &recorder, &gc, t0);
    // The load stops on Ctrl-C or on a stop condition.
    let (halt, halted) = watch::channel(false);
    let spec = load_spec(plan, dir, halted);
    let load = crate::capacity::drive(
        &any,
        plan.capacity.as_ref(),
        &spec,
        (recorder.clone(), t0),
        ctx.opts.progress,
    );
    let watched = crate::stop::Watched::new(&plan.abort_if, &recorder, workload, t0);
    let (stop, failed) = (&beside.stop, &mut beside.failed);
    let shutdown = ctx.shutdown.clone();
    let ended = crate::stop::until_done(load, &watched, (halt, shutdown), stop, failed).await;
    let (loaded, aborted) = match ended {
        Ok(done) => done,
        Err(e) => {
            beside.abort();
            return Err(e.into());
        }
    };
    let (records, telemetry, events) = beside.finish().await?;
    let capacity = loaded?;
    let calibration = calibrator.finish().await;
    let ledger = workload.ledger();
    let interrupted = *ctx.shutdown.borrow() || aborted.is_some();
    workload.settle(!interrupted).await;
    // The final read-back: every acknowledged write must still be there.
    if let Some((l, decode)) = ledger.as_ref().filter(|_| !interrupted) {
        l.check(&ctx.lab.client, t0, *decode).await;
    }
    let rec = finished(recorder, interrupted, plan.duration);
    let facts = RunFacts {
        aborted,
        run_id: run_id.to_string(),
        seed,
        started,
        end_us: rec.phases()[0].end_us.unwrap_or(0),
        interrupted,
        backend: ctx.backend.as_str().into(),
        topology: ctx.lab.topology_summary(plan.topology.kind),
        proxy: ctx.lab.proxy_summary(),
        faults: records,
        events,
        ledger: ledger.as_ref().map(|(l, _)| l.lost()),
        testbed: crate::testbed::Testbed::probe(
            ctx.lab.telemetry_targets().first().map(|(_, a)| *a),
        )
        .await,
        calibration,
        commit: crate::testbed::commit(),
        capacity,
    };
    let summary = Summary::assemble(plan, &rec, facts, &|phase, baseline| {
        workload.phase_metrics(phase, baseline)
    });
    write_report(summary, rec, started, telemetry, dir, ctx.opts.progress)
}

/// The plan's workload, ready to drive against the lab.
fn new_workload(
    plan: &RunPlan,
    ctx: &Ctx<'_>,
    run_id: &str,
    t0: Instant,
    gc: &Arc<GcPause>,
) -> AnyWorkload {
    let setup = Setup {
        client: ctx.lab.client.clone(),
        prefix: format!("gameday:{run_id}:"),
        t0,
        seed: plan.seed,
        users: plan.load.users,
        gc: gc.clone(),
    };
    AnyWorkload::new(&plan.workload, setup)
}

/// Starts the conductor, telemetry, the sentinels' event watch, the
/// Ctrl-C watchdog and the progress ticker.
fn start_beside(
    plan: &RunPlan,
    ctx: &Ctx<'_>,
    run_id: &str,
    workload: &dyn Oracle,
    recorder: &Arc<Mutex<Recorder>>,
    gc: &Arc<GcPause>,
    t0: Instant,
) -> Beside {
    let (stop, stop_rx) = watch::channel(false);
    let records = Arc::new(Mutex::new(Vec::<FaultRecord>::new()));
    let schedule: Vec<Scheduled> = plan
        .faults
        .iter()
        .map(|f| Scheduled {
            plan: f.clone(),
            env: fault_env(f, ctx.lab, run_id, &plan.workload, gc),
        })
        .collect();
    let stage = Stage {
        recorder: recorder.clone(),
        records: records.clone(),
        t0,
        stop: stop_rx.clone(),
        ledger: workload.ledger().map(|(ledger, decode)| LedgerCheck {
            ledger,
            decode,
            client: ctx.lab.client.clone(),
        }),
    };
    let (fail_tx, failed) = tokio::sync::mpsc::channel::<FaultError>(1);
    let conductor = tokio::spawn(async move {
        if let Err(e) = conductor::conduct(schedule, stage).await {
            let _ = fail_tx.send(e).await;
        }
    });
    let samples = Arc::new(Mutex::new(Vec::<NodeSample>::new()));
    let watch_nodes = telemetry::watch_nodes(
        ctx.lab.telemetry_targets(),
        t0,
        samples.clone(),
        stop_rx.clone(),
    );
    let events = Arc::new(Mutex::new(Vec::<ServerEvent>::new()));
    let watch_sentinels =
        telemetry::watch_sentinels(ctx.lab.sentinels(), t0, events.clone(), stop_rx);
    let mut shutdown = ctx.shutdown.clone();
    let watchdog = tokio::spawn(async move {
        let _ = shutdown.wait_for(|s| *s).await;
        goose::trigger_killswitch("gameday: interrupted");
    });
    let ticker = ctx.opts.progress.then(|| {
        let counters = plan.workload.kind().spec().counters;
        tokio::spawn(progress(recorder.clone(), t0, plan.duration, counters))
    });
    Beside {
        stop,
        conductor,
        failed,
        records,
        telemetry: (tokio::spawn(watch_nodes), samples),
        events: (tokio::spawn(watch_sentinels), events),
        watchdog,
        ticker,
    }
}

type Gathered = (Vec<FaultRecord>, Vec<NodeSample>, Vec<ServerEvent>);

impl Beside {
    fn abort(&self) {
        let _ = self.stop.send(true);
        self.watchdog.abort();
        if let Some(t) = &self.ticker {
            t.abort();
        }
    }

    /// Stops every task, waits for it, and hands over what they gathered;
    /// a fault that failed meanwhile voids the run.
    async fn finish(mut self) -> Result<Gathered, RunError> {
        self.abort();
        let _ = (&mut self.conductor).await;
        let _ = (&mut self.telemetry.0).await;
        let _ = (&mut self.events.0).await;
        if let Ok(e) = self.failed.try_recv() {
            return Err(e.into());
        }
        Ok((
            self.records.lock().expect("records lock").clone(),
            take(&self.telemetry.1),
            take(&self.events.1),
        ))
    }
}

fn take<T>(m: &Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *m.lock().unwrap_or_else(|p| p.into_inner()))
}

/// The recorder, closed at the run's end (its planned end unless
/// interrupted).
fn finished(recorder: Arc<Mutex<Recorder>>, interrupted: bool, duration: Duration) -> Recorder {
    let mut rec = Arc::try_unwrap(recorder)
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        // A finished task may not have dropped its handle yet: copy instead.
        .unwrap_or_else(|arc| arc.lock().unwrap_or_else(|p| p.into_inner()).clone());
    let end_us = if interrupted {
        rec.now_us()
    } else {
        rec.now_us().min(duration.as_micros() as u64)
    };
    rec.finish(end_us);
    rec
}

fn write_report(
    summary: Summary,
    recorder: Recorder,
    started: SystemTime,
    telemetry: Vec<NodeSample>,
    dir: &Path,
    progress: bool,
) -> Result<RunOutcome, RunError> {
    let report = RunReport {
        summary,
        recorder,
        started,
        telemetry,
    };
    report
        .write(dir)
        .map_err(|source| report_err(dir, source))?;
    if progress {
        let _ = console::print_summary(&report.summary, &mut std::io::stdout());
        println!("report: {}", dir.display());
    }
    Ok(RunOutcome {
        passed: report.summary.passed(),
        interrupted: report.summary.interrupted,
        dir: dir.to_path_buf(),
        summary: report.summary,
    })
}

/// Prints one line per completed second to stderr.
async fn progress(
    recorder: Arc<Mutex<Recorder>>,
    t0: Instant,
    duration: Duration,
    counters: &'static [Counter],
) {
    let seconds = duration.as_secs_f64().ceil() as usize;
    for t in 0..seconds {
        tokio::time::sleep_until(t0 + Duration::from_millis(1000 * (t as u64 + 1) + 50)).await;
        let line = console::progress_line(&recorder.lock().expect("recorder lock"), t, counters);
        if let Some(line) = line {
            eprintln!("{line}");
        }
    }
}
