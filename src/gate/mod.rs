//! The regression gate (L5): a finished run against the baselines that
//! count for it (same scenario and content hash, topology, backend and
//! testbed), metric by metric (`decide`), written as compare.json
//! (`gameday.compare/1`), compare.md, compare.html and junit.xml
//! (`render`); and the gated metrics over many runs with their change
//! points (`trend`).

pub mod decide;
mod render;
mod stats;
pub mod store;
pub mod trend;

use crate::vocab::gate::Worse;
use decide::{Decision, Verdict};
use serde::Serialize;
use std::path::{Path, PathBuf};
use store::Run;

pub const SCHEMA: &str = "gameday.compare/1";

/// Why a comparison cannot be made: bad usage, exit 2.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("{dir}: no summary.json here: not a report directory (a run with variants keeps one per variant subdirectory)")]
    NoSummary { dir: PathBuf },
    #[error(
        "{path}: unknown schema `{schema}` (this gameday reads {})",
        crate::report::summary::SCHEMA
    )]
    UnknownSchema { path: PathBuf, schema: String },
    #[error("{path}: not a summary gameday can read: {message}")]
    BadSummary { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{dir}: not a directory")]
    NotADir { dir: PathBuf },
    #[error("{dir}: no report directories (summary.json) in it or below it")]
    NoReports { dir: PathBuf },
    #[error("{dir} is a run of scenario `{theirs}`, the candidate of `{ours}`: runs of different scenarios are not compared")]
    DifferentScenario {
        dir: PathBuf,
        theirs: String,
        ours: String,
    },
    #[error("{dir}: recorded by a gameday without a regression gate (no `gate` in summary.json): run the scenario again")]
    NoGate { dir: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The comparison's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    Pass,
    Regression,
    Inconclusive,
}

impl Overall {
    /// 0 pass (warnings included), 1 regression, 4 inconclusive.
    pub fn exit_code(self) -> u8 {
        match self {
            Overall::Pass => 0,
            Overall::Regression => 1,
            Overall::Inconclusive => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Overall::Pass => "pass",
            Overall::Regression => "regression",
            Overall::Inconclusive => "inconclusive",
        }
    }
}

/// A run that was not counted as a baseline, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub dir: PathBuf,
    pub reason: String,
}

/// A candidate against its baselines, decided.
pub struct Comparison {
    pub candidate: Run,
    pub baselines: Vec<Run>,
    pub skipped: Vec<Skipped>,
    pub decisions: Vec<Decision>,
    pub config: crate::vocab::gate::GateConfig,
    pub verdict: Overall,
    pub reason: String,
    /// Why the candidate's testbed was slower than its baselines', if it was.
    pub testbed_slower: Option<String>,
}

impl Comparison {
    pub fn count(&self, v: Verdict) -> usize {
        self.decisions.iter().filter(|d| d.verdict == v).count()
    }
}

/// Why `b` is no baseline for `c`, if it is not.
fn mismatch(c: &Run, b: &Run) -> Option<String> {
    let (cs, bs) = (&c.summary, &b.summary);
    if bs.variant != cs.variant {
        return Some(format!(
            "another variant ({})",
            bs.variant.as_deref().unwrap_or("none")
        ));
    }
    if bs.interrupted {
        return Some("interrupted".into());
    }
    if !bs.passed() {
        return Some("it did not pass its own expectations".into());
    }
    if bs.scenario_hash != cs.scenario_hash {
        return Some(format!(
            "the scenario changed (content hash {} ≠ {})",
            short(&bs.scenario_hash),
            short(&cs.scenario_hash)
        ));
    }
    if bs.topology.kind != cs.topology.kind {
        return Some(format!("another topology ({})", bs.topology.kind));
    }
    if bs.backend != cs.backend {
        return Some(format!("another backend ({})", bs.backend));
    }
    match (&bs.testbed, &cs.testbed) {
        (Some(theirs), Some(ours)) => {
            let d = theirs.differences(ours);
            (!d.is_empty()).then(|| format!("another testbed: {}", d.join(", ")))
        }
        _ => Some("no testbed recorded".into()),
    }
}

fn short(hash: &str) -> &str {
    if hash.is_empty() {
        "none"
    } else {
        &hash[..hash.len().min(12)]
    }
}

