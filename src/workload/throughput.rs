//! throughput: raw GETs and SETs, `pipeline` of them per round trip, as
//! memtier_benchmark and `redis-benchmark -P` send them: the raw-throughput
//! and capacity cases, where what matters is how many requests Redis (and
//! whatever is in front of it) serves, and that every reply is the right
//! one.
//!
//! Each round trip draws one group of `pipeline` consecutive keys and
//! `pipeline` keys within it (the group is the keys' hash tag, so a
//! pipeline stays in one Cluster slot), and sends a GET or, with
//! `1 - read_ratio`, a SET of each. A value names its key.
//!
//! Oracle:
//! - `wrong_values`: a GET answered with the value of another key (must be
//!   0: a reply went to the wrong request);
//! - `hits` / `misses`: GETs that found a value or none (keys start empty).
//!
//! Every request is a caller `request`, timed as its round trip; the round
//! trip itself is the Redis op `redis_pipeline`. A failed round trip fails
//! all its requests and counts one `redis_errors`.

use super::conn::RedisConn;
use super::{keys_of, Done, Oracle, Spec, Workload};
use crate::recorder::PhaseStats;
use crate::topology::ClientSpec;
use crate::vocab::check::{check, fraction_or, positive_dur, positive_int_or, Checked};
use crate::vocab::expect::Dim;
use crate::vocab::outcome::{Counter, Outcome, Trace, CALLER_ERRORS, REDIS_ERRORS};
use crate::vocab::units::Dur;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
use toml::Spanned;

/// GETs answered with another key's value.
pub const WRONG_VALUES: Counter = Counter("wrong_values");
pub const HITS: Counter = Counter("hits");
pub const MISSES: Counter = Counter("misses");
/// Every counter this workload reports, in report order.
pub const COUNTERS: &[Counter] = &[CALLER_ERRORS, REDIS_ERRORS, WRONG_VALUES, HITS, MISSES];

/// The most requests one round trip may carry.
pub const MAX_PIPELINE: u64 = 1000;

#[derive(Debug, Clone)]
pub struct ThroughputPlan {
    pub keys: u64,
    pub read_ratio: f64,
    pub value_size: usize,
    pub pipeline: usize,
    pub op_timeout: Duration,
}

/// The `[workload]` keys of `kind = "throughput"`.
#[derive(Debug, Deserialize)]
pub struct Raw {
    keys: Option<Spanned<i64>>,
    read_ratio: Option<Spanned<f64>>,
    value_size: Option<Spanned<i64>>,
    pipeline: Option<Spanned<i64>>,
    op_timeout: Option<Spanned<Dur>>,
}

impl Raw {
    pub fn plan(self) -> Checked<ThroughputPlan> {
        let pipeline = positive_int_or(self.pipeline.as_ref(), "pipeline", 1)?;
        if let Some(p) = &self.pipeline {
            check(
                p,
                pipeline <= MAX_PIPELINE,
                format!("`pipeline` must be at most {MAX_PIPELINE} requests per round trip"),
            )?;
        }
        let value_size = positive_int_or(self.value_size.as_ref(), "value_size", 64)?;
        if let Some(v) = &self.value_size {
            check(
                v,
                (MIN_VALUE as u64..=1 << 20).contains(&value_size),
                format!("`value_size` must be between {MIN_VALUE} bytes (the key's name) and 1mb"),
            )?;
        }
        Ok(ThroughputPlan {
            keys: positive_int_or(self.keys.as_ref(), "keys", 10_000)?,
            read_ratio: fraction_or(self.read_ratio.as_ref(), "read_ratio", 0.9)?,
            value_size: value_size as usize,
            pipeline: pipeline as usize,
            op_timeout: positive_dur(
                self.op_timeout.as_ref(),
                "op_timeout",
                Duration::from_secs(1),
            )?,
        })
    }
}

/// Caller ops first, then the Redis commands.
pub const OPS: &[&str] = &["request", "redis_pipeline"];
const CALLER_OPS: &[&str] = &["request"];

/// The metrics this workload reports per phase.
pub const METRICS: &[(&str, Dim)] = &[
    ("caller_errors", Dim::Count),
    ("redis_errors", Dim::Count),
    ("wrong_values", Dim::Count),
    ("hits", Dim::Count),
    ("misses", Dim::Count),
    ("hit_ratio", Dim::Ratio),
];

/// What the scenario layer and the reports know of this workload.
pub const SPEC: Spec = Spec {
    name: "throughput",
    section: "workload",
    ops: OPS,
    metrics: METRICS,
    counters: COUNTERS,
    keys: keys_of::<Raw>,
};

/// `tp1:<16 hex: key index>:` then padding.
pub const MIN_VALUE: usize = 21;

