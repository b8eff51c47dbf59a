//! lock: users take turns at a protected resource through a Redis lock —
//! `SET key token NX PX ttl`, released by a compare-and-delete script — and,
//! with `fencing`, an `INCR`ed fencing token the resource checks on every
//! write (Kleppmann's fix for locks that expire under a paused holder).
//!
//! The protected resource lives in gameday and sees every holder, so the
//! oracle is exact:
//! - `overlaps`: a holder entered while another was still inside (mutual
//!   exclusion violated — the lock expired under the first one, or was lost
//!   in a failover);
//! - `stale_writes_accepted`: without fencing, a write by a holder someone
//!   else had already superseded (the resource cannot tell: data corrupted);
//! - `stale_writes_rejected`: with fencing, a write whose token is lower
//!   than one the resource has seen, refused;
//! - `acquire_failures`: users that gave up waiting for the lock.
//!
//! A `gc_pause` fault makes the next holder stall inside its critical
//! section for the fault's length, as a stop-the-world pause would.

use super::conn::RedisConn;
use super::{keys_of, Spec};
use super::{Choice, Done, OneOrMany, Oracle, Workload};
use crate::recorder::PhaseStats;
use crate::vocab::check::{check, positive_dur, positive_int_or, Checked};
use crate::vocab::expect::Dim;
use crate::vocab::outcome::{
    Counter, ErrorClass, Outcome, Sample, Trace, CALLER_ERRORS, REDIS_ERRORS,
};
use crate::vocab::units::Dur;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

use crate::topology::ClientSpec;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Holders that entered while another was inside (mutual exclusion violated).
pub const OVERLAPS: Counter = Counter("overlaps");
/// Writes of a superseded holder the resource took.
pub const STALE_WRITES_ACCEPTED: Counter = Counter("stale_writes_accepted");
/// Writes refused for a lower fencing token than one already seen.
pub const STALE_WRITES_REJECTED: Counter = Counter("stale_writes_rejected");
/// Acquisitions given up after acquire_timeout.
pub const ACQUIRE_FAILURES: Counter = Counter("acquire_failures");
/// Every counter this workload reports, in report order.
pub const COUNTERS: &[Counter] = &[
    CALLER_ERRORS,
    REDIS_ERRORS,
    OVERLAPS,
    STALE_WRITES_ACCEPTED,
    STALE_WRITES_REJECTED,
    ACQUIRE_FAILURES,
];

/// lock: users contend for `locks` Redis locks around a protected resource.
#[derive(Debug, Clone)]
pub struct LockPlan {
    pub locks: u64,
    pub lock_ttl: Duration,
    pub critical_section: Duration,
    pub fencing: bool,
    /// How long a user polls for a held lock before giving up.
    pub acquire_timeout: Duration,
    /// Poll interval while waiting (± 50 % jitter).
    pub retry: Duration,
    pub op_timeout: Duration,
}

/// The `[workload]` keys of `kind = "lock"`.
#[derive(Debug, Deserialize)]
pub struct Raw {
    locks: Option<Spanned<i64>>,
    lock_ttl: Option<Spanned<Dur>>,
    critical_section: Option<Spanned<Dur>>,
    /// One value, or a list: one variant per value.
    fencing: Option<Spanned<OneOrMany<bool>>>,
    acquire_timeout: Option<Spanned<Dur>>,
    retry: Option<Spanned<Dur>>,
    op_timeout: Option<Spanned<Dur>>,
}

