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
//! denies. Every decision is kept (8 bytes each, in sorted runs on disk:
//! `log`), so the oracle can replay the request
//! timeline through an exact reference limiter (a sliding log in memory)
//! and count, per phase: over- and under-admission against `limit` per
//! aligned window, the largest number admitted in any `window`-long span
//! (a fixed window's boundary burst reaches twice the limit), and the
//! decisions the policy made while Redis failed.

use super::conn::RedisConn;
use super::policy::{ErrorPolicy, RawOnError};
mod judge;
mod log;

use super::{keys_of, Spec};
use super::{Choice, Done, Oracle, Workload};
use crate::recorder::PhaseStats;
use crate::vocab::check::{
    check, invalid, positive_dur, positive_f64_or, positive_int_or, variant_list, Checked,
};
use crate::vocab::expect::Dim;
use crate::vocab::outcome::{Counter, ErrorClass, Outcome, Trace, CALLER_ERRORS, REDIS_ERRORS};
use crate::vocab::units::Dur;
use judge::{Decision, Judge, MAX_CLIENTS};
use log::DecisionLog;
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

use crate::topology::ClientSpec;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution as _, Zipf};
use std::collections::BTreeMap;
use tokio::time::Instant;

/// Requests admitted by the limiter.
pub const ADMITTED: Counter = Counter("admitted");
/// Requests denied by the limiter.
pub const DENIED: Counter = Counter("denied");
/// Requests admitted by the fail-open policy because Redis failed.
pub const DEGRADED_ADMITTED: Counter = Counter("degraded_admitted");
/// Requests denied by the fail-closed policy because Redis failed.
pub const DEGRADED_DENIED: Counter = Counter("degraded_denied");
/// Every counter this workload reports, in report order.
pub const COUNTERS: &[Counter] = &[
    CALLER_ERRORS,
    REDIS_ERRORS,
    ADMITTED,
    DENIED,
    DEGRADED_ADMITTED,
    DEGRADED_DENIED,
];

/// A rate limiter's algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitAlgorithm {
    FixedWindow,
    SlidingLog,
    SlidingCounter,
    TokenBucket,
    Gcra,
}

impl RateLimitAlgorithm {
    /// What it may admit per client and aligned window, by its documented
    /// error: the limit, or twice it for a full bucket plus its refill.
    pub fn aligned_bound(self, limit: u64) -> u64 {
        match self {
            RateLimitAlgorithm::FixedWindow
            | RateLimitAlgorithm::SlidingLog
            | RateLimitAlgorithm::SlidingCounter => limit,
            RateLimitAlgorithm::TokenBucket | RateLimitAlgorithm::Gcra => 2 * limit,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RateLimitAlgorithm::FixedWindow => "fixed_window",
            RateLimitAlgorithm::SlidingLog => "sliding_log",
            RateLimitAlgorithm::SlidingCounter => "sliding_counter",
            RateLimitAlgorithm::TokenBucket => "token_bucket",
            RateLimitAlgorithm::Gcra => "gcra",
        }
    }
}

/// What a rate limiter decides when Redis fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisDownPolicy {
    /// Admit, and mark the decision degraded.
    FailOpen,
    /// Deny.
    FailClosed,
}

/// rate-limit: `clients` identities, `limit` requests per `window` each.
#[derive(Debug, Clone)]
pub struct RateLimitPlan {
    pub algorithm: RateLimitAlgorithm,
    pub limit: u64,
    pub window: Duration,
    pub clients: u64,
    /// Zipf exponent of the clients' shares of the requests (0 = even).
    pub skew: f64,
    pub on_error: RedisDownPolicy,
    pub op_timeout: Duration,
}

/// The `[workload]` keys of `kind = "rate-limit"`.
#[derive(Debug, Deserialize)]
pub struct Raw {
    /// One algorithm...
    algorithm: Option<RateLimitAlgorithm>,
    /// ...or several, compared side by side.
    algorithms: Option<Spanned<Vec<RateLimitAlgorithm>>>,
    limit: Option<Spanned<i64>>,
    window: Option<Spanned<Dur>>,
    clients: Option<Spanned<i64>>,
    skew: Option<Spanned<f64>>,
    op_timeout: Option<Spanned<Dur>>,
    on_redis_error: Option<Spanned<RawOnError>>,
}

