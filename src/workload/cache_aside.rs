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
pub use super::origin::ORIGIN_CALLS;
use super::origin::{OriginPlan, RawOrigin};
pub use super::policy::ErrorPolicy;
use super::policy::RawOnError;
pub use super::policy::FALLBACKS;
use super::value;
use super::{keys_of, Spec};
use super::{Done, Oracle, Workload};
use crate::recorder::PhaseStats;
use crate::vocab::check::{
    check, fraction_or, jitter_or, positive_dur, positive_f64_or, positive_int, positive_int_or,
    Checked,
};
use crate::vocab::expect::Dim;
use crate::vocab::outcome::{Counter, ErrorClass, Outcome, Trace, CALLER_ERRORS, REDIS_ERRORS};
use crate::vocab::units::Dur;
use std::collections::BTreeMap;
use std::time::Duration;
use toml::Spanned;

use crate::topology::ClientSpec;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution as _, Zipf};
use std::sync::Arc;
use tokio::time::Instant;

/// Reads that found the key in Redis.
pub const HITS: Counter = Counter("hits");
/// Reads that found no key.
pub const MISSES: Counter = Counter("misses");
/// Hits returning a version the origin superseded more than the maximum TTL before.
pub const STALE_READS: Counter = Counter("stale_reads");
/// Breaker openings.
pub const BREAKER_OPENS: Counter = Counter("breaker_opens");
/// Ops that skipped Redis while the breaker was open.
pub const BREAKER_SKIPS: Counter = Counter("breaker_skips");
/// Every counter this workload reports, in report order.
pub const COUNTERS: &[Counter] = &[
    HITS,
    MISSES,
    FALLBACKS,
    CALLER_ERRORS,
    REDIS_ERRORS,
    ORIGIN_CALLS,
    STALE_READS,
    BREAKER_OPENS,
    BREAKER_SKIPS,
];

use serde::Deserialize;

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    #[default]
    Uniform,
    Zipf,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum WritePolicy {
    /// Update the origin, then delete the cached key.
    #[default]
    Invalidate,
    /// Update the origin, then write the new value into the cache.
    Set,
}

#[derive(Debug, Clone)]
pub struct CacheAsidePlan {
    pub keys: u64,
    pub distribution: Distribution,
    pub zipf_exponent: f64,
    /// Share of reads sent to one hot key (key 0), on top of the
    /// distribution; 0 = none.
    pub hot_key_share: f64,
    pub value_size: usize,
    pub read_ratio: f64,
    pub ttl: Duration,
    pub ttl_jitter: f64,
    pub op_timeout: Duration,
    /// How a client reconnects after losing its connection: at once
    /// (none), or with a jittered backoff.
    pub reconnect: Option<super::conn::Backoff>,
    pub write_policy: WritePolicy,
    pub origin: OriginPlan,
    pub on_error: ErrorPlan,
}

#[derive(Debug, Clone)]
pub struct ErrorPlan {
    pub policy: ErrorPolicy,
    /// Consecutive failures that open the breaker; `None` = no breaker.
    pub breaker_failures: Option<u32>,
    pub breaker_cooldown: Duration,
}

/// The `[workload]` keys of `kind = "cache-aside"`.
#[derive(Debug, Deserialize)]
pub struct Raw {
    keys: Option<Spanned<i64>>,
    distribution: Option<Distribution>,
    zipf_exponent: Option<Spanned<f64>>,
    hot_key_share: Option<Spanned<f64>>,
    value_size: Option<Spanned<i64>>,
    read_ratio: Option<Spanned<f64>>,
    ttl: Option<Spanned<Dur>>,
    ttl_jitter: Option<Spanned<f64>>,
    op_timeout: Option<Spanned<Dur>>,
    reconnect: Option<Spanned<RawReconnect>>,
    write_policy: Option<WritePolicy>,
    origin: Option<RawOrigin>,
    on_redis_error: Option<Spanned<RawOnError>>,
}

impl Raw {
    /// Validates the keys, filling in the defaults the README lists.
    pub fn plan(self) -> Checked<CacheAsidePlan> {
        let distribution = self.distribution.unwrap_or_default();
        let zipf_exponent = match &self.zipf_exponent {
            Some(z) => {
                check(
                    z,
                    distribution == Distribution::Zipf,
                    "`zipf_exponent` applies only with distribution = \"zipf\"",
                )?;
                positive_f64_or(Some(z), 0.99, false, "`zipf_exponent` must be above 0")?
            }
            None => 0.99,
        };
        let value_size = match &self.value_size {
            Some(v) => {
                let n = positive_int(v, "value_size")?;
                check(
                    v,
                    (value::HEADER_LEN as u64..=64 << 20).contains(&n),
                    format!(
                        "`value_size` must be between {} bytes (the version header) and 64mb",
                        value::HEADER_LEN
                    ),
                )?;
                n as usize
            }
            None => 512,
        };
        Ok(CacheAsidePlan {
            keys: positive_int_or(self.keys.as_ref(), "keys", 10_000)?,
            distribution,
            zipf_exponent,
            hot_key_share: fraction_or(self.hot_key_share.as_ref(), "hot_key_share", 0.0)?,
            value_size,
            read_ratio: fraction_or(self.read_ratio.as_ref(), "read_ratio", 0.95)?,
            ttl: positive_dur(self.ttl.as_ref(), "ttl", Duration::from_secs(30))?,
            ttl_jitter: jitter_or(
                self.ttl_jitter.as_ref(),
                "ttl_jitter",
                0.1,
                " (a TTL cannot shrink to zero)",
            )?,
            op_timeout: positive_dur(
                self.op_timeout.as_ref(),
                "op_timeout",
                Duration::from_millis(50),
            )?,
            reconnect: reconnect_plan(self.reconnect.as_ref())?,
            write_policy: self.write_policy.unwrap_or_default(),
            origin: OriginPlan::from_raw(self.origin.as_ref(), Duration::from_millis(5))?,
            on_error: error_plan(self.on_redis_error.as_ref())?,
        })
    }
}

