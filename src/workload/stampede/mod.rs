//! stampede: many users read a few hot keys with a short TTL in front of a
//! slow origin. When a key expires, every reader that misses may recompute
//! it at once — the stampede — unless a strategy prevents it:
//!
//! - `none`: every miss recomputes and fills;
//! - `ttl_jitter`: the same, with the TTL spread by ± `ttl_jitter` so that
//!   keys written together do not expire together;
//! - `lock`: the first to miss takes `SET lock NX PX`, recomputes, fills
//!   and releases (compare-and-delete); the others poll the key, and
//!   recompute themselves only if the lock's TTL passes first;
//! - `singleflight`: misses of one key in this process wait for one
//!   recomputation (in-process coalescing, per instance of an app);
//! - `xfetch`: probabilistic early recomputation (Vattani et al. 2015): a
//!   reader recomputes before expiry with a probability that grows as the
//!   expiry nears, scaled by `beta` and by how long a recomputation took;
//! - `stale_while_revalidate`: the key outlives its freshness; a reader
//!   past it is served the stale value at once while one refresh (under a
//!   lock) runs in the background.
//!
//! Oracle, counted by the origin itself: every recomputation of a hot key,
//! grouped into expiry events (recomputations of one key within half a TTL
//! of the event's first belong to it). `recomputes_per_event` is 1 at
//! best; under `none` it approaches the number of concurrent readers.

use super::conn::RedisConn;
use super::origin::Origin;
use super::origin::{OriginPlan, RawOrigin, ORIGIN_CALLS};
use super::policy::FALLBACKS;
use super::Choice;
use super::{Done, Oracle, Workload};
mod entry;

use super::{keys_of, Spec};
use crate::recorder::PhaseStats;
use crate::vocab::check::{
    check, jitter_or, positive_dur, positive_f64_or, positive_int, positive_int_or, variant_list,
    Checked,
};
use crate::vocab::expect::Dim;
use crate::vocab::outcome::{
    is_redis_op, Counter, ErrorClass, Outcome, Sample, Trace, CALLER_ERRORS, REDIS_ERRORS,
};
use crate::vocab::units::Dur;
use entry::{decode, encode, Events};
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
use tokio::sync::watch;
use tokio::time::Instant;

/// Recomputations of a hot key (origin calls).
pub const RECOMPUTES: Counter = Counter("recomputes");
/// Expiries of a hot key, each starting one group of recomputations.
pub const EXPIRY_EVENTS: Counter = Counter("expiry_events");
/// Reads served a stale value while it was refreshed.
pub const STALE_SERVED: Counter = Counter("stale_served");
/// Every counter this workload reports, in report order.
pub const COUNTERS: &[Counter] = &[
    CALLER_ERRORS,
    REDIS_ERRORS,
    RECOMPUTES,
    EXPIRY_EVENTS,
    STALE_SERVED,
    FALLBACKS,
    ORIGIN_CALLS,
];

/// How the stampede workload keeps a hot key's recomputations down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StampedeStrategy {
    None,
    Lock,
    Xfetch,
    TtlJitter,
    #[serde(rename = "singleflight")]
    SingleFlight,
    StaleWhileRevalidate,
}

impl StampedeStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            StampedeStrategy::None => "none",
            StampedeStrategy::Lock => "lock",
            StampedeStrategy::Xfetch => "xfetch",
            StampedeStrategy::TtlJitter => "ttl_jitter",
            StampedeStrategy::SingleFlight => "singleflight",
            StampedeStrategy::StaleWhileRevalidate => "stale_while_revalidate",
        }
    }
}