/// Compares the report directory `candidate` with the runs under each of
/// `baselines` (report directories, or stores of them).
pub fn compare(candidate: &Path, baselines: &[PathBuf]) -> Result<Comparison, GateError> {
    let cand = Run::read(candidate)?;
    let config = cand.summary.gate.clone().ok_or_else(|| GateError::NoGate {
        dir: candidate.to_path_buf(),
    })?;
    let mut used = Vec::new();
    let mut skipped = Vec::new();
    for root in baselines {
        let dirs = store::find(root)?;
        let single = dirs.len() == 1 && dirs[0] == *root;
        for dir in dirs {
            let run = Run::read(&dir)?;
            if run.summary.run_id == cand.summary.run_id
                && run.summary.started_at == cand.summary.started_at
            {
                continue;
            }
            if run.summary.scenario != cand.summary.scenario {
                if single {
                    return Err(GateError::DifferentScenario {
                        dir,
                        theirs: run.summary.scenario.clone(),
                        ours: cand.summary.scenario.clone(),
                    });
                }
                skipped.push(Skipped {
                    dir,
                    reason: format!("another scenario ({})", run.summary.scenario),
                });
                continue;
            }
            match mismatch(&cand, &run) {
                Some(reason) => skipped.push(Skipped { dir, reason }),
                None => used.push(run),
            }
        }
    }
    let mut decisions: Vec<Decision> = config
        .metrics
        .iter()
        .filter_map(|m| decide::decide(m, &config, &cand, &used))
        .collect();
    decide::settle(&mut decisions, &config);
    let slower = testbed_slower(&cand, &used);
    let withheld = slower
        .as_ref()
        .map_or(0, |slow| withhold(&mut decisions, slow));
    let slower = slower.map(|s| s.why);
    let (verdict, reason) = overall(&decisions, used.len(), &config, slower.as_deref(), withheld);
    Ok(Comparison {
        candidate: cand,
        baselines: used,
        skipped,
        decisions,
        config,
        verdict,
        reason,
        testbed_slower: slower,
    })
}

/// The comparison's verdict and why, from its metrics' verdicts.
fn overall(
    decisions: &[Decision],
    used: usize,
    cfg: &crate::vocab::gate::GateConfig,
    slower: Option<&str>,
    withheld: usize,
) -> (Overall, String) {
    let any = |v| decisions.iter().any(|d| d.verdict == v);
    if any(Verdict::Fail) {
        (Overall::Regression, "a gated metric got worse".to_string())
    } else if let Some(why) = slower.filter(|_| withheld > 0) {
        (
            Overall::Inconclusive,
            format!("the testbed was slower during the candidate ({why}): {withheld} performance changes cannot be told from it; run it again"),
        )
    } else if used < cfg.min_baselines {
        (
            Overall::Inconclusive,
            format!(
                "{} matching baselines, {} are needed",
                used, cfg.min_baselines
            ),
        )
    } else if any(Verdict::Inconclusive) {
        (
            Overall::Inconclusive,
            "some gated metrics cannot be decided".to_string(),
        )
    } else {
        (Overall::Pass, "no gated metric got worse".to_string())
    }
}

/// How much slower the candidate's testbed may be than its slowest
/// baseline's before performance changes are no longer judged.
const SLOWER_TESTBED: f64 = 1.25;
/// The same for CPU steal, in percentage points above the baselines' most.
const MORE_STEAL: f64 = 5.0;

/// How much slower the candidate's testbed was than every baseline's, and
/// why we think so.
struct Slowdown {
    why: String,
    /// The work-time ratio (or its equivalent for steal), above 1.
    factor: f64,
}

/// The candidate's testbed, if it was measurably slower than every
/// baseline's (its calibration): then a slower candidate may be a slower
/// machine, not a slower build.
fn testbed_slower(c: &Run, used: &[Run]) -> Option<Slowdown> {
    let ours = c.summary.calibration?;
    let theirs: Vec<_> = used.iter().filter_map(|b| b.summary.calibration).collect();
    if theirs.is_empty() || !ours.slowest_us().is_finite() {
        return None;
    }
    let slowest = theirs
        .iter()
        .map(|b| b.slowest_us())
        .filter(|t| t.is_finite())
        .fold(0.0, f64::max);
    if slowest > 0.0 && ours.slowest_us() > SLOWER_TESTBED * slowest {
        let factor = ours.slowest_us() / slowest;
        return Some(Slowdown {
            why: format!(
                "a fixed piece of CPU work took {:.0} µs, {factor:.2}× the slowest baseline's {slowest:.0} µs",
                ours.slowest_us(),
            ),
            factor,
        });
    }
    let most = theirs
        .iter()
        .filter_map(|b| b.steal_pct)
        .fold(0.0, f64::max);
    match ours.steal_pct {
        Some(s) if s > most + MORE_STEAL => Some(Slowdown {
            why: format!("CPU steal {s:.1}% of the time, the baselines' at most {most:.1}%"),
            factor: (100.0 - most) / (100.0 - s).max(1.0),
        }),
        _ => None,
    }
}

