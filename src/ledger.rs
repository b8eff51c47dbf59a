//! The acknowledged-write ledger. A workload that writes records, for each
//! key, the newest version Redis acknowledged, when, and until when the key
//! cannot have expired. Any later observation — a read by the owner, the
//! check after each fault, the check at the end — that finds the key
//! missing before that time, or holding an older version, is a **lost
//! write**: Redis said yes and then forgot. Each acknowledged version is
//! counted at most once.
//!
//! Versions only grow (one counter per run), so a concurrent newer write
//! can never be mistaken for a loss.

use crate::topology::ClientSpec;
use crate::vocab::outcome::Trace;
use crate::workload::conn::RedisConn;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Reads the version out of a stored value (`None`: not one of ours).
pub type VersionOf = fn(&[u8]) -> Option<u64>;

/// A workload's ledger with the way to read its values.
pub type Tracked = (std::sync::Arc<Ledger>, VersionOf);

/// What the ledger found by the end of a run.
#[derive(Debug, Clone, Default)]
pub struct Losses {
    /// Keys whose last acknowledged write was tracked (those dropped after
    /// their TTL included).
    pub keys: usize,
    /// The first `LISTED` lost writes, one by one.
    pub listed: Vec<LostWrite>,
    /// Every lost write, counted.
    pub total: u64,
    /// When each lost write had been acknowledged (µs since t0).
    pub acked_us: Vec<u64>,
}

/// How many lost writes the report lists one by one (all are counted).
pub const LISTED: usize = 100;

#[derive(Debug, Clone)]
struct Acked {
    version: u64,
    acked_us: u64,
    /// The key cannot have expired before this (the SET's start + TTL).
    live_until_us: u64,
    /// The loss of this version was counted already.
    lost: bool,
}

/// One lost write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LostWrite {
    pub key: String,
    pub version: u64,
    /// When Redis acknowledged it (seconds from the start of load).
    pub acked_at_s: f64,
    /// When gameday saw it gone.
    pub detected_at_s: f64,
    /// What was found instead: an older version, or nothing.
    pub found_version: Option<u64>,
    /// `read` (the owner's read) or `check` (gameday's read-back).
    pub by: String,
    /// The phase in force when Redis acknowledged it (filled in by the
    /// report).
    #[serde(default)]
    pub phase: String,
}

#[derive(Default)]
struct Inner {
    acked: HashMap<String, Acked>,
    lost: Vec<LostWrite>,
    total: u64,
    /// Every loss's ack time, for per-phase counts.
    lost_acked_us: Vec<u64>,
    /// Keys dropped once their TTL had run out, and acks since the last
    /// drop.
    expired: usize,
    acks: usize,
}

/// Every this many acks, keys past their TTL are dropped: a key that may
/// have expired cannot reveal a loss (it may be missing, and versions only
/// grow), so a long run of short-lived keys (sessions) keeps only the live
/// ones.
const PRUNE_EVERY: usize = 4096;

