//! The `[gate]` table: what `gameday compare` judges a run of this scenario
//! on against its baselines. Every key is checked here with its position;
//! `GatePlan::config` then fills in the defaults of the workload and the
//! faults, as summary.json records them.

use crate::fault::FaultPlan;
use crate::vocab::check::{invalid, Checked};
use crate::vocab::expect::{self, Dim, ExpectCtx, MetricPath, PhaseRef};
use crate::vocab::gate::{Class, Family, GateConfig, GateMetric, Worse};
use crate::vocab::outcome::CALLER_OP;
use crate::workload::WorkloadPlan;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// `[gate]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGate {
    /// The performance metrics to gate, instead of the defaults.
    pub metrics: Option<Vec<Spanned<String>>>,
    /// The invariants to gate, instead of the workload's.
    pub invariants: Option<Vec<Spanned<String>>>,
    pub alpha: Option<Spanned<f64>>,
    pub min_baselines: Option<Spanned<i64>>,
    pub max_cv: Option<Spanned<f64>>,
    pub warn: Option<Spanned<f64>>,
    pub noise_floor: Option<Spanned<f64>>,
    /// Per family (`latency`, ...) or per metric path.
    #[serde(default)]
    pub tolerance: BTreeMap<String, Spanned<RawTolerance>>,
}

/// One `[gate.tolerance]` entry: `{ relative = "10%", floor = "0.5ms" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTolerance {
    pub relative: Option<Spanned<toml::Value>>,
    pub floor: Option<Spanned<toml::Value>>,
}