/// stampede: hot keys with a short TTL in front of a slow origin.
#[derive(Debug, Clone)]
pub struct StampedePlan {
    pub hot_keys: u64,
    pub ttl: Duration,
    pub strategy: StampedeStrategy,
    /// xfetch: how eagerly to recompute early (1.0 = as the paper).
    pub beta: f64,
    /// ttl_jitter: TTL × (1 ± this).
    pub ttl_jitter: f64,
    /// lock, stale_while_revalidate: the recompute lock's TTL.
    pub lock_ttl: Duration,
    /// lock: poll interval of the waiters.
    pub retry: Duration,
    /// stale_while_revalidate: how long a key outlives its freshness.
    pub stale_for: Duration,
    pub value_size: usize,
    pub op_timeout: Duration,
    pub origin: OriginPlan,
}

/// The `[workload]` keys of `kind = "stampede"`.
#[derive(Debug, Deserialize)]
pub struct Raw {
    hot_keys: Option<Spanned<i64>>,
    ttl: Option<Spanned<Dur>>,
    /// One strategy...
    strategy: Option<StampedeStrategy>,
    /// ...or several, compared side by side.
    strategies: Option<Spanned<Vec<StampedeStrategy>>>,
    beta: Option<Spanned<f64>>,
    ttl_jitter: Option<Spanned<f64>>,
    lock_ttl: Option<Spanned<Dur>>,
    retry: Option<Spanned<Dur>>,
    stale_for: Option<Spanned<Dur>>,
    value_size: Option<Spanned<i64>>,
    op_timeout: Option<Spanned<Dur>>,
    origin: Option<RawOrigin>,
}

impl Raw {
    /// Validates the keys; `strategies = [...]` gives one variant each.
    pub fn plan(self) -> Checked<Choice<StampedePlan>> {
        if let Some(list) = &self.strategies {
            variant_list(
                list,
                self.strategy.is_some(),
                "strategy",
                "strategies",
                |s| s.as_str(),
            )?;
        }
        let value_size = match &self.value_size {
            Some(v) => {
                let n = positive_int(v, "value_size")?;
                check(
                    v,
                    (64..=1 << 20).contains(&n),
                    "`value_size` must be between 64 bytes and 1mb",
                )?;
                n as usize
            }
            None => 256,
        };
        let base = StampedePlan {
            hot_keys: positive_int_or(self.hot_keys.as_ref(), "hot_keys", 1)?,
            ttl: positive_dur(self.ttl.as_ref(), "ttl", Duration::from_secs(2))?,
            strategy: self.strategy.unwrap_or(StampedeStrategy::None),
            beta: positive_f64_or(self.beta.as_ref(), 1.0, false, "`beta` must be above 0")?,
            ttl_jitter: jitter_or(self.ttl_jitter.as_ref(), "ttl_jitter", 0.2, "")?,
            lock_ttl: positive_dur(self.lock_ttl.as_ref(), "lock_ttl", Duration::from_secs(1))?,
            retry: positive_dur(self.retry.as_ref(), "retry", Duration::from_millis(10))?,
            stale_for: positive_dur(
                self.stale_for.as_ref(),
                "stale_for",
                Duration::from_secs(10),
            )?,
            value_size,
            op_timeout: positive_dur(
                self.op_timeout.as_ref(),
                "op_timeout",
                Duration::from_secs(1),
            )?,
            origin: OriginPlan::from_raw(self.origin.as_ref(), Duration::from_millis(100))?,
        };
        if let Some(l) = &self.lock_ttl {
            check(
                l,
                base.lock_ttl > base.origin.latency,
                "`lock_ttl` must be longer than the origin's latency, or the lock expires before the recomputation ends",
            )?;
        }
        Ok(match self.strategies {
            None => Choice::One(base),
            Some(list) => Choice::Compare(
                list.get_ref()
                    .iter()
                    .map(|&strategy| {
                        let plan = StampedePlan {
                            strategy,
                            ..base.clone()
                        };
                        (strategy.as_str().to_string(), plan)
                    })
                    .collect(),
            ),
        })
    }
}

/// Caller ops first, then the Redis commands and origin calls.
pub const OPS: &[&str] = &["read", "redis_get", "redis_set", "redis_eval", "origin"];
const CALLER_OPS: &[&str] = &["read"];

