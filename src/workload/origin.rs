//! The simulated system of record behind a cache: a service time around a
//! mean, at most `concurrency` calls at once (the rest queue, as at a real
//! database pool), a version per key that every write bumps, and the time of
//! each key's last write so that stale reads can be proven.

use crate::vocab::check::{fraction_or, positive_int_or, Checked};
use crate::vocab::outcome::{Counter, Outcome, Sample, Trace};
use crate::vocab::units::Dur;
use rand::Rng;
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use toml::Spanned;

#[derive(Debug, Clone)]
pub struct OriginPlan {
    /// Mean service time of one origin call.
    pub latency: Duration,
    /// Relative spread of the service time (0.1 = ±10 %, uniform).
    pub jitter: f64,
    /// Calls served at once; more wait.
    pub concurrency: usize,
}

/// Calls to the simulated origin (the workloads that have one count them).
pub const ORIGIN_CALLS: Counter = Counter("origin_calls");

/// `origin = { latency = ..., jitter = ..., concurrency = ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrigin {
    pub latency: Option<Dur>,
    pub jitter: Option<Spanned<f64>>,
    pub concurrency: Option<Spanned<i64>>,
}

impl OriginPlan {
    /// The origin a workload's `origin` table describes; its latency
    /// defaults to `latency` (the workload's own default).
    pub fn from_raw(raw: Option<&RawOrigin>, latency: Duration) -> Checked<OriginPlan> {
        Ok(OriginPlan {
            latency: raw.and_then(|o| o.latency).map_or(latency, |d| d.0),
            jitter: fraction_or(raw.and_then(|o| o.jitter.as_ref()), "origin.jitter", 0.1)?,
            concurrency: positive_int_or(
                raw.and_then(|o| o.concurrency.as_ref()),
                "origin.concurrency",
                64,
            )? as usize,
        })
    }
}

/// Files one origin call in `trace`: its sample (op `origin`) and the
/// `origin_calls` counter.
pub fn file_call(trace: &mut Trace, start_us: u64, end_us: u64) {
    trace.counters.push(ORIGIN_CALLS);
    trace.samples.push(Sample {
        op: "origin",
        intended_us: start_us,
        start_us,
        end_us,
        outcome: Outcome::Ok,
    });
}

pub struct Origin {
    plan: OriginPlan,
    slots: Semaphore,
    versions: Vec<AtomicU64>,
    /// µs since t0 of each key's last write.
    written_at_us: Vec<AtomicU64>,
}

impl Origin {
    pub fn new(plan: OriginPlan, keys: u64) -> Self {
        Origin {
            slots: Semaphore::new(plan.concurrency),
            versions: (0..keys).map(|_| AtomicU64::new(1)).collect(),
            written_at_us: (0..keys).map(|_| AtomicU64::new(0)).collect(),
            plan,
        }
    }

    /// One call's service time (waiting for a slot first).
    pub async fn serve(&self, rng: &mut impl Rng) {
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the origin's semaphore is never closed");
        let spread = if self.plan.jitter > 0.0 {
            rng.gen_range(-self.plan.jitter..=self.plan.jitter)
        } else {
            0.0
        };
        let secs = self.plan.latency.as_secs_f64() * (1.0 + spread);
        tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await;
    }

    /// Reads `key`: returns its current version.
    pub async fn read(&self, key: u64, rng: &mut impl Rng) -> u64 {
        self.serve(rng).await;
        self.versions[key as usize].load(Ordering::Acquire)
    }

    /// Writes `key` at `now_us`: returns its new version.
    pub async fn write(&self, key: u64, now_us: u64, rng: &mut impl Rng) -> u64 {
        self.serve(rng).await;
        let v = self.versions[key as usize].fetch_add(1, Ordering::AcqRel) + 1;
        self.written_at_us[key as usize].fetch_max(now_us, Ordering::AcqRel);
        v
    }

    /// Takes `version` of `key` written elsewhere first (a write-behind
    /// cache's flush), unless it holds a newer one; no service time (a
    /// flush pays one `serve` per batch).
    pub fn apply(&self, key: u64, version: u64, now_us: u64) {
        if self.versions[key as usize].fetch_max(version, Ordering::AcqRel) < version {
            self.written_at_us[key as usize].fetch_max(now_us, Ordering::AcqRel);
        }
    }

    /// The current version of `key` and when it was last written.
    pub fn current(&self, key: u64) -> (u64, u64) {
        (
            self.versions[key as usize].load(Ordering::Acquire),
            self.written_at_us[key as usize].load(Ordering::Acquire),
        )
    }
}
