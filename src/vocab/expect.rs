//! Expectations: the pass/fail rules of a scenario, in the grammar
//! `[<variant>/]<phase>[.<op>].<metric> <cmp> <value>[unit]`, parsed once at validation
//! (so a typo is a scenario error, not a failed run) and evaluated against
//! the phase summaries at the end.

use super::outcome::CALLER_OP;
use std::fmt;

/// The dimension of a metric: how it is stored and which units a rule may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Count,
    /// Stored in microseconds (`p99_us`).
    Micros,
    /// Stored in milliseconds (`time_to_recover_ms`).
    Millis,
    /// Stored as a fraction 0..1; rules may say `%`.
    Ratio,
    /// Per second.
    PerSec,
    /// A multiple; rules may say `x`.
    Factor,
}

/// The metrics every op has in every phase.
pub const OP_METRICS: &[(&str, Dim)] = &[
    ("count", Dim::Count),
    ("errors", Dim::Count),
    ("error_rate", Dim::Ratio),
    ("p50", Dim::Micros),
    ("p90", Dim::Micros),
    ("p99", Dim::Micros),
    ("p999", Dim::Micros),
    ("max", Dim::Micros),
    ("mean", Dim::Micros),
    ("throughput", Dim::PerSec),
];

/// Metrics of a fault rather than of a workload, in its `fault:` phase.
pub const FAULT_METRICS: &[(&str, Dim)] = &[
    // failover: loss of the primary → first write to the new one.
    ("failover_time", Dim::Millis),
    // Any fault: the first failed Redis command that began during the fault
    // → the end of the first successful one started after it.
    ("unavailable", Dim::Millis),
    // memory_pressure, summed over the target nodes.
    ("evicted_keys", Dim::Count),
    ("evicted_workload", Dim::Count),
    ("evicted_ballast", Dim::Count),
    ("ballast_refused", Dim::Count),
    // cold_cache: keys removed, and how long the hit ratio took to be back
    // to 90 % of the baseline's (to the second).
    ("keys_removed", Dim::Count),
    ("rewarm_time", Dim::Millis),
    // bgsave: the longest fork of the target nodes (`latest_fork_usec`);
    // replica_resync: the primary's, when it served a full resync.
    ("fork_time", Dim::Millis),
    // big_key: the server's time per whole read of it, and its delete.
    ("big_key_read", Dim::Millis),
    ("big_key_delete", Dim::Millis),
    // connection_storm, summed over the target nodes: connections cut,
    // the most clients connected, connections refused (maxclients).
    ("connections_killed", Dim::Count),
    ("peak_clients", Dim::Count),
    ("rejected_connections", Dim::Count),
    // replica_resync: the primary's full and partial resyncs over the
    // fault, and how long the replicas took to be in sync again.
    ("full_syncs", Dim::Count),
    ("partial_syncs", Dim::Count),
    ("resync_time", Dim::Millis),
];

/// Metrics of the load itself, in every phase: what arrived (open model)
/// or was begun (closed), was served, was shed, and the most in flight
/// and queued.
pub const LOAD_METRICS: &[(&str, Dim)] = &[
    ("offered", Dim::Count),
    ("started", Dim::Count),
    ("completed", Dim::Count),
    ("shed", Dim::Count),
    ("queued_at_end", Dim::Count),
    ("offered_rate", Dim::PerSec),
    ("completed_rate", Dim::PerSec),
    ("in_flight_max", Dim::Count),
    ("queued_max", Dim::Count),
];

/// Metrics of what the servers answered, in every phase.
pub const SERVER_METRICS: &[(&str, Dim)] = &[
    // Redis commands refused with OOM (maxmemory reached, noeviction).
    ("oom_errors", Dim::Count),
];

/// The fault name that stands for every fault: `fault:*`, `recovery:*`.
pub const ANY: &str = "*";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhaseRef {
    Baseline,
    Run,
    Fault(String),
    Recovery(String),
    /// A `[[load.stage]]` window, beside the fault phases.
    Stage(String),
}