/// `reconnect = { backoff = "10ms", max = "1s" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReconnect {
    backoff: Dur,
    max: Option<Dur>,
}

/// The reconnect backoff, if any: `backoff` above 0, `max` at least it.
fn reconnect_plan(raw: Option<&Spanned<RawReconnect>>) -> Checked<Option<super::conn::Backoff>> {
    let Some(r) = raw else { return Ok(None) };
    let (base, max) = (
        r.get_ref().backoff.0,
        r.get_ref().max.map_or(Duration::from_secs(1), |m| m.0),
    );
    check(
        r,
        !base.is_zero(),
        "`reconnect.backoff` must be longer than 0s",
    )?;
    check(
        r,
        max >= base,
        "`reconnect.max` must be at least `reconnect.backoff`",
    )?;
    Ok(Some(super::conn::Backoff { base, max }))
}

/// `fallback` or `fail`, with an optional breaker.
fn error_plan(raw: Option<&Spanned<RawOnError>>) -> Checked<ErrorPlan> {
    let Some(e) = raw else {
        return Ok(ErrorPlan {
            policy: ErrorPolicy::Fallback,
            breaker_failures: None,
            breaker_cooldown: Duration::from_secs(1),
        });
    };
    check(
        e,
        matches!(e.get_ref().policy, ErrorPolicy::Fallback | ErrorPolicy::Fail),
        "cache-aside's policies are `fallback` and `fail` (fail_open and fail_closed are the rate limiter's)",
    )?;
    let e = e.get_ref();
    Ok(ErrorPlan {
        policy: e.policy,
        breaker_failures: e
            .breaker_failures
            .as_ref()
            .map(|b| positive_int(b, "breaker_failures"))
            .transpose()?
            .map(|n| n.min(u32::MAX as u64) as u32),
        breaker_cooldown: positive_dur(
            e.breaker_cooldown.as_ref(),
            "breaker_cooldown",
            Duration::from_secs(1),
        )?,
    })
}

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

/// What the scenario layer and the reports know of this workload.
pub const SPEC: Spec = Spec {
    name: "cache-aside",
    section: "workload",
    ops: OPS,
    metrics: METRICS,
    counters: COUNTERS,
    keys: keys_of::<Raw>,
};

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
        super::origin::file_call(trace, start_us, self.now_us());
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
                trace.counters.push(BREAKER_SKIPS);
                false
            }
        }
    }

    fn redis_failed(&self, trace: &mut Trace) {
        trace.counters.push(REDIS_ERRORS);
        if self.breaker.failure(Instant::now()) {
            trace.counters.push(BREAKER_OPENS);
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
                    trace.counters.push(HITS);
                    self.check_fresh(key, &bytes, trace);
                    return Outcome::Ok;
                }
                Ok(None) => {
                    self.breaker.success();
                    trace.counters.push(MISSES);
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
                trace.counters.push(FALLBACKS);
                self.origin_call(self.origin.read(key, &mut user.rng), trace)
                    .await;
                Outcome::Ok
            }
            // Validation allows only fallback and fail here.
            _ => {
                trace.counters.push(CALLER_ERRORS);
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
            trace.counters.push(STALE_READS);
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
                        trace.counters.push(CALLER_ERRORS);
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
            conn: RedisConn::new(&self.client, self.plan.op_timeout, self.t0)
                .with_backoff(self.plan.reconnect, self.seed ^ index as u64),
            rng: SmallRng::seed_from_u64(
                self.seed
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .wrapping_add(index as u64),
            ),
        }
    }

    async fn op(&self, user: &mut User, _intended_us: u64, trace: &mut Trace) -> Done {
        let is_read = user.rng.gen_bool(self.plan.read_ratio);
        let hot =
            is_read && self.plan.hot_key_share > 0.0 && user.rng.gen_bool(self.plan.hot_key_share);
        let key = if hot { 0 } else { self.pick_key(&mut user.rng) };
        if is_read {
            Done::new("read", self.read(user, key, trace).await)
        } else {
            Done::new("write", self.write(user, key, trace).await)
        }
    }
}

impl Oracle for CacheAside {
    fn caller_ops(&self) -> &'static [&'static str] {
        CALLER_OPS
    }

    /// Its own counters, the hit ratio, the origin's rate and its
    /// amplification over the baseline's, and in recovery phases the time
    /// to the first successful Redis command (see the README's table).
    fn phase_metrics(&self, p: &PhaseStats, baseline: &PhaseStats) -> BTreeMap<String, f64> {
        let mut m = super::counts(p, COUNTERS);
        let (hits, misses) = (p.counter(HITS) as f64, p.counter(MISSES) as f64);
        if hits + misses > 0.0 {
            m.insert("hit_ratio".into(), hits / (hits + misses));
        }
        let rate_of = |p: &PhaseStats| {
            let secs = p.secs();
            (secs > 0.0).then(|| p.counter(ORIGIN_CALLS) as f64 / secs)
        };
        if let Some(rate) = rate_of(p) {
            m.insert("origin_rate".into(), rate);
            if let Some(base) = rate_of(baseline).filter(|b| *b > 0.0) {
                m.insert("origin_amplification".into(), rate / base);
            }
        }
        if p.name.starts_with("recovery:") {
            if let Some(ok) = p.first_redis_ok_us {
                m.insert(
                    "time_to_recover_ms".into(),
                    ok.saturating_sub(p.start_us) as f64 / 1e3,
                );
            }
        }
        m
    }
}
