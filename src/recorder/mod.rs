//! The recorder: every op's outcome flows here once, as a `Sample`, and is
//! counted into µs HdrHistograms per op × phase and per op × second, with
//! errors by class. Workload counters (hits, fallbacks, …) arrive with the
//! samples of the op that caused them, so an op is recorded under one lock.
//!
//! Times are µs since the start of load (`t0`). A sample belongs to the phase
//! in force at its *intended* start, and its latency is measured from that
//! intended start, so a stalled Redis shows up as latency, not as missing
//! requests (no coordinated omission).

mod hist;
mod merge;

use crate::vocab::outcome::{is_redis_op, Counter, ErrorClass, Outcome, Sample, Trace, CALLER_OP};
pub use hist::Hist;
use std::collections::BTreeMap;
use tokio::time::Instant;

/// Counts of one op in one phase or second.
#[derive(Debug, Clone)]
pub struct OpStats {
    pub hist: Hist,
    pub count: u64,
    pub errors: u64,
    pub by_class: BTreeMap<ErrorClass, u64>,
    pub first_error_us: Option<u64>,
    pub last_error_us: Option<u64>,
}

impl OpStats {
    fn new(sigfig: u8) -> Self {
        OpStats {
            hist: Hist::new(sigfig),
            count: 0,
            errors: 0,
            by_class: BTreeMap::new(),
            first_error_us: None,
            last_error_us: None,
        }
    }

    fn add(&mut self, s: &Sample) {
        self.hist.record(s.latency_us());
        self.count += 1;
        if let Outcome::Err(class) = s.outcome {
            self.errors += 1;
            *self.by_class.entry(class).or_default() += 1;
            if let Some(family) = class.family() {
                *self.by_class.entry(family).or_default() += 1;
            }
            self.first_error_us.get_or_insert(s.intended_us);
            self.last_error_us = Some(s.intended_us);
        }
    }
}

/// Everything recorded for one phase.
#[derive(Debug, Clone)]
pub struct PhaseStats {
    pub name: String,
    pub start_us: u64,
    pub end_us: Option<u64>,
    pub ops: BTreeMap<&'static str, OpStats>,
    pub counters: BTreeMap<Counter, u64>,
    /// The most each gauge read in this phase.
    pub gauges: BTreeMap<&'static str, u64>,
    /// End of the first successful Redis command that started in this phase.
    pub first_redis_ok_us: Option<u64>,
}

impl PhaseStats {
    fn new(name: &str, start_us: u64) -> Self {
        PhaseStats {
            name: name.to_string(),
            start_us,
            end_us: None,
            ops: BTreeMap::new(),
            counters: BTreeMap::new(),
            gauges: BTreeMap::new(),
            first_redis_ok_us: None,
        }
    }

    pub fn counter(&self, c: Counter) -> u64 {
        self.counters.get(&c).copied().unwrap_or(0)
    }

    /// The most gauge `g` read in this phase; 0 if it never did.
    pub fn gauge(&self, g: &str) -> u64 {
        self.gauges.get(g).copied().unwrap_or(0)
    }

    /// Seconds the phase lasted.
    pub fn secs(&self) -> f64 {
        (self
            .end_us
            .unwrap_or(self.start_us)
            .saturating_sub(self.start_us)) as f64
            / 1e6
    }

    /// The intended starts `[from, to)` (µs) of the ops in this phase: all
    /// of them for `run`.
    pub fn window_us(&self) -> (u64, u64) {
        if self.name == "run" {
            (0, u64::MAX)
        } else {
            (self.start_us, self.end_us.unwrap_or(u64::MAX))
        }
    }
}

/// Everything recorded for one second of the run.
#[derive(Debug, Clone, Default)]
pub struct SecondStats {
    pub ops: BTreeMap<&'static str, OpStats>,
    pub counters: BTreeMap<Counter, u64>,
    pub gauges: BTreeMap<&'static str, u64>,
}

impl SecondStats {
    pub fn counter(&self, c: Counter) -> u64 {
        self.counters.get(&c).copied().unwrap_or(0)
    }

    pub fn gauge(&self, g: &str) -> u64 {
        self.gauges.get(g).copied().unwrap_or(0)
    }
}

/// Counts `s` under its op and, for a caller op, under `caller` too.
fn add_sample(ops: &mut BTreeMap<&'static str, OpStats>, s: &Sample, is_caller: bool, sigfig: u8) {
    ops.entry(s.op)
        .or_insert_with(|| OpStats::new(sigfig))
        .add(s);
    if is_caller {
        ops.entry(CALLER_OP)
            .or_insert_with(|| OpStats::new(sigfig))
            .add(s);
    }
}