impl Raw {
    /// Validates the keys; `fencing = [false, true]` gives the variants
    /// `fencing-off` and `fencing-on`.
    pub fn plan(self) -> Checked<Choice<LockPlan>> {
        let base = LockPlan {
            locks: positive_int_or(self.locks.as_ref(), "locks", 1)?,
            lock_ttl: positive_dur(
                self.lock_ttl.as_ref(),
                "lock_ttl",
                Duration::from_millis(500),
            )?,
            critical_section: positive_dur(
                self.critical_section.as_ref(),
                "critical_section",
                Duration::from_millis(10),
            )?,
            fencing: false,
            acquire_timeout: positive_dur(
                self.acquire_timeout.as_ref(),
                "acquire_timeout",
                Duration::from_secs(2),
            )?,
            retry: positive_dur(self.retry.as_ref(), "retry", Duration::from_millis(10))?,
            op_timeout: positive_dur(
                self.op_timeout.as_ref(),
                "op_timeout",
                Duration::from_millis(100),
            )?,
        };
        if let Some(c) = &self.critical_section {
            check(
                c,
                base.critical_section < base.lock_ttl,
                "`critical_section` must be shorter than `lock_ttl`, or every holder outlives its lock",
            )?;
        }
        super::bool_choice(self.fencing.as_ref(), "fencing", base, |p, on| {
            p.fencing = on
        })
    }
}

/// Caller ops first, then the Redis commands.
pub const OPS: &[&str] = &["acquire", "hold", "redis_set", "redis_incr", "redis_eval"];
const CALLER_OPS: &[&str] = &["acquire", "hold"];

pub const METRICS: &[(&str, Dim)] = &[
    ("caller_errors", Dim::Count),
    ("redis_errors", Dim::Count),
    ("overlaps", Dim::Count),
    ("stale_writes_accepted", Dim::Count),
    ("stale_writes_rejected", Dim::Count),
    ("acquire_failures", Dim::Count),
];

/// What the scenario layer and the reports know of this workload.
pub const SPEC: Spec = Spec {
    name: "lock",
    section: "workload",
    ops: OPS,
    metrics: METRICS,
    counters: COUNTERS,
    keys: keys_of::<Raw>,
};

/// A pause armed by a `gc_pause` fault: the next holder takes it and stalls
/// until the fault's end; the conductor waits for that holder to have left
/// before it starts the recovery phase.
#[derive(Default)]
pub struct GcPause {
    state: Mutex<PauseState>,
    left: tokio::sync::Notify,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum PauseState {
    #[default]
    Idle,
    /// Waiting for a holder; the pause lasts until this instant.
    Armed(Instant),
    /// A holder is stalled in it.
    Taken,
}

impl GcPause {
    fn lock(&self) -> std::sync::MutexGuard<'_, PauseState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arms a pause that lasts until `until`.
    pub fn arm(&self, until: Instant) {
        *self.lock() = PauseState::Armed(until);
    }

    /// Ends the fault: disarms a pause nobody took, or waits (up to 5 s)
    /// until the paused holder has left the resource.
    pub async fn end(&self) {
        let notified = self.left.notified();
        let taken = {
            let mut state = self.lock();
            match *state {
                PauseState::Taken => true,
                _ => {
                    *state = PauseState::Idle;
                    false
                }
            }
        };
        if taken {
            let _ = tokio::time::timeout(Duration::from_secs(5), notified).await;
        }
    }

    /// Takes an armed pause: the caller stalls until the instant it
    /// returns, then calls `done`.
    pub(crate) fn take(&self) -> Option<Instant> {
        let mut state = self.lock();
        match *state {
            PauseState::Armed(until) => {
                *state = PauseState::Taken;
                Some(until)
            }
            _ => None,
        }
    }

    /// The stalled holder has left.
    pub(crate) fn done(&self) {
        *self.lock() = PauseState::Idle;
        self.left.notify_waiters();
    }
}

/// One lock's view from the protected resource.
#[derive(Default)]
struct Guarded {
    /// Users inside now, with the sequence number of their entry.
    inside: Vec<(u32, u64)>,
    /// Entries so far; a holder whose entry is older than the newest is
    /// superseded.
    entries: u64,
    /// The highest fencing token a write carried.
    max_fence: u64,
}

/// The protected resource: records every holder of every lock.
#[derive(Default)]
struct Resource {
    locks: Mutex<HashMap<u64, Guarded>>,
}

enum Write {
    Fresh,
    StaleAccepted,
    StaleRejected,
}

impl Resource {
    /// A holder enters; true if someone else is inside (an overlap).
    fn enter(&self, lock: u64, user: u32) -> (u64, bool) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        let g = locks.entry(lock).or_default();
        g.entries += 1;
        let overlap = g.inside.iter().any(|(u, _)| *u != user);
        g.inside.push((user, g.entries));
        (g.entries, overlap)
    }