pub fn encode(key: u64, size: usize) -> Vec<u8> {
    let mut v = format!("tp1:{key:016x}:").into_bytes();
    v.resize(size.max(MIN_VALUE), b'.');
    v
}

/// The key index a value names, if it is one of ours.
pub fn decode(value: &[u8]) -> Option<u64> {
    let h = value.get(..MIN_VALUE)?;
    if !h.starts_with(b"tp1:") || h[20] != b':' {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&h[4..20]).ok()?, 16).ok()
}

pub struct Throughput {
    plan: ThroughputPlan,
    client: ClientSpec,
    prefix: String,
    t0: Instant,
    seed: u64,
}

pub struct User {
    conn: RedisConn,
    rng: SmallRng,
    /// The requests of the round trip under way: key index, and whether
    /// it is a GET.
    batch: Vec<(u64, bool)>,
}

impl Throughput {
    pub fn new(
        plan: ThroughputPlan,
        client: ClientSpec,
        prefix: String,
        t0: Instant,
        seed: u64,
    ) -> Self {
        Throughput {
            plan,
            client,
            prefix,
            t0,
            seed,
        }
    }

    fn key(&self, index: u64) -> String {
        let group = index / self.plan.pipeline as u64;
        format!("{}tp:{{{group}}}:{index}", self.prefix)
    }

    /// One group of keys, and a request for `pipeline` keys within it.
    fn draw(&self, user: &mut User) {
        let n = self.plan.pipeline as u64;
        let groups = self.plan.keys.div_ceil(n);
        let group = user.rng.gen_range(0..groups);
        let keys = group * n..((group + 1) * n).min(self.plan.keys);
        user.batch.clear();
        for _ in 0..n {
            let key = user.rng.gen_range(keys.clone());
            user.batch
                .push((key, user.rng.gen_bool(self.plan.read_ratio)));
        }
    }

    /// Counts what each GET found; a SET's reply needs no check.
    fn judge(&self, batch: &[(u64, bool)], replies: &[redis::Value], trace: &mut Trace) {
        for (&(key, is_get), reply) in batch.iter().zip(replies) {
            if !is_get {
                continue;
            }
            trace.counters.push(match reply {
                redis::Value::Nil => MISSES,
                redis::Value::BulkString(v) if decode(v) == Some(key) => HITS,
                _ => WRONG_VALUES,
            });
        }
    }
}

impl Workload for Throughput {
    type User = User;

    fn new_user(&self, index: usize) -> User {
        User {
            conn: RedisConn::new(&self.client, self.plan.op_timeout, self.t0),
            rng: SmallRng::seed_from_u64(
                self.seed
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .wrapping_add(index as u64),
            ),
            batch: Vec::with_capacity(self.plan.pipeline),
        }
    }

    async fn op(&self, user: &mut User, _intended_us: u64, trace: &mut Trace) -> Done {
        self.draw(user);
        let mut pipe = redis::pipe();
        for &(key, is_get) in &user.batch {
            if is_get {
                pipe.cmd("GET").arg(self.key(key));
            } else {
                pipe.cmd("SET")
                    .arg(self.key(key))
                    .arg(encode(key, self.plan.value_size));
            }
        }
        let replies = user
            .conn
            .query_pipe::<Vec<redis::Value>>("redis_pipeline", &pipe, trace)
            .await;
        let outcome = match &replies {
            Ok(values) => {
                self.judge(&user.batch, values, trace);
                Outcome::Ok
            }
            Err(class) => {
                trace.counters.push(REDIS_ERRORS);
                for _ in 0..user.batch.len() {
                    trace.counters.push(CALLER_ERRORS);
                }
                Outcome::Err(*class)
            }
        };
        // Every request of the round trip is a caller request, timed as it.
        Done::new("request", outcome).times(user.batch.len())
    }
}

impl Oracle for Throughput {
    fn caller_ops(&self) -> &'static [&'static str] {
        CALLER_OPS
    }

    fn phase_metrics(&self, phase: &PhaseStats, _baseline: &PhaseStats) -> BTreeMap<String, f64> {
        let mut m = super::counts(phase, COUNTERS);
        let (hits, misses) = (phase.counter(HITS), phase.counter(MISSES));
        if hits + misses > 0 {
            m.insert("hit_ratio".into(), hits as f64 / (hits + misses) as f64);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_name_their_key() {
        for size in [0, MIN_VALUE, 64] {
            let v = encode(0xbeef, size);
            assert_eq!(v.len(), size.max(MIN_VALUE));
            assert_eq!(decode(&v), Some(0xbeef));
        }
        assert_eq!(decode(b"tp2:000000000000beef:"), None);
    }
}