/// See the module docs.
#[derive(Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Redis acknowledged `version` of `key`: the SET started at `start_us`
    /// with `ttl`, and its reply came at `acked_us`.
    pub fn ack(&self, key: &str, version: u64, start_us: u64, acked_us: u64, ttl: Duration) {
        let mut inner = self.lock();
        inner.acks += 1;
        if inner.acks >= PRUNE_EVERY {
            inner.acks = 0;
            let before = inner.acked.len();
            inner.acked.retain(|_, a| a.live_until_us > acked_us);
            inner.expired += before - inner.acked.len();
        }
        let newer = inner.acked.get(key).is_none_or(|a| version > a.version);
        if newer {
            inner.acked.insert(
                key.to_string(),
                Acked {
                    version,
                    acked_us,
                    live_until_us: start_us + ttl.as_micros() as u64,
                    lost: false,
                },
            );
        }
    }

    /// `found` (a version, or nothing) was read from `key` by a read that
    /// started at `read_start_us`. Returns true when that reveals a loss.
    pub fn observe(
        &self,
        key: &str,
        found: Option<u64>,
        read_start_us: u64,
        now_us: u64,
        by: &str,
    ) -> bool {
        let mut inner = self.lock();
        let Some(a) = inner.acked.get_mut(key) else {
            return false;
        };
        // Only writes acknowledged before the read began must be visible.
        if a.lost || a.acked_us > read_start_us {
            return false;
        }
        let gone = match found {
            Some(v) => v < a.version,
            None => read_start_us < a.live_until_us,
        };
        if !gone {
            return false;
        }
        a.lost = true;
        let record = LostWrite {
            key: key.to_string(),
            version: a.version,
            acked_at_s: a.acked_us as f64 / 1e6,
            detected_at_s: now_us as f64 / 1e6,
            found_version: found,
            by: by.to_string(),
            phase: String::new(),
        };
        let acked_us = a.acked_us;
        inner.total += 1;
        inner.lost_acked_us.push(acked_us);
        if inner.lost.len() < LISTED {
            inner.lost.push(record);
        }
        true
    }

    /// Reads back every acknowledged key through `client` (the workload's
    /// path) and observes what it finds. `decode` extracts the version from
    /// a value. Returns how many losses this check found.
    pub async fn check(&self, client: &ClientSpec, t0: Instant, decode: VersionOf) -> u64 {
        let keys: Vec<String> = self.lock().acked.keys().cloned().collect();
        let mut conn = RedisConn::new(client, Duration::from_secs(2), t0);
        let mut found = 0;
        for key in keys {
            let mut trace = Trace::default();
            let start_us = t0.elapsed().as_micros() as u64;
            let mut get = redis::cmd("GET");
            get.arg(&key);
            // An unreadable key proves nothing either way.
            let Ok(value) = conn
                .query::<Option<Vec<u8>>>("check", &get, &mut trace)
                .await
            else {
                continue;
            };
            let version = value.as_deref().and_then(decode);
            if value.is_some() && version.is_none() {
                continue;
            }
            let now_us = t0.elapsed().as_micros() as u64;
            if self.observe(&key, version, start_us, now_us, "check") {
                found += 1;
            }
        }
        found
    }

    /// Every loss so far: the first `LISTED`, the total, and each one's ack
    /// time (µs) for per-phase counts.
    pub fn lost(&self) -> Losses {
        let inner = self.lock();
        Losses {
            keys: inner.acked.len() + inner.expired,
            listed: inner.lost.clone(),
            total: inner.total,
            acked_us: inner.lost_acked_us.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    #[test]
    fn a_missing_or_older_key_is_a_loss_once() {
        let l = Ledger::default();
        l.ack("a", 5, 100, 200, TTL);
        assert!(!l.observe("a", Some(5), 300, 300, "read"));
        assert!(!l.observe("a", Some(7), 300, 300, "read"), "newer is fine");
        assert!(l.observe("a", Some(4), 300, 300, "read"), "older is lost");
        assert!(!l.observe("a", None, 400, 400, "check"), "counted once");
        l.ack("a", 8, 500, 600, TTL);
        assert!(
            l.observe("a", None, 700, 700, "check"),
            "a new version can be lost again"
        );
        assert_eq!(l.lost().total, 2);
    }

    #[test]
    fn expiry_and_reads_that_began_before_the_ack_are_not_losses() {
        let l = Ledger::default();
        l.ack("a", 1, 0, 50, Duration::from_micros(1000));
        assert!(
            !l.observe("a", None, 40, 60, "read"),
            "read began before the ack"
        );
        assert!(!l.observe("a", None, 1000, 1000, "read"), "expired by then");
        assert!(!l.observe("b", None, 10, 10, "read"), "never acknowledged");
        assert_eq!(l.lost().total, 0);
    }

    #[test]
    fn expired_keys_are_dropped_and_still_counted() {
        let l = Ledger::default();
        let ttl = Duration::from_micros(1_000);
        for i in 0..PRUNE_EVERY as u64 * 3 {
            l.ack(&format!("s{i}"), i, i * 10, i * 10 + 5, ttl);
        }
        let inner = l.lock();
        assert!(
            inner.acked.len() <= PRUNE_EVERY + 100,
            "{}",
            inner.acked.len()
        );
        drop(inner);
        assert_eq!(l.lost().keys, PRUNE_EVERY * 3);
        // A live key is still judged.
        let last = PRUNE_EVERY as u64 * 3 - 1;
        assert!(l.observe(
            &format!("s{last}"),
            None,
            last * 10 + 6,
            last * 10 + 6,
            "read"
        ));
    }
}
