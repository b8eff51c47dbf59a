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
pub(super) struct Packed(u64);

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

/// Per client and aligned window: (over-admitted, under-admitted, allowed,
/// the algorithm's own admissions beyond `bound`), summed.
fn per_window(
    decisions: &[Decision],
    limit: u64,
    window_us: u64,
    bound: u64,
) -> (u64, u64, u64, u64) {
    // Requests, admissions, and admissions the algorithm decided (not the
    // error policy).
    let mut per: HashMap<(u32, u64), (u64, u64, u64)> = HashMap::new();
    for d in decisions {
        let e = per.entry((d.client, d.at_us / window_us)).or_default();
        e.0 += 1;
        e.1 += u64::from(d.admitted);
        e.2 += u64::from(d.admitted && !d.degraded);
    }
    let (mut over, mut under, mut allowed_total, mut excess) = (0u64, 0u64, 0u64, 0u64);
    for &(requests, admitted, decided) in per.values() {
        let allowed = requests.min(limit);
        allowed_total += allowed;
        over += admitted.saturating_sub(limit);
        under += allowed.saturating_sub(admitted);
        excess += decided.saturating_sub(bound);
    }
    (over, under, allowed_total, excess)
}

/// The oracle over one phase's decisions (sorted by time); see the module
/// docs. `bound`: what the algorithm may admit per client and aligned
/// window by its documented error (`excess_admitted` counts admissions
/// beyond it that were not the error policy's).
pub(super) fn judge(
    decisions: &[Decision],
    limit: u64,
    window_us: u64,
    bound: u64,
) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    if decisions.is_empty() {
        return m;
    }
    let (over, under, allowed_total, excess) = per_window(decisions, limit, window_us, bound);
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
    m.insert("excess_admitted".into(), excess as f64);
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
