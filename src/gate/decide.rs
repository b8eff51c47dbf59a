//! One gated metric, decided: the candidate's value against its baselines'.
//!
//! - An invariant fails when the candidate is above every baseline.
//! - A performance metric is inconclusive with fewer than `min_baselines`
//!   values, or when the baselines are too noisy (CV above `max_cv` and a
//!   spread above half the floor). Otherwise it fails when three things
//!   hold: its change is larger than the band `max(relative × median,
//!   floor)`; it is significant within runs: a one-sided stratified rank
//!   test of the candidate's per-second values (latency.hlog) against the
//!   baselines' values of the same second (Mann–Whitney within each
//!   second, van Elteren across), its p-value adjusted with those of every
//!   other performance metric of the comparison (Holm–Bonferroni, in
//!   `settle`), so that `alpha` bounds the chance of any false alarm in
//!   the comparison; and it stands out between runs: a one-sided
//!   prediction test of the candidate's phase value against the
//!   baselines' values is below `alpha` too (seconds of one run are not
//!   independent of each other; runs are, so one slow run of a shared
//!   machine does not pass for a regression unless it lies outside the
//!   run-to-run spread). Metrics without per-second data (failover time,
//!   ...) use the run-level test as their significance test. A significant
//!   change above `warn` × band, but within the band, is a warning.

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
    /// Robust coefficient of variation: 1.4826 × MAD / median.
    pub baseline_cv: Option<f64>,
    pub candidate: Option<f64>,
    pub delta: Option<f64>,
    /// `delta / baseline_median`.
    pub delta_rel: Option<f64>,
    pub p_value: Option<f64>,
    /// `p_value` adjusted for the number of performance metrics compared
    /// (Holm–Bonferroni): significant below `alpha`.
    pub p_adjusted: Option<f64>,
    /// Of the per-second test, when latency.hlog had the metric.
    pub p_within: Option<f64>,
    /// Of the run-level prediction test.
    pub p_between: Option<f64>,
    pub band: Option<f64>,
    pub verdict: Verdict,
    /// Why, in words.
    pub reason: String,
    /// How much worse (positive) or better, for `settle`.
    #[serde(skip)]
    worse_by: f64,
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
            p_adjusted: None,
            p_within: None,
            p_between: None,
            band: None,
            verdict: Verdict::Pass,
            reason: String::new(),
            worse_by: 0.0,
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
    let sd = stats::robust_sd(values);
    let band = (m.relative * median.abs()).max(m.floor);
    d.band = Some(band);
    // Signed so that positive is worse.
    let sign = match m.worse {
        Worse::Higher => 1.0,
        Worse::Lower => -1.0,
    };
    // Noisy baselines cannot decide a change their spread could explain;
    // a candidate worse than the worst of them by more than the band is
    // one they can (CI: p50 3.75 ms against noisy baselines around 1.74).
    let worst = values.iter().map(|v| sign * v).fold(f64::MIN, f64::max);
    let beyond_all = sign * c - worst > band;
    if let Some(cv) = d.baseline_cv.filter(|_| !beyond_all) {
        if cv > cfg.max_cv && sd > m.floor / 2.0 {
            let reason = format!(
                "the baselines are too noisy to decide: CV {:.0}% > {:.0}%",
                cv * 100.0,
                cfg.max_cv * 100.0
            );
            return d.with(Verdict::Inconclusive, reason);
        }
    }
    let worse_by = sign * (c - median);
    let flipped: Vec<f64> = values.iter().map(|v| sign * v).collect();
    let p_between = stats::prediction_greater(sign * c, &flipped, cfg.noise_floor);
    let p_within = candidate.per_second(m).and_then(|cand| {
        let theirs: Vec<Vec<(u64, f64)>> = runs.iter().filter_map(|r| r.per_second(m)).collect();
        let strata: Vec<(f64, Vec<f64>)> = cand
            .iter()
            .map(|&(t, c)| {
                let same_second = theirs
                    .iter()
                    .filter_map(|s| s.iter().find(|(u, _)| *u == t).map(|(_, v)| sign * v))
                    .collect();
                (sign * c, same_second)
            })
            .filter(|(_, b): &(f64, Vec<f64>)| b.len() >= 2)
            .collect();
        (strata.len() >= 2).then(|| stats::stratified_rank_greater(&strata))
    });
    d.p_value = Some(p_within.unwrap_or(p_between));
    d.p_within = p_within;
    d.p_between = Some(p_between);
    d.worse_by = worse_by;
    // The verdict waits for `settle`, which sees every metric's p-value.
    d
}

/// Adjusts the p-values of the performance metrics that reached a test
/// (Holm–Bonferroni step-down) and gives each its verdict.
pub fn settle(decisions: &mut [Decision], cfg: &GateConfig) {
    let mut tested: Vec<usize> = (0..decisions.len())
        .filter(|&i| decisions[i].class == Class::Performance && decisions[i].p_value.is_some())
        .filter(|&i| decisions[i].verdict != Verdict::Inconclusive)
        .collect();
    tested.sort_by(|&a, &b| {
        let p = |i: usize| decisions[i].p_value.unwrap_or(1.0);
        p(a).total_cmp(&p(b))
    });
    let m = tested.len();
    let mut running = 0.0f64;
    for (rank, &i) in tested.iter().enumerate() {
        let d = &mut decisions[i];
        let p = d.p_value.unwrap_or(1.0);
        running = running.max(((m - rank) as f64 * p).min(1.0));
        d.p_adjusted = Some(running);
        let band = d.band.unwrap_or(0.0);
        let change = if d.worse_by > 0.0 { "worse" } else { "better" };
        let between = match (d.p_within, d.p_between) {
            (Some(_), Some(b)) => format!(", between runs {}", p_is(b)),
            _ => String::new(),
        };
        let said = format!(
            "{change} by {:.3} (band {band:.3}), {} ({} adjusted for {m} metrics){between}",
            d.worse_by.abs(),
            p_is(p),
            fmt_p(running)
        );
        let apart = d.p_within.is_none() || d.p_between.is_some_and(|b| b < cfg.alpha);
        let significant = running < cfg.alpha && apart;
        (d.verdict, d.reason) = if significant && d.worse_by > band {
            (Verdict::Fail, said)
        } else if significant && d.worse_by > cfg.warn * band {
            (
                Verdict::Warn,
                format!("{said}: significant, within the band"),
            )
        } else {
            (Verdict::Pass, said)
        };
    }
}

/// `p = 0.0123`, or `p < 0.0001`.
fn p_is(p: f64) -> String {
    if p < 1e-4 {
        "p < 0.0001".into()
    } else {
        format!("p = {p:.4}")
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