impl fmt::Display for PhaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PhaseRef::Baseline => f.write_str("baseline"),
            PhaseRef::Run => f.write_str("run"),
            PhaseRef::Fault(n) => write!(f, "fault:{n}"),
            PhaseRef::Recovery(n) => write!(f, "recovery:{n}"),
            PhaseRef::Stage(n) => write!(f, "stage:{n}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Cmp {
    fn parse(s: &str) -> Option<Cmp> {
        Some(match s {
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            ">" => Cmp::Gt,
            ">=" => Cmp::Ge,
            "==" => Cmp::Eq,
            "!=" => Cmp::Ne,
            _ => return None,
        })
    }

    pub fn holds(self, observed: f64, wanted: f64) -> bool {
        // Values are measured in whole units (µs, counts), so compare with a
        // tolerance far below one unit rather than exactly.
        let eps = 1e-9 * wanted.abs().max(1.0);
        match self {
            Cmp::Lt => observed < wanted - eps,
            Cmp::Le => observed <= wanted + eps,
            Cmp::Gt => observed > wanted + eps,
            Cmp::Ge => observed >= wanted - eps,
            Cmp::Eq => (observed - wanted).abs() <= eps,
            Cmp::Ne => (observed - wanted).abs() > eps,
        }
    }
}

/// One parsed rule.
#[derive(Debug, Clone)]
pub struct Expectation {
    pub rule: String,
    pub phase: PhaseRef,
    /// `None` for workload metrics; `Some(op)` for op metrics.
    pub op: Option<String>,
    pub metric: String,
    pub dim: Dim,
    pub cmp: Cmp,
    /// The wanted value in the metric's stored unit.
    pub value: f64,
    /// The unit the rule was written in, used to show the observed value.
    pub unit: String,
    /// `<variant>/...`: the rule holds for that variant only.
    pub variant: Option<String>,
    /// A metric of a family (`header.x-cache.*`): one never counted is 0.
    pub absent_is_zero: bool,
}

/// What a rule may name, for one scenario.
pub struct ExpectCtx<'a> {
    /// The scenario's variants (`strategies`, `fencing = [...]`, ...).
    pub variants: &'a [String],
    pub faults: &'a [String],
    /// The names of the load's stages.
    pub stages: &'a [String],
    pub ops: &'a [&'a str],
    pub workload_metrics: &'a [(&'a str, Dim)],
}

/// What a rule's left-hand side names: `[variant/]phase[.op].metric`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPath {
    pub variant: Option<String>,
    pub phase: PhaseRef,
    /// `None` for workload metrics; `Some(op)` for op metrics.
    pub op: Option<String>,
    pub metric: String,
    pub dim: Dim,
    /// A metric of a family (`header.x-cache.*`): one never counted is 0.
    pub absent_is_zero: bool,
}

impl MetricPath {
    /// The key a phase stores a workload, fault or server metric under.
    pub fn stored_key(&self) -> String {
        match self.dim {
            Dim::Millis => format!("{}_ms", self.metric),
            _ => self.metric.clone(),
        }
    }
}

const GRAMMAR: &str =
    "expected `<phase>[.<op>].<metric> <cmp> <value>[unit]`, e.g. `baseline.p99 < 5ms`";

/// Parses one rule, saying what is wrong in terms of the grammar.
pub fn parse(rule: &str, ctx: &ExpectCtx) -> Result<Expectation, String> {
    let words: Vec<&str> = rule.split_whitespace().collect();
    let [lhs, cmp, rhs] = words[..] else {
        return Err(format!("cannot read rule `{rule}`: {GRAMMAR}"));
    };
    let cmp = Cmp::parse(cmp)
        .ok_or_else(|| format!("unknown comparison `{cmp}` in `{rule}` (use < <= > >= == !=)"))?;
    let path = parse_path(lhs, ctx)?;
    let (value, unit) = parse_value(rhs, path.dim, &path.metric)?;
    Ok(Expectation {
        rule: rule.to_string(),
        phase: path.phase,
        op: path.op,
        metric: path.metric,
        dim: path.dim,
        cmp,
        value,
        unit,
        variant: path.variant,
        absent_is_zero: path.absent_is_zero,
    })
}

