//! The load engine, in two models.
//!
//! - **Closed** (`closed.rs`, the default): goose drives `users` virtual
//!   users as a library, each running one workload op per goose
//!   transaction, each waiting for its op before the next. A slower Redis
//!   gets fewer commands, as a fixed pool of callers would give it.
//! - **Open** (`open.rs`): arrivals come on a schedule of their own
//!   (`arrivals.rs`: constant or Poisson) whatever Redis does; at most
//!   `max_in_flight` are served at once, up to `max_queue` wait, the rest
//!   are shed and counted. A slower Redis gets the same arrivals, as a web
//!   site's visitors would give it.
//!
//! Both count, at the moment each happens, the ops offered, started and
//! completed (and, open, shed and left queued), so that the console shows
//! a stall as a stall; both time an op from its intended start (the slot
//! in the schedule, or the arrival), so a stall shows as latency rather
//! than as fewer ops (no coordinated omission).

mod arrivals;
pub mod capacity;
mod closed;
mod open;
mod shape;

pub use arrivals::Arrivals;
pub use closed::drive;
pub use shape::{Shape, Stage};

use crate::recorder::Recorder;
use crate::vocab::outcome::Counter;
use crate::workload::{AnyWorkload, Workload};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Ops that arrived (open) or that a user began (closed).
pub const OFFERED: Counter = Counter("offered");
/// Ops that began to be served.
pub const STARTED: Counter = Counter("started");
/// Ops that ended, well or not.
pub const COMPLETED: Counter = Counter("completed");
/// Arrivals that found the queue full (open model).
pub const SHED: Counter = Counter("shed");
/// Arrivals still waiting when the load stopped (open model): never
/// served, never shed.
pub const QUEUED_AT_END: Counter = Counter("queued_at_end");

/// The load counters, in the order of timeseries.csv's columns.
pub const COUNTERS: &[Counter] = &[OFFERED, STARTED, COMPLETED, SHED, QUEUED_AT_END];

/// Gauges sampled by the open model: their most per second and per phase.
pub const IN_FLIGHT: &str = "in_flight";
pub const QUEUED: &str = "queued";
pub const GAUGES: &[&str] = &[IN_FLIGHT, QUEUED];

/// The pseudo-ops of the open model, recorded beside the caller op: the
/// wait from arrival to a free slot, and the op itself from there. The
/// caller op's latency is their sum (from arrival to end).
pub const QUEUE_OP: &str = "load_queue";
pub const SERVICE_OP: &str = "load_service";
/// The pseudo-ops a rule may name in an open-model run.
pub const OPEN_OPS: [&str; 3] = [QUEUE_OP, SERVICE_OP, open::LATENESS_OP];

/// How arrivals relate to completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// Each user waits for its op before its next (today's behaviour).
    Closed,
    Open(OpenPlan),
}

/// The open model's knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenPlan {
    /// Ops served at once: one client each.
    pub max_in_flight: usize,
    /// Arrivals that may wait for a free slot; more are shed.
    pub max_queue: usize,
    pub arrivals: ArrivalProcess,
}

/// When arrivals come, at a given rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArrivalProcess {
    /// Evenly spaced: 1/rate apart.
    Constant,
    /// Independent: exponential gaps of mean 1/rate.
    Poisson,
}

impl ArrivalProcess {
    pub fn as_str(self) -> &'static str {
        match self {
            ArrivalProcess::Constant => "constant",
            ArrivalProcess::Poisson => "poisson",
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Closed: the virtual users. Open: `max_in_flight` (the clients).
    pub users: usize,
    /// Target ops/s over all users; `None` = as fast as possible (closed
    /// only: an open model needs a rate).
    pub rate: Option<f64>,
    pub ramp: Duration,
    pub model: Model,
    /// `[[load.stage]]`, contiguous from 0; empty for one rate throughout.
    pub stages: Vec<Stage>,
}

impl LoadPlan {
    /// The rate over time; none when the closed users run as fast as
    /// they can.
    pub fn shape(&self) -> Option<Shape> {
        shape_of(self.rate, &self.stages)
    }
}

fn shape_of(rate: Option<f64>, stages: &[Stage]) -> Option<Shape> {
    match stages.last() {
        Some(last) => Some(Shape {
            stages: stages.to_vec(),
            rest: last.to,
        }),
        None => rate.map(Shape::constant),
    }
}

/// How much load, for how long.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub users: usize,
    /// ops/s over all users; `None` = as fast as possible.
    pub rate: Option<f64>,
    pub ramp: Duration,
    pub duration: Duration,
    /// Open model: arrivals begin here (since t0) and end at `duration`
    /// (a capacity step on the run's clock). Zero otherwise.
    pub begin: Duration,
    pub model: Model,
    pub stages: Vec<Stage>,
    /// Seeds the Poisson arrivals.
    pub seed: u64,
    /// Where goose writes its own report (`.html`, `.json` or `.md`).
    pub goose_report: Option<PathBuf>,
    /// Hand every caller op to goose's metrics as well as to the recorder.
    pub goose_metrics: bool,
    /// Turns true when the run is interrupted (the open model's stop; the
    /// closed model stops on goose's killswitch).
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
}