/// What a tolerance applies to.
#[derive(Debug, Clone, PartialEq)]
enum Scope {
    Family(Family),
    Path(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Tolerance {
    scope: Scope,
    relative: Option<f64>,
    floor: Option<f64>,
}

/// The `[gate]` table, validated; `config` resolves it for one plan.
#[derive(Debug, Clone, PartialEq)]
pub struct GatePlan {
    metrics: Option<Vec<MetricPath>>,
    invariants: Option<Vec<MetricPath>>,
    alpha: f64,
    min_baselines: usize,
    max_cv: f64,
    warn: f64,
    noise_floor: f64,
    tolerances: Vec<Tolerance>,
}

impl Default for GatePlan {
    fn default() -> Self {
        GatePlan {
            metrics: None,
            invariants: None,
            alpha: GateConfig::ALPHA,
            min_baselines: GateConfig::MIN_BASELINES,
            max_cv: GateConfig::MAX_CV,
            warn: GateConfig::WARN,
            noise_floor: GateConfig::NOISE_FLOOR,
            tolerances: Vec::new(),
        }
    }
}

fn open_fraction(s: &Spanned<f64>, key: &str, lo: f64, hi: f64) -> Checked<f64> {
    let v = *s.get_ref();
    if v.is_finite() && v > lo && v < hi {
        Ok(v)
    } else {
        Err(invalid(
            s.span(),
            format!("`{key}` must be above {lo} and below {hi}, not {v}"),
        ))
    }
}

fn paths(list: &[Spanned<String>], ctx: &ExpectCtx) -> Checked<Vec<MetricPath>> {
    list.iter()
        .map(|p| expect::parse_path(p.get_ref(), ctx).map_err(|m| invalid(p.span(), m)))
        .collect()
}

impl RawGate {
    pub fn plan(&self, ctx: &ExpectCtx) -> Checked<GatePlan> {
        let mut plan = GatePlan::default();
        if let Some(a) = &self.alpha {
            plan.alpha = open_fraction(a, "alpha", 0.0, 0.5)?;
        }
        if let Some(n) = &self.min_baselines {
            plan.min_baselines = crate::vocab::check::positive_int(n, "min_baselines")? as usize;
            if plan.min_baselines < 2 {
                return Err(invalid(
                    n.span(),
                    "`min_baselines` must be at least 2: one run says nothing of the noise",
                ));
            }
        }
        if let Some(c) = &self.max_cv {
            plan.max_cv = open_fraction(c, "max_cv", 0.0, 10.0)?;
        }
        if let Some(w) = &self.warn {
            plan.warn = open_fraction(w, "warn", 0.0, 1.0)?;
        }
        if let Some(f) = &self.noise_floor {
            plan.noise_floor = *f.get_ref();
            if !(0.0..1.0).contains(&plan.noise_floor) {
                return Err(invalid(
                    f.span(),
                    format!(
                        "`noise_floor` is a share of the mean from 0 to below 1, not {}",
                        plan.noise_floor
                    ),
                ));
            }
        }
        plan.metrics = self.metrics.as_deref().map(|l| paths(l, ctx)).transpose()?;
        plan.invariants = self
            .invariants
            .as_deref()
            .map(|l| paths(l, ctx))
            .transpose()?;
        for (key, t) in &self.tolerance {
            plan.tolerances.push(tolerance(key, t, ctx)?);
        }
        Ok(plan)
    }
}

fn tolerance(key: &str, t: &Spanned<RawTolerance>, ctx: &ExpectCtx) -> Checked<Tolerance> {
    let (scope, dim) = match Family::ALL.iter().find(|f| f.as_str() == key) {
        Some(f) => (Scope::Family(*f), f.dim()),
        None => {
            let p = expect::parse_path(key, ctx).map_err(|m| {
                invalid(
                    t.span(),
                    format!(
                        "`[gate.tolerance]` key `{key}` is neither a family ({}) nor a metric: {m}",
                        Family::ALL.map(|f| f.as_str()).join(", ")
                    ),
                )
            })?;
            (Scope::Path(path_text(&p)), p.dim)
        }
    };
    let t = t.get_ref();
    let relative = t
        .relative
        .as_ref()
        .map(|r| {
            match r.get_ref() {
                toml::Value::String(s) => s
                    .strip_suffix('%')
                    .and_then(|n| n.trim().parse::<f64>().ok())
                    .map(|v| v / 100.0),
                toml::Value::Float(f) => Some(*f),
                toml::Value::Integer(i) => Some(*i as f64),
                _ => None,
            }
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                invalid(
                    r.span(),
                    "`relative` is a share of the baseline, e.g. \"10%\" or 0.1",
                )
            })
        })
        .transpose()?;
    let floor = t
        .floor
        .as_ref()
        .map(|f| {
            let text = match f.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Float(v) => v.to_string(),
                toml::Value::Integer(v) => v.to_string(),
                _ => String::new(),
            };
            expect::parse_value(&text, dim, key)
                .map(|(v, _)| v)
                .map_err(|m| invalid(f.span(), format!("`floor`: {m}")))
                .and_then(|v| {
                    if v >= 0.0 {
                        Ok(v)
                    } else {
                        Err(invalid(f.span(), "`floor` cannot be below 0"))
                    }
                })
        })
        .transpose()?;
    Ok(Tolerance {
        scope,
        relative,
        floor,
    })
}

/// A path as the gate names it: the caller op spelled out.
fn path_text(p: &MetricPath) -> String {
    match &p.op {
        Some(op) => format!("{}.{op}.{}", p.phase, p.metric),
        None => format!("{}.{}", p.phase, p.metric),
    }
}

/// Performance metrics of a workload gated by default, where it has them,
/// and the phases they are measured in.
const WORKLOAD_DEFAULTS: &[(&str, Where)] = &[
    ("time_to_recover", Where::Recovery),
    ("origin_amplification", Where::Run),
    ("recomputes_per_event", Where::Run),
    ("reference_error", Where::Run),
];

#[derive(Clone, Copy)]
enum Where {
    Run,
    Recovery,
}