impl Raw {
    /// `clients`: at most `MAX_CLIENTS` (what a kept decision can name).
    fn clients_checked(&self) -> Checked<u64> {
        let clients = positive_int_or(self.clients.as_ref(), "clients", 10)?;
        if let Some(c) = &self.clients {
            check(
                c,
                clients <= MAX_CLIENTS,
                format!("`clients` must be at most {MAX_CLIENTS}"),
            )?;
        }
        Ok(clients)
    }

    /// Validates the keys; `algorithms = [...]` gives one variant each.
    pub fn plan(self) -> Checked<Choice<RateLimitPlan>> {
        if let Some(list) = &self.algorithms {
            variant_list(
                list,
                self.algorithm.is_some(),
                "algorithm",
                "algorithms",
                |a| a.as_str(),
            )?;
        }
        let on_error = match &self.on_redis_error {
            None => RedisDownPolicy::FailOpen,
            Some(e) => match (e.get_ref().policy, e.get_ref().breaker_failures.is_none()) {
                (ErrorPolicy::FailOpen, true) => RedisDownPolicy::FailOpen,
                (ErrorPolicy::FailClosed, true) => RedisDownPolicy::FailClosed,
                _ => return Err(invalid(
                    e.span(),
                    "a rate limiter's policy is `fail_open` (admit, marked degraded) or `fail_closed` (deny), with no breaker",
                )),
            },
        };
        let limit = positive_int_or(self.limit.as_ref(), "limit", 100)?;
        let window = positive_dur(self.window.as_ref(), "window", Duration::from_secs(1))?;
        if let Some(w) = &self.window {
            check(
                w,
                window >= Duration::from_millis(10) && window.as_micros() as u64 >= limit,
                "`window` must be at least 10ms and at least 1 µs per allowed request",
            )?;
        }
        let base = RateLimitPlan {
            algorithm: self.algorithm.unwrap_or(RateLimitAlgorithm::FixedWindow),
            limit,
            window,
            clients: self.clients_checked()?,
            skew: positive_f64_or(
                self.skew.as_ref(),
                1.0,
                true,
                "`skew` must be 0 (even) or above",
            )?,
            on_error,
            op_timeout: positive_dur(
                self.op_timeout.as_ref(),
                "op_timeout",
                Duration::from_millis(50),
            )?,
        };
        Ok(match self.algorithms {
            None => Choice::One(base),
            Some(list) => Choice::Compare(
                list.get_ref()
                    .iter()
                    .map(|&algorithm| {
                        let plan = RateLimitPlan {
                            algorithm,
                            ..base.clone()
                        };
                        (algorithm.as_str().to_string(), plan)
                    })
                    .collect(),
            ),
        })
    }
}

/// Caller ops first, then the Redis commands.
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
    ("excess_admitted", Dim::Count),
    ("under_admitted", Dim::Count),
    ("under_admission", Dim::Ratio),
    ("max_admitted_per_window", Dim::Count),
    ("burst_ratio", Dim::Factor),
    ("reference_admitted", Dim::Count),
    ("reference_error", Dim::Ratio),
];

/// What the scenario layer and the reports know of this workload.
pub const SPEC: Spec = Spec {
    name: "rate-limit",
    section: "workload",
    ops: OPS,
    metrics: METRICS,
    counters: COUNTERS,
    keys: keys_of::<Raw>,
};

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

