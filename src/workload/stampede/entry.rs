//! What the stampede workload keeps in a hot key, and how the origin
//! groups recomputations into expiry events.
//!
//! A value starts with a header, `gx1:<version>:<recompute ms>:<fresh
//! until, ms since t0>:`, then padding: the version proves which
//! recomputation a reader got; the recompute time and the freshness bound
//! are what xfetch and stale-while-revalidate decide by.

use std::collections::HashMap;
use std::sync::Mutex;

/// `gx1:<version>:<recompute ms>:<fresh until, ms since t0>:` then padding.
pub(super) const HEADER: usize = 4 + 16 + 1 + 8 + 1 + 16 + 1;

pub(super) fn encode(version: u64, delta_ms: u64, fresh_until_ms: u64, size: usize) -> Vec<u8> {
    let mut v = format!("gx1:{version:016x}:{delta_ms:08x}:{fresh_until_ms:016x}:").into_bytes();
    v.resize(size.max(HEADER), b'.');
    v
}

/// `(version, recompute ms, fresh until ms)`.
pub(super) fn decode(v: &[u8]) -> Option<(u64, u64, u64)> {
    let h = std::str::from_utf8(v.get(..HEADER)?).ok()?;
    if !h.starts_with("gx1:") {
        return None;
    }
    Some((
        u64::from_str_radix(&h[4..20], 16).ok()?,
        u64::from_str_radix(&h[21..29], 16).ok()?,
        u64::from_str_radix(&h[30..46], 16).ok()?,
    ))
}

/// Groups recomputations into expiry events, per key.
#[derive(Default)]
pub(super) struct Events {
    /// Key → start of its current event (µs since t0).
    current: Mutex<HashMap<u64, u64>>,
}

impl Events {
    /// A recomputation of `key` starts at `at_us`: is it a new event?
    pub(super) fn record(&self, key: u64, at_us: u64, window_us: u64) -> bool {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match current.get(&key) {
            Some(&start) if at_us < start + window_us => false,
            _ => {
                current.insert(key, at_us);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let v = encode(7, 120, 99_000, 64);
        assert_eq!(v.len(), 64);
        assert_eq!(decode(&v), Some((7, 120, 99_000)));
        assert_eq!(decode(b"nope"), None);
    }

    #[test]
    fn recomputations_group_into_events() {
        let e = Events::default();
        assert!(e.record(0, 1_000, 500));
        assert!(!e.record(0, 1_400, 500), "within the window");
        assert!(e.record(1, 1_400, 500), "another key");
        assert!(e.record(0, 1_600, 500), "past the window");
    }
}
