//! The open model: a scheduler thread releases arrivals at their times into
//! a queue of at most `max_queue`; `max_in_flight` slots (one client each)
//! serve them in order. An arrival that finds the queue full is shed; one
//! still queued when the load stops is counted as such; every arrival is
//! counted once, as offered, at its time, so that
//! `offered = completed + shed + queued_at_end` holds exactly once the
//! slots are done.
//!
//! The scheduler is a plain thread sleeping to each arrival (the kernel's
//! timers are finer than tokio's 1 ms wheel); how late it released each
//! arrival is recorded as the `load_lateness` pseudo-op, so a generator
//! that cannot keep up says so instead of billing its lateness to Redis.

use super::{
    Arrivals, LoadError, LoadSpec, OpenPlan, COMPLETED, IN_FLIGHT, OFFERED, QUEUED, QUEUED_AT_END,
    QUEUE_OP, SERVICE_OP, SHED, STARTED,
};
use crate::recorder::Recorder;
use crate::vocab::outcome::{Outcome, Sample, Trace};
use crate::workload::Workload;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How late the scheduler released an arrival: a pseudo-op of the report.
pub const LATENESS_OP: &str = "load_lateness";

/// An arrival closer than this is released at once rather than slept to:
/// a sleep takes about 50 µs whatever it asks for, so shorter ones would
/// only add lateness (and spinning would take a core from the load).
const SPIN_US: u64 = 5;

/// What the scheduler and the slots share.
struct Shared {
    recorder: Arc<Mutex<Recorder>>,
    t0: std::time::Instant,
    end_us: u64,
    in_flight: AtomicUsize,
    /// Set when the run is interrupted or the load future is dropped.
    cancel: AtomicBool,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    fn recorder(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Stops the scheduler when the load future ends, however it ends.
struct CancelOnDrop(Arc<Shared>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel.store(true, Ordering::Relaxed);
    }
}

/// Runs the open-model load to completion (or until `spec.stop`).
pub async fn drive<W: Workload>(
    workload: Arc<W>,
    spec: &LoadSpec,
    plan: OpenPlan,
    recorder: Arc<Mutex<Recorder>>,
    t0: Instant,
) -> Result<(), LoadError> {
    let shape = spec.shape().ok_or(LoadError::NoRate)?;
    let shared = Arc::new(Shared {
        recorder,
        t0: t0.into_std(),
        end_us: spec.duration.as_micros() as u64,
        in_flight: AtomicUsize::new(0),
        cancel: AtomicBool::new(false),
    });
    let _guard = CancelOnDrop(shared.clone());
    let (tx, rx) = flume::bounded::<u64>(plan.max_queue);
    let begin_us = spec.begin.as_micros() as u64;
    let arrivals = Arrivals::starting(plan.arrivals, shape, spec.seed ^ begin_us, begin_us);
    let scheduler = {
        let shared = shared.clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("gameday-arrivals".into())
            .spawn(move || {
                schedule(arrivals, &shared, tx);
                let _ = done_tx.send(());
            })
            .expect("a thread for the arrival scheduler");
        done_rx
    };
    if let Some(mut stop) = spec.stop.clone() {
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            shared.cancel.store(true, Ordering::Relaxed);
        });
    }
    let mut slots = tokio::task::JoinSet::new();
    for i in 0..plan.max_in_flight {
        let (workload, rx, shared) = (workload.clone(), rx.clone(), shared.clone());
        slots.spawn(async move { serve(&*workload, workload.new_user(i), rx, &shared).await });
    }
    drop(rx);
    let _ = scheduler.await;
    while slots.join_next().await.is_some() {}
    Ok(())
}

/// Releases each arrival at its time until the end of the load.
fn schedule(arrivals: Arrivals, shared: &Shared, tx: flume::Sender<u64>) {
    let mut batch: Vec<(u64, u64, bool)> = Vec::with_capacity(64);
    // One trace, refilled per arrival: nothing is allocated per arrival.
    let mut lateness = Trace::default();
    let mut arrivals = arrivals.peekable();
    while let Some(&next) = arrivals.peek() {
        if next >= shared.end_us || shared.cancel.load(Ordering::Relaxed) {
            break;
        }
        let now = shared.now_us();
        if next > now + SPIN_US {
            // Never past the end, and wake at least every 100 ms to see a
            // cancel.
            let wait = (next - now).min(100_000);
            std::thread::sleep(Duration::from_micros(wait));
            continue;
        }
        // Everything due now goes out in one batch, under one lock.
        let now = shared.now_us();
        while let Some(&at) = arrivals.peek() {
            if at > now || at >= shared.end_us {
                break;
            }
            arrivals.next();
            let shed = match tx.try_send(at) {
                Ok(()) => false,
                Err(flume::TrySendError::Full(_)) => true,
                Err(flume::TrySendError::Disconnected(_)) => return,
            };
            batch.push((at, now, shed));
        }
        let mut rec = shared.recorder();
        for &(at, released, shed) in &batch {
            rec.count_at(OFFERED, at, 1);
            if shed {
                rec.count_at(SHED, at, 1);
            }
            lateness.clear();
            lateness.samples.push(Sample {
                op: LATENESS_OP,
                intended_us: at,
                start_us: at,
                end_us: released,
                outcome: Outcome::Ok,
            });
            rec.record(&lateness);
        }
        rec.gauge_at(
            IN_FLIGHT,
            now,
            shared.in_flight.load(Ordering::Relaxed) as u64,
        );
        rec.gauge_at(QUEUED, now, tx.len() as u64);
        drop(rec);
        batch.clear();
    }
}

/// One slot: serves arrivals from the queue, in order, until it is closed
/// and empty. Arrivals taken after the end are counted, not served.
async fn serve<W: Workload>(
    workload: &W,
    mut user: W::User,
    rx: flume::Receiver<u64>,
    shared: &Shared,
) {
    let mut trace = Trace::default();
    while let Ok(at) = rx.recv_async().await {
        let start_us = shared.now_us();
        if start_us >= shared.end_us || shared.cancel.load(Ordering::Relaxed) {
            shared.recorder().count_at(QUEUED_AT_END, at, 1);
            continue;
        }
        shared.in_flight.fetch_add(1, Ordering::Relaxed);
        trace.clear();
        // The caller's sample goes first: the recorder files the op under
        // the phase of its arrival.
        trace.samples.push(Sample {
            op: "",
            intended_us: at,
            start_us,
            end_us: start_us,
            outcome: Outcome::Ok,
        });
        let done = workload.op(&mut user, at, &mut trace).await;
        let end_us = done.end_us.unwrap_or_else(|| shared.now_us());
        shared.in_flight.fetch_sub(1, Ordering::Relaxed);
        let caller = &mut trace.samples[0];
        caller.op = done.op;
        caller.end_us = end_us;
        caller.outcome = done.outcome;
        let caller = *caller;
        done.repeat_caller(caller, &mut trace);
        trace.samples.push(Sample {
            op: QUEUE_OP,
            intended_us: at,
            start_us: at,
            end_us: start_us,
            outcome: Outcome::Ok,
        });
        trace.samples.push(Sample {
            op: SERVICE_OP,
            intended_us: start_us,
            start_us,
            end_us,
            outcome: done.outcome,
        });
        let mut rec = shared.recorder();
        rec.record(&trace);
        rec.count_at(STARTED, start_us, 1);
        rec.count_at(COMPLETED, end_us, 1);
    }
}
