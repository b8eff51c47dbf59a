//! The rate limiter's oracle: every decision of a phase replayed, in
//! time order, through an exact in-memory sliding log, and counted per
//! client and aligned window (see the README's rate-limit section).

use std::collections::{BTreeMap, HashMap, VecDeque};

/// One decision, as the oracle needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Decision {
    pub(super) client: u32,
    pub(super) at_us: u64,
    pub(super) admitted: bool,
    pub(super) degraded: bool,
}

/// The most clients a run may have: a packed decision keeps 22 bits of
/// client.
pub(super) const MAX_CLIENTS: u64 = 1 << CLIENT_BITS;
const CLIENT_BITS: u32 = 22;

/// A decision in 8 bytes, as the workload keeps it for the whole run:
/// time (40 bits of µs, 12 days), client (22 bits), admitted, degraded.
#[derive(Debug, Clone, Copy)]
pub(super) struct Packed(pub(super) u64);

impl Packed {
    pub(super) fn new(d: Decision) -> Packed {
        let time = d.at_us.min((1 << 40) - 1) << (CLIENT_BITS + 2);
        let client = u64::from(d.client).min(MAX_CLIENTS - 1) << 2;
        Packed(time | client | u64::from(d.admitted) << 1 | u64::from(d.degraded))
    }

    pub(super) fn at_us(self) -> u64 {
        self.0 >> (CLIENT_BITS + 2)
    }

    pub(super) fn decision(self) -> Decision {
        Decision {
            client: ((self.0 >> 2) & (MAX_CLIENTS - 1)) as u32,
            at_us: self.at_us(),
            admitted: self.0 & 2 != 0,
            degraded: self.0 & 1 != 0,
        }
    }
}

/// The oracle over one phase's decisions, fed in time order (`add`),
/// in memory bounded by the clients, not the decisions: per client, the
/// aligned window it is in and the admissions of the last `window`.
/// `bound`: what the algorithm may admit per client and aligned window by
/// its documented error (`excess_admitted` counts admissions beyond it that
/// were not the error policy's).
pub(super) struct Judge {
    limit: u64,
    window_us: u64,
    bound: u64,
    /// Per client: its current aligned window and that window's requests,
    /// admissions, and admissions the algorithm decided (not the policy).
    open: HashMap<u32, (u64, u64, u64, u64)>,
    over: u64,
    under: u64,
    allowed_total: u64,
    excess: u64,
    decisions: u64,
    admitted_total: u64,
    degraded: [u64; 2],
    /// The largest number admitted in any window-long span, per client.
    logs: HashMap<u32, VecDeque<u64>>,
    max_in_window: usize,
    /// The exact reference: a sliding log in memory over the same timeline.
    reference: HashMap<u32, VecDeque<u64>>,
    reference_admitted: u64,
}

impl Judge {
    pub(super) fn new(limit: u64, window_us: u64, bound: u64) -> Judge {
        Judge {
            limit,
            window_us,
            bound,
            open: HashMap::new(),
            over: 0,
            under: 0,
            allowed_total: 0,
            excess: 0,
            decisions: 0,
            admitted_total: 0,
            degraded: [0, 0],
            logs: HashMap::new(),
            max_in_window: 0,
            reference: HashMap::new(),
            reference_admitted: 0,
        }
    }

    /// One aligned window of one client closed: its counts are final.
    fn close(&mut self, (_, requests, admitted, decided): (u64, u64, u64, u64)) {
        let allowed = requests.min(self.limit);
        self.allowed_total += allowed;
        self.over += admitted.saturating_sub(self.limit);
        self.under += allowed.saturating_sub(admitted);
        self.excess += decided.saturating_sub(self.bound);
    }

    /// The next decision, no earlier than the one before.
    pub(super) fn add(&mut self, d: Decision) {
        self.decisions += 1;
        self.admitted_total += u64::from(d.admitted);
        if d.degraded {
            self.degraded[usize::from(d.admitted)] += 1;
        }
        let w = d.at_us / self.window_us;
        let e = *self.open.entry(d.client).or_insert((w, 0, 0, 0));
        let mut e = if e.0 == w {
            e
        } else {
            self.close(e);
            (w, 0, 0, 0)
        };
        e.1 += 1;
        e.2 += u64::from(d.admitted);
        e.3 += u64::from(d.admitted && !d.degraded);
        self.open.insert(d.client, e);
        let window_us = self.window_us;
        if d.admitted {
            let log = self.logs.entry(d.client).or_default();
            log.push_back(d.at_us);
            while log.front().is_some_and(|&t| t + window_us <= d.at_us) {
                log.pop_front();
            }
            self.max_in_window = self.max_in_window.max(log.len());
        }
        let r = self.reference.entry(d.client).or_default();
        while r.front().is_some_and(|&t| t + window_us <= d.at_us) {
            r.pop_front();
        }
        if (r.len() as u64) < self.limit {
            r.push_back(d.at_us);
            self.reference_admitted += 1;
        }
    }

