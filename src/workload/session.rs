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
use super::Workload;
use crate::expect::Dim;
use crate::ledger::{Ledger, Tracked};
use crate::recorder::{Counter, Outcome, Sample, Trace};
use crate::scenario::plan::SessionPlan;
use crate::topology::ClientSpec;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::time::Instant;

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
                trace.counters.push(Counter::RedisError);
                trace.counters.push(Counter::CallerError);
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
                trace.counters.push(Counter::RedisError);
                trace.counters.push(Counter::CallerError);
                return Outcome::Err(class);
            }
        };
        let found = value.as_deref().and_then(decode);
        if let Some((_, owner)) = found {
            if owner != user.index {
                // Never acceptable: someone else's session.
                trace.counters.push(Counter::WrongUser);
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
            trace.counters.push(Counter::RywViolation);
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

    async fn op(&self, user: &mut User, intended_us: u64, trace: &mut Trace) {
        let id = user.owned[user.rng.gen_range(0..user.owned.len())];
        let is_read = user.last.contains_key(&id) && user.rng.gen_bool(self.plan.read_ratio);
        trace.samples.push(Sample {
            op: if is_read { "read" } else { "login" },
            intended_us,
            start_us: self.now_us(),
            end_us: 0,
            outcome: Outcome::Ok,
        });
        let outcome = if is_read {
            self.read(user, id, trace).await
        } else {
            self.login(user, id, trace).await
        };
        let end = self.now_us();
        let caller = &mut trace.samples[0];
        caller.end_us = end;
        caller.outcome = outcome;
    }

    fn caller_ops(&self) -> &'static [&'static str] {
        CALLER_OPS
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
