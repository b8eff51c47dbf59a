//! rate-limit: requests from `clients` identities (skewed: a few send most)
//! are admitted or denied by a limiter kept in Redis — `limit` per `window`
//! — with one of five algorithms:
//!
//! - `fixed_window`: `INCR` + `EXPIRE` of a per-window counter in MULTI;
//! - `sliding_log`: a sorted set of admitted timestamps (Lua);
//! - `sliding_counter`: the current window's counter plus the previous
//!   one's, weighted by how much of it still overlaps (Lua);
//! - `token_bucket`: `limit` tokens refilled at `limit / window` (Lua);
//! - `gcra`: the generic cell rate algorithm's theoretical arrival time (Lua).
//!
//! When Redis fails, the declared policy decides: `fail_open` admits and
//! marks the decision degraded (the seed's "200 + degraded"), `fail_closed`
//! denies. Every decision is kept, so the oracle can replay the request
//! timeline through an exact reference limiter (a sliding log in memory)
//! and count, per phase: over- and under-admission against `limit` per
//! aligned window, the largest number admitted in any `window`-long span
//! (a fixed window's boundary burst reaches twice the limit), and the
//! decisions the policy made while Redis failed.

use super::conn::RedisConn;
use super::Workload;
use crate::expect::Dim;
use crate::recorder::{Counter, Outcome, Sample, Trace};
use crate::scenario::plan::{RateLimitAlgorithm, RateLimitPlan, RedisDownPolicy};
use crate::topology::ClientSpec;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution as _, Zipf};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use tokio::time::Instant;

pub const OPS: &[&str] = &["request", "redis_multi", "redis_eval"];
const CALLER_OPS: &[&str] = &["request"];

pub const METRICS: &[(&str, Dim)] = &[
    ("caller_errors", Dim::Count),
    ("redis_errors", Dim::Count),
    ("admitted", Dim::Count),
    ("denied", Dim::Count),
    ("degraded_admitted", Dim::Count),
    ("degraded_denied", Dim::Count),
    ("over_admitted", Dim::Count),
    ("over_admission", Dim::Ratio),
    ("under_admitted", Dim::Count),
    ("under_admission", Dim::Ratio),
    ("max_admitted_per_window", Dim::Count),
    ("burst_ratio", Dim::Factor),
    ("reference_admitted", Dim::Count),
    ("reference_error", Dim::Ratio),
];

/// ARGV: now (µs), window (µs), limit. KEYS[1]: the log.
const SLIDING_LOG: &str = r#"
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) * 2)
  return 1
end
return 0
"#;

/// KEYS[1]: this window's counter, KEYS[2]: the previous one's.
/// ARGV: elapsed fraction of this window (0..1), limit, window (ms).
const SLIDING_COUNTER: &str = r#"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
local elapsed, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
if cur + prev * (1 - elapsed) < limit then
  redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
  return 1
end
return 0
"#;

/// KEYS[1]: the bucket. ARGV: now (µs), capacity, refill per µs.
const TOKEN_BUCKET: &str = r#"
local now, cap, rate = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]) or cap, tonumber(b[2]) or now
tokens = math.min(cap, tokens + (now - ts) * rate)
local ok = 0
if tokens >= 1 then tokens = tokens - 1; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate / 1000) * 2)
return ok
"#;

/// KEYS[1]: the theoretical arrival time. ARGV: now (µs), emission
/// interval (µs), burst tolerance (µs).
const GCRA: &str = r#"
local now, t, tau = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if now < tat - tau then return 0 end
redis.call('SET', KEYS[1], tostring(tat + t), 'PX', math.ceil((tat + t - now) / 1000) + 1)
return 1
"#;

/// One decision, as the oracle needs it.
#[derive(Debug, Clone, Copy)]
struct Decision {
    client: u32,
    at_us: u64,
    admitted: bool,
    degraded: bool,
}

pub struct RateLimit {
    plan: RateLimitPlan,
    client: ClientSpec,
    prefix: String,
    t0: Instant,
    seed: u64,
    zipf: Option<Zipf<f64>>,
    decisions: Mutex<Vec<Decision>>,
}

pub struct User {
    conn: RedisConn,
    rng: SmallRng,
    seq: u64,
    index: usize,
}

impl RateLimit {
    pub fn new(
        plan: RateLimitPlan,
        client: ClientSpec,
        prefix: String,
        t0: Instant,
        seed: u64,
    ) -> Self {
        let zipf = (plan.skew > 0.0 && plan.clients > 1)
            .then(|| Zipf::new(plan.clients, plan.skew).expect("validated skew"));
        RateLimit {
            plan,
            client,
            prefix,
            t0,
            seed,
            zipf,
            decisions: Mutex::new(Vec::new()),
        }
    }

    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    fn pick(&self, rng: &mut SmallRng) -> u32 {
        match &self.zipf {
            Some(z) => (z.sample(rng) as u64).clamp(1, self.plan.clients) as u32 - 1,
            None => rng.gen_range(0..self.plan.clients) as u32,
        }
    }

