//! The simulated system of record behind a cache: a service time around a
//! mean, at most `concurrency` calls at once (the rest queue, as at a real
//! database pool), a version per key that every write bumps, and the time of
//! each key's last write so that stale reads can be proven.

use crate::scenario::plan::OriginPlan;
use rand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

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

    async fn serve(&self, rng: &mut impl Rng) {
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

    /// The current version of `key` and when it was last written.
    pub fn current(&self, key: u64) -> (u64, u64) {
        (
            self.versions[key as usize].load(Ordering::Acquire),
            self.written_at_us[key as usize].load(Ordering::Acquire),
        )
    }
}