    /// The phase's figures (none for a phase without decisions).
    pub(super) fn finish(mut self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        if self.decisions == 0 {
            return m;
        }
        for e in std::mem::take(&mut self.open).into_values() {
            self.close(e);
        }
        let (over, under, allowed_total) = (self.over, self.under, self.allowed_total);
        m.insert("admitted".into(), self.admitted_total as f64);
        m.insert(
            "denied".into(),
            (self.decisions - self.admitted_total) as f64,
        );
        m.insert("degraded_admitted".into(), self.degraded[1] as f64);
        m.insert("degraded_denied".into(), self.degraded[0] as f64);
        m.insert("over_admitted".into(), over as f64);
        m.insert("excess_admitted".into(), self.excess as f64);
        m.insert("under_admitted".into(), under as f64);
        if allowed_total > 0 {
            m.insert("over_admission".into(), over as f64 / allowed_total as f64);
            m.insert(
                "under_admission".into(),
                under as f64 / allowed_total as f64,
            );
        }
        let max = self.max_in_window as f64;
        m.insert("max_admitted_per_window".into(), max);
        m.insert("burst_ratio".into(), max / self.limit as f64);
        let reference = self.reference_admitted as f64;
        m.insert("reference_admitted".into(), reference);
        if self.reference_admitted > 0 {
            m.insert(
                "reference_error".into(),
                (self.admitted_total as f64 - reference).abs() / reference,
            );
        }
        m
    }
}

/// The oracle over decisions already in time order (tests).
#[cfg(test)]
fn judge(decisions: &[Decision], limit: u64, window_us: u64, bound: u64) -> BTreeMap<String, f64> {
    let mut j = Judge::new(limit, window_us, bound);
    decisions.iter().for_each(|d| j.add(*d));
    j.finish()
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
    fn a_packed_decision_reads_back_the_same() {
        for (client, at_us, admitted, degraded) in [
            (0, 0, false, false),
            (MAX_CLIENTS as u32 - 1, (1 << 40) - 1, true, true),
            (12_345, 3_600_000_000, true, false),
            (7, 42, false, true),
        ] {
            let d = Decision {
                client,
                at_us,
                admitted,
                degraded,
            };
            assert_eq!(Packed::new(d).decision(), d);
        }
        assert_eq!(std::mem::size_of::<Packed>(), 8);
    }

    #[test]
    fn a_boundary_burst_is_twice_the_limit_in_one_sliding_window() {
        // Limit 2 per 1 s: 2 admitted at 0.9 s and 2 more at 1.1 s.
        let ds = [d(900, true), d(950, true), d(1100, true), d(1150, true)];
        let m = judge(&ds, 2, 1_000_000, 2);
        assert_eq!(m["over_admitted"], 0.0, "each aligned window holds 2");
        assert_eq!(m["max_admitted_per_window"], 4.0, "0.9-1.15 s holds 4");
        assert_eq!(m["burst_ratio"], 2.0);
        // The exact sliding log admits only the first two.
        assert_eq!(m["reference_admitted"], 2.0);
    }

    #[test]
    fn over_and_under_admission_are_counted_per_window() {
        let ds = [d(100, true), d(200, true), d(300, true), d(1100, false)];
        let m = judge(&ds, 2, 1_000_000, 2);
        assert_eq!(m["over_admitted"], 1.0);
        assert_eq!(m["under_admitted"], 1.0, "1.1 s could have been admitted");
        assert_eq!(
            m["excess_admitted"], 1.0,
            "beyond an exact algorithm's bound"
        );
        let m = judge(&ds, 2, 1_000_000, 4);
        assert_eq!(m["excess_admitted"], 0.0, "within a bucket's documented 2x");
    }

    #[test]
    fn the_error_policys_admissions_are_not_excess() {
        let mut ds = [d(100, true), d(200, true), d(300, true)];
        ds[2].degraded = true;
        let m = judge(&ds, 2, 1_000_000, 2);
        assert_eq!(m["over_admitted"], 1.0);
        assert_eq!(m["excess_admitted"], 0.0);
    }
}
