//! Adding one recorder's figures to another's: histograms are added (never
//! percentiles), counts summed, gauges kept at their most, first and last
//! times at their extremes. Two recorders that filed their samples under
//! the same phases and stages give, merged, exactly what one recorder fed
//! every sample gives: the building block of load spread over processes.

use super::{Hist, OpStats, PhaseStats, Recorder, SecondStats};
use std::collections::BTreeMap;

/// Recorders that did not share one timeline cannot be merged.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MergeError {
    #[error("phase {index} is `{theirs}` in the recorder merged in and `{ours}` here")]
    Phase {
        index: usize,
        ours: String,
        theirs: String,
    },
    #[error("the recorder merged in has {theirs} phases, this one {ours}")]
    Phases { ours: usize, theirs: usize },
}

impl Hist {
    /// Adds every count of `other`.
    fn add(&mut self, other: &Hist) {
        let mut mine = self.histogram().into_owned();
        mine.auto(true);
        mine.add(&*other.histogram())
            .expect("an auto-resizing histogram takes any other");
        *self = Hist::Live(Box::new(mine));
    }
}

impl OpStats {
    fn absorb(&mut self, o: &OpStats) {
        self.hist.add(&o.hist);
        self.count += o.count;
        self.errors += o.errors;
        for (class, n) in &o.by_class {
            *self.by_class.entry(*class).or_default() += n;
        }
        self.first_error_us = min_some(self.first_error_us, o.first_error_us);
        self.last_error_us = self.last_error_us.max(o.last_error_us);
    }
}

/// The earlier of two optional times.
fn min_some(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn absorb_ops(
    ours: &mut BTreeMap<&'static str, OpStats>,
    theirs: &BTreeMap<&'static str, OpStats>,
) {
    for (op, o) in theirs {
        match ours.get_mut(op) {
            Some(mine) => mine.absorb(o),
            None => {
                ours.insert(op, o.clone());
            }
        }
    }
}

fn absorb_counts<K: Ord + Copy>(
    ours: &mut BTreeMap<K, u64>,
    theirs: &BTreeMap<K, u64>,
    most: bool,
) {
    for (k, v) in theirs {
        let e = ours.entry(*k).or_default();
        *e = if most { (*e).max(*v) } else { *e + v };
    }
}

impl PhaseStats {
    fn absorb(&mut self, o: &PhaseStats) {
        absorb_ops(&mut self.ops, &o.ops);
        absorb_counts(&mut self.counters, &o.counters, false);
        absorb_counts(&mut self.gauges, &o.gauges, true);
        self.first_redis_ok_us = min_some(self.first_redis_ok_us, o.first_redis_ok_us);
    }
}

impl SecondStats {
    fn absorb(&mut self, o: &SecondStats) {
        absorb_ops(&mut self.ops, &o.ops);
        absorb_counts(&mut self.counters, &o.counters, false);
        absorb_counts(&mut self.gauges, &o.gauges, true);
    }
}

/// The union of two sorted lists of windows, overlapping ones joined: the
/// times some client could not reach Redis.
fn union(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = a.iter().chain(b).copied().collect();
    all.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(all.len());
    for (from, to) in all {
        match out.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => out.push((from, to)),
        }
    }
    out
}

