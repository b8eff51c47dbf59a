//! One gated metric, decided: the candidate's value against its baselines'.
//!
//! - An invariant fails when the candidate is above every baseline.
//! - A performance metric is inconclusive with fewer than `min_baselines`
//!   values, or when the baselines are too noisy (CV above `max_cv` and a
//!   spread above half the floor). Otherwise its change must be
//!   significant at `alpha` on two counts, and the larger p-value is
//!   reported: within runs, a one-sided Mann–Whitney U test of the
//!   candidate's per-second values (latency.hlog) against the baselines'
//!   pooled; between runs, a one-sided prediction test of the candidate's
//!   phase value against the baselines' (seconds of one run are not
//!   independent of each other, runs are). A significant change beyond
//!   the band `max(relative × median, floor)` fails; beyond `warn` × band
//!   it warns.

use super::stats;
use super::store::Run;
use crate::vocab::gate::{Class, GateConfig, GateMetric, Worse};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Fail,
    Inconclusive,
    Warn,
    Pass,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Warn => "warn",
            Verdict::Pass => "pass",
        }
    }
}

/// The decision on one metric, as compare.json lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub metric: String,
    pub class: Class,
    pub family: &'static str,
    /// Worse when `higher` or `lower`.
    pub worse: Worse,
    /// The run ids of the baselines that measured it.
    pub baseline_runs: Vec<String>,
    /// Each baseline's value, in the order of `baseline_runs`.
    pub baseline_values: Vec<f64>,
    pub baseline_median: Option<f64>,
    /// First and third quartiles.
    pub baseline_iqr: Option<[f64; 2]>,
    pub baseline_cv: Option<f64>,
    pub candidate: Option<f64>,
    pub delta: Option<f64>,
    /// `delta / baseline_median`.
    pub delta_rel: Option<f64>,
    pub p_value: Option<f64>,
    /// Of the per-second test, when latency.hlog had the metric.
    pub p_within: Option<f64>,
    /// Of the run-level prediction test.
    pub p_between: Option<f64>,
    pub band: Option<f64>,
    pub verdict: Verdict,
    /// Why, in words.
    pub reason: String,
}

impl Decision {
    fn new(m: &GateMetric, runs: &[&Run], values: &[f64], candidate: Option<f64>) -> Decision {
        let median = (!values.is_empty()).then(|| stats::median(values));
        Decision {
            metric: m.path.clone(),
            class: m.class,
            family: m.family.as_str(),
            worse: m.worse,
            baseline_runs: runs.iter().map(|r| r.summary.run_id.clone()).collect(),
            baseline_values: values.to_vec(),
            baseline_median: median,
            baseline_iqr: (!values.is_empty())
                .then(|| [stats::quantile(values, 0.25), stats::quantile(values, 0.75)]),
            baseline_cv: stats::cv(values),
            candidate,
            delta: candidate.zip(median).map(|(c, b)| c - b),
            delta_rel: candidate
                .zip(median)
                .filter(|(_, b)| b.abs() > f64::EPSILON)
                .map(|(c, b)| (c - b) / b.abs()),
            p_value: None,
            p_within: None,
            p_between: None,
            band: None,
            verdict: Verdict::Pass,
            reason: String::new(),
        }
    }

    fn with(mut self, verdict: Verdict, reason: impl Into<String>) -> Decision {
        self.verdict = verdict;
        self.reason = reason.into();
        self
    }
}