/// Turns the performance failures and warnings that the slower testbed
/// can explain into inconclusive ones, saying why; returns how many.
///
/// A testbed `k`× slower is taken to explain a metric up to `k²`× worse
/// than the baselines' median: a queue in front of a CPU-bound service at
/// moderate utilisation (up to about 40 %) slows by about that much when
/// its service time grows `k`-fold. A change beyond that is the build's,
/// whatever the machine did, and stands. Invariants always stand: a stale
/// read is one on any machine.
fn withhold(decisions: &mut [Decision], slow: &Slowdown) -> usize {
    let explained = slow.factor * slow.factor;
    let mut n = 0;
    for d in decisions.iter_mut().filter(|d| {
        d.class == crate::vocab::gate::Class::Performance
            && matches!(d.verdict, Verdict::Fail | Verdict::Warn)
    }) {
        let worse = times_worse(d.baseline_median, d.candidate, d.worse);
        if worse <= explained {
            d.verdict = Verdict::Inconclusive;
            d.reason = format!(
                "{}; not judged: the testbed was slower ({}), which can explain up to {explained:.2}× worse",
                d.reason, slow.why
            );
            n += 1;
        } else {
            d.reason = format!(
                "{}; {worse:.2}× worse, more than the slower testbed ({:.2}×) can explain",
                d.reason, slow.factor
            );
        }
    }
    n
}

/// How many times worse the candidate is than the baselines' median;
/// infinite when no ratio can be formed (a zero median, a missing value).
fn times_worse(median: Option<f64>, candidate: Option<f64>, worse: Worse) -> f64 {
    match (median, candidate, worse) {
        (Some(m), Some(c), Worse::Higher) if m > 0.0 => c / m,
        (Some(m), Some(c), Worse::Lower) if c > 0.0 => m / c,
        _ => f64::INFINITY,
    }
}

/// Writes compare.json, compare.md, compare.html and junit.xml into `out`,
/// and appends compare.md to `$GITHUB_STEP_SUMMARY` when it is set.
pub fn write(c: &Comparison, out: &Path) -> Result<(), GateError> {
    let w = |name: &str, text: String| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|source| GateError::Write { path, source })
    };
    std::fs::create_dir_all(out).map_err(|source| GateError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    w("compare.json", render::json(c))?;
    let md = render::markdown(c);
    w("compare.md", md.clone())?;
    w("compare.html", render::html(c))?;
    w("junit.xml", render::junit(c))?;
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").map(PathBuf::from) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| GateError::Write {
                path: path.clone(),
                source,
            })?;
        writeln!(f, "{md}").map_err(|source| GateError::Write { path, source })?;
    }
    Ok(())
}

/// The console's account: the verdict, then what was not a pass.
pub fn console(c: &Comparison) -> String {
    render::console(c)
}

/// `gameday compare` (and `gameday run --baseline`): compares, writes the
/// files into `out` (default `<candidate>/compare`), prints the verdict;
/// returns the exit code (2 after printing why the comparison cannot be
/// made).
pub fn command(candidate: &Path, baselines: &[PathBuf], out: Option<&Path>, quiet: bool) -> u8 {
    let result = compare(candidate, baselines).and_then(|c| {
        let dir = out.map_or_else(|| candidate.join("compare"), Path::to_path_buf);
        write(&c, &dir)?;
        Ok((c, dir))
    });
    match result {
        Ok((c, dir)) => {
            if quiet {
                println!("compare {} {}", c.verdict.as_str(), dir.display());
            } else {
                eprint!("{}", console(&c));
                eprintln!("gameday: comparison in {}", dir.display());
            }
            c.verdict.exit_code()
        }
        Err(e) => {
            eprintln!("gameday: {e}");
            2
        }
    }
}

/// A run's exit code and its comparison's, combined: a failure of either
/// is a failure (1), else the larger (4: inconclusive).
pub fn combine(run: u8, compare: u8) -> u8 {
    if run == 1 || compare == 1 {
        1
    } else {
        run.max(compare)
    }
}

/// The report directories a finished run left in `dir`: itself, or one per
/// variant.
pub fn reports_of(dir: &Path) -> Vec<PathBuf> {
    if dir.join("summary.json").is_file() {
        return vec![dir.to_path_buf()];
    }
    store::find(dir).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slower_testbed_explains_only_so_much() {
        let slow = Slowdown {
            why: "test".into(),
            factor: 1.3,
        };
        let explained = slow.factor * slow.factor;
        // p50 0.65 ms → 0.9 ms on a testbed 1.3× slower: could be the machine.
        assert!(times_worse(Some(650.0), Some(900.0), Worse::Higher) <= explained);
        // 0.65 ms → 2.7 ms (2 ms more on every reply): the build's.
        assert!(times_worse(Some(650.0), Some(2700.0), Worse::Higher) > explained);
        // Throughput halved is more than 1.3² explains; 20 % less is not.
        assert!(times_worse(Some(1000.0), Some(500.0), Worse::Lower) > explained);
        assert!(times_worse(Some(1000.0), Some(800.0), Worse::Lower) <= explained);
        assert!(times_worse(Some(0.0), Some(1.0), Worse::Higher).is_infinite());
        assert!(times_worse(Some(1.0), None, Worse::Higher).is_infinite());
    }
}
