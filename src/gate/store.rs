//! Report directories as the gate reads them: a run's summary.json and its
//! per-second histograms (latency.hlog), found one by one or in a store of
//! past runs (a CI cache).

use super::GateError;
use crate::report::summary::{PhaseSummary, Summary, SCHEMA};
use crate::vocab::gate::GateMetric;
use base64::Engine;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How deep a store is searched for report directories.
const MAX_DEPTH: usize = 4;

/// One finished run, read back.
pub struct Run {
    pub dir: PathBuf,
    pub summary: Summary,
    /// Per op: (second since the start of load, its histogram).
    seconds: BTreeMap<String, Vec<(u64, Histogram<u64>)>>,
}

impl Run {
    /// Reads the report directory `dir`.
    pub fn read(dir: &Path) -> Result<Run, GateError> {
        let path = dir.join("summary.json");
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => GateError::NoSummary {
                dir: dir.to_path_buf(),
            },
            _ => GateError::Read {
                path: path.clone(),
                source: e,
            },
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| GateError::BadSummary {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let schema = value["schema"].as_str().unwrap_or("(none)").to_string();
        if schema != SCHEMA {
            return Err(GateError::UnknownSchema { path, schema });
        }
        let summary: Summary =
            serde_json::from_value(value).map_err(|e| GateError::BadSummary {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let seconds = read_hlog(&dir.join("latency.hlog"));
        Ok(Run {
            dir: dir.to_path_buf(),
            summary,
            seconds,
        })
    }

    fn phase(&self, name: &str) -> Option<&PhaseSummary> {
        self.summary.phases.iter().find(|p| p.name == name)
    }

    /// The metric's value in this run's summary, if it measured it.
    pub fn value(&self, m: &GateMetric) -> Option<f64> {
        let phase = self.phase(&m.phase)?;
        let v = match &m.op {
            Some(op) => phase.ops.get(op).map(|o| o.metric(&m.key)),
            None => phase
                .metrics
                .get(&m.key)
                .copied()
                .or(m.absent_is_zero.then_some(0.0)),
        };
        v.filter(|v| v.is_finite())
    }

    /// The metric second by second over its phase (whole seconds inside
    /// it, with their index since the start of load), from latency.hlog: an op's latency percentile or its
    /// throughput. `None` for other metrics or without the log.
    pub fn per_second(&self, m: &GateMetric) -> Option<Vec<(u64, f64)>> {
        let op = m.op.as_ref()?;
        let q = match m.key.as_str() {
            "p50" => Some(0.50),
            "p90" => Some(0.90),
            "p99" => Some(0.99),
            "p999" => Some(0.999),
            "throughput" => None,
            _ => return None,
        };
        let phase = self.phase(&m.phase)?;
        let secs = self.seconds.get(op)?;
        let inside = |t: u64| t as f64 >= phase.start_s && (t + 1) as f64 <= phase.end_s + 1e-6;
        let values: Vec<(u64, f64)> = secs
            .iter()
            .filter(|(t, h)| inside(*t) && (q.is_none() || !h.is_empty()))
            .map(|(t, h)| {
                let v = match q {
                    Some(q) => h.value_at_quantile(q) as f64,
                    None => h.len() as f64,
                };
                (*t, v)
            })
            .collect();
        (!values.is_empty()).then_some(values)
    }
}

/// The interval histograms of an hlog by tag; empty if there is none or it
/// cannot be read (the gate then falls back to run-level values).
fn read_hlog(path: &Path) -> BTreeMap<String, Vec<(u64, Histogram<u64>)>> {
    let mut out: BTreeMap<String, Vec<(u64, Histogram<u64>)>> = BTreeMap::new();
    let Ok(bytes) = std::fs::read(path) else {
        return out;
    };
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(&bytes) {
        let Ok(LogEntry::Interval(h)) = entry else {
            continue;
        };
        let Some(tag) = h.tag() else { continue };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(h.encoded_histogram())
        else {
            continue;
        };
        let Ok(hist) = de.deserialize::<u64, _>(&mut raw.as_slice()) else {
            continue;
        };
        out.entry(tag.as_str().to_string())
            .or_default()
            .push((h.start_timestamp().as_secs(), hist));
    }
    out
}

/// The report directories `dir` stands for: itself if it holds a
/// summary.json, else every one found below it (a store of runs).
pub fn find(dir: &Path) -> Result<Vec<PathBuf>, GateError> {
    if !dir.is_dir() {
        return Err(GateError::NotADir {
            dir: dir.to_path_buf(),
        });
    }
    let mut found = Vec::new();
    walk(dir, 0, &mut found);
    found.sort();
    if found.is_empty() {
        return Err(GateError::NoReports {
            dir: dir.to_path_buf(),
        });
    }
    Ok(found)
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if dir.join("summary.json").is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut subdirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    for d in subdirs {
        walk(&d, depth + 1, out);
    }
}