pub const METRICS: &[(&str, Dim)] = &[
    ("caller_errors", Dim::Count),
    ("redis_errors", Dim::Count),
    ("recomputes", Dim::Count),
    ("expiry_events", Dim::Count),
    ("recomputes_per_event", Dim::Factor),
    ("redis_ops_per_read", Dim::Factor),
    ("stale_served", Dim::Count),
    ("fallbacks", Dim::Count),
];

/// What the scenario layer and the reports know of this workload.
pub const SPEC: Spec = Spec {
    name: "stampede",
    section: "workload",
    ops: OPS,
    metrics: METRICS,
    counters: COUNTERS,
    keys: keys_of::<Raw>,
};

struct Shared {
    plan: StampedePlan,
    client: ClientSpec,
    prefix: String,
    t0: Instant,
    seed: u64,
    origin: Origin,
    events: Events,
    versions: AtomicU64,
    tokens: AtomicU64,
    /// singleflight: key → the flight in progress.
    flights: Mutex<HashMap<u64, watch::Receiver<bool>>>,
}

pub struct Stampede(Arc<Shared>);

pub struct User {
    conn: RedisConn,
    rng: SmallRng,
    index: u32,
}

impl Stampede {
    pub fn new(
        plan: StampedePlan,
        client: ClientSpec,
        prefix: String,
        t0: Instant,
        seed: u64,
    ) -> Self {
        let origin = Origin::new(plan.origin.clone(), plan.hot_keys);
        Stampede(Arc::new(Shared {
            plan,
            client,
            prefix,
            t0,
            seed,
            origin,
            events: Events::default(),
            versions: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            flights: Mutex::new(HashMap::new()),
        }))
    }
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    fn key(&self, k: u64) -> String {
        format!("{}{{hot:{k}}}", self.prefix)
    }

    fn lock_key(&self, k: u64) -> String {
        format!("{}{{hot:{k}}}:lock", self.prefix)
    }

    /// Counts a recomputation of `key` starting now (and a new expiry event
    /// if it is the first of one).
    fn count_recompute(&self, key: u64, trace: &mut Trace) {
        let window = self.plan.ttl.as_micros() as u64 / 2;
        trace.counters.push(RECOMPUTES);
        trace.counters.push(ORIGIN_CALLS);
        if self.events.record(key, self.now_us(), window) {
            trace.counters.push(EXPIRY_EVENTS);
        }
    }

    /// The value to store for a fresh recomputation that took `delta_ms`.
    fn fresh_value(&self, delta_ms: u64, rng: &mut SmallRng) -> (Vec<u8>, u64) {
        let version = self.versions.fetch_add(1, Ordering::Relaxed) + 1;
        let mut ttl = self.plan.ttl.as_millis() as u64;
        if self.plan.strategy == StampedeStrategy::TtlJitter && self.plan.ttl_jitter > 0.0 {
            let j = rng.gen_range(-self.plan.ttl_jitter..=self.plan.ttl_jitter);
            ttl = ((ttl as f64) * (1.0 + j)).max(1.0) as u64;
        }
        let fresh_until = self.now_us() / 1000 + ttl;
        // Past its freshness the key stays `stale_for` more, for
        // stale-while-revalidate to serve.
        let px = if self.plan.strategy == StampedeStrategy::StaleWhileRevalidate {
            ttl + self.plan.stale_for.as_millis() as u64
        } else {
            ttl
        };
        (
            encode(version, delta_ms, fresh_until, self.plan.value_size),
            px,
        )
    }

    /// Recomputes `key` at the origin and writes it, as the reader.
    async fn refill(&self, user: &mut User, key: u64, trace: &mut Trace) {
        self.count_recompute(key, trace);
        let start = self.now_us();
        self.origin.read(key, &mut user.rng).await;
        let end = self.now_us();
        trace.samples.push(Sample {
            op: "origin",
            intended_us: start,
            start_us: start,
            end_us: end,
            outcome: Outcome::Ok,
        });
        let (value, px) = self.fresh_value((end - start) / 1000, &mut user.rng);
        let mut set = redis::cmd("SET");
        set.arg(self.key(key)).arg(value).arg("PX").arg(px);
        if user
            .conn
            .query::<()>("redis_set", &set, trace)
            .await
            .is_err()
        {
            trace.counters.push(REDIS_ERRORS);
        }
    }

