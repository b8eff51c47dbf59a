//! What a workload is to the rest of gameday: `Workload` (what the load
//! engine drives), `Oracle` (what the run and the report read), `Done`
//! (how one op ended for its caller), and the counts every workload's
//! metrics start from.

use super::WorkloadKind;
use crate::ledger::Tracked;
use crate::recorder::PhaseStats;
use crate::vocab::outcome::{Counter, Outcome, Sample, Trace};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

/// What one op ended as for its caller. The load engine turns it into
/// the op's caller sample (intended start, start, end, outcome), so no
/// workload times its own callers.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    pub op: &'static str,
    pub outcome: Outcome,
    /// When the caller-visible part ended, if before the op returned (the
    /// lock's acquire, which a hold follows); otherwise the engine reads
    /// the clock when the op returns.
    pub end_us: Option<u64>,
    /// How many caller requests the op was (a pipeline's commands): the
    /// engine files the caller sample this many times.
    pub requests: u32,
}

impl Done {
    pub fn new(op: &'static str, outcome: Outcome) -> Self {
        Done {
            op,
            outcome,
            end_us: None,
            requests: 1,
        }
    }

    /// The op was `n` caller requests in one round trip.
    pub fn times(self, n: usize) -> Self {
        Done {
            requests: n.max(1) as u32,
            ..self
        }
    }

    /// Files the caller sample once per request after the first (which
    /// is already in `trace`), each with the same times.
    pub(crate) fn repeat_caller(&self, caller: Sample, trace: &mut Trace) {
        for _ in 1..self.requests {
            trace.samples.push(caller);
        }
    }
}

/// What the run and the report need of a workload: its caller ops, its
/// ledger and its oracle. Object-safe, so the run holds any workload as
/// `&dyn Oracle`.
pub trait Oracle: Send + Sync + 'static {
    /// The names of the caller-visible ops (the rest are Redis commands).
    fn caller_ops(&self) -> &'static [&'static str];

    /// The acknowledged-write ledger, for workloads whose writes must last,
    /// with the function that reads a version out of a stored value.
    fn ledger(&self) -> Option<Tracked> {
        None
    }

    /// This workload's metrics of one phase (its oracle): from the
    /// recorder's counts for `phase`, and whatever else the workload kept.
    /// `baseline` is the run's baseline phase, for ratios against it.
    fn phase_metrics(&self, phase: &PhaseStats, baseline: &PhaseStats) -> BTreeMap<String, f64>;

    /// After the load and the faults ended, before the report: lets what
    /// runs beside the callers finish (a queue's consumers drain the
    /// stream; `drain` is false when the run was interrupted) and stops it.
    fn settle(&self, drain: bool) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let _ = drain;
        Box::pin(async {})
    }
}

/// What the load engine needs of a workload.
pub trait Workload: Oracle {
    /// Per-virtual-user state (connection, RNG).
    type User: Send + 'static;

    fn new_user(&self, index: usize) -> Self::User;

    /// Runs one op intended to start at `intended_us` (µs since t0), pushing
    /// the Redis commands it issued and the counters it bumped to `trace`,
    /// and says how it ended for the caller.
    fn op<'a>(
        &'a self,
        user: &'a mut Self::User,
        intended_us: u64,
        trace: &'a mut Trace,
    ) -> impl Future<Output = Done> + Send + 'a;
}

/// The counts of `counters` in `phase`, by name: the part of every
/// workload's metrics that the recorder counted.
pub fn counts(phase: &PhaseStats, counters: &[Counter]) -> BTreeMap<String, f64> {
    counters
        .iter()
        .map(|&c| (c.as_str().to_string(), phase.counter(c) as f64))
        .collect()
}

/// Every counter any workload counts, each once, in the order of
/// timeseries.csv's columns.
pub fn all_counters() -> Vec<Counter> {
    let mut all: Vec<Counter> = Vec::new();
    for kind in WorkloadKind::ALL {
        for &c in kind.spec().counters {
            if !all.contains(&c) {
                all.push(c);
            }
        }
    }
    all
}