    /// Asks the limiter in Redis; `Err` when Redis failed.
    async fn decide(
        &self,
        user: &mut User,
        c: u32,
        now_us: u64,
        trace: &mut Trace,
    ) -> Result<bool, ()> {
        let window_us = self.plan.window.as_micros() as u64;
        let limit = self.plan.limit;
        let base = format!("{}{{rl:{c}}}", self.prefix);
        let eval = |script: &str, keys: &[String], args: &[String]| {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(script).arg(keys.len());
            for k in keys {
                cmd.arg(k);
            }
            for a in args {
                cmd.arg(a);
            }
            cmd
        };
        let result: Result<i64, _> = match self.plan.algorithm {
            RateLimitAlgorithm::FixedWindow => {
                let key = format!("{base}:fw:{}", now_us / window_us);
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .cmd("INCR")
                    .arg(&key)
                    .cmd("PEXPIRE")
                    .arg(&key)
                    .arg(self.plan.window.as_millis() as u64 * 2)
                    .ignore();
                user.conn
                    .query_pipe::<(i64,)>("redis_multi", &pipe, trace)
                    .await
                    .map(|(n,)| i64::from(n as u64 <= limit))
            }
            RateLimitAlgorithm::SlidingLog => {
                user.seq += 1;
                let member = format!("{}:{}", user.index, user.seq);
                let cmd = eval(
                    SLIDING_LOG,
                    &[format!("{base}:log")],
                    &[
                        now_us.to_string(),
                        window_us.to_string(),
                        limit.to_string(),
                        member,
                    ],
                );
                user.conn.query::<i64>("redis_eval", &cmd, trace).await
            }
            RateLimitAlgorithm::SlidingCounter => {
                let w = now_us / window_us;
                let elapsed = (now_us % window_us) as f64 / window_us as f64;
                let cmd = eval(
                    SLIDING_COUNTER,
                    &[
                        format!("{base}:sc:{w}"),
                        format!("{base}:sc:{}", w.wrapping_sub(1)),
                    ],
                    &[
                        format!("{elapsed:.6}"),
                        limit.to_string(),
                        self.plan.window.as_millis().to_string(),
                    ],
                );
                user.conn.query::<i64>("redis_eval", &cmd, trace).await
            }
            RateLimitAlgorithm::TokenBucket => {
                let rate = limit as f64 / window_us as f64;
                let cmd = eval(
                    TOKEN_BUCKET,
                    &[format!("{base}:tb")],
                    &[now_us.to_string(), limit.to_string(), format!("{rate:.12}")],
                );
                user.conn.query::<i64>("redis_eval", &cmd, trace).await
            }
            RateLimitAlgorithm::Gcra => {
                let t = window_us / limit;
                let tau = window_us.saturating_sub(t);
                let cmd = eval(
                    GCRA,
                    &[format!("{base}:gcra")],
                    &[now_us.to_string(), t.to_string(), tau.to_string()],
                );
                user.conn.query::<i64>("redis_eval", &cmd, trace).await
            }
        };
        result.map(|v| v == 1).map_err(|_| {
            trace.counters.push(Counter::RedisError);
        })
    }
}

impl Workload for RateLimit {
    type User = User;

    fn new_user(&self, index: usize) -> User {
        User {
            conn: RedisConn::new(&self.client, self.plan.op_timeout, self.t0),
            rng: SmallRng::seed_from_u64(
                self.seed
                    .wrapping_mul(0x94d0_49bb_1331_11eb)
                    .wrapping_add(index as u64),
            ),
            seq: 0,
            index,
        }
    }

    async fn op(&self, user: &mut User, intended_us: u64, trace: &mut Trace) {
        let c = self.pick(&mut user.rng);
        // The request's time is when it was meant to arrive: the limiter and
        // the reference judge the same timeline.
        let start = self.now_us();
        trace.samples.push(Sample {
            op: "request",
            intended_us,
            start_us: start,
            end_us: 0,
            outcome: Outcome::Ok,
        });
        let (admitted, degraded) = match self.decide(user, c, intended_us, trace).await {
            Ok(a) => (a, false),
            Err(()) => (self.plan.on_error == RedisDownPolicy::FailOpen, true),
        };
        trace.counters.push(if admitted {
            Counter::Admitted
        } else {
            Counter::Denied
        });
        if degraded {
            trace.counters.push(if admitted {
                Counter::DegradedAdmitted
            } else {
                Counter::DegradedDenied
            });
        }
        self.decisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Decision {
                client: c,
                at_us: intended_us,
                admitted,
                degraded,
            });
        trace.samples[0].end_us = self.now_us();
    }

    fn caller_ops(&self) -> &'static [&'static str] {
        CALLER_OPS
    }

    fn phase_metrics(&self, from_us: u64, to_us: u64) -> BTreeMap<String, f64> {
        let decisions = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        let mut in_phase: Vec<Decision> = decisions
            .iter()
            .filter(|d| (from_us..to_us).contains(&d.at_us))
            .copied()
            .collect();
        in_phase.sort_by_key(|d| d.at_us);
        judge(
            &in_phase,
            self.plan.limit,
            self.plan.window.as_micros() as u64,
        )
    }
}