/// Parses a metric's name as a rule writes it (`fault:slow.redis_get.p99`).
pub fn parse_path(lhs: &str, ctx: &ExpectCtx) -> Result<MetricPath, String> {
    let (variant, lhs) = match lhs.split_once('/') {
        Some((v, rest)) => {
            if !ctx.variants.iter().any(|x| x == v) {
                return Err(format!(
                    "`{v}/` names no variant of this scenario (variants: {})",
                    if ctx.variants.is_empty() {
                        "none".to_string()
                    } else {
                        ctx.variants.join(", ")
                    }
                ));
            }
            (Some(v.to_string()), rest)
        }
        None => (None, lhs),
    };
    if let Some((phase, metric, dim)) = family_metric(lhs, ctx)? {
        return Ok(MetricPath {
            variant,
            phase,
            op: None,
            metric,
            dim,
            absent_is_zero: true,
        });
    }
    let parts: Vec<&str> = lhs.split('.').collect();
    let (phase, op, metric) = match parts[..] {
        [p, m] => (p, None, m),
        [p, o, m] => (p, Some(o), m),
        _ => return Err(format!("cannot read `{lhs}`: {GRAMMAR}")),
    };
    let phase = parse_phase(phase, ctx.faults, ctx.stages)?;
    let (op, dim) = resolve_metric(&phase, op, metric, ctx)?;
    Ok(MetricPath {
        variant,
        phase,
        op,
        metric: metric.to_string(),
        dim,
        absent_is_zero: false,
    })
}

/// `<phase>.<family>.<member>` for a workload metric family declared as
/// `<family>.*` (a target's `header.<name>.*`): a count, any member.
fn family_metric(lhs: &str, ctx: &ExpectCtx) -> Result<Option<(PhaseRef, String, Dim)>, String> {
    let Some((phase, metric)) = lhs.split_once('.') else {
        return Ok(None);
    };
    let family = ctx.workload_metrics.iter().find(|(n, _)| {
        n.strip_suffix('*')
            .is_some_and(|prefix| metric.len() > prefix.len() && metric.starts_with(prefix))
    });
    let Some((_, dim)) = family else {
        return Ok(None);
    };
    let phase = parse_phase(phase, ctx.faults, ctx.stages)?;
    Ok(Some((phase, metric.to_string(), *dim)))
}

fn parse_phase(text: &str, faults: &[String], stages: &[String]) -> Result<PhaseRef, String> {
    let known = |name: &str| {
        // `fault:*` / `recovery:*`: every fault's phase (`ANY`).
        if name == ANY || faults.iter().any(|f| f == name) {
            Ok(name.to_string())
        } else {
            Err(format!(
                "phase `{text}` names no fault of this scenario (faults: {})",
                if faults.is_empty() {
                    "none".to_string()
                } else {
                    faults.join(", ")
                }
            ))
        }
    };
    match text.split_once(':') {
        None if text == "baseline" => Ok(PhaseRef::Baseline),
        None if text == "run" => Ok(PhaseRef::Run),
        Some(("fault", n)) => known(n).map(PhaseRef::Fault),
        Some(("recovery", n)) => known(n).map(PhaseRef::Recovery),
        Some(("stage", n)) if stages.iter().any(|s| s == n) => Ok(PhaseRef::Stage(n.into())),
        Some(("stage", _)) => Err(format!(
            "phase `{text}` names no stage of this scenario (stages: {})",
            if stages.is_empty() {
                "none".to_string()
            } else {
                stages.join(", ")
            }
        )),
        _ => Err(format!(
            "unknown phase `{text}` (use baseline, run, fault:<name>, recovery:<name>, fault:*, recovery:* or stage:<name>)"
        )),
    }
}