impl GatePlan {
    /// The gate of a plan: the table's choices over the defaults, which
    /// are the caller ops' p50 in every phase, their throughput in
    /// the run, each fault's unavailability and failover time, the
    /// workload's own performance metrics and its invariants.
    pub fn config(
        &self,
        workload: &WorkloadPlan,
        faults: &[FaultPlan],
        variant: Option<&str>,
    ) -> GateConfig {
        let for_me = |p: &&MetricPath| p.variant.as_deref().is_none_or(|v| Some(v) == variant);
        let performance: Vec<MetricPath> = match &self.metrics {
            Some(list) => list.iter().filter(for_me).cloned().collect(),
            None => default_performance(workload, faults),
        };
        let invariants: Vec<MetricPath> = match &self.invariants {
            Some(list) => list.iter().filter(for_me).cloned().collect(),
            None => workload
                .invariants()
                .into_iter()
                .map(|m| path(PhaseRef::Run, None, m, Dim::Count))
                .collect(),
        };
        let mut metrics: Vec<GateMetric> = Vec::new();
        for (p, class) in invariants
            .iter()
            .map(|p| (p, Class::Invariant))
            .chain(performance.iter().map(|p| (p, Class::Performance)))
        {
            let m = self.resolve(p, class);
            if !metrics.iter().any(|x| x.path == m.path) {
                metrics.push(m);
            }
        }
        GateConfig {
            alpha: self.alpha,
            min_baselines: self.min_baselines,
            max_cv: self.max_cv,
            warn: self.warn,
            noise_floor: self.noise_floor,
            metrics,
        }
    }

    fn resolve(&self, p: &MetricPath, class: Class) -> GateMetric {
        let family = Family::of(p.dim);
        let text = path_text(p);
        let (mut relative, mut floor) = family.default_band(&p.metric);
        let scoped = |s: &Scope| match s {
            Scope::Family(f) => *f == family,
            Scope::Path(x) => *x == text,
        };
        // A family's tolerance first, then the metric's own over it.
        let mut ordered: Vec<&Tolerance> = self
            .tolerances
            .iter()
            .filter(|t| scoped(&t.scope))
            .collect();
        ordered.sort_by_key(|t| matches!(t.scope, Scope::Path(_)));
        for t in ordered {
            relative = t.relative.unwrap_or(relative);
            floor = t.floor.unwrap_or(floor);
        }
        GateMetric {
            key: match &p.op {
                Some(_) => p.metric.clone(),
                None => p.stored_key(),
            },
            path: text,
            phase: p.phase.to_string(),
            op: p.op.clone(),
            class,
            family,
            worse: Worse::of(&p.metric),
            relative,
            floor,
            absent_is_zero: p.absent_is_zero || p.metric == "unavailable",
        }
    }
}

fn path(phase: PhaseRef, op: Option<&str>, metric: &str, dim: Dim) -> MetricPath {
    MetricPath {
        variant: None,
        phase,
        op: op.map(String::from),
        metric: metric.to_string(),
        dim,
        absent_is_zero: false,
    }
}

