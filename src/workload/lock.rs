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
use super::Workload;
use crate::expect::Dim;
use crate::recorder::{Counter, ErrorClass, Outcome, Sample, Trace};
use crate::scenario::plan::LockPlan;
use crate::topology::ClientSpec;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

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

    fn take(&self) -> Option<Instant> {
        let mut state = self.lock();
        match *state {
            PauseState::Armed(until) => {
                *state = PauseState::Taken;
                Some(until)
            }
            _ => None,
        }
    }

    fn done(&self) {
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
                    trace.counters.push(Counter::RedisError);
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
                    trace.counters.push(Counter::RedisError);
                    trace.counters.push(Counter::CallerError);
                    self.release(user, &key, token, trace).await;
                    return Outcome::Err(class);
                }
            }
        } else {
            None
        };
        let (entry, overlap) = self.resource.enter(lock, user.index);
        if overlap {
            trace.counters.push(Counter::LockOverlap);
        }
        tokio::time::sleep(self.plan.critical_section).await;
        let paused = self.gc.take();
        if let Some(until) = paused {
            // Stop the world: the lock may expire meanwhile.
            tokio::time::sleep_until(until).await;
        }
        match self.resource.write(lock, entry, fence) {
            Write::Fresh => {}
            Write::StaleAccepted => trace.counters.push(Counter::StaleWriteAccepted),
            Write::StaleRejected => trace.counters.push(Counter::StaleWriteRejected),
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
            trace.counters.push(Counter::RedisError);
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

    async fn op(&self, user: &mut User, intended_us: u64, trace: &mut Trace) {
        let lock = user.rng.gen_range(0..self.plan.locks);
        let (key, _) = self.keys(lock);
        trace.samples.push(Sample {
            op: "acquire",
            intended_us,
            start_us: self.now_us(),
            end_us: 0,
            outcome: Outcome::Ok,
        });
        let got = self.acquire(user, &key, trace).await;
        let end = self.now_us();
        trace.samples[0].end_us = end;
        let token = match got {
            Ok(Some(t)) => t,
            Ok(None) => {
                trace.counters.push(Counter::AcquireFailure);
                trace.counters.push(Counter::CallerError);
                trace.samples[0].outcome = Outcome::Err(ErrorClass::Timeout);
                return;
            }
            Err(class) => {
                trace.counters.push(Counter::CallerError);
                trace.samples[0].outcome = Outcome::Err(class);
                return;
            }
        };
        let start = self.now_us();
        let outcome = self.hold(user, lock, &token, trace).await;
        trace.samples.push(Sample {
            op: "hold",
            intended_us: start,
            start_us: start,
            end_us: self.now_us(),
            outcome,
        });
    }

    fn caller_ops(&self) -> &'static [&'static str] {
        CALLER_OPS
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
