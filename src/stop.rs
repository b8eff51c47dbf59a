//! Stop conditions (L5): a scenario's `abort_if` rules, checked every
//! second on the data so far (the phases as the recorder has them). The
//! first rule that holds ends the run: the caller removes the faults,
//! stops the load and writes the report with verdict `aborted`.

use crate::fault::FaultError;
use crate::recorder::Recorder;
use crate::report::summary::{phases, Aborted};
use crate::vocab::expect::Expectation;
use crate::workload::Oracle;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How often the rules are checked.
const EVERY: Duration = Duration::from_secs(1);

/// What the stop conditions read.
pub struct Watched<'a> {
    pub rules: &'a [Expectation],
    pub recorder: &'a Arc<Mutex<Recorder>>,
    pub oracle: &'a dyn Oracle,
    pub t0: Instant,
}

impl<'a> Watched<'a> {
    pub fn new(
        rules: &'a [Expectation],
        recorder: &'a Arc<Mutex<Recorder>>,
        oracle: &'a dyn Oracle,
        t0: Instant,
    ) -> Watched<'a> {
        Watched {
            rules,
            recorder,
            oracle,
            t0,
        }
    }
}

/// Drives `load` to its end. Ctrl-C (`shutdown`) or a stop condition
/// turns `halt` true, which stops it; a stop condition also sends `stop`
/// at once (the conductor then takes the fault in force off) and is
/// returned. A fault that could not be applied ends it with the error
/// (and goose's killswitch).
pub async fn until_done<R>(
    load: impl Future<Output = R>,
    watched: &Watched<'_>,
    (halt, mut shutdown): (watch::Sender<bool>, watch::Receiver<bool>),
    stop: &watch::Sender<bool>,
    failed: &mut mpsc::Receiver<FaultError>,
) -> Result<(R, Option<Aborted>), FaultError> {
    tokio::pin!(load);
    let mut aborted = None;
    loop {
        tokio::select! {
            r = &mut load => return Ok((r, aborted)),
            Some(e) = failed.recv() => {
                goose::trigger_killswitch("gameday: a fault could not be applied");
                return Err(e);
            }
            _ = shutdown.wait_for(|s| *s), if !*halt.borrow() => {
                let _ = halt.send(true);
            }
            tripped = watch(watched.rules, watched.recorder, watched.oracle, watched.t0), if aborted.is_none() => {
                eprintln!(
                    "gameday: stop condition `{}` holds in {} ({} {}): removing the faults, stopping the load",
                    tripped.rule, tripped.phase, tripped.observed, tripped.unit
                );
                let _ = stop.send(true);
                let _ = halt.send(true);
                goose::trigger_killswitch("gameday: stop condition");
                aborted = Some(tripped);
            }
        }
    }
}

/// Waits until one of `rules` holds on the run so far, and says which;
/// never returns when there are none.
pub async fn watch(
    rules: &[Expectation],
    recorder: &Arc<Mutex<Recorder>>,
    oracle: &dyn Oracle,
    t0: Instant,
) -> Aborted {
    if rules.is_empty() {
        return std::future::pending().await;
    }
    // From now, not from t0: a watch made again later must not burst
    // through the ticks it missed.
    let mut tick = tokio::time::interval_at(Instant::now() + EVERY, EVERY);
    loop {
        tick.tick().await;
        let so_far = {
            let rec = recorder.lock().unwrap_or_else(|p| p.into_inner());
            phases(&rec, &[], None, &|p, b| oracle.phase_metrics(p, b))
        };
        for rule in rules {
            if let Some((phase, value)) = rule.holds_in(&so_far) {
                return Aborted {
                    rule: rule.rule.clone(),
                    phase,
                    observed: rule.in_rule_unit(value),
                    unit: rule.unit.clone(),
                    at_s: t0.elapsed().as_secs_f64(),
                };
            }
        }
    }
}