/// Aggregates samples; see the module docs.
#[derive(Clone)]
pub struct Recorder {
    t0: Instant,
    /// `run` first, then baseline and each fault/recovery phase in order.
    phases: Vec<PhaseStats>,
    /// `stage:<name>` windows, fixed in advance, beside the phases.
    stages: Vec<PhaseStats>,
    seconds: Vec<SecondStats>,
    /// Caller ops merged, per phase, under the name `caller`.
    caller_ops: &'static [&'static str],
    /// Unavailability windows (µs): from the start of a failed Redis command
    /// to the end of the first successful one that started after it.
    outages: Vec<(u64, u64)>,
    open_outage: Option<u64>,
    /// The seconds before this one have their histograms packed.
    packed_below: usize,
}

/// How many seconds behind the newest one a second's histograms are
/// packed: well past any op's time limit, so packing is final in practice.
const PACK_AFTER_S: usize = 30;

const PHASE_SIGFIG: u8 = 3;
const SECOND_SIGFIG: u8 = 2;

impl Recorder {
    /// The caller-visible ops, as the workload named them.
    pub fn caller_ops(&self) -> &'static [&'static str] {
        self.caller_ops
    }

    pub fn new(t0: Instant, caller_ops: &'static [&'static str]) -> Self {
        Recorder {
            t0,
            phases: vec![PhaseStats::new("run", 0), PhaseStats::new("baseline", 0)],
            stages: Vec::new(),
            seconds: Vec::new(),
            caller_ops,
            outages: Vec::new(),
            open_outage: None,
            packed_below: 0,
        }
    }

    /// Records the load's stages too, each under its `stage:<name>` phase
    /// over its window `[start, end)` (µs), whatever faults do meanwhile.
    pub fn with_stages(mut self, stages: &[(String, u64, u64)]) -> Self {
        self.stages = stages
            .iter()
            .map(|(name, start, end)| {
                let mut p = PhaseStats::new(&format!("stage:{name}"), *start);
                p.end_us = Some(*end);
                p
            })
            .collect();
        self
    }

    /// One more stage, `[start, end)` µs, from now on (a capacity step).
    pub fn add_stage(&mut self, name: &str, start_us: u64, end_us: u64) {
        let mut p = PhaseStats::new(&format!("stage:{name}"), start_us);
        p.end_us = Some(end_us);
        self.stages.push(p);
    }

    /// The stage phases, in order.
    pub fn stages(&self) -> &[PhaseStats] {
        &self.stages
    }

    /// The stage in force at `t_us`, if any.
    pub fn stage_at(&self, t_us: u64) -> Option<&str> {
        self.stage_index(t_us)
            .map(|i| self.stages[i].name.trim_start_matches("stage:"))
    }

    fn stage_index(&self, t_us: u64) -> Option<usize> {
        self.stages
            .iter()
            .position(|p| p.start_us <= t_us && p.end_us.is_some_and(|e| t_us < e))
    }

    /// The closed unavailability windows, in order (µs since t0).
    pub fn outages(&self) -> &[(u64, u64)] {
        &self.outages
    }

    pub fn t0(&self) -> Instant {
        self.t0
    }

    /// µs since t0.
    pub fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    /// Starts a new phase at `at_us` (ending the current one).
    pub fn begin_phase(&mut self, name: &str, at_us: u64) {
        if let Some(last) = self.phases.last_mut() {
            last.end_us = Some(at_us);
        }
        self.phases.push(PhaseStats::new(name, at_us));
    }

    /// Closes the run at `at_us`.
    pub fn finish(&mut self, at_us: u64) {
        for p in [0, self.phases.len() - 1] {
            self.phases[p].end_us.get_or_insert(at_us);
        }
    }

    fn phase_index(&self, t_us: u64) -> usize {
        (1..self.phases.len())
            .rev()
            .find(|&i| self.phases[i].start_us <= t_us)
            .unwrap_or(1)
    }

    /// Records what one op produced.
    pub fn record(&mut self, trace: &Trace) {
        let Some(first) = trace.samples.first() else {
            return;
        };
        let when = first.intended_us;
        let phase = self.phase_index(when);
        let second = self.second(when);
        for s in &trace.samples {
            if is_redis_op(s.op) {
                match (s.outcome, self.open_outage) {
                    (Outcome::Err(_), None) => self.open_outage = Some(s.start_us),
                    (Outcome::Ok, Some(from)) if s.start_us >= from => {
                        self.outages.push((from, s.end_us));
                        self.open_outage = None;
                    }
                    _ => {}
                }
            }
            let p = self.phase_index(s.intended_us);
            let is_caller = self.caller_ops.contains(&s.op);
            if let Some(st) = self.stage_index(s.intended_us) {
                add_sample(&mut self.stages[st].ops, s, is_caller, PHASE_SIGFIG);
            }
            for idx in [0, p] {
                let ph = &mut self.phases[idx];
                add_sample(&mut ph.ops, s, is_caller, PHASE_SIGFIG);
                if idx != 0
                    && is_redis_op(s.op)
                    && s.outcome == Outcome::Ok
                    && s.start_us >= ph.start_us
                {
                    ph.first_redis_ok_us.get_or_insert(s.end_us);
                }
            }
            let sec = self.second(s.intended_us);
            add_sample(&mut self.seconds[sec].ops, s, is_caller, SECOND_SIGFIG);
        }
        let stage = self.stage_index(when);
        for &c in &trace.counters {
            *self.phases[0].counters.entry(c).or_default() += 1;
            *self.phases[phase].counters.entry(c).or_default() += 1;
            *self.seconds[second].counters.entry(c).or_default() += 1;
            if let Some(st) = stage {
                *self.stages[st].counters.entry(c).or_default() += 1;
            }
        }
    }

    /// Counts `n` events of `c` that happened at `t_us`, under the phase
    /// and the second they happened in (not an op's intended start: the
    /// load's offered, started and completed counts are filed as they
    /// happen, so a stall shows in the second it lasts).
    pub fn count_at(&mut self, c: Counter, t_us: u64, n: u64) {
        let phase = self.phase_index(t_us);
        let second = self.second(t_us);
        for p in [0, phase] {
            *self.phases[p].counters.entry(c).or_default() += n;
        }
        if let Some(st) = self.stage_index(t_us) {
            *self.stages[st].counters.entry(c).or_default() += n;
        }
        *self.seconds[second].counters.entry(c).or_default() += n;
    }

    /// A reading `v` of gauge `g` at `t_us`: kept if it is the most of its
    /// phase or second.
    pub fn gauge_at(&mut self, g: &'static str, t_us: u64, v: u64) {
        let phase = self.phase_index(t_us);
        let second = self.second(t_us);
        for p in [0, phase] {
            let e = self.phases[p].gauges.entry(g).or_default();
            *e = (*e).max(v);
        }
        if let Some(st) = self.stage_index(t_us) {
            let e = self.stages[st].gauges.entry(g).or_default();
            *e = (*e).max(v);
        }
        let e = self.seconds[second].gauges.entry(g).or_default();
        *e = (*e).max(v);
    }

    /// The index of the second `t_us` falls in, made if need be. A new
    /// second packs the histograms of those `PACK_AFTER_S` behind it: an op
    /// is filed under its intended start, so a late one can still land in
    /// a packed second (it is unpacked for it).
    fn second(&mut self, t_us: u64) -> usize {
        let second = (t_us / 1_000_000) as usize;
        if self.seconds.len() <= second {
            self.seconds.resize_with(second + 1, SecondStats::default);
            let upto = second.saturating_sub(PACK_AFTER_S);
            for sec in &mut self.seconds[self.packed_below.min(upto)..upto] {
                sec.ops.values_mut().for_each(|o| o.hist.pack());
            }
            self.packed_below = self.packed_below.max(upto);
            // Phases and stages that ended as long ago are packed too (a
            // fault's phases hold sigfig-3 histograms, ~100 kB each).
            let before_us = upto as u64 * 1_000_000;
            let ended = |p: &&mut PhaseStats| p.end_us.is_some_and(|e| e < before_us);
            for p in self
                .phases
                .iter_mut()
                .chain(self.stages.iter_mut())
                .filter(ended)
            {
                p.ops.values_mut().for_each(|o| o.hist.pack());
            }
        }
        second
    }

    pub fn phases(&self) -> &[PhaseStats] {
        &self.phases
    }

    pub fn seconds(&self) -> &[SecondStats] {
        &self.seconds
    }

    /// The name of the phase in force at `t_us`.
    pub fn phase_at(&self, t_us: u64) -> &str {
        &self.phases[self.phase_index(t_us)].name
    }

    /// The name of the phase in force now.
    pub fn current_phase(&self) -> &str {
        &self.phases.last().expect("at least run and baseline").name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::Histogram;

    const FALLBACKS: Counter = Counter("fallbacks");

    fn sample(op: &'static str, intended: u64, end: u64, outcome: Outcome) -> Sample {
        Sample {
            op,
            intended_us: intended,
            start_us: intended,
            end_us: end,
            outcome,
        }
    }

    #[test]
    fn old_seconds_are_packed_and_read_back_the_same() {
        let mut rec = Recorder::new(Instant::now(), &["read"]);
        let mut t = Trace::default();
        let mut want = Vec::new();
        for sec in 0..100u64 {
            let mut h = Histogram::<u64>::new(SECOND_SIGFIG).unwrap();
            for i in 0..200u64 {
                let at = sec * 1_000_000 + i * 5_000;
                let lat = 100 + (i * 37 + sec * 11) % 5_000;
                t.clear();
                t.samples.push(sample("read", at, at + lat, Outcome::Ok));
                rec.record(&t);
                h.record(lat).unwrap();
            }
            want.push(h);
        }
        let packed = |s: &SecondStats| matches!(s.ops["read"].hist, Hist::Packed(_));
        // The newest second is 99: those more than PACK_AFTER_S behind it.
        assert!(rec.seconds()[..99 - PACK_AFTER_S].iter().all(packed));
        assert!(!rec.seconds()[99 - PACK_AFTER_S..].iter().any(packed));
        for (sec, h) in rec.seconds().iter().zip(&want) {
            let got = &sec.ops["read"].hist;
            for q in [0.5, 0.9, 0.99, 1.0] {
                assert_eq!(got.value_at_quantile(q), h.value_at_quantile(q));
            }
            assert_eq!(got.histogram().len(), 200);
            assert_eq!(sec.ops["read"].count, 200);
        }
        // The run is one phase, never packed; a phase that ended is.
        assert!(matches!(rec.phases()[0].ops["read"].hist, Hist::Live(_)));
        // A late op filed under a packed second unpacks it and counts.
        t.clear();
        t.samples
            .push(sample("read", 2_000_000, 9_000_000, Outcome::Ok));
        rec.record(&t);
        assert_eq!(rec.seconds()[2].ops["read"].hist.histogram().len(), 201);
        let late = rec.seconds()[2].ops["read"].hist.histogram().into_owned();
        assert_eq!(late.max(), late.highest_equivalent(7_000_000));
    }

    #[test]
    fn a_phase_long_over_is_packed_and_its_figures_kept() {
        let mut rec = Recorder::new(Instant::now(), &["read"]);
        let mut t = Trace::default();
        let mut add = |rec: &mut Recorder, at: u64, lat: u64| {
            t.clear();
            t.samples.push(sample("read", at, at + lat, Outcome::Ok));
            rec.record(&t);
        };
        for i in 0..1000 {
            add(&mut rec, i * 1_000, 100 + i);
        }
        rec.begin_phase("fault:x", 1_000_000);
        let baseline = rec.phases()[1].ops["read"].hist.histogram().into_owned();
        for sec in 1..(PACK_AFTER_S as u64 + 3) {
            add(&mut rec, sec * 1_000_000, 50);
        }
        let packed = &rec.phases()[1].ops["read"].hist;
        assert!(
            matches!(packed, Hist::Packed(_)),
            "baseline ended > 30 s ago"
        );
        assert_eq!(packed.histogram().into_owned(), baseline);
        assert!(
            matches!(rec.phases()[2].ops["read"].hist, Hist::Live(_)),
            "the open phase"
        );
    }

    #[test]
    fn samples_land_in_the_phase_of_their_intended_start() {
        let mut rec = Recorder::new(Instant::now(), &["read"]);
        let mut t = Trace::default();
        t.samples.push(sample("read", 100, 200, Outcome::Ok));
        rec.record(&t);
        rec.begin_phase("fault:x", 1_000);
        t.clear();
        // Started before the fault, recorded after it began: still baseline.
        t.samples.push(sample("read", 900, 1_500, Outcome::Ok));
        t.samples.push(sample(
            "redis_get",
            1_100,
            1_300,
            Outcome::Err(ErrorClass::Timeout),
        ));
        t.counters.push(FALLBACKS);
        rec.record(&t);
        rec.finish(2_000);
        let ph = rec.phases();
        assert_eq!(ph[0].ops["read"].count, 2);
        assert_eq!(ph[1].ops["read"].count, 2);
        assert_eq!(ph[2].ops["redis_get"].errors, 1);
        assert_eq!(ph[2].ops["redis_get"].by_class[&ErrorClass::Timeout], 1);
        assert_eq!(
            ph[1].counter(FALLBACKS),
            1,
            "counters follow the op's first sample"
        );
        assert_eq!(ph[1].ops["caller"].count, 2);
        assert_eq!(ph[2].end_us, Some(2_000));
    }

    #[test]
    fn latency_counts_from_the_intended_start() {
        let s = Sample {
            op: "read",
            intended_us: 0,
            start_us: 40_000,
            end_us: 40_500,
            outcome: Outcome::Ok,
        };
        assert_eq!(s.latency_us(), 40_500);
    }
}
