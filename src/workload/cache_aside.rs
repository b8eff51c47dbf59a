//! cache-aside: read from Redis, on a miss compute from the origin and fill
//! the cache with a TTL; writes go to the origin first, then invalidate (or
//! overwrite) the cached key. On a Redis error or timeout the read is served
//! from the origin (`fallback`) or the error reaches the caller (`fail`); an
//! optional circuit breaker stops paying the Redis timeout while Redis is down.
//!
//! Oracle counters: hits, misses, fallbacks, caller errors, Redis errors,
//! origin calls, breaker opens/skips, and stale reads — a read that returns a
//! version the origin superseded more than the maximum TTL ago.

use super::breaker::{Breaker, Permit};
use super::conn::RedisConn;
use super::origin::Origin;
use super::value;
use super::Workload;
use crate::expect::Dim;
use crate::recorder::{Counter, ErrorClass, Outcome, Sample, Trace};
use crate::scenario::plan::CacheAsidePlan;
use crate::scenario::raw::{Distribution, ErrorPolicy, WritePolicy};
use crate::topology::ClientSpec;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution as _, Zipf};
use std::sync::Arc;
use tokio::time::Instant;

/// Caller ops first, then the Redis commands and origin calls.
pub const OPS: &[&str] = &[
    "read",
    "write",
    "redis_get",
    "redis_set",
    "redis_del",
    "origin",
];
const CALLER_OPS: &[&str] = &["read", "write"];

/// The metrics this workload reports per phase.
pub const METRICS: &[(&str, Dim)] = &[
    ("caller_errors", Dim::Count),
    ("redis_errors", Dim::Count),
    ("stale_reads", Dim::Count),
    ("hits", Dim::Count),
    ("misses", Dim::Count),
    ("hit_ratio", Dim::Ratio),
    ("fallbacks", Dim::Count),
    ("breaker_opens", Dim::Count),
    ("breaker_skips", Dim::Count),
    ("origin_calls", Dim::Count),
    ("origin_rate", Dim::PerSec),
    ("origin_amplification", Dim::Factor),
    ("time_to_recover", Dim::Millis),
];

pub struct CacheAside {
    plan: CacheAsidePlan,
    client: ClientSpec,
    prefix: String,
    origin: Arc<Origin>,
    breaker: Breaker,
    zipf: Option<Zipf<f64>>,
    t0: Instant,
    seed: u64,
}

pub struct User {
    conn: RedisConn,
    rng: SmallRng,
}

impl CacheAside {
    /// `client` says how to reach the topology (through its proxies); keys
    /// live under `prefix`.
    pub fn new(
        plan: CacheAsidePlan,
        client: ClientSpec,
        prefix: String,
        t0: Instant,
        seed: u64,
    ) -> Self {
        let zipf = match plan.distribution {
            Distribution::Zipf => {
                Some(Zipf::new(plan.keys, plan.zipf_exponent).expect("validated zipf parameters"))
            }
            Distribution::Uniform => None,
        };
        CacheAside {
            origin: Arc::new(Origin::new(plan.origin.clone(), plan.keys)),
            breaker: Breaker::new(
                plan.on_error.breaker_failures,
                plan.on_error.breaker_cooldown,
            ),
            plan,
            client,
            prefix,
            zipf,
            t0,
            seed,
        }
    }

    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    fn pick_key(&self, rng: &mut SmallRng) -> u64 {
        match &self.zipf {
            Some(z) => (z.sample(rng) as u64).clamp(1, self.plan.keys) - 1,
            None => rng.gen_range(0..self.plan.keys),
        }
    }

    fn key_name(&self, key: u64) -> String {
        format!("{}ca:{key}", self.prefix)
    }

    fn ttl_ms(&self, rng: &mut SmallRng) -> u64 {
        let j = self.plan.ttl_jitter;
        let factor = if j > 0.0 {
            rng.gen_range(1.0 - j..=1.0 + j)
        } else {
            1.0
        };
        ((self.plan.ttl.as_secs_f64() * factor * 1000.0) as u64).max(1)
    }

    fn max_ttl_us(&self) -> u64 {
        (self.plan.ttl.as_secs_f64() * (1.0 + self.plan.ttl_jitter) * 1e6) as u64
    }

    async fn origin_call<F: std::future::Future<Output = u64>>(
        &self,
        f: F,
        trace: &mut Trace,
    ) -> u64 {
        let start_us = self.now_us();
        let v = f.await;
        let end_us = self.now_us();
        trace.samples.push(Sample {
            op: "origin",
            intended_us: start_us,
            start_us,
            end_us,
            outcome: Outcome::Ok,
        });
        trace.counters.push(Counter::OriginCall);
        v
    }

    /// Asks the breaker; counts skips. Returns whether to use Redis.
    fn may_use_redis(&self, user: &mut User, trace: &mut Trace) -> bool {
        match self.breaker.permit(Instant::now()) {
            Permit::Go | Permit::Probe => {
                user.conn.invalidate_before(self.breaker.epoch());
                true
            }
            Permit::Skip => {
                trace.counters.push(Counter::BreakerSkip);
                false
            }
        }
    }