impl Recorder {
    /// Adds `other`'s figures to this recorder's. Both must hold the same
    /// phases, by name and in order (one timeline); stages are matched by
    /// name, and one only `other` has is taken as it is.
    pub fn absorb(&mut self, other: &Recorder) -> Result<(), MergeError> {
        if self.phases.len() != other.phases.len() {
            return Err(MergeError::Phases {
                ours: self.phases.len(),
                theirs: other.phases.len(),
            });
        }
        for (index, (mine, theirs)) in self.phases.iter().zip(&other.phases).enumerate() {
            if mine.name != theirs.name {
                return Err(MergeError::Phase {
                    index,
                    ours: mine.name.clone(),
                    theirs: theirs.name.clone(),
                });
            }
        }
        for (mine, theirs) in self.phases.iter_mut().zip(&other.phases) {
            mine.absorb(theirs);
        }
        for theirs in &other.stages {
            match self.stages.iter_mut().find(|s| s.name == theirs.name) {
                Some(mine) => mine.absorb(theirs),
                None => self.stages.push(theirs.clone()),
            }
        }
        if self.seconds.len() < other.seconds.len() {
            self.seconds
                .resize_with(other.seconds.len(), SecondStats::default);
        }
        for (mine, theirs) in self.seconds.iter_mut().zip(&other.seconds) {
            mine.absorb(theirs);
        }
        self.outages = union(&self.outages, &other.outages);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::outcome::{Counter, ErrorClass, Outcome, Sample, Trace};
    use tokio::time::Instant;

    const HITS: Counter = Counter("hits");

    /// Three recorders with one timeline, each given every third op, add
    /// up to exactly the recorder given all of them: counts, errors by
    /// class, counters and every percentile of every phase and second.
    #[test]
    fn merged_recorders_equal_one_that_saw_every_sample() {
        let t0 = Instant::now();
        let timeline = |r: &mut Recorder| {
            r.begin_phase("fault:slow", 2_000_000);
            r.begin_phase("recovery:slow", 4_000_000);
        };
        let mut whole = Recorder::new(t0, &["read"]);
        let mut parts: Vec<Recorder> = (0..3).map(|_| Recorder::new(t0, &["read"])).collect();
        timeline(&mut whole);
        parts.iter_mut().for_each(timeline);
        let mut t = Trace::default();
        for i in 0..30_000u64 {
            let at = i * 200;
            let slow = (2_000_000..4_000_000).contains(&at);
            let lat = 50 + (i * 7919) % 3_000 + if slow { 40_000 } else { 0 };
            let outcome = if i % 97 == 0 {
                Outcome::Err(ErrorClass::Timeout)
            } else {
                Outcome::Ok
            };
            t.clear();
            t.samples.push(Sample {
                op: "read",
                intended_us: at,
                start_us: at,
                end_us: at + lat,
                outcome,
            });
            if i % 3 == 0 {
                t.counters.push(HITS);
            }
            whole.record(&t);
            parts[(i % 3) as usize].record(&t);
        }
        whole.finish(6_000_000);
        parts.iter_mut().for_each(|p| p.finish(6_000_000));
        let mut merged = parts[0].clone();
        for p in &parts[1..] {
            merged.absorb(p).unwrap();
        }
        let same = |a: &OpStats, b: &OpStats| {
            assert_eq!((a.count, a.errors), (b.count, b.errors));
            assert_eq!(a.by_class, b.by_class);
            assert_eq!(a.first_error_us, b.first_error_us);
            assert_eq!(a.last_error_us, b.last_error_us);
            for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
                assert_eq!(
                    a.hist.value_at_quantile(q),
                    b.hist.value_at_quantile(q),
                    "q {q}"
                );
            }
        };
        for (m, w) in merged.phases().iter().zip(whole.phases()) {
            assert_eq!(m.name, w.name);
            for op in ["read", "caller"] {
                same(&m.ops[op], &w.ops[op]);
            }
            assert_eq!(m.counter(HITS), w.counter(HITS));
        }
        assert_eq!(merged.seconds().len(), whole.seconds().len());
        for (m, w) in merged.seconds().iter().zip(whole.seconds()) {
            same(&m.ops["read"], &w.ops["read"]);
        }
        assert!(merged.phases()[2].ops["read"].hist.value_at_quantile(0.5) > 40_000);
    }

    #[test]
    fn recorders_of_other_timelines_are_refused() {
        let t0 = Instant::now();
        let mut a = Recorder::new(t0, &["read"]);
        let mut b = Recorder::new(t0, &["read"]);
        a.begin_phase("fault:x", 1_000);
        b.begin_phase("fault:y", 1_000);
        assert!(matches!(
            a.absorb(&b),
            Err(MergeError::Phase { index: 2, .. })
        ));
        b.begin_phase("recovery:y", 2_000);
        assert_eq!(a.absorb(&b), Err(MergeError::Phases { ours: 3, theirs: 4 }));
    }

    #[test]
    fn outage_windows_are_joined() {
        assert_eq!(
            union(&[(0, 10), (50, 60)], &[(5, 20), (70, 80)]),
            vec![(0, 20), (50, 60), (70, 80)]
        );
    }
}
