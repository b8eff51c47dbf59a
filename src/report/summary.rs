//! `summary.json`, schema `gameday.summary/1`: the machine-readable result
//! of a run. Field names are a contract with users' scripts; add, never
//! rename.

use crate::fault::FaultRecord;
use crate::ledger::{Losses, LostWrite};
use crate::recorder::{OpStats, PhaseStats, Recorder};
use crate::scenario::plan::RunPlan;
use crate::telemetry::ServerEvent;
use crate::testbed::{Calibration, Testbed};
use crate::vocab::expect::{Expectation, PhaseValues};
use crate::vocab::gate::GateConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SCHEMA: &str = "gameday.summary/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub schema: String,
    pub scenario: String,
    /// The variant this run was, in a scenario with variants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub description: String,
    pub verdict: String,
    /// True when the run was stopped (Ctrl-C, or a stop condition) before
    /// its end.
    pub interrupted: bool,
    /// The stop condition (`abort_if`) that ended the run: verdict
    /// `aborted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<Aborted>,
    pub seed: u64,
    pub run_id: String,
    pub started_at: String,
    pub duration_s: f64,
    pub backend: String,
    pub topology: TopologySummary,
    pub proxy: ProxySummary,
    pub load: LoadSummary,
    pub workload: String,
    pub phases: Vec<PhaseSummary>,
    pub faults: Vec<FaultRecord>,
    /// What the sentinels published during the run (`+switch-master`, ...).
    #[serde(default)]
    pub events: Vec<ServerEvent>,
    /// The acknowledged-write ledger, for workloads that keep one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<LedgerSummary>,
    pub expectations: Vec<ExpectationResult>,
    /// SHA-256 of the scenario without its `[gate]` (and of `--target-env`):
    /// runs with equal hashes ran the same scenario.
    #[serde(default)]
    pub scenario_hash: String,
    /// The commit under test (`GAMEDAY_COMMIT`, or the git HEAD gameday ran in).
    #[serde(default)]
    pub commit: Option<String>,
    /// What it ran on; baselines must match it.
    #[serde(default)]
    pub testbed: Option<Testbed>,
    /// How fast the testbed itself was around this run.
    #[serde(default)]
    pub calibration: Option<Calibration>,
    /// What `gameday compare` judges this run on.
    #[serde(default)]
    pub gate: Option<GateConfig>,
    /// A `[capacity]` search's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<super::capacity::CapacitySummary>,
}