/// Decides `m` for `candidate` against `baselines`; `None` when no run
/// measured it (a fault phase without failover has no failover time).
pub fn decide(
    m: &GateMetric,
    cfg: &GateConfig,
    candidate: &Run,
    baselines: &[Run],
) -> Option<Decision> {
    let measured: Vec<(&Run, f64)> = baselines
        .iter()
        .filter_map(|b| b.value(m).map(|v| (b, v)))
        .collect();
    let c = candidate.value(m);
    if c.is_none() && measured.is_empty() {
        return None;
    }
    let runs: Vec<&Run> = measured.iter().map(|(r, _)| *r).collect();
    let values: Vec<f64> = measured.iter().map(|(_, v)| *v).collect();
    let d = Decision::new(m, &runs, &values, c);
    let Some(c) = c else {
        return Some(d.with(
            Verdict::Inconclusive,
            "the candidate did not measure it, its baselines did",
        ));
    };
    Some(match m.class {
        Class::Invariant => invariant(d, c, &values),
        Class::Performance => performance(d, m, cfg, c, candidate, &runs, &values),
    })
}

fn invariant(d: Decision, c: f64, values: &[f64]) -> Decision {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.is_empty() {
        if c > 0.0 {
            return d.with(
                Verdict::Fail,
                format!("{c} in the candidate, no baseline measured it"),
            );
        }
        return d.with(Verdict::Pass, "0, and no baseline measured it");
    }
    if c > max + 1e-9 {
        d.with(
            Verdict::Fail,
            format!("{c} is above every baseline (at most {max}): an invariant, no statistics"),
        )
    } else {
        d.with(
            Verdict::Pass,
            format!("{c}, within the baselines' {max} at most"),
        )
    }
}

fn performance(
    mut d: Decision,
    m: &GateMetric,
    cfg: &GateConfig,
    c: f64,
    candidate: &Run,
    runs: &[&Run],
    values: &[f64],
) -> Decision {
    if values.len() < cfg.min_baselines {
        let n = values.len();
        let min = cfg.min_baselines;
        return d.with(
            Verdict::Inconclusive,
            format!("{n} baselines measured it, {min} are needed"),
        );
    }
    let median = stats::median(values);
    let (_, sd) = stats::mean_sd(values);
    let band = (m.relative * median.abs()).max(m.floor);
    d.band = Some(band);
    if let Some(cv) = d.baseline_cv {
        if cv > cfg.max_cv && sd > m.floor / 2.0 {
            let reason = format!(
                "the baselines are too noisy to decide: CV {:.0}% > {:.0}%",
                cv * 100.0,
                cfg.max_cv * 100.0
            );
            return d.with(Verdict::Inconclusive, reason);
        }
    }
    // Signed so that positive is worse.
    let sign = match m.worse {
        Worse::Higher => 1.0,
        Worse::Lower => -1.0,
    };
    let worse_by = sign * (c - median);
    let flipped: Vec<f64> = values.iter().map(|v| sign * v).collect();
    let p_between = stats::prediction_greater(sign * c, &flipped);
    let p_within = candidate.per_second(m).and_then(|cand| {
        let pooled: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.per_second(m))
            .flatten()
            .collect();
        (cand.len() >= 3 && pooled.len() >= 3).then(|| {
            let a: Vec<f64> = cand.iter().map(|v| sign * v).collect();
            let b: Vec<f64> = pooled.iter().map(|v| sign * v).collect();
            stats::mann_whitney_greater(&a, &b)
        })
    });
    let p = p_within.map_or(p_between, |w| w.max(p_between));
    d.p_value = Some(p);
    d.p_within = p_within;
    d.p_between = Some(p_between);
    let significant = p < cfg.alpha;
    let change = if worse_by > 0.0 { "worse" } else { "better" };
    let said = format!(
        "{change} by {:.3} (band {:.3}), p = {}",
        worse_by.abs(),
        band,
        fmt_p(p)
    );
    if significant && worse_by > band {
        d.with(Verdict::Fail, said)
    } else if significant && worse_by > cfg.warn * band {
        d.with(
            Verdict::Warn,
            format!("{said}: significant, within the band"),
        )
    } else {
        d.with(Verdict::Pass, said)
    }
}

/// A p-value as people read it.
pub fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        "< 0.0001".into()
    } else {
        format!("{p:.4}")
    }
}