fn resolve_metric(
    phase: &PhaseRef,
    op: Option<&str>,
    metric: &str,
    ctx: &ExpectCtx,
) -> Result<(Option<String>, Dim), String> {
    let op_dim = OP_METRICS
        .iter()
        .find(|(n, _)| *n == metric)
        .map(|(_, d)| *d);
    if let Some(op) = op {
        if op != CALLER_OP && !ctx.ops.contains(&op) {
            return Err(format!(
                "unknown op `{op}` (this workload has: {CALLER_OP}, {})",
                ctx.ops.join(", ")
            ));
        }
        let dim = op_dim
            .ok_or_else(|| format!("unknown op metric `{metric}` (use: {})", names(OP_METRICS)))?;
        return Ok((Some(op.to_string()), dim));
    }
    if let Some(dim) = op_dim {
        return Ok((Some(CALLER_OP.to_string()), dim));
    }
    if let Some((_, dim)) = SERVER_METRICS
        .iter()
        .chain(LOAD_METRICS)
        .find(|(n, _)| *n == metric)
    {
        return Ok((None, *dim));
    }
    if let Some((_, dim)) = FAULT_METRICS.iter().find(|(n, _)| *n == metric) {
        if !matches!(phase, PhaseRef::Fault(_)) {
            return Err(format!(
                "`{metric}` is measured in fault phases only, not in `{phase}`"
            ));
        }
        return Ok((None, *dim));
    }
    let dim = ctx
        .workload_metrics
        .iter()
        .find(|(n, _)| *n == metric)
        .map(|(_, d)| *d)
        .ok_or_else(|| {
            format!(
                "unknown metric `{metric}` (op metrics: {}; workload metrics: {}; fault metrics: {}; server metrics: {}; load metrics: {})",
                names(OP_METRICS),
                names(ctx.workload_metrics),
                names(FAULT_METRICS),
                names(SERVER_METRICS),
                names(LOAD_METRICS)
            )
        })?;
    if metric == "time_to_recover" && !matches!(phase, PhaseRef::Recovery(_)) {
        return Err(format!(
            "`time_to_recover` is measured in recovery phases only, not in `{phase}`"
        ));
    }
    Ok((None, dim))
}

fn names(list: &[(&str, Dim)]) -> String {
    list.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

pub fn parse_value(text: &str, dim: Dim, metric: &str) -> Result<(f64, String), String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let number: f64 = num.parse().map_err(|_| {
        format!("cannot read the value `{text}` (a number, then an optional unit us, ms, s, %, x)")
    })?;
    if !number.is_finite() {
        return Err(format!("the value `{text}` is not a finite number"));
    }
    let scale = match (dim, unit) {
        (Dim::Micros, "us") | (Dim::Millis, "ms") => 1.0,
        (Dim::Micros, "ms") => 1e3,
        (Dim::Micros, "s") => 1e6,
        (Dim::Millis, "us") => 1e-3,
        (Dim::Millis, "s") => 1e3,
        (Dim::Micros | Dim::Millis, "") => {
            return Err(format!(
                "`{metric}` is a time: give the value a unit (us, ms or s)"
            ))
        }
        (Dim::Ratio, "%") => 0.01,
        (Dim::Ratio | Dim::Count | Dim::PerSec, "") => 1.0,
        (Dim::Factor, "x" | "") => 1.0,
        _ => return Err(format!("unit `{unit}` does not fit `{metric}`")),
    };
    Ok((number * scale, unit.to_string()))
}

/// What a rule reads of one phase of a finished run (the report's phase
/// summaries implement it).
pub trait PhaseValues {
    /// `baseline`, `fault:<name>`, `recovery:<name>` or `run`.
    fn phase_name(&self) -> &str;
    /// An op metric (`p99`, `error_rate`, ...) of `op`, if the op ran.
    fn op_metric(&self, op: &str, metric: &str) -> Option<f64>;
    /// A workload, fault or server metric by its stored key
    /// (`time_to_recover_ms`, `hit_ratio`, ...).
    fn metric(&self, key: &str) -> Option<f64>;
}

impl Expectation {
    /// The observed value in the metric's stored unit, if the run produced
    /// one. For `fault:*` / `recovery:*`, the worst of the phases it names
    /// (the one furthest from holding), so the rule holds when it holds in
    /// all of them.
    pub fn observe<P: PhaseValues>(&self, phases: &[P]) -> Option<f64> {
        let values = self.values(phases);
        let worst = |a: &(String, f64), b: &(String, f64)| match self.cmp {
            Cmp::Lt | Cmp::Le => a.1.total_cmp(&b.1),
            Cmp::Gt | Cmp::Ge => b.1.total_cmp(&a.1),
            Cmp::Eq | Cmp::Ne => {
                let held = |v: f64| self.cmp.holds(v, self.value);
                held(b.1).cmp(&held(a.1))
            }
        };
        values.into_iter().max_by(worst).map(|(_, v)| v)
    }

