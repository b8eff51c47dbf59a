//! The conductor plays the fault timeline. It keeps the clock, the phases
//! and the records; what a fault does is its own file's business (see
//! `fault`). `fault:<name>` begins the moment gameday starts applying the
//! fault and `recovery:<name>` the moment it is seen gone (the proxy shows
//! it removed; the node answers again), so the fault phase covers every
//! instant the fault may have been in force.

use crate::fault::{Env, FaultError, FaultPlan, FaultRecord, Notes, Window};
use crate::ledger::{Ledger, VersionOf};
use crate::recorder::Recorder;
use crate::topology::ClientSpec;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One fault with what its target resolved to.
pub struct Scheduled {
    pub plan: FaultPlan,
    pub env: Env,
}

/// What the ledger's read-back after each fault needs.
#[derive(Clone)]
pub struct LedgerCheck {
    pub ledger: Arc<Ledger>,
    pub decode: VersionOf,
    pub client: ClientSpec,
}

/// How long after a fault's removal the ledger reads everything back.
const SETTLE: Duration = Duration::from_secs(1);

/// The run's side of the timeline: its clock, where phases and records go,
/// and the signal that stops it early.
pub struct Stage {
    pub recorder: Arc<Mutex<Recorder>>,
    pub records: Arc<Mutex<Vec<FaultRecord>>>,
    pub t0: Instant,
    pub stop: watch::Receiver<bool>,
    pub ledger: Option<LedgerCheck>,
}

/// Runs the fault timeline. Returns early, with every applied fault
/// removed, when `stop` turns true. The records are filled as it goes, so
/// a caller sees what happened even if the conductor fails midway.
pub async fn conduct(faults: Vec<Scheduled>, stage: Stage) -> Result<(), FaultError> {
    let mut checks = Vec::new();
    let mut result = Ok(());
    for (i, f) in faults.iter().enumerate() {
        match play(i, f, &stage, &mut checks).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    for c in checks {
        let _ = c.await;
    }
    result
}

/// Plays one fault: wait for its start, apply, wait for its end, remove.
/// False when the run was stopped before the fault began.
async fn play(
    i: usize,
    f: &Scheduled,
    stage: &Stage,
    checks: &mut Vec<JoinHandle<u64>>,
) -> Result<bool, FaultError> {
    let (t0, plan) = (stage.t0, &f.plan);
    let secs = |us: u64| us as f64 / 1e6;
    let now_us = || t0.elapsed().as_micros() as u64;
    stage
        .records
        .lock()
        .expect("records lock")
        .push(FaultRecord::planned(plan, &f.env.proxies));
    let notes = Notes::new(stage.records.clone(), i);
    let mut stop = stage.stop.clone();
    if !wait_until(t0 + plan.at, &mut stop).await {
        return Ok(false);
    }
    let applied = now_us();
    begin_phase(stage, &format!("fault:{}", plan.name), applied);
    notes.note(|r| r.applied_at_s = Some(secs(applied)));
    let window = Window {
        t0,
        end: t0 + plan.end(),
        duration: plan.duration,
        stop: stage.stop.clone(),
    };
    let active = plan.apply(&f.env, &window, &notes).await?;
    notes.note(|r| r.confirmed_at_s = Some(secs(now_us())));
    wait_until(window.end, &mut stop).await;
    let unconfirmed = active.remove(plan, &f.env, &window, &notes).await?;
    let removed = now_us();
    begin_phase(stage, &format!("recovery:{}", plan.name), removed);
    notes.note(|r| r.removed_at_s = Some(secs(removed)));
    if let Some(u) = unconfirmed {
        u.confirm(&f.env).await?;
    }
    if let Some(l) = stage.ledger.clone() {
        checks.push(tokio::spawn(async move {
            tokio::time::sleep(SETTLE).await;
            l.ledger.check(&l.client, t0, l.decode).await
        }));
    }
    Ok(true)
}

fn begin_phase(stage: &Stage, name: &str, at_us: u64) {
    stage
        .recorder
        .lock()
        .expect("recorder lock")
        .begin_phase(name, at_us);
}

/// Sleeps until `when`; false if `stop` turned true first.
async fn wait_until(when: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep_until(when) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}