impl LoadSpec {
    /// The rate over time; none when the closed users run as fast as
    /// they can.
    pub fn shape(&self) -> Option<Shape> {
        shape_of(self.rate, &self.stages)
    }

    /// A closed-model spec with no goose report, as benchmarks use.
    pub fn closed(users: usize, rate: Option<f64>, duration: Duration) -> LoadSpec {
        LoadSpec {
            users,
            rate,
            ramp: Duration::ZERO,
            duration,
            begin: Duration::ZERO,
            model: Model::Closed,
            stages: Vec::new(),
            seed: 0,
            goose_report: None,
            goose_metrics: false,
            stop: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the load engine (goose) failed: {0}")]
    Goose(#[from] Box<goose::GooseError>),
    #[error("the open-model load needs a rate")]
    NoRate,
}

/// Runs the load in the spec's model.
pub async fn drive_model<W: Workload>(
    workload: Arc<W>,
    spec: &LoadSpec,
    recorder: Arc<Mutex<Recorder>>,
    t0: Instant,
) -> Result<(), LoadError> {
    match spec.model {
        Model::Closed => drive(workload, spec, recorder, t0).await,
        Model::Open(plan) => open::drive(workload, spec, plan, recorder, t0).await,
    }
}

/// Drives whichever workload the run made: the one place the engine is
/// instantiated per workload kind.
pub async fn drive_any(
    workload: &AnyWorkload,
    spec: &LoadSpec,
    recorder: Arc<Mutex<Recorder>>,
    t0: Instant,
) -> Result<(), LoadError> {
    match workload {
        AnyWorkload::CacheAside(w) => drive_model(w.clone(), spec, recorder, t0).await,
        AnyWorkload::Session(w) => drive_model(w.clone(), spec, recorder, t0).await,
        AnyWorkload::Lock(w) => drive_model(w.clone(), spec, recorder, t0).await,
        AnyWorkload::Stampede(w) => drive_model(w.clone(), spec, recorder, t0).await,
        AnyWorkload::RateLimit(w) => drive_model(w.clone(), spec, recorder, t0).await,
        AnyWorkload::Http(w) => drive_model(w.clone(), spec, recorder, t0).await,
        AnyWorkload::Throughput(w) => drive_model(w.clone(), spec, recorder, t0).await,
        AnyWorkload::Queue(w) => drive_model(w.clone(), spec, recorder, t0).await,
        AnyWorkload::WriteBehind(w) => drive_model(w.clone(), spec, recorder, t0).await,
        AnyWorkload::ReplicaReads(w) => drive_model(w.clone(), spec, recorder, t0).await,
        AnyWorkload::TwoLevel(w) => drive_model(w.clone(), spec, recorder, t0).await,
    }
}

/// Per-phase load metrics, for summary.json and rules: the counters, their
/// rates, and the gauges' highs.
pub fn phase_metrics(p: &crate::recorder::PhaseStats) -> Vec<(String, f64)> {
    let secs = p.secs().max(1e-9);
    let mut m: Vec<(String, f64)> = COUNTERS
        .iter()
        .map(|c| (c.as_str().to_string(), p.counter(*c) as f64))
        .collect();
    m.push(("offered_rate".into(), p.counter(OFFERED) as f64 / secs));
    m.push(("completed_rate".into(), p.counter(COMPLETED) as f64 / secs));
    for g in GAUGES {
        m.push((format!("{g}_max"), p.gauge(g) as f64));
    }
    m
}