fn default_performance(workload: &WorkloadPlan, faults: &[FaultPlan]) -> Vec<MetricPath> {
    // Without faults the baseline is the whole run: gate it once.
    let mut phases = if faults.is_empty() {
        Vec::new()
    } else {
        vec![PhaseRef::Baseline]
    };
    for f in faults {
        phases.push(PhaseRef::Fault(f.name.clone()));
        phases.push(PhaseRef::Recovery(f.name.clone()));
    }
    phases.push(PhaseRef::Run);
    let mut out = Vec::new();
    for phase in &phases {
        // The tail is left out by default: over a short run on a shared
        // 2-core machine, identical runs moved p90 by up to +77 % and p99
        // by up to +60 % (README); a scenario may name them.
        out.push(path(phase.clone(), Some(CALLER_OP), "p50", Dim::Micros));
        if let PhaseRef::Fault(_) = phase {
            out.push(path(phase.clone(), None, "unavailable", Dim::Millis));
            out.push(path(phase.clone(), None, "failover_time", Dim::Millis));
        }
    }
    out.push(path(
        PhaseRef::Run,
        Some(CALLER_OP),
        "throughput",
        Dim::PerSec,
    ));
    for (metric, at) in WORKLOAD_DEFAULTS {
        let Some((_, dim)) = workload.metrics().iter().find(|(n, _)| n == metric) else {
            continue;
        };
        match at {
            Where::Run => out.push(path(PhaseRef::Run, None, metric, *dim)),
            Where::Recovery => {
                for f in faults {
                    out.push(path(PhaseRef::Recovery(f.name.clone()), None, metric, *dim));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::vocab::gate::{Class, Family};
    use std::path::Path;

    fn config(extra: &str) -> crate::vocab::gate::GateConfig {
        let text = format!(
            r#"name = "g"
duration = "10s"
[topology]
kind = "standalone"
[load]
users = 2
[workload]
kind = "cache-aside"
[[fault]]
name = "outage"
kind = "down"
at = "2s"
for = "2s"
{extra}"#
        );
        crate::scenario::parse(Path::new("g.toml"), &text)
            .unwrap()
            .gate_config()
    }

    #[test]
    fn the_defaults_cover_every_phase_and_the_workloads_own_metrics() {
        let c = config("");
        let paths: Vec<&str> = c.metrics.iter().map(|m| m.path.as_str()).collect();
        for p in [
            "run.stale_reads",
            "baseline.caller.p50",
            "fault:outage.caller.p50",
            "recovery:outage.caller.p50",
            "run.caller.throughput",
            "fault:outage.unavailable",
            "recovery:outage.time_to_recover",
            "run.origin_amplification",
        ] {
            assert!(paths.contains(&p), "{p} not in {paths:?}");
        }
        assert!(
            !paths
                .iter()
                .any(|p| p.ends_with(".p99") || p.ends_with(".p90")),
            "{paths:?}"
        );
        let stale = c
            .metrics
            .iter()
            .find(|m| m.path == "run.stale_reads")
            .unwrap();
        assert_eq!(stale.class, Class::Invariant);
        // The default policy is `fallback`: callers must see no error.
        assert!(paths.contains(&"run.caller_errors"));
        let ttr = c
            .metrics
            .iter()
            .find(|m| m.path == "recovery:outage.time_to_recover")
            .unwrap();
        assert_eq!(
            (ttr.key.as_str(), ttr.family),
            ("time_to_recover_ms", Family::Time)
        );
        let unavailable = c
            .metrics
            .iter()
            .find(|m| m.path == "fault:outage.unavailable")
            .unwrap();
        assert!(unavailable.absent_is_zero);
    }

    #[test]
    fn a_metrics_own_tolerance_wins_over_its_familys() {
        let c = config(
            r#"[gate]
metrics = ["run.p99", "run.p50"]
alpha = 0.05
[gate.tolerance]
latency = { relative = "20%" }
"run.caller.p99" = { floor = "3ms" }
"#,
        );
        assert_eq!(c.alpha, 0.05);
        let p99 = c
            .metrics
            .iter()
            .find(|m| m.path == "run.caller.p99")
            .unwrap();
        assert_eq!((p99.relative, p99.floor), (0.20, 3000.0));
        let p50 = c
            .metrics
            .iter()
            .find(|m| m.path == "run.caller.p50")
            .unwrap();
        assert_eq!((p50.relative, p50.floor), (0.20, 500.0));
        assert!(
            c.metrics.iter().all(|m| m.path != "baseline.caller.p50"),
            "only what was named"
        );
    }

    #[test]
    fn the_content_hash_ignores_layout_and_the_gate() {
        let h = |t: &str| {
            crate::scenario::parse(Path::new("g.toml"), t)
                .unwrap()
                .content_hash
        };
        let base = "name = \"g\"\nduration = \"10s\"\n[topology]\nkind = \"standalone\"\n[load]\nusers = 2\n[workload]\nkind = \"cache-aside\"\n";
        let commented = format!("# a comment\n{base}");
        let gated = format!("{base}[gate]\nalpha = 0.05\n");
        let changed = base.replace("users = 2", "users = 3");
        assert_eq!(h(base).len(), 64);
        assert_eq!(h(base), h(&commented));
        assert_eq!(h(base), h(&gated));
        assert_ne!(h(base), h(&changed));
    }
}
