//! The writes' ledger: every write a caller sent, when Redis acknowledged
//! it, and when (if ever) the origin received it; the pending entries left
//! at the end; and, for write-through, the windows in which Redis held an
//! older version of a key than the origin.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// One write a caller sent.
#[derive(Debug, Clone, Copy)]
pub struct Write {
    pub key: u64,
    pub version: u64,
    pub sent_us: u64,
    pub acked_us: Option<u64>,
    pub received_us: Option<u64>,
}

/// A key whose cache update failed after the origin committed: Redis may
/// still hold an older version than the origin's.
#[derive(Debug, Clone, Copy)]
struct Window {
    since_us: u64,
    /// The origin's version Redis should hold.
    version: u64,
    /// A read (or the read-back at the end) saw the older version.
    confirmed: bool,
}

#[derive(Default)]
struct Inner {
    writes: Vec<Write>,
    /// The ids still in the pending lists at the end; `None` until that
    /// inventory is taken (and then nothing is called lost).
    pending: Option<HashSet<u64>>,
    open: HashMap<u64, Window>,
    /// Confirmed disagreements: (since, length), µs.
    divergences: Vec<(u64, u64)>,
    /// Keys still disagreeing at the end, by when they started to.
    divergent_at_end: Vec<u64>,
    /// When the flusher's commands failed.
    flush_errors: Vec<u64>,
}

/// The figures of one phase's window (a write counts in the phase it was
/// sent in; a divergence in the phase it started in).
#[derive(Debug, Default, PartialEq)]
pub struct Figures {
    pub written: u64,
    pub flushed: u64,
    pub unflushed_lost: u64,
    pub unflushed: u64,
    /// Acknowledgement to origin, µs, sorted.
    pub lags_us: Vec<u64>,
    pub divergent_keys: u64,
    pub divergence_max_us: u64,
    pub divergent_at_end: u64,
    pub flush_errors: u64,
}

#[derive(Default)]
pub struct Writes(Mutex<Inner>);

impl Writes {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new write of `version` to `key`, sent at `now_us`: its id.
    pub fn reserve(&self, key: u64, version: u64, now_us: u64) -> u64 {
        let mut i = self.inner();
        i.writes.push(Write {
            key,
            version,
            sent_us: now_us,
            acked_us: None,
            received_us: None,
        });
        i.writes.len() as u64 - 1
    }

    pub fn acked(&self, id: u64, now_us: u64) {
        if let Some(w) = self.inner().writes.get_mut(id as usize) {
            w.acked_us = Some(now_us);
        }
    }

    /// The origin received write `id`: its key and version, unless the id
    /// is not one of this run's (then nothing is applied).
    pub fn received(&self, id: u64, now_us: u64) -> Option<(u64, u64)> {
        let mut i = self.inner();
        let w = i.writes.get_mut(id as usize)?;
        w.received_us.get_or_insert(now_us);
        Some((w.key, w.version))
    }

    pub fn flush_error(&self, now_us: u64) {
        self.inner().flush_errors.push(now_us);
    }

    /// Whether every acknowledged write has reached the origin.
    pub fn all_flushed(&self) -> bool {
        self.inner()
            .writes
            .iter()
            .all(|w| w.acked_us.is_none() || w.received_us.is_some())
    }

    /// The ids the pending lists still hold at the end.
    pub fn inventory(&self, pending: HashSet<u64>) {
        self.inner().pending = Some(pending);
    }

    /// Redis failed to take `version` of `key` after the origin had
    /// committed it at `now_us`.
    pub fn update_failed(&self, key: u64, version: u64, now_us: u64) {
        let mut i = self.inner();
        let w = i.open.entry(key).or_insert(Window {
            since_us: now_us,
            version,
            confirmed: false,
        });
        w.version = w.version.max(version);
    }

    /// Redis took `version` of `key`: a window that version closes ends.
    pub fn updated(&self, key: u64, version: u64, now_us: u64) {
        let mut i = self.inner();
        if i.open.get(&key).is_some_and(|w| version >= w.version) {
            let w = i.open.remove(&key).expect("checked above");
            if w.confirmed {
                i.divergences
                    .push((w.since_us, now_us.saturating_sub(w.since_us)));
            }
        }
    }