/// The oracle over one phase's decisions (sorted by time); see the module
/// docs.
fn judge(decisions: &[Decision], limit: u64, window_us: u64) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    if decisions.is_empty() {
        return m;
    }
    // Per client and aligned window: requests and admissions.
    let mut per: HashMap<(u32, u64), (u64, u64)> = HashMap::new();
    for d in decisions {
        let e = per.entry((d.client, d.at_us / window_us)).or_default();
        e.0 += 1;
        e.1 += u64::from(d.admitted);
    }
    let (mut over, mut under, mut allowed_total) = (0u64, 0u64, 0u64);
    for &(requests, admitted) in per.values() {
        let allowed = requests.min(limit);
        allowed_total += allowed;
        over += admitted.saturating_sub(limit);
        under += allowed.saturating_sub(admitted);
    }
    let admitted_total = decisions.iter().filter(|d| d.admitted).count() as u64;
    // The largest number admitted in any window-long span, per client.
    let mut logs: HashMap<u32, VecDeque<u64>> = HashMap::new();
    let mut max_in_window = 0usize;
    // The exact reference: a sliding log in memory over the same timeline.
    let mut reference: HashMap<u32, VecDeque<u64>> = HashMap::new();
    let mut reference_admitted = 0u64;
    for d in decisions {
        if d.admitted {
            let log = logs.entry(d.client).or_default();
            log.push_back(d.at_us);
            while log.front().is_some_and(|&t| t + window_us <= d.at_us) {
                log.pop_front();
            }
            max_in_window = max_in_window.max(log.len());
        }
        let r = reference.entry(d.client).or_default();
        while r.front().is_some_and(|&t| t + window_us <= d.at_us) {
            r.pop_front();
        }
        if (r.len() as u64) < limit {
            r.push_back(d.at_us);
            reference_admitted += 1;
        }
    }
    let count = |b: bool| {
        decisions
            .iter()
            .filter(|d| d.degraded && d.admitted == b)
            .count() as f64
    };
    m.insert("admitted".into(), admitted_total as f64);
    m.insert(
        "denied".into(),
        (decisions.len() as u64 - admitted_total) as f64,
    );
    m.insert("degraded_admitted".into(), count(true));
    m.insert("degraded_denied".into(), count(false));
    m.insert("over_admitted".into(), over as f64);
    m.insert("under_admitted".into(), under as f64);
    if allowed_total > 0 {
        m.insert("over_admission".into(), over as f64 / allowed_total as f64);
        m.insert(
            "under_admission".into(),
            under as f64 / allowed_total as f64,
        );
    }
    m.insert("max_admitted_per_window".into(), max_in_window as f64);
    m.insert("burst_ratio".into(), max_in_window as f64 / limit as f64);
    m.insert("reference_admitted".into(), reference_admitted as f64);
    if reference_admitted > 0 {
        m.insert(
            "reference_error".into(),
            (admitted_total as f64 - reference_admitted as f64).abs() / reference_admitted as f64,
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(at_ms: u64, admitted: bool) -> Decision {
        Decision {
            client: 0,
            at_us: at_ms * 1000,
            admitted,
            degraded: false,
        }
    }

    #[test]
    fn a_boundary_burst_is_twice_the_limit_in_one_sliding_window() {
        // Limit 2 per 1 s: 2 admitted at 0.9 s and 2 more at 1.1 s.
        let ds = [d(900, true), d(950, true), d(1100, true), d(1150, true)];
        let m = judge(&ds, 2, 1_000_000);
        assert_eq!(m["over_admitted"], 0.0, "each aligned window holds 2");
        assert_eq!(m["max_admitted_per_window"], 4.0, "0.9-1.15 s holds 4");
        assert_eq!(m["burst_ratio"], 2.0);
        // The exact sliding log admits only the first two.
        assert_eq!(m["reference_admitted"], 2.0);
    }

    #[test]
    fn over_and_under_admission_are_counted_per_window() {
        let ds = [d(100, true), d(200, true), d(300, true), d(1100, false)];
        let m = judge(&ds, 2, 1_000_000);
        assert_eq!(m["over_admitted"], 1.0);
        assert_eq!(m["under_admitted"], 1.0, "1.1 s could have been admitted");
    }
}