/// What the ledger found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerSummary {
    /// Keys whose last acknowledged write was tracked.
    pub keys: u64,
    /// Acknowledged writes later found missing or older.
    pub lost_writes: u64,
    /// The first of them, one by one.
    pub lost: Vec<LostWrite>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopologySummary {
    pub kind: String,
    /// The image the nodes ran, on the docker backend.
    pub image: Option<String>,
    pub nodes: Vec<NodeSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeSummary {
    pub id: String,
    pub role: String,
    pub addr: String,
    pub proxy: String,
    pub proxy_addr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxySummary {
    /// `embedded` or `external`.
    pub kind: String,
    pub url: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadSummary {
    /// Closed: virtual users. Open: `max_in_flight` (one client each).
    pub users: usize,
    pub rate: Option<f64>,
    pub ramp_s: f64,
    /// `closed` or `open`; runs before the open model were closed.
    #[serde(default = "closed")]
    pub model: String,
    /// Open model only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrivals: Option<String>,
}

fn closed() -> String {
    "closed".into()
}

impl LoadSummary {
    /// The load in words: `16 users, 2000 ops/s target` or `open model:
    /// 500 arrivals/s (poisson), 64 in flight, queue 1000`.
    pub fn describe(&self) -> String {
        let rate = |unit: &str| {
            self.rate.map_or("as fast as possible".to_string(), |r| {
                format!("{r:.0} {unit}")
            })
        };
        match (&self.arrivals, self.max_queue) {
            (Some(a), Some(q)) => format!(
                "open model: {} ({a}), {} in flight, queue {q}",
                rate("arrivals/s"),
                self.users
            ),
            _ => format!("{} users, {}", self.users, rate("ops/s target")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseSummary {
    pub name: String,
    pub start_s: f64,
    pub end_s: f64,
    pub ops: BTreeMap<String, OpSummary>,
    pub metrics: BTreeMap<String, f64>,
}

impl PhaseValues for PhaseSummary {
    fn phase_name(&self) -> &str {
        &self.name
    }

    fn op_metric(&self, op: &str, metric: &str) -> Option<f64> {
        self.ops.get(op).map(|o| o.metric(metric))
    }

    fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.get(key).copied()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpSummary {
    pub count: u64,
    pub errors: u64,
    pub errors_by_class: BTreeMap<String, u64>,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// The mean latency: with a fixed number of slots, capacity is slots /
    /// mean (Little's law), which a heavy tail puts well below slots / p50.
    /// Absent in summaries written before it was added.
    #[serde(default)]
    pub mean_us: f64,
    pub throughput: f64,
    /// Intended start of the first and last failed op, s from start of load.
    pub first_error_s: Option<f64>,
    pub last_error_s: Option<f64>,
}

impl OpSummary {
    pub fn from_stats(s: &OpStats, secs: f64) -> Self {
        let q = |p: f64| {
            if s.count == 0 {
                0
            } else {
                s.hist.value_at_quantile(p)
            }
        };
        OpSummary {
            count: s.count,
            errors: s.errors,
            errors_by_class: s
                .by_class
                .iter()
                .map(|(c, n)| (c.as_str().to_string(), *n))
                .collect(),
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if s.count == 0 { 0 } else { s.hist.max() },
            mean_us: if s.count == 0 { 0.0 } else { s.hist.mean() },
            throughput: if secs > 0.0 {
                s.count as f64 / secs
            } else {
                0.0
            },
            first_error_s: s.first_error_us.map(|u| u as f64 / 1e6),
            last_error_s: s.last_error_us.map(|u| u as f64 / 1e6),
        }
    }

    /// An op metric by its expectation name (`p99`, `error_rate`, …).
    pub fn metric(&self, name: &str) -> f64 {
        match name {
            "count" => self.count as f64,
            "errors" => self.errors as f64,
            "error_rate" => {
                if self.count == 0 {
                    0.0
                } else {
                    self.errors as f64 / self.count as f64
                }
            }
            "p50" => self.p50_us as f64,
            "p90" => self.p90_us as f64,
            "p99" => self.p99_us as f64,
            "p999" => self.p999_us as f64,
            "max" => self.max_us as f64,
            "mean" => self.mean_us,
            "throughput" => self.throughput,
            _ => f64::NAN,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpectationResult {
    pub rule: String,
    /// In the unit the rule was written in; null when the run produced no value.
    pub observed: Option<f64>,
    pub unit: String,
    pub passed: bool,
}

/// The phases in time order (`run` last), with their op and workload metrics.
/// `lost_acked_us`: when each lost write had been acknowledged, for a
/// workload with a ledger; each loss counts in the phase of its ack.
pub fn phases(
    rec: &Recorder,
    faults: &[FaultRecord],
    lost_acked_us: Option<&[u64]>,
    workload_metrics: &dyn Fn(&PhaseStats, &PhaseStats) -> BTreeMap<String, f64>,
) -> Vec<PhaseSummary> {
    let stats = rec.phases();
    let baseline = &stats[1];
    let mut ordered: Vec<&PhaseStats> = stats[1..].iter().collect();
    ordered.extend(rec.stages());
    ordered.push(&stats[0]);
    ordered
        .into_iter()
        .map(|p| {
            let secs = p.secs();
            PhaseSummary {
                name: p.name.clone(),
                start_s: p.start_us as f64 / 1e6,
                end_s: p.end_us.unwrap_or(p.start_us) as f64 / 1e6,
                ops: p
                    .ops
                    .iter()
                    .map(|(op, s)| (op.to_string(), OpSummary::from_stats(s, secs)))
                    .collect(),
                metrics: {
                    let mut m = workload_metrics(p, baseline);
                    m.extend(crate::load::phase_metrics(p));
                    fault_metrics(&mut m, p, rec, faults, baseline);
                    let oom: u64 = p
                        .ops
                        .iter()
                        .filter(|(op, _)| op.starts_with("redis_"))
                        .map(|(_, s)| {
                            s.by_class
                                .get(&crate::vocab::outcome::ErrorClass::Oom)
                                .copied()
                                .unwrap_or(0)
                        })
                        .sum();
                    m.insert("oom_errors".into(), oom as f64);
                    if let Some(lost) = lost_acked_us {
                        let end = p.end_us.unwrap_or(u64::MAX);
                        let n = lost
                            .iter()
                            .filter(|&&at| p.name == "run" || (p.start_us..end).contains(&at))
                            .count();
                        m.insert("lost_writes".into(), n as f64);
                    }
                    m
                },
            }
        })
        .collect()
}

fn load_summary(l: &crate::load::LoadPlan) -> LoadSummary {
    let open = match l.model {
        crate::load::Model::Open(o) => Some(o),
        crate::load::Model::Closed => None,
    };
    LoadSummary {
        users: l.users,
        rate: l.rate,
        ramp_s: l.ramp.as_secs_f64(),
        model: if open.is_some() { "open" } else { "closed" }.into(),
        max_queue: open.map(|o| o.max_queue),
        arrivals: open.map(|o| o.arrivals.as_str().into()),
    }
}

/// What a phase's fault measured, from its record: failover and
/// unavailability times, a cold cache's keys and re-warm, memory
/// pressure's evictions.
fn fault_metrics(
    m: &mut BTreeMap<String, f64>,
    p: &PhaseStats,
    rec: &Recorder,
    faults: &[FaultRecord],
    baseline: &PhaseStats,
) {
    let record = p
        .name
        .strip_prefix("fault:")
        .and_then(|n| faults.iter().find(|f| f.name == n));
    if let Some(ms) = record.and_then(|f| f.failover_time_ms) {
        m.insert("failover_time_ms".into(), ms);
    }
    // The first unavailability window that began while the
    // fault was in force.
    if let Some(f) = record {
        let from = f.applied_at_s.map(|a| (a * 1e6) as u64);
        let to = f.removed_at_s.map_or(u64::MAX, |r| (r * 1e6) as u64);
        if let Some(&(a, b)) =
            from.and_then(|from| rec.outages().iter().find(|(a, _)| (from..=to).contains(a)))
        {
            m.insert("unavailable_ms".into(), (b - a) as f64 / 1e3);
        }
    }
    if let Some(r) = record.filter(|r| !r.forks.is_empty()) {
        let most = r.forks.iter().map(|f| f.fork_usec).max().unwrap_or(0);
        m.insert("fork_time_ms".into(), most as f64 / 1e3);
    }
    if let Some(r) = record.filter(|r| !r.big_keys.is_empty()) {
        let most = |f: fn(&crate::fault::big_key::BigKeyOutcome) -> f64| {
            r.big_keys.iter().map(f).fold(0.0, f64::max)
        };
        m.insert("big_key_read_ms".into(), most(|o| o.read_ms));
        m.insert("big_key_delete_ms".into(), most(|o| o.delete_ms));
    }
    if let Some(r) = record.filter(|r| !r.storms.is_empty()) {
        let sum = |f: fn(&crate::fault::connection_storm::StormOutcome) -> u64| {
            r.storms.iter().map(f).sum::<u64>() as f64
        };
        m.insert("connections_killed".into(), sum(|o| o.killed));
        m.insert("peak_clients".into(), sum(|o| o.peak_clients));
        m.insert("rejected_connections".into(), sum(|o| o.rejected));
    }
    if let Some(o) = record.and_then(|r| r.resync.as_ref()) {
        m.insert("full_syncs".into(), o.full_syncs as f64);
        m.insert("partial_syncs".into(), o.partial_syncs as f64);
        if o.full_syncs > 0 {
            m.insert("fork_time_ms".into(), o.fork_usec as f64 / 1e3);
        }
        if let Some(ms) = o.resync_ms {
            m.insert("resync_time_ms".into(), ms);
        }
    }
    if let Some(r) = record.filter(|r| r.keys_removed.is_some()) {
        m.insert("keys_removed".into(), r.keys_removed.unwrap_or(0) as f64);
        if let Some(ms) = rewarm_ms(rec, r, baseline) {
            m.insert("rewarm_time_ms".into(), ms);
        }
    }
    if let Some(r) = record.filter(|r| !r.memory.is_empty()) {
        let sum = |f: fn(&crate::fault::memory::MemoryOutcome) -> u64| {
            r.memory.iter().map(f).sum::<u64>() as f64
        };
        m.insert("evicted_keys".into(), sum(|o| o.evicted_keys));
        m.insert("evicted_workload".into(), sum(|o| o.evicted_workload));
        m.insert("evicted_ballast".into(), sum(|o| o.evicted_ballast));
        m.insert("ballast_refused".into(), sum(|o| o.ballast_refused));
    }
}

/// A cold cache's time to re-warm: from the fault's start to the end of
/// the first second after it whose hit ratio is back to 90 % of the
/// baseline's (so to the second; a second the fault began in its first
/// tenth counts as after it); none if that never happened, or there was
/// no baseline hit ratio to go back to.
fn rewarm_ms(rec: &Recorder, r: &FaultRecord, baseline: &PhaseStats) -> Option<f64> {
    use crate::workload::cache_aside::{HITS, MISSES};
    let ratio = |h: u64, m: u64| (h + m > 0).then(|| h as f64 / (h + m) as f64);
    let target = 0.9 * ratio(baseline.counter(HITS), baseline.counter(MISSES))?;
    let applied = r.applied_at_s?;
    let first = if applied.fract() < 0.1 {
        applied.floor()
    } else {
        applied.ceil()
    } as usize;
    rec.seconds()
        .iter()
        .enumerate()
        .skip(first)
        .find(|(_, s)| ratio(s.counter(HITS), s.counter(MISSES)).is_some_and(|x| x >= target))
        .map(|(t, _)| ((t + 1) as f64 - applied) * 1e3)
}

/// What a finished run hands the report, besides its plan and recorder.
pub struct RunFacts {
    /// The stop condition that ended the run, if one did.
    pub aborted: Option<Aborted>,
    pub run_id: String,
    pub seed: u64,
    pub started: std::time::SystemTime,
    pub end_us: u64,
    pub interrupted: bool,
    pub backend: String,
    pub topology: TopologySummary,
    pub proxy: ProxySummary,
    pub faults: Vec<FaultRecord>,
    pub events: Vec<ServerEvent>,
    /// What the ledger found, for a workload with one.
    pub ledger: Option<Losses>,
    pub testbed: Testbed,
    pub calibration: Option<Calibration>,
    pub commit: Option<String>,
    pub capacity: Option<super::capacity::CapacitySummary>,
}

/// A stop condition that held: which rule, in which phase, what it saw,
/// when (s from the start of load).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aborted {
    pub rule: String,
    pub phase: String,
    /// In the rule's unit.
    pub observed: f64,
    pub unit: String,
    pub at_s: f64,
}

impl Summary {
    /// The summary of a finished run: phases with their metrics, the
    /// verdict of every rule, the faults, events and lost writes.
    pub fn assemble(
        plan: &RunPlan,
        rec: &Recorder,
        facts: RunFacts,
        workload_metrics: &dyn Fn(&PhaseStats, &PhaseStats) -> BTreeMap<String, f64>,
    ) -> Summary {
        let lost_at = facts.ledger.as_ref().map(|l| l.acked_us.as_slice());
        let phases = phases(rec, &facts.faults, lost_at, workload_metrics);
        let expectations = evaluate(&plan.expectations, &phases);
        let ledger = facts.ledger.map(|l| LedgerSummary {
            keys: l.keys as u64,
            lost_writes: l.total,
            lost: l
                .listed
                .into_iter()
                .map(|mut w| {
                    w.phase = phases
                        .iter()
                        .rfind(|p| p.name != "run" && p.start_s <= w.acked_at_s)
                        .map_or("baseline".into(), |p| p.name.clone());
                    w
                })
                .collect(),
        });
        let end_s = facts.end_us as f64 / 1e6;
        let passed = !facts.interrupted && expectations.iter().all(|e| e.passed);
        Summary {
            schema: SCHEMA.into(),
            scenario: plan.name.clone(),
            variant: plan.variant.clone(),
            description: plan.description.clone(),
            verdict: match (&facts.aborted, passed) {
                (Some(_), _) => "aborted",
                (None, true) => "pass",
                (None, false) => "fail",
            }
            .into(),
            interrupted: facts.interrupted,
            aborted: facts.aborted,
            seed: facts.seed,
            run_id: facts.run_id,
            started_at: humantime::format_rfc3339_millis(facts.started).to_string(),
            duration_s: end_s,
            backend: facts.backend,
            topology: facts.topology,
            proxy: facts.proxy,
            load: load_summary(&plan.load),
            workload: plan.workload.kind().as_str().into(),
            phases,
            faults: facts.faults,
            ledger,
            // Teardown is not part of the run.
            events: facts
                .events
                .into_iter()
                .filter(|e| e.t_s <= end_s)
                .collect(),
            expectations,
            scenario_hash: plan.content_hash.clone(),
            commit: facts.commit,
            testbed: Some(facts.testbed),
            calibration: facts.calibration,
            gate: Some(plan.gate_config()),
            capacity: facts.capacity,
        }
    }

    pub fn passed(&self) -> bool {
        self.verdict == "pass"
    }
}

/// Evaluates every expectation against the phases.
pub fn evaluate(expectations: &[Expectation], phases: &[PhaseSummary]) -> Vec<ExpectationResult> {
    expectations
        .iter()
        .map(|e| {
            let observed = e.observe(phases);
            ExpectationResult {
                rule: e.rule.clone(),
                observed: observed.map(|v| e.in_rule_unit(v)),
                unit: e.unit.clone(),
                passed: observed.is_some_and(|v| e.cmp.holds(v, e.value)),
            }
        })
        .collect()
}
