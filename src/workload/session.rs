//! session: each virtual user owns its share of the sessions. It logs in
//! (writes a session — its own id as owner, a fresh version — with a TTL)
//! and reads its sessions back. The degradation policy is `fail`: a Redis
//! error reaches the caller, who is never handed a guessed session.
//!
//! Oracle:
//! - `wrong_user`: a read returned a session owned by another user (must
//!   be 0, whatever fails);
//! - `ryw_violations`: a read returned an older version than the user's
//!   last acknowledged login, or nothing while that login cannot have
//!   expired (read-your-writes). The user then logs in again, as an
//!   application would send its user back to the login page;
//! - `lost_writes` (the ledger): acknowledged logins later found missing or
//!   older, by the owner's reads or by gameday's read-back after each fault
//!   and at the end.

use super::conn::RedisConn;
use super::policy::{ErrorPolicy, RawOnError};
use super::{keys_of, Spec};
use super::{Done, Oracle, Workload, WorkloadCtx};
use crate::ledger::{Ledger, Tracked};
use crate::recorder::PhaseStats;
use crate::vocab::check::{
    check, fraction_or, invalid, positive_dur, positive_int, positive_int_or, Checked,
};
use crate::vocab::expect::Dim;
use crate::vocab::outcome::{Counter, Outcome, Trace, CALLER_ERRORS, REDIS_ERRORS};
use crate::vocab::units::Dur;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use toml::Spanned;

use crate::topology::ClientSpec;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::time::Instant;

/// Reads older than the user's last acknowledged login (read your writes).
pub const RYW_VIOLATIONS: Counter = Counter("ryw_violations");
/// Reads that returned another user's session.
pub const WRONG_USER: Counter = Counter("wrong_user");
/// Every counter this workload reports, in report order.
pub const COUNTERS: &[Counter] = &[CALLER_ERRORS, REDIS_ERRORS, RYW_VIOLATIONS, WRONG_USER];

/// session: each user owns its share of `sessions`, logs in (writes a
/// session with a TTL) and reads its sessions back.
#[derive(Debug, Clone)]
pub struct SessionPlan {
    pub sessions: u64,
    pub ttl: Duration,
    pub read_ratio: f64,
    pub value_size: usize,
    pub op_timeout: Duration,
}

/// The `[workload]` keys of `kind = "session"`.
#[derive(Debug, Deserialize)]
pub struct Raw {
    sessions: Option<Spanned<i64>>,
    ttl: Option<Spanned<Dur>>,
    read_ratio: Option<Spanned<f64>>,
    value_size: Option<Spanned<i64>>,
    op_timeout: Option<Spanned<Dur>>,
    on_redis_error: Option<Spanned<RawOnError>>,
}

impl Raw {
    /// Validates the keys; every one of the `users` needs a session.
    pub fn plan(self, ctx: &WorkloadCtx) -> Checked<SessionPlan> {
        if let Some(e) = &self.on_redis_error {
            let r = e.get_ref();
            let ok = r.policy == ErrorPolicy::Fail
                && r.breaker_failures.is_none()
                && r.breaker_cooldown.is_none();
            check(
                e,
                ok,
                "the session workload's only policy is `fail`: a caller gets an error, never a guessed session (no fallback, no breaker)",
            )?;
        }
        let sessions = positive_int_or(self.sessions.as_ref(), "sessions", 1000)?;
        if sessions < ctx.users as u64 {
            return Err(invalid(
                self.sessions.as_ref().map_or(ctx.users_span.clone(), |s| s.span()),
                format!(
                    "{sessions} sessions for {} users: every user needs a session of its own (raise `sessions` or lower `users`)",
                    ctx.users
                ),
            ));
        }
        let value_size = match &self.value_size {
            Some(v) => {
                let n = positive_int(v, "value_size")?;
                check(
                    v,
                    (MIN_VALUE as u64..=1 << 20).contains(&n),
                    format!(
                        "`value_size` must be between {MIN_VALUE} bytes (the session header) and 1mb"
                    ),
                )?;
                n as usize
            }
            None => 256,
        };
        Ok(SessionPlan {
            sessions,
            ttl: positive_dur(self.ttl.as_ref(), "ttl", Duration::from_secs(1800))?,
            read_ratio: fraction_or(self.read_ratio.as_ref(), "read_ratio", 0.9)?,
            value_size,
            op_timeout: positive_dur(
                self.op_timeout.as_ref(),
                "op_timeout",
                Duration::from_millis(200),
            )?,
        })
    }
}

/// Caller ops first, then the Redis commands.
pub const OPS: &[&str] = &["login", "read", "redis_set", "redis_get"];
const CALLER_OPS: &[&str] = &["login", "read"];

/// The metrics this workload reports per phase.
pub const METRICS: &[(&str, Dim)] = &[
    ("caller_errors", Dim::Count),
    ("redis_errors", Dim::Count),
    ("ryw_violations", Dim::Count),
    ("wrong_user", Dim::Count),
    ("lost_writes", Dim::Count),
];

/// What the scenario layer and the reports know of this workload.
pub const SPEC: Spec = Spec {
    name: "session",
    section: "workload",
    ops: OPS,
    metrics: METRICS,
    counters: COUNTERS,
    keys: keys_of::<Raw>,
};

/// `gs1:<16 hex: version>:<8 hex: owner>:` then padding.
pub const MIN_VALUE: usize = 30;

/// A session value of `size` bytes.
pub fn encode(version: u64, owner: u32, size: usize) -> Vec<u8> {
    let mut v = format!("gs1:{version:016x}:{owner:08x}:").into_bytes();
    v.resize(size.max(MIN_VALUE), b'.');
    v
}

