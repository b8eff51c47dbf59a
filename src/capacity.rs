//! The load of a run: one load as planned, or, with `[capacity]`, a search
//! for the knee: steps of the open model at rising rates on the run's
//! clock, each its own `stage:step-<n>` phase, each judged by the SLO
//! rules, then a bisection between the last good and the first bad rate
//! (`load::capacity::Search` decides; this runs the steps). It stops when
//! resolved, at `max`, below `start`, or when `duration` runs out.

use crate::load::capacity::{CapacityPlan, Search, Stop};
use crate::load::{self, LoadError, LoadSpec};
use crate::recorder::Recorder;
use crate::report::capacity::{CapacityStep, CapacitySummary};
use crate::report::summary::{evaluate, phases, PhaseSummary};
use crate::vocab::expect::PhaseRef;
use crate::workload::{AnyWorkload, Oracle};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Runs the load: the plan's, or the capacity search (printing each step
/// when `say`).
pub async fn drive(
    any: &AnyWorkload,
    plan: Option<&CapacityPlan>,
    spec: &LoadSpec,
    (recorder, t0): (Arc<Mutex<Recorder>>, Instant),
    say: bool,
) -> Result<Option<CapacitySummary>, LoadError> {
    match plan {
        None => load::drive_any(any, spec, recorder, t0).await.map(|_| None),
        Some(plan) => search(any, plan, spec, (recorder, t0), say).await.map(Some),
    }
}

async fn search(
    any: &AnyWorkload,
    plan: &CapacityPlan,
    spec: &LoadSpec,
    (recorder, t0): (Arc<Mutex<Recorder>>, Instant),
    say: bool,
) -> Result<CapacitySummary, LoadError> {
    let mut search = Search::new(plan);
    let mut steps: Vec<CapacityStep> = Vec::new();
    let stopped = |s: &LoadSpec| s.stop.as_ref().is_some_and(|r| *r.borrow());
    while let Ok(rate) = search.next() {
        let begin = t0.elapsed();
        if begin + plan.hold > spec.duration || stopped(spec) {
            search.out_of_time();
            break;
        }
        let n = steps.len() + 1;
        let name = format!("step-{n}");
        let end = begin + plan.hold;
        let us = |d: Duration| d.as_micros() as u64;
        recorder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add_stage(&name, us(begin), us(end));
        let step_spec = LoadSpec {
            rate: Some(rate),
            begin,
            duration: end,
            stages: Vec::new(),
            ..spec.clone()
        };
        load::drive_any(any, &step_spec, recorder.clone(), t0).await?;
        let step = judge(any.oracle(), plan, &recorder, n, rate);
        if say {
            println!("{}", step_line(&step));
        }
        search.record(rate, step.held);
        steps.push(step);
    }
    let stop = search.next().err().unwrap_or(Stop::OutOfTime);
    let first_bad = search.bad;
    let first_failed_rule = steps
        .iter()
        .filter(|s| !s.held)
        .min_by(|a, b| a.rate.total_cmp(&b.rate))
        .and_then(|s| s.failed_rules.first().cloned());
    Ok(CapacitySummary {
        max_rate: search.good,
        first_bad_rate: first_bad,
        stopped: stop.as_str().into(),
        first_failed_rule,
        resolution: plan.resolution,
        steps,
    })
}

/// One step's row, its SLO rules judged on its phase.
fn judge(
    oracle: &dyn Oracle,
    plan: &CapacityPlan,
    recorder: &Arc<Mutex<Recorder>>,
    n: usize,
    rate: f64,
) -> CapacityStep {
    let phase = format!("stage:step-{n}");
    let rec = recorder.lock().unwrap_or_else(|p| p.into_inner());
    let all: Vec<PhaseSummary> = phases(&rec, &[], None, &|p, b| oracle.phase_metrics(p, b));
    let rules: Vec<_> = plan
        .slo
        .iter()
        .cloned()
        .map(|mut e| {
            e.phase = PhaseRef::Stage(format!("step-{n}"));
            e
        })
        .collect();
    let results = evaluate(&rules, &all);
    let p = all.iter().find(|p| p.name == phase);
    let metric = |k: &str| p.and_then(|p| p.metrics.get(k).copied()).unwrap_or(0.0);
    let caller = p.and_then(|p| p.ops.get(crate::vocab::outcome::CALLER_OP));
    CapacityStep {
        step: n,
        phase,
        rate,
        offered: metric("offered") as u64,
        achieved: metric("completed_rate"),
        p50_us: caller.map_or(0, |c| c.p50_us),
        p99_us: caller.map_or(0, |c| c.p99_us),
        errors: caller.map_or(0, |c| c.errors),
        shed: metric("shed") as u64,
        held: results.iter().all(|r| r.passed),
        failed_rules: results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| r.rule.clone())
            .collect(),
    }
}

/// What the console says of a step.
fn step_line(s: &CapacityStep) -> String {
    format!(
        "capacity step {:>2}: offered {:>7.0}/s  achieved {:>7.0}/s  p99 {:>8}  errors {:>5}  shed {:>6}  {}",
        s.step,
        s.rate,
        s.achieved,
        crate::vocab::units::fmt_micros(s.p99_us as f64),
        s.errors,
        s.shed,
        if s.held {
            "held".to_string()
        } else {
            format!("broke {}", s.failed_rules.join(", "))
        }
    )
}