    /// The holder's write, with its fencing token if fencing is on.
    fn write(&self, lock: u64, entry: u64, fence: Option<u64>) -> Write {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        let g = locks.entry(lock).or_default();
        let superseded = entry < g.entries;
        match fence {
            Some(f) if f < g.max_fence => Write::StaleRejected,
            // A superseded holder whose token is still the highest writes
            // before its successor does: in token order, so consistent.
            Some(f) => {
                g.max_fence = f;
                Write::Fresh
            }
            None if superseded => Write::StaleAccepted,
            None => Write::Fresh,
        }
    }

    fn leave(&self, lock: u64, user: u32, entry: u64) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(g) = locks.get_mut(&lock) {
            g.inside.retain(|&(u, e)| !(u == user && e == entry));
        }
    }
}

pub struct Lock {
    plan: LockPlan,
    client: ClientSpec,
    prefix: String,
    t0: Instant,
    seed: u64,
    tokens: AtomicU64,
    resource: Resource,
    gc: Arc<GcPause>,
}

pub struct User {
    conn: RedisConn,
    rng: SmallRng,
    index: u32,
}

impl Lock {
    pub fn new(
        plan: LockPlan,
        client: ClientSpec,
        prefix: String,
        t0: Instant,
        seed: u64,
        gc: Arc<GcPause>,
    ) -> Self {
        Lock {
            plan,
            client,
            prefix,
            t0,
            seed,
            tokens: AtomicU64::new(0),
            resource: Resource::default(),
            gc,
        }
    }

    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    /// The lock key and its fence counter share a hash tag (one slot).
    fn keys(&self, lock: u64) -> (String, String) {
        (
            format!("{}{{lock:{lock}}}", self.prefix),
            format!("{}{{lock:{lock}}}:fence", self.prefix),
        )
    }

    /// Tries to take `lock` until `acquire_timeout`; the token on success.
    async fn acquire(
        &self,
        user: &mut User,
        key: &str,
        trace: &mut Trace,
    ) -> Result<Option<String>, ErrorClass> {
        let token = format!(
            "{}:{}",
            user.index,
            self.tokens.fetch_add(1, Ordering::Relaxed)
        );
        let give_up = Instant::now() + self.plan.acquire_timeout;
        loop {
            let mut set = redis::cmd("SET");
            set.arg(key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(self.plan.lock_ttl.as_millis() as u64);
            match user
                .conn
                .query::<Option<String>>("redis_set", &set, trace)
                .await
            {
                Ok(Some(_)) => return Ok(Some(token)),
                Ok(None) => {}
                Err(class) => {
                    trace.counters.push(REDIS_ERRORS);
                    return Err(class);
                }
            }
            if Instant::now() >= give_up {
                return Ok(None);
            }
            // Waiters poll, with jitter so that they do not move in step.
            let wait = self.plan.retry.as_micros() as u64;
            let jittered = wait / 2 + user.rng.gen_range(0..=wait);
            tokio::time::sleep(Duration::from_micros(jittered)).await;
        }
    }

    async fn hold(&self, user: &mut User, lock: u64, token: &str, trace: &mut Trace) -> Outcome {
        let (key, fence_key) = self.keys(lock);
        let fence = if self.plan.fencing {
            let mut incr = redis::cmd("INCR");
            incr.arg(&fence_key);
            match user.conn.query::<u64>("redis_incr", &incr, trace).await {
                Ok(f) => Some(f),
                Err(class) => {
                    trace.counters.push(REDIS_ERRORS);
                    trace.counters.push(CALLER_ERRORS);
                    self.release(user, &key, token, trace).await;
                    return Outcome::Err(class);
                }
            }
        } else {
            None
        };
        let (entry, overlap) = self.resource.enter(lock, user.index);
        if overlap {
            trace.counters.push(OVERLAPS);
        }
        tokio::time::sleep(self.plan.critical_section).await;
        let paused = self.gc.take();
        if let Some(until) = paused {
            // Stop the world: the lock may expire meanwhile.
            tokio::time::sleep_until(until).await;
        }
        match self.resource.write(lock, entry, fence) {
            Write::Fresh => {}
            Write::StaleAccepted => trace.counters.push(STALE_WRITES_ACCEPTED),
            Write::StaleRejected => trace.counters.push(STALE_WRITES_REJECTED),
        }
        self.resource.leave(lock, user.index, entry);
        if paused.is_some() {
            self.gc.done();
        }
        self.release(user, &key, token, trace).await;
        Outcome::Ok
    }

    async fn release(&self, user: &mut User, key: &str, token: &str, trace: &mut Trace) {
        let mut eval = redis::cmd("EVAL");
        eval.arg(super::RELEASE_IF_OWNER).arg(1).arg(key).arg(token);
        if user
            .conn
            .query::<i64>("redis_eval", &eval, trace)
            .await
            .is_err()
        {
            // The lock expires by itself: a failed release only delays the
            // next holder.
            trace.counters.push(REDIS_ERRORS);
        }
    }
}

impl Workload for Lock {
    type User = User;