/// `(version, owner)` of a session value, if it is one of ours.
pub fn decode(value: &[u8]) -> Option<(u64, u32)> {
    let h = value.get(..MIN_VALUE)?;
    if !h.starts_with(b"gs1:") || h[20] != b':' || h[29] != b':' {
        return None;
    }
    let text = std::str::from_utf8(h).ok()?;
    let version = u64::from_str_radix(&text[4..20], 16).ok()?;
    let owner = u32::from_str_radix(&text[21..29], 16).ok()?;
    Some((version, owner))
}

fn version_of(value: &[u8]) -> Option<u64> {
    decode(value).map(|(v, _)| v)
}

pub struct Session {
    plan: SessionPlan,
    client: ClientSpec,
    prefix: String,
    users: usize,
    t0: Instant,
    seed: u64,
    next_version: AtomicU64,
    ledger: Arc<Ledger>,
}

pub struct User {
    conn: RedisConn,
    rng: SmallRng,
    index: u32,
    owned: Vec<u64>,
    /// Session id → the version of the user's last acknowledged login, and
    /// until when that session cannot have expired (µs since t0).
    last: HashMap<u64, (u64, u64)>,
}

impl Session {
    /// Keys live under `prefix`; `users` share the sessions.
    pub fn new(
        plan: SessionPlan,
        client: ClientSpec,
        prefix: String,
        users: usize,
        t0: Instant,
        seed: u64,
    ) -> Self {
        Session {
            plan,
            client,
            prefix,
            users: users.max(1),
            t0,
            seed,
            next_version: AtomicU64::new(0),
            ledger: Arc::new(Ledger::default()),
        }
    }

    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    fn key(&self, id: u64) -> String {
        format!("{}session:{id}", self.prefix)
    }

    async fn login(&self, user: &mut User, id: u64, trace: &mut Trace) -> Outcome {
        let version = self.next_version.fetch_add(1, Ordering::Relaxed) + 1;
        let key = self.key(id);
        let mut set = redis::cmd("SET");
        set.arg(&key)
            .arg(encode(version, user.index, self.plan.value_size))
            .arg("PX")
            .arg(self.plan.ttl.as_millis() as u64);
        let start_us = self.now_us();
        match user.conn.query::<()>("redis_set", &set, trace).await {
            Ok(()) => {
                user.last
                    .insert(id, (version, start_us + self.plan.ttl.as_micros() as u64));
                self.ledger
                    .ack(&key, version, start_us, self.now_us(), self.plan.ttl);
                Outcome::Ok
            }
            Err(class) => {
                trace.counters.push(REDIS_ERRORS);
                trace.counters.push(CALLER_ERRORS);
                Outcome::Err(class)
            }
        }
    }

    async fn read(&self, user: &mut User, id: u64, trace: &mut Trace) -> Outcome {
        let key = self.key(id);
        let mut get = redis::cmd("GET");
        get.arg(&key);
        let start_us = self.now_us();
        let value = match user
            .conn
            .query::<Option<Vec<u8>>>("redis_get", &get, trace)
            .await
        {
            Ok(v) => v,
            Err(class) => {
                trace.counters.push(REDIS_ERRORS);
                trace.counters.push(CALLER_ERRORS);
                return Outcome::Err(class);
            }
        };
        let found = value.as_deref().and_then(decode);
        if let Some((_, owner)) = found {
            if owner != user.index {
                // Never acceptable: someone else's session.
                trace.counters.push(WRONG_USER);
                return Outcome::Ok;
            }
        }
        let version = found.map(|(v, _)| v);
        let lost = self
            .ledger
            .observe(&key, version, start_us, self.now_us(), "read");
        let behind = user
            .last
            .get(&id)
            .is_some_and(|&(last, live_until)| match version {
                Some(v) => v < last,
                None => start_us < live_until,
            });
        if behind || lost {
            trace.counters.push(RYW_VIOLATIONS);
            // Logged out: the user logs in again.
            return self.login(user, id, trace).await;
        }
        Outcome::Ok
    }
}

impl Workload for Session {
    type User = User;

    fn new_user(&self, index: usize) -> User {
        User {
            conn: RedisConn::new(&self.client, self.plan.op_timeout, self.t0),
            rng: SmallRng::seed_from_u64(
                self.seed
                    .wrapping_mul(0x2545_f491_4f6c_dd1d)
                    .wrapping_add(index as u64),
            ),
            index: index as u32,
            owned: (0..self.plan.sessions)
                .filter(|s| *s as usize % self.users == index)
                .collect(),
            last: HashMap::new(),
        }
    }

    async fn op(&self, user: &mut User, _intended_us: u64, trace: &mut Trace) -> Done {
        let id = user.owned[user.rng.gen_range(0..user.owned.len())];
        let is_read = user.last.contains_key(&id) && user.rng.gen_bool(self.plan.read_ratio);
        if is_read {
            Done::new("read", self.read(user, id, trace).await)
        } else {
            Done::new("login", self.login(user, id, trace).await)
        }
    }
}

impl Oracle for Session {
    fn caller_ops(&self) -> &'static [&'static str] {
        CALLER_OPS
    }

    /// Errors, read-your-writes violations and wrong-user reads; the
    /// ledger's lost writes are added by the report.
    fn phase_metrics(&self, phase: &PhaseStats, _baseline: &PhaseStats) -> BTreeMap<String, f64> {
        super::counts(phase, COUNTERS)
    }

    fn ledger(&self) -> Option<Tracked> {
        Some((self.ledger.clone(), version_of))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_round_trip() {
        for size in [0, MIN_VALUE, 256] {
            let v = encode(42, 7, size);
            assert_eq!(v.len(), size.max(MIN_VALUE));
            assert_eq!(decode(&v), Some((42, 7)));
        }
        assert_eq!(decode(b"gd1:0000000000000001:"), None);
    }
}
