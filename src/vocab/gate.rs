//! The regression gate's words: which metrics a run is judged on against
//! its baselines, of which class, with which tolerance band. The scenario
//! layer fills a `GateConfig` from the `[gate]` table and the workload's
//! defaults; summary.json carries it, so that `gameday compare` needs
//! nothing but report directories.

use super::expect::Dim;
use serde::{Deserialize, Serialize};

/// How a metric is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Zero in a healthy run (stale reads, overlaps, ...): any value above
    /// every baseline fails, without statistics.
    Invariant,
    /// Latency, throughput, recovery times, ...: fails only on a change that
    /// is significant and larger than the band.
    Performance,
}

/// A family of metrics that share a unit and a default tolerance; a
/// `[gate.tolerance]` key may name one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Op latency percentiles, µs.
    Latency,
    /// Ops per second.
    Throughput,
    /// Recovery, failover and unavailability times, ms.
    Time,
    /// Multiples (`origin_amplification`, `recomputes_per_event`).
    Factor,
    /// Fractions (`error_rate`, `reference_error`).
    Ratio,
    /// Counts.
    Count,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::Latency,
        Family::Throughput,
        Family::Time,
        Family::Factor,
        Family::Ratio,
        Family::Count,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Latency => "latency",
            Family::Throughput => "throughput",
            Family::Time => "time",
            Family::Factor => "factor",
            Family::Ratio => "ratio",
            Family::Count => "count",
        }
    }

    /// The family of a metric of this dimension.
    pub fn of(dim: Dim) -> Family {
        match dim {
            Dim::Micros => Family::Latency,
            Dim::PerSec => Family::Throughput,
            Dim::Millis => Family::Time,
            Dim::Factor => Family::Factor,
            Dim::Ratio => Family::Ratio,
            Dim::Count => Family::Count,
        }
    }

    /// The dimension its floors are written in.
    pub fn dim(self) -> Dim {
        match self {
            Family::Latency => Dim::Micros,
            Family::Throughput => Dim::PerSec,
            Family::Time => Dim::Millis,
            Family::Factor => Dim::Factor,
            Family::Ratio => Dim::Ratio,
            Family::Count => Dim::Count,
        }
    }

    /// The default band of `metric`: (relative, absolute floor in the
    /// stored unit). Tail percentiles move more between identical runs (a
    /// 5 s run's p99 is its 1 % slowest ops), so their bands are wider.
    pub fn default_band(self, metric: &str) -> (f64, f64) {
        match self {
            Family::Latency if metric == "p99" => (0.25, 1000.0),
            Family::Latency if matches!(metric, "p999" | "max") => (0.50, 2000.0),
            Family::Latency => (0.10, 500.0),
            Family::Throughput => (0.05, 1.0),
            Family::Time => (0.20, 250.0),
            Family::Factor => (0.10, 0.1),
            Family::Ratio => (0.20, 0.01),
            Family::Count => (0.10, 1.0),
        }
    }
}

/// Which way is worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Worse {
    Higher,
    Lower,
}

impl Worse {
    /// Metrics that are better when higher; every other is worse higher.
    pub fn of(metric: &str) -> Worse {
        match metric {
            "throughput" | "count" | "hit_ratio" => Worse::Lower,
            _ => Worse::Higher,
        }
    }
}

/// One gated metric, resolved: where it is read and how it is judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateMetric {
    /// As a rule names it: `baseline.p99`, `run.stale_reads`.
    pub path: String,
    /// `baseline`, `fault:<name>`, `recovery:<name>` or `run`.
    pub phase: String,
    /// The op, for an op metric (`caller` for the caller-visible ops).
    pub op: Option<String>,
    /// The op metric (`p99`), or the phase metric's stored key
    /// (`time_to_recover_ms`).
    pub key: String,
    pub class: Class,
    pub family: Family,
    pub worse: Worse,
    /// The band: `max(relative × baseline median, floor)`.
    pub relative: f64,
    /// In the metric's stored unit (µs for latency, ms for times).
    pub floor: f64,
    /// A run that did not measure it measured 0 (`unavailable`: no outage).
    #[serde(default)]
    pub absent_is_zero: bool,
}

/// The gate of a scenario, as summary.json records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateConfig {
    /// The significance level a change must reach.
    pub alpha: f64,
    /// Fewer matching baselines than this: inconclusive.
    pub min_baselines: usize,
    /// Baselines whose coefficient of variation for a metric is above this
    /// (and whose spread is above half its floor) cannot decide it.
    pub max_cv: f64,
    /// A significant change larger than this fraction of the band, but not
    /// larger than the band, is a warning.
    pub warn: f64,
    /// The least run-to-run spread the between-run test assumes, as a share
    /// of the baselines' median: a few quiet baselines understate how far an
    /// identical run lands on a shared machine.
    #[serde(default = "noise_floor")]
    pub noise_floor: f64,
    pub metrics: Vec<GateMetric>,
}

fn noise_floor() -> f64 {
    GateConfig::NOISE_FLOOR
}

impl GateConfig {
    pub const ALPHA: f64 = 0.01;
    pub const MIN_BASELINES: usize = 3;
    pub const MAX_CV: f64 = 0.25;
    pub const WARN: f64 = 0.5;
    pub const NOISE_FLOOR: f64 = 0.10;
}
