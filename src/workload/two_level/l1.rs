//! One instance's L1: a bounded in-process map of key → version with a
//! TTL, and the accounting of how long it held superseded versions.
//!
//! Every entry that leaves the L1 or is replaced (an invalidation, a
//! flush, an eviction, its TTL, the audit at the end) is judged against
//! the origin's history: if the version it held had been superseded for
//! longer than the declared bound by then, the key counts as held stale,
//! in the phase it was superseded in.

use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone, Copy)]
struct Entry {
    version: u64,
    expires_us: u64,
}

/// When each version of each key became the origin's: version v (from 2)
/// of a key at `times[key][v - 2]`.
#[derive(Default)]
pub struct History(HashMap<u64, Vec<u64>>);

impl History {
    pub fn written(&mut self, key: u64, version: u64, at_us: u64) {
        let times = self.0.entry(key).or_default();
        if version as usize == times.len() + 2 {
            times.push(at_us);
        }
    }

    /// When `version` of `key` stopped being the origin's, if it has.
    pub fn superseded_at(&self, key: u64, version: u64) -> Option<u64> {
        let i = (version + 1).checked_sub(2)? as usize;
        self.0.get(&key)?.get(i).copied()
    }
}

/// A key an L1 held superseded for longer than the bound: since when, and
/// for how long (µs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldStale {
    pub key: u64,
    pub since_us: u64,
    pub for_us: u64,
}

pub struct L1 {
    capacity: usize,
    ttl_us: u64,
    entries: HashMap<u64, Entry>,
    /// Insertion order, for eviction (a key may appear more than once; only
    /// its latest insertion counts).
    order: VecDeque<(u64, u64)>,
    /// The newest version an invalidation named for a key not held: a fill
    /// read before it is not taken (the fill race).
    seen: HashMap<u64, u64>,
}

impl L1 {
    pub fn new(capacity: usize, ttl_us: u64) -> Self {
        L1 {
            capacity,
            ttl_us,
            entries: HashMap::new(),
            order: VecDeque::new(),
            seen: HashMap::new(),
        }
    }

    /// The version held for `key`, unless it expired (then it leaves).
    pub fn get(
        &mut self,
        key: u64,
        now_us: u64,
        h: &History,
        out: &mut Vec<HeldStale>,
    ) -> Option<u64> {
        let e = *self.entries.get(&key)?;
        if e.expires_us <= now_us {
            self.leave(key, now_us, h, out);
            return None;
        }
        Some(e.version)
    }

    /// Takes `version` of `key`: a fill (only if newer than what is held)
    /// or an update from an invalidation message (the same rule).
    pub fn put(
        &mut self,
        key: u64,
        version: u64,
        now_us: u64,
        h: &History,
        out: &mut Vec<HeldStale>,
    ) {
        let newer_held = self.entries.get(&key).is_some_and(|e| e.version >= version);
        if newer_held || self.seen.get(&key).is_some_and(|&s| s > version) {
            return;
        }
        self.leave(key, now_us, h, out);
        while self.entries.len() >= self.capacity {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            if self
                .entries
                .get(&old)
                .is_some_and(|e| e.expires_us == at + self.ttl_us)
            {
                self.leave(old, now_us, h, out);
            }
        }
        self.entries.insert(
            key,
            Entry {
                version,
                expires_us: now_us + self.ttl_us,
            },
        );
        self.order.push_back((key, now_us));
    }

    /// An invalidation: an entry older than `version` takes it; a key not
    /// held stays out.
    pub fn update(
        &mut self,
        key: u64,
        version: u64,
        now_us: u64,
        h: &History,
        out: &mut Vec<HeldStale>,
    ) {
        match self.entries.get(&key) {
            Some(e) if e.version < version => self.put(key, version, now_us, h, out),
            Some(_) => {}
            None => {
                let s = self.seen.entry(key).or_insert(version);
                *s = (*s).max(version);
            }
        }
    }

    /// Empties the L1 (a flush, or the audit at the end).
    pub fn clear(&mut self, now_us: u64, h: &History, out: &mut Vec<HeldStale>) {
        let keys: Vec<u64> = self.entries.keys().copied().collect();
        for k in keys {
            self.leave(k, now_us, h, out);
        }
        self.order.clear();
    }

    /// Removes `key`, judging how long it held a superseded version.
    fn leave(&mut self, key: u64, now_us: u64, h: &History, out: &mut Vec<HeldStale>) {
        let Some(e) = self.entries.remove(&key) else {
            return;
        };
        if let Some(since) = h.superseded_at(key, e.version) {
            out.push(HeldStale {
                key,
                since_us: since,
                for_us: now_us.saturating_sub(since),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_judged_when_it_leaves() {
        let mut h = History::default();
        let mut out = Vec::new();
        let mut l1 = L1::new(2, 1000);
        l1.put(1, 1, 0, &h, &mut out);
        h.written(1, 2, 100);
        // Missed: the L1 still serves version 1.
        assert_eq!(l1.get(1, 150, &h, &mut out), Some(1));
        l1.update(1, 2, 400, &h, &mut out);
        assert_eq!(
            out,
            vec![HeldStale {
                key: 1,
                since_us: 100,
                for_us: 300
            }]
        );
        assert_eq!(l1.get(1, 500, &h, &mut out), Some(2));
        // An older fill does not replace a newer entry; a key not held is
        // not taken from an invalidation.
        l1.put(1, 1, 500, &h, &mut out);
        assert_eq!(l1.get(1, 500, &h, &mut out), Some(2));
        l1.update(7, 3, 500, &h, &mut out);
        assert_eq!(l1.get(7, 500, &h, &mut out), None);
        // A fill read before that invalidation is not taken.
        l1.put(7, 2, 500, &h, &mut out);
        assert_eq!(l1.get(7, 500, &h, &mut out), None);
        l1.put(7, 3, 500, &h, &mut out);
        assert_eq!(l1.get(7, 500, &h, &mut out), Some(3));
        // Capacity 2: a third key evicts the oldest; TTL expires.
        l1.clear(550, &h, &mut out);
        l1.put(1, 2, 560, &h, &mut out);
        l1.put(2, 1, 600, &h, &mut out);
        l1.put(3, 1, 700, &h, &mut out);
        assert_eq!(l1.get(1, 700, &h, &mut out), None);
        assert_eq!(l1.get(2, 1700, &h, &mut out), None);
        assert_eq!(out.len(), 1, "none of those was superseded");
        h.written(3, 2, 800);
        l1.clear(900, &h, &mut out);
        assert_eq!(
            out[1],
            HeldStale {
                key: 3,
                since_us: 800,
                for_us: 100
            }
        );
    }
}