pub struct RateLimit {
    plan: RateLimitPlan,
    client: ClientSpec,
    prefix: String,
    t0: Instant,
    seed: u64,
    zipf: Option<Zipf<f64>>,
    /// Every decision (8 bytes each, sorted runs on disk), judged per
    /// phase at the end.
    decisions: DecisionLog,
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
            decisions: DecisionLog::default(),
        }
    }

    fn pick(&self, rng: &mut SmallRng) -> u32 {
        match &self.zipf {
            Some(z) => (z.sample(rng) as u64).clamp(1, self.plan.clients) as u32 - 1,
            None => rng.gen_range(0..self.plan.clients) as u32,
        }
    }

    /// Asks the limiter in Redis; `Err` when Redis failed.
    /// Asks Redis whether client `c` may make a request at `now_us`;
    /// `Err` with the error's class when Redis did not answer.
    async fn decide(
        &self,
        user: &mut User,
        c: u32,
        now_us: u64,
        trace: &mut Trace,
    ) -> Result<bool, ErrorClass> {
        let result = match self.request(user, c, now_us) {
            Request::Multi(pipe) => user
                .conn
                .query_pipe::<(i64,)>("redis_multi", &pipe, trace)
                .await
                .map(|(n,)| i64::from(n as u64 <= self.plan.limit)),
            Request::Eval(cmd) => user.conn.query::<i64>("redis_eval", &cmd, trace).await,
        };
        result.map(|v| v == 1).inspect_err(|_| {
            trace.counters.push(REDIS_ERRORS);
        })
    }

    /// The algorithm's command for one request of client `c` at `now_us`.
    fn request(&self, user: &mut User, c: u32, now_us: u64) -> Request {
        let window_us = self.plan.window.as_micros() as u64;
        let limit = self.plan.limit;
        let base = format!("{}{{rl:{c}}}", self.prefix);
        let eval = |script: &str, keys: &[String], args: &[String]| {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
            Request::Eval(cmd)
        };
        match self.plan.algorithm {
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
                Request::Multi(pipe)
            }
            RateLimitAlgorithm::SlidingLog => {
                user.seq += 1;
                let member = format!("{}:{}", user.index, user.seq);
                let args = [
                    now_us.to_string(),
                    window_us.to_string(),
                    limit.to_string(),
                    member,
                ];
                eval(SLIDING_LOG, &[format!("{base}:log")], &args)
            }
            RateLimitAlgorithm::SlidingCounter => {
                let w = now_us / window_us;
                let elapsed = (now_us % window_us) as f64 / window_us as f64;
                let keys = [
                    format!("{base}:sc:{w}"),
                    format!("{base}:sc:{}", w.wrapping_sub(1)),
                ];
                let args = [
                    format!("{elapsed:.6}"),
                    limit.to_string(),
                    self.plan.window.as_millis().to_string(),
                ];
                eval(SLIDING_COUNTER, &keys, &args)
            }
            RateLimitAlgorithm::TokenBucket => {
                let rate = limit as f64 / window_us as f64;
                let args = [now_us.to_string(), limit.to_string(), format!("{rate:.12}")];
                eval(TOKEN_BUCKET, &[format!("{base}:tb")], &args)
            }
            RateLimitAlgorithm::Gcra => {
                let t = window_us / limit;
                let tau = window_us.saturating_sub(t);
                let args = [now_us.to_string(), t.to_string(), tau.to_string()];
                eval(GCRA, &[format!("{base}:gcra")], &args)
            }
        }
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

    /// A request, decided (an answer, also a denial, is not an error of
    /// the caller's).
    async fn op(&self, user: &mut User, intended_us: u64, trace: &mut Trace) -> Done {
        let c = self.pick(&mut user.rng);
        // The request's time is when it was meant to arrive: the limiter and
        // the reference judge the same timeline.
        let (admitted, degraded) = match self.decide(user, c, intended_us, trace).await {
            Ok(a) => (a, false),
            Err(_) => (self.plan.on_error == RedisDownPolicy::FailOpen, true),
        };
        trace
            .counters
            .push(if admitted { ADMITTED } else { DENIED });
        if degraded {
            trace.counters.push(if admitted {
                DEGRADED_ADMITTED
            } else {
                DEGRADED_DENIED
            });
        }
        self.decisions.push(Decision {
            client: c,
            at_us: intended_us,
            admitted,
            degraded,
        });
        Done::new("request", Outcome::Ok)
    }
}

impl Oracle for RateLimit {
    fn caller_ops(&self) -> &'static [&'static str] {
        CALLER_OPS
    }

    /// Errors from the recorder; every other figure from the decisions
    /// whose intended time lies in the phase, judged by `judge`.
    fn phase_metrics(&self, phase: &PhaseStats, _baseline: &PhaseStats) -> BTreeMap<String, f64> {
        let (from_us, to_us) = phase.window_us();
        let mut m = super::counts(phase, &[CALLER_ERRORS, REDIS_ERRORS]);
        m.extend(self.judged(from_us, to_us));
        m
    }
}

impl RateLimit {
    fn judged(&self, from_us: u64, to_us: u64) -> BTreeMap<String, f64> {
        let mut judge = Judge::new(
            self.plan.limit,
            self.plan.window.as_micros() as u64,
            self.plan.algorithm.aligned_bound(self.plan.limit),
        );
        self.decisions
            .each_in_window(from_us, to_us, |d| judge.add(d));
        judge.finish()
    }
}

/// One request's command: a MULTI (fixed window) or a script.
enum Request {
    Multi(redis::Pipeline),
    Eval(redis::Cmd),
}