    async fn try_lock(&self, user: &mut User, key: u64, trace: &mut Trace) -> Option<String> {
        let token = format!(
            "{}:{}",
            user.index,
            self.tokens.fetch_add(1, Ordering::Relaxed)
        );
        let mut set = redis::cmd("SET");
        set.arg(self.lock_key(key))
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(self.plan.lock_ttl.as_millis() as u64);
        match user
            .conn
            .query::<Option<String>>("redis_set", &set, trace)
            .await
        {
            Ok(Some(_)) => Some(token),
            Ok(None) => None,
            Err(_) => {
                trace.counters.push(REDIS_ERRORS);
                None
            }
        }
    }

    async fn unlock(&self, user: &mut User, key: u64, token: &str, trace: &mut Trace) {
        let mut eval = redis::cmd("EVAL");
        eval.arg(super::RELEASE_IF_OWNER)
            .arg(1)
            .arg(self.lock_key(key))
            .arg(token);
        if user
            .conn
            .query::<i64>("redis_eval", &eval, trace)
            .await
            .is_err()
        {
            trace.counters.push(REDIS_ERRORS);
        }
    }

    async fn get(
        &self,
        user: &mut User,
        key: u64,
        trace: &mut Trace,
    ) -> Result<Option<Vec<u8>>, ErrorClass> {
        let mut get = redis::cmd("GET");
        get.arg(self.key(key));
        user.conn
            .query::<Option<Vec<u8>>>("redis_get", &get, trace)
            .await
            .inspect_err(|_| trace.counters.push(REDIS_ERRORS))
    }

    /// `lock`: one recomputes under the lock, the others poll the key.
    async fn miss_with_lock(&self, user: &mut User, key: u64, trace: &mut Trace) {
        if let Some(token) = self.try_lock(user, key, trace).await {
            self.refill(user, key, trace).await;
            self.unlock(user, key, &token, trace).await;
            return;
        }
        let give_up = Instant::now() + self.plan.lock_ttl;
        while Instant::now() < give_up {
            let wait = self.plan.retry.as_micros() as u64;
            tokio::time::sleep(Duration::from_micros(
                wait / 2 + user.rng.gen_range(0..=wait),
            ))
            .await;
            if let Ok(Some(_)) = self.get(user, key, trace).await {
                return;
            }
        }
        // The holder is gone or too slow: recompute anyway.
        self.refill(user, key, trace).await;
    }

    /// `singleflight`: one flight per key in this process.
    async fn miss_single_flight(&self, user: &mut User, key: u64, trace: &mut Trace) {
        let joined = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get(&key) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(false);
                    flights.insert(key, rx);
                    Ok(tx)
                }
            }
        };
        match joined {
            Ok(tx) => {
                self.refill(user, key, trace).await;
                self.flights
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
                let _ = tx.send(true);
            }
            Err(mut rx) => {
                let _ = rx.wait_for(|done| *done).await;
            }
        }
    }
}

/// `stale_while_revalidate`: the reader that takes the refresh lock counts
/// the recomputation; the refresh itself runs in the background.
fn revalidate(shared: &Arc<Shared>, key: u64, token: String, seed: u64) {
    let s = shared.clone();
    tokio::spawn(async move {
        let mut user = User {
            conn: RedisConn::new(&s.client, s.plan.op_timeout, s.t0),
            rng: SmallRng::seed_from_u64(seed),
            index: u32::MAX,
        };
        let mut trace = Trace::default();
        let start = s.now_us();
        s.origin.read(key, &mut user.rng).await;
        let (value, px) = s.fresh_value((s.now_us() - start) / 1000, &mut user.rng);
        let mut set = redis::cmd("SET");
        set.arg(s.key(key)).arg(value).arg("PX").arg(px);
        let _ = user.conn.query::<()>("redis_set", &set, &mut trace).await;
        s.unlock(&mut user, key, &token, &mut trace).await;
    });
}