    fn redis_failed(&self, trace: &mut Trace) {
        trace.counters.push(Counter::RedisError);
        if self.breaker.failure(Instant::now()) {
            trace.counters.push(Counter::BreakerOpen);
        }
    }

    /// A read: returns the caller's outcome.
    async fn read(&self, user: &mut User, key: u64, trace: &mut Trace) -> Outcome {
        let name = self.key_name(key);
        let failure = if self.may_use_redis(user, trace) {
            match user
                .conn
                .query::<Option<Vec<u8>>>("redis_get", redis::cmd("GET").arg(&name), trace)
                .await
            {
                Ok(Some(bytes)) => {
                    self.breaker.success();
                    trace.counters.push(Counter::Hit);
                    self.check_fresh(key, &bytes, trace);
                    return Outcome::Ok;
                }
                Ok(None) => {
                    self.breaker.success();
                    trace.counters.push(Counter::Miss);
                    let version = self
                        .origin_call(self.origin.read(key, &mut user.rng), trace)
                        .await;
                    self.fill(user, &name, version, trace).await;
                    return Outcome::Ok;
                }
                Err(class) => {
                    self.redis_failed(trace);
                    class
                }
            }
        } else {
            ErrorClass::Other
        };
        match self.plan.on_error.policy {
            ErrorPolicy::Fallback => {
                trace.counters.push(Counter::Fallback);
                self.origin_call(self.origin.read(key, &mut user.rng), trace)
                    .await;
                Outcome::Ok
            }
            // Validation allows only fallback and fail here.
            _ => {
                trace.counters.push(Counter::CallerError);
                Outcome::Err(failure)
            }
        }
    }

    fn check_fresh(&self, key: u64, bytes: &[u8], trace: &mut Trace) {
        let Some(cached) = value::decode(bytes) else {
            return;
        };
        let (current, written_at_us) = self.origin.current(key);
        if cached < current && self.now_us().saturating_sub(written_at_us) > self.max_ttl_us() {
            trace.counters.push(Counter::StaleRead);
        }
    }

    async fn fill(&self, user: &mut User, name: &str, version: u64, trace: &mut Trace) {
        let ttl = self.ttl_ms(&mut user.rng);
        let val = value::encode(version, self.plan.value_size);
        let cmd = redis::cmd("SET")
            .arg(name)
            .arg(val)
            .arg("PX")
            .arg(ttl)
            .clone();
        match user.conn.query::<()>("redis_set", &cmd, trace).await {
            Ok(()) => self.breaker.success(),
            // The caller already has its value; the cache just stays cold.
            Err(_) => self.redis_failed(trace),
        }
    }

    /// A write: origin first, then the cache.
    async fn write(&self, user: &mut User, key: u64, trace: &mut Trace) -> Outcome {
        let now = self.now_us();
        let version = self
            .origin_call(self.origin.write(key, now, &mut user.rng), trace)
            .await;
        if !self.may_use_redis(user, trace) {
            return Outcome::Ok;
        }
        let name = self.key_name(key);
        let result = match self.plan.write_policy {
            WritePolicy::Invalidate => user
                .conn
                .query::<i64>("redis_del", redis::cmd("DEL").arg(&name), trace)
                .await
                .map(drop),
            WritePolicy::Set => {
                let ttl = self.ttl_ms(&mut user.rng);
                let cmd = redis::cmd("SET")
                    .arg(&name)
                    .arg(value::encode(version, self.plan.value_size))
                    .arg("PX")
                    .arg(ttl)
                    .clone();
                user.conn.query::<()>("redis_set", &cmd, trace).await
            }
        };
        match result {
            Ok(()) => {
                self.breaker.success();
                Outcome::Ok
            }
            Err(class) => {
                self.redis_failed(trace);
                match self.plan.on_error.policy {
                    // The write reached the system of record; the cache entry
                    // expires within its TTL.
                    ErrorPolicy::Fallback => Outcome::Ok,
                    _ => {
                        trace.counters.push(Counter::CallerError);
                        Outcome::Err(class)
                    }
                }
            }
        }
    }
}

impl Workload for CacheAside {
    type User = User;

    fn new_user(&self, index: usize) -> User {
        User {
            conn: RedisConn::new(&self.client, self.plan.op_timeout, self.t0),
            rng: SmallRng::seed_from_u64(
                self.seed
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .wrapping_add(index as u64),
            ),
        }
    }

    async fn op(&self, user: &mut User, intended_us: u64, trace: &mut Trace) {
        let is_read = user.rng.gen_bool(self.plan.read_ratio);
        let key = self.pick_key(&mut user.rng);
        // The caller's sample goes first: the recorder files the op's
        // counters under the phase of its intended start.
        trace.samples.push(Sample {
            op: if is_read { "read" } else { "write" },
            intended_us,
            start_us: self.now_us(),
            end_us: 0,
            outcome: Outcome::Ok,
        });
        let outcome = if is_read {
            self.read(user, key, trace).await
        } else {
            self.write(user, key, trace).await
        };
        let end = self.now_us();
        let caller = &mut trace.samples[0];
        caller.end_us = end;
        caller.outcome = outcome;
    }

    fn caller_ops(&self) -> &'static [&'static str] {
        CALLER_OPS
    }
}