    /// The first phase (and its value) in which the rule holds: where a
    /// stop condition trips.
    pub fn holds_in<P: PhaseValues>(&self, phases: &[P]) -> Option<(String, f64)> {
        self.values(phases)
            .into_iter()
            .find(|(_, v)| self.cmp.holds(*v, self.value))
    }

    /// The value of each phase the rule names, in the stored unit.
    fn values<P: PhaseValues>(&self, phases: &[P]) -> Vec<(String, f64)> {
        let name = self.phase.to_string();
        let prefix = name.strip_suffix(ANY).filter(
            |_| matches!(&self.phase, PhaseRef::Fault(n) | PhaseRef::Recovery(n) if n == ANY),
        );
        phases
            .iter()
            .filter(|p| match prefix {
                Some(prefix) => p.phase_name().starts_with(prefix),
                None => p.phase_name() == name,
            })
            .filter_map(|p| {
                match &self.op {
                    Some(op) => p.op_metric(op, &self.metric),
                    None => {
                        let key = match self.dim {
                            Dim::Millis => format!("{}_ms", self.metric),
                            _ => self.metric.clone(),
                        };
                        p.metric(&key).or(self.absent_is_zero.then_some(0.0))
                    }
                }
                .filter(|v| v.is_finite())
                .map(|v| (p.phase_name().to_string(), v))
            })
            .collect()
    }

    /// The observed value converted into the unit the rule was written in.
    pub fn in_rule_unit(&self, stored: f64) -> f64 {
        match (self.dim, self.unit.as_str()) {
            (Dim::Micros, "ms") | (Dim::Millis, "s") => stored / 1e3,
            (Dim::Micros, "s") => stored / 1e6,
            (Dim::Millis, "us") => stored * 1e3,
            (Dim::Ratio, "%") => stored * 100.0,
            _ => stored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ExpectCtx<'static> {
        ExpectCtx {
            variants: &[],
            faults: Box::leak(Box::new(vec!["outage".to_string()])),
            stages: &[],
            ops: &["read", "write", "redis_get"],
            workload_metrics: &[
                ("caller_errors", Dim::Count),
                ("hit_ratio", Dim::Ratio),
                ("time_to_recover", Dim::Millis),
            ],
        }
    }

    #[test]
    fn design_examples_parse() {
        let e = parse("baseline.p99 < 5ms", &ctx()).unwrap();
        assert_eq!(
            (e.phase, e.op.as_deref(), e.value),
            (PhaseRef::Baseline, Some("caller"), 5000.0)
        );
        let e = parse("fault:outage.caller_errors == 0", &ctx()).unwrap();
        assert_eq!(e.op, None);
        let e = parse("recovery:outage.time_to_recover < 3s", &ctx()).unwrap();
        assert_eq!(e.value, 3000.0);
        let e = parse("run.redis_get.p50 >= 50ms", &ctx()).unwrap();
        assert_eq!(e.op.as_deref(), Some("redis_get"));
        let e = parse("run.hit_ratio > 90%", &ctx()).unwrap();
        assert!((e.value - 0.9).abs() < 1e-12);
    }

    #[test]
    fn mistakes_are_named() {
        let err = |r| parse(r, &ctx()).unwrap_err();
        assert!(err("baseline.p99 < 5").contains("unit"));
        assert!(err("fault:nope.p99 < 5ms").contains("names no fault"));
        assert!(err("warmup.p99 < 5ms").contains("unknown phase"));
        assert!(err("run.gets.p99 < 5ms").contains("unknown op"));
        assert!(err("run.p98 < 5ms").contains("unknown metric"));
        assert!(err("run.p99 =< 5ms").contains("unknown comparison"));
        assert!(err("baseline.time_to_recover < 1s").contains("recovery phases"));
        assert!(err("run.p99<5ms").contains("cannot read"));
    }

    #[test]
    fn comparisons_hold_as_written() {
        assert!(Cmp::Lt.holds(4.0, 5.0));
        assert!(!Cmp::Lt.holds(5.0, 5.0));
        assert!(Cmp::Le.holds(5.0, 5.0));
        assert!(Cmp::Eq.holds(0.0, 0.0));
        assert!(Cmp::Ne.holds(1.0, 0.0));
        assert!(Cmp::Ge.holds(3.0, 3.0));
    }
}