    fn new_user(&self, index: usize) -> User {
        User {
            conn: RedisConn::new(&self.client, self.plan.op_timeout, self.t0),
            rng: SmallRng::seed_from_u64(
                self.seed
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .wrapping_add(0x10c4 + index as u64),
            ),
            index: index as u32,
        }
    }

    /// An acquire (the caller op the engine records), then, with the lock
    /// held, a hold: a second caller op, timed here from its own start.
    async fn op(&self, user: &mut User, _intended_us: u64, trace: &mut Trace) -> Done {
        let lock = user.rng.gen_range(0..self.plan.locks);
        let (key, _) = self.keys(lock);
        let got = self.acquire(user, &key, trace).await;
        let acquired = self.now_us();
        let token = match got {
            Ok(Some(t)) => t,
            Ok(None) => {
                trace.counters.push(ACQUIRE_FAILURES);
                trace.counters.push(CALLER_ERRORS);
                return Done::new("acquire", Outcome::Err(ErrorClass::Timeout));
            }
            Err(class) => {
                trace.counters.push(CALLER_ERRORS);
                return Done::new("acquire", Outcome::Err(class));
            }
        };
        let outcome = self.hold(user, lock, &token, trace).await;
        trace.samples.push(Sample {
            op: "hold",
            intended_us: acquired,
            start_us: acquired,
            end_us: self.now_us(),
            outcome,
        });
        Done {
            end_us: Some(acquired),
            ..Done::new("acquire", Outcome::Ok)
        }
    }
}

impl Oracle for Lock {
    fn caller_ops(&self) -> &'static [&'static str] {
        CALLER_OPS
    }

    /// What the protected resource saw: overlaps, stale writes accepted
    /// and rejected, acquisitions given up.
    fn phase_metrics(&self, phase: &PhaseStats, _baseline: &PhaseStats) -> BTreeMap<String, f64> {
        super::counts(phase, COUNTERS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_sees_overlaps_and_stale_writes() {
        let r = Resource::default();
        let (a, overlap) = r.enter(0, 1);
        assert!(!overlap);
        let (b, overlap) = r.enter(0, 2);
        assert!(overlap, "2 entered while 1 was inside");
        // Without fencing, 1's late write is taken: corruption.
        assert!(matches!(r.write(0, a, None), Write::StaleAccepted));
        assert!(matches!(r.write(0, b, None), Write::Fresh));
        r.leave(0, 1, a);
        r.leave(0, 2, b);
        // With fencing, the older token is refused once a newer one wrote.
        let (c, _) = r.enter(1, 1);
        let (d, _) = r.enter(1, 2);
        assert!(matches!(r.write(1, d, Some(8)), Write::Fresh));
        assert!(matches!(r.write(1, c, Some(7)), Write::StaleRejected));
    }
}
