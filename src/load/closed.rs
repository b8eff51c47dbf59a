//! The closed model: goose drives `users` virtual users as a library, each
//! running one workload op per goose transaction. With a `rate`, every user
//! follows a fixed schedule (rate / users ops/s). An op that starts late
//! because the user's previous op ran long counts its latency from its slot
//! in the schedule, so a stall shows as latency rather than as fewer ops (no
//! coordinated omission); a user that was idle counts from when its timer
//! woke it, so the timer's 1 ms granularity is not billed to Redis. Each
//! caller op is also handed to goose, whose own report lands in the report
//! dir.

use super::{LoadError, LoadSpec, COMPLETED, OFFERED, STARTED};
use crate::recorder::Recorder;
use crate::vocab::outcome::{Outcome, Sample, Trace};
use crate::workload::Workload;
use goose::config::GooseConfiguration;
use goose::metrics::GooseCoordinatedOmissionMitigation;
use goose::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

struct Slot<U> {
    state: U,
    next_us: Option<f64>,
    trace: Trace,
}

struct Engine<W: Workload> {
    workload: Arc<W>,
    users: Vec<tokio::sync::Mutex<Slot<W::User>>>,
    recorder: Arc<Mutex<Recorder>>,
    t0: Instant,
    /// The rate over time; each user's slots are `users / rate` apart.
    shape: Option<super::Shape>,
    end_us: u64,
    goose_metrics: bool,
}

/// The longest a user idles in one transaction once its schedule is done,
/// so goose can stop it promptly.
const IDLE_STEP: Duration = Duration::from_millis(100);

impl<W: Workload> Engine<W> {
    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    async fn step(&self, user: &mut GooseUser) -> TransactionResult {
        let mut slot = self.users[user.weighted_users_index % self.users.len()]
            .lock()
            .await;
        let now = self.now_us();
        let intended = match &self.shape {
            Some(shape) => {
                let next = *slot.next_us.get_or_insert(now as f64);
                let interval = self.users.len() as f64 * 1e6 / shape.rate_at(next);
                slot.next_us = Some(next + interval);
                next as u64
            }
            None => now,
        };
        if intended >= self.end_us {
            drop(slot);
            let left = Duration::from_micros(self.end_us.saturating_sub(now)).max(IDLE_STEP);
            tokio::time::sleep(left.min(IDLE_STEP)).await;
            return Ok(());
        }
        let intended = if intended > now {
            tokio::time::sleep_until(self.t0 + Duration::from_micros(intended)).await;
            // The user was idle and ready: lateness of the wake-up (tokio's
            // timer ticks in whole ms) is the generator's, not the system's.
            let woke = self.now_us();
            if woke >= self.end_us {
                return Ok(());
            }
            woke
        } else {
            // Behind schedule: the previous op ran long. Count from the slot
            // it should have had (no coordinated omission).
            intended
        };
        let Slot { state, trace, .. } = &mut *slot;
        trace.clear();
        let start_us = self.now_us();
        // The caller's sample goes first (its slot is kept, and filled in
        // when the op returns): the recorder files the op's counters under
        // the phase of its intended start.
        let mut caller = Sample {
            op: "",
            intended_us: intended,
            start_us,
            end_us: start_us,
            outcome: Outcome::Ok,
        };
        trace.samples.push(caller);
        let done = self.workload.op(state, intended, trace).await;
        caller.op = done.op;
        caller.end_us = done.end_us.unwrap_or_else(|| self.now_us());
        caller.outcome = done.outcome;
        trace.samples[0] = caller;
        done.repeat_caller(caller, trace);
        {
            let mut rec = self.recorder.lock().unwrap_or_else(|p| p.into_inner());
            rec.record(trace);
            // What a closed user offers is what it starts.
            rec.count_at(OFFERED, start_us, 1);
            rec.count_at(STARTED, start_us, 1);
            rec.count_at(COMPLETED, caller.end_us, 1);
        }
        if self.goose_metrics {
            let callers = self.workload.caller_ops();
            for s in trace.samples.iter().filter(|s| callers.contains(&s.op)) {
                let (ok, err) = match s.outcome {
                    Outcome::Ok => (true, None),
                    Outcome::Err(class) => (false, Some(class.as_str())),
                };
                let latency = Duration::from_micros(s.latency_us());
                user.record_custom_request_duration("REDIS", s.op, latency, ok, None, err)
                    .await?;
            }
        }
        Ok(())
    }
}

fn goose_config(spec: &LoadSpec) -> GooseConfiguration {
    let mut config = GooseConfiguration::default();
    // goose wants a base URL; no HTTP request is ever made.
    config.host = Some("http://127.0.0.1".into());
    config.users = Some(spec.users);
    let per_sec = if spec.ramp.is_zero() {
        spec.users as f64 * 1000.0
    } else {
        spec.users as f64 / spec.ramp.as_secs_f64()
    };
    config.increase_rate = Some(format!("{per_sec:.6}"));
    // Whole seconds after all users started; the engine itself stops issuing
    // ops at exactly `duration`.
    let rest = spec.duration.saturating_sub(spec.ramp).as_secs_f64().ceil() as u64 + 1;
    config.run_time = Some(rest.to_string());
    config.quiet = 1;
    config.no_print_metrics = true;
    config.no_error_summary = true;
    config.no_telnet = true;
    config.no_transaction_metrics = true;
    config.no_scenario_metrics = true;
    config.co_mitigation = Some(GooseCoordinatedOmissionMitigation::Disabled);
    if let Some(path) = &spec.goose_report {
        config.report_file = vec![path.display().to_string()];
    }
    config
}

/// Runs the load to completion (or until goose's killswitch is pulled).
pub async fn drive<W: Workload>(
    workload: Arc<W>,
    spec: &LoadSpec,
    recorder: Arc<Mutex<Recorder>>,
    t0: Instant,
) -> Result<(), LoadError> {
    let users = (0..spec.users)
        .map(|i| {
            tokio::sync::Mutex::new(Slot {
                state: workload.new_user(i),
                next_us: None,
                trace: Trace::default(),
            })
        })
        .collect();
    let engine = Arc::new(Engine {
        users,
        recorder,
        t0,
        shape: spec.shape(),
        end_us: spec.duration.as_micros() as u64,
        goose_metrics: spec.goose_metrics,
        workload,
    });
    let step: TransactionFunction = Arc::new(move |user| {
        let engine = engine.clone();
        Box::pin(async move { engine.step(user).await })
    });
    let scenario = scenario!("gameday").register_transaction(Transaction::new(step).set_name("op"));
    GooseAttack::initialize_with_config(goose_config(spec))
        .map_err(|e| LoadError::Goose(Box::new(e)))?
        .register_scenario(scenario)
        .execute()
        .await
        .map_err(|e| LoadError::Goose(Box::new(e)))?;
    Ok(())
}