impl Stampede {
    async fn read(&self, user: &mut User, key: u64, trace: &mut Trace) -> Outcome {
        let s = &self.0;
        let found = match s.get(user, key, trace).await {
            Ok(v) => v,
            Err(_) => {
                // Redis failed: serve from the origin, as cache-aside would.
                trace.counters.push(FALLBACKS);
                s.count_recompute(key, trace);
                s.origin.read(key, &mut user.rng).await;
                return Outcome::Ok;
            }
        };
        let now_ms = s.now_us() / 1000;
        match (found.as_deref().and_then(decode), s.plan.strategy) {
            (Some((_, delta_ms, fresh_until)), StampedeStrategy::Xfetch) => {
                // Recompute early with probability growing near expiry:
                // now - delta * beta * ln(rand) >= expiry.
                let r: f64 = user.rng.gen_range(f64::MIN_POSITIVE..1.0);
                let early = -(delta_ms.max(1) as f64) * s.plan.beta * r.ln();
                if now_ms as f64 + early >= fresh_until as f64 {
                    s.refill(user, key, trace).await;
                }
            }
            (Some((_, _, fresh_until)), StampedeStrategy::StaleWhileRevalidate)
                if now_ms >= fresh_until =>
            {
                trace.counters.push(STALE_SERVED);
                if let Some(token) = s.try_lock(user, key, trace).await {
                    s.count_recompute(key, trace);
                    revalidate(s, key, token, user.rng.gen());
                }
            }
            (Some(_), _) => {}
            (None, StampedeStrategy::Lock) => s.miss_with_lock(user, key, trace).await,
            (None, StampedeStrategy::SingleFlight) => s.miss_single_flight(user, key, trace).await,
            (None, _) => s.refill(user, key, trace).await,
        }
        Outcome::Ok
    }
}

impl Workload for Stampede {
    type User = User;

    fn new_user(&self, index: usize) -> User {
        User {
            conn: RedisConn::new(&self.0.client, self.0.plan.op_timeout, self.0.t0),
            rng: SmallRng::seed_from_u64(
                self.0
                    .seed
                    .wrapping_mul(0x5851_f42d_4c95_7f2d)
                    .wrapping_add(index as u64),
            ),
            index: index as u32,
        }
    }

    async fn op(&self, user: &mut User, _intended_us: u64, trace: &mut Trace) -> Done {
        let key = user.rng.gen_range(0..self.0.plan.hot_keys);
        Done::new("read", self.read(user, key, trace).await)
    }
}

impl Oracle for Stampede {
    fn caller_ops(&self) -> &'static [&'static str] {
        CALLER_OPS
    }

    /// Recomputations per expiry event and Redis ops per read, with the
    /// counts they come from.
    fn phase_metrics(&self, phase: &PhaseStats, _baseline: &PhaseStats) -> BTreeMap<String, f64> {
        let mut m = super::counts(
            phase,
            &[
                CALLER_ERRORS,
                REDIS_ERRORS,
                RECOMPUTES,
                EXPIRY_EVENTS,
                STALE_SERVED,
                FALLBACKS,
            ],
        );
        let events = phase.counter(EXPIRY_EVENTS);
        if events > 0 {
            m.insert(
                "recomputes_per_event".into(),
                phase.counter(RECOMPUTES) as f64 / events as f64,
            );
        }
        let reads = phase.ops.get("read").map_or(0, |o| o.count);
        if reads > 0 {
            let redis: u64 = phase
                .ops
                .iter()
                .filter(|(op, _)| is_redis_op(op))
                .map(|(_, o)| o.count)
                .sum();
            m.insert("redis_ops_per_read".into(), redis as f64 / reads as f64);
        }
        m
    }
}