    /// A read found `version` of `key` in Redis at `now_us`: older than the
    /// origin's, the disagreement is confirmed; as new, it is over (a fill
    /// after a restart set it right).
    pub fn read(&self, key: u64, version: u64, now_us: u64) {
        let behind = match self.inner().open.get_mut(&key) {
            Some(w) if version < w.version => {
                w.confirmed = true;
                true
            }
            Some(_) => false,
            None => true,
        };
        if !behind {
            self.updated(key, version, now_us);
        }
    }

    /// The keys whose window is still open, with the version each should
    /// hold: what the read-back at the end checks.
    pub fn open_keys(&self) -> Vec<(u64, u64)> {
        self.inner()
            .open
            .iter()
            .map(|(&k, w)| (k, w.version))
            .collect()
    }

    /// The read-back at the end found `key` at `found` (None: not in
    /// Redis, so a read goes to the origin and is right).
    pub fn read_back(&self, key: u64, found: Option<u64>, now_us: u64) {
        let mut i = self.inner();
        let Some(w) = i.open.remove(&key) else {
            return;
        };
        if w.confirmed || found.is_some_and(|v| v < w.version) {
            i.divergences
                .push((w.since_us, now_us.saturating_sub(w.since_us)));
            i.divergent_at_end.push(w.since_us);
        }
    }

    pub fn figures(&self, window: (u64, u64)) -> Figures {
        let i = self.inner();
        let within = |t: u64| (window.0..window.1).contains(&t);
        let mut f = Figures::default();
        for (id, w) in i.writes.iter().enumerate() {
            let Some(acked) = w.acked_us.filter(|_| within(w.sent_us)) else {
                continue;
            };
            f.written += 1;
            match (w.received_us, &i.pending) {
                (Some(r), _) => {
                    f.flushed += 1;
                    f.lags_us.push(r.saturating_sub(acked));
                }
                (None, Some(p)) if !p.contains(&(id as u64)) => f.unflushed_lost += 1,
                (None, _) => f.unflushed += 1,
            }
        }
        f.lags_us.sort_unstable();
        for &(_, len) in i.divergences.iter().filter(|d| within(d.0)) {
            f.divergent_keys += 1;
            f.divergence_max_us = f.divergence_max_us.max(len);
        }
        f.divergent_at_end = i.divergent_at_end.iter().filter(|&&t| within(t)).count() as u64;
        f.flush_errors = i.flush_errors.iter().filter(|&&t| within(t)).count() as u64;
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn what_is_neither_received_nor_pending_is_lost() {
        let w = Writes::default();
        let ids: Vec<u64> = (0..5).map(|k| w.reserve(k, 2, 10 + k)).collect();
        for &id in &ids[..4] {
            w.acked(id, 20);
        }
        assert_eq!(w.received(ids[0], 50), Some((0, 2)));
        assert_eq!(w.received(99, 50), None);
        // Before the inventory nothing is called lost.
        let f = w.figures((0, 100));
        assert_eq!(
            (f.written, f.flushed, f.unflushed_lost, f.unflushed),
            (4, 1, 0, 3)
        );
        w.inventory(HashSet::from([ids[1]]));
        let f = w.figures((0, 100));
        assert_eq!((f.flushed, f.unflushed_lost, f.unflushed), (1, 2, 1));
        assert_eq!(f.lags_us, vec![30]);
        // The phase a write was sent in holds it.
        assert_eq!(w.figures((12, 100)).written, 2);
        assert!(!w.all_flushed());
    }

    #[test]
    fn only_a_confirmed_disagreement_is_a_divergence() {
        let w = Writes::default();
        w.update_failed(1, 5, 100);
        w.updated(1, 5, 300);
        w.update_failed(2, 5, 100);
        w.update_failed(2, 6, 200);
        w.read(2, 5, 250);
        w.updated(2, 5, 400);
        w.read(2, 6, 900);
        w.update_failed(3, 7, 1000);
        w.update_failed(4, 7, 1000);
        assert_eq!(w.open_keys().len(), 2);
        w.read_back(3, Some(6), 1500);
        w.read_back(4, None, 1500);
        let f = w.figures((0, 2000));
        assert_eq!(
            (f.divergent_keys, f.divergence_max_us, f.divergent_at_end),
            (2, 800, 1)
        );
        assert!(w.open_keys().is_empty());
    }
}
