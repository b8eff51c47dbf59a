//! `gameday trend`: each gated metric over many runs of a scenario,
//! ordered by start time and labelled with their commits, with change
//! points found by E-divisive means (`stats::change_points`: the best
//! split of a series by the energy statistic, kept at p < 0.05 by a
//! permutation test, each side searched again, at least 3 runs a side).
//! Writes trend.csv and trend.html.

use super::stats;
use super::store::{self, Run};
use super::GateError;
use crate::report::markup::escape as esc;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Significance of a change point.
const ALPHA: f64 = 0.05;
/// Runs on each side of a change point, at least.
const MIN_SIZE: usize = 3;
const PERMUTATIONS: usize = 199;
/// The newest runs of a series that are searched.
const MAX_RUNS: usize = 200;

/// A change found in one metric's series.
#[derive(Debug, Clone)]
pub struct ChangePoint {
    pub group: String,
    pub metric: String,
    /// The first run of the new regime.
    pub run_id: String,
    pub commit: Option<String>,
    pub before: f64,
    pub after: f64,
}

/// One metric of one group of runs, in time order.
struct Series {
    metric: String,
    family: &'static str,
    points: Vec<(usize, f64)>,
    changes: Vec<usize>,
}

struct Group {
    name: String,
    runs: Vec<Run>,
    series: Vec<Series>,
}

/// Reads every run under `dirs`, writes trend.csv and trend.html into
/// `out`, and returns the change points.
pub fn trend(dirs: &[PathBuf], out: &Path) -> Result<Vec<ChangePoint>, GateError> {
    let mut groups: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for root in dirs {
        for dir in store::find(root)? {
            let run = Run::read(&dir)?;
            if run.summary.interrupted {
                continue;
            }
            let s = &run.summary;
            let key = format!(
                "{}{} ({} on {})",
                s.scenario,
                s.variant
                    .as_deref()
                    .map_or(String::new(), |v| format!("/{v}")),
                s.topology.kind,
                s.backend
            );
            groups.entry(key).or_default().push(run);
        }
    }
    let mut all = Vec::new();
    let mut changes = Vec::new();
    for (name, mut runs) in groups {
        runs.sort_by(|a, b| a.summary.started_at.cmp(&b.summary.started_at));
        if runs.len() > MAX_RUNS {
            runs.drain(..runs.len() - MAX_RUNS);
        }
        let series = series_of(&runs);
        for s in &series {
            for &i in &s.changes {
                let split = s.points.partition_point(|(idx, _)| *idx < i);
                let vals: Vec<f64> = s.points.iter().map(|p| p.1).collect();
                changes.push(ChangePoint {
                    group: name.clone(),
                    metric: s.metric.clone(),
                    run_id: runs[i].summary.run_id.clone(),
                    commit: runs[i].summary.commit.clone(),
                    before: stats::median(&vals[..split]),
                    after: stats::median(&vals[split..]),
                });
            }
        }
        all.push(Group { name, runs, series });
    }
    std::fs::create_dir_all(out).map_err(|source| GateError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let write = |name: &str, text: String| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|source| GateError::Write { path, source })
    };
    write("trend.csv", csv(&all))?;
    write("trend.html", html(&all))?;
    Ok(changes)
}

/// The series of every metric the newest run gates.
fn series_of(runs: &[Run]) -> Vec<Series> {
    let Some(cfg) = runs.last().and_then(|r| r.summary.gate.clone()) else {
        return Vec::new();
    };
    cfg.metrics
        .iter()
        .filter_map(|m| {
            let points: Vec<(usize, f64)> = runs
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.value(m).map(|v| (i, v)))
                .collect();
            if points.is_empty() {
                return None;
            }
            let values: Vec<f64> = points.iter().map(|p| p.1).collect();
            let changes = stats::change_points(&values, ALPHA, MIN_SIZE, PERMUTATIONS)
                .into_iter()
                .map(|k| points[k].0)
                .collect();
            Some(Series {
                metric: m.path.clone(),
                family: m.family.as_str(),
                points,
                changes,
            })
        })
        .collect()
}

fn csv(groups: &[Group]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record([
        "group",
        "metric",
        "run",
        "run_id",
        "started_at",
        "commit",
        "value",
        "change_point",
    ]);
    for g in groups {
        for s in &g.series {
            for &(i, v) in &s.points {
                let r = &g.runs[i].summary;
                let _ = w.write_record([
                    g.name.as_str(),
                    s.metric.as_str(),
                    &i.to_string(),
                    &r.run_id,
                    &r.started_at,
                    r.commit.as_deref().unwrap_or(""),
                    &format!("{v}"),
                    if s.changes.contains(&i) { "1" } else { "0" },
                ]);
            }
        }
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// A run's label: its commit's first 8 characters, else its index.
fn label(r: &Run, i: usize) -> String {
    r.summary
        .commit
        .as_deref()
        .map_or(format!("#{i}"), |c| c[..c.len().min(8)].to_string())
}

fn chart(g: &Group, s: &Series) -> String {
    let (w, h, left, bottom) = (640.0, 180.0, 60.0, 40.0);
    let n = g.runs.len().max(2) as f64;
    let lo = s.points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = s
        .points
        .iter()
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if hi - lo < 1e-9 {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo, hi)
    };
    let x = |i: usize| left + i as f64 / (n - 1.0) * (w - left - 20.0);
    let y = |v: f64| 10.0 + (hi - v) / (hi - lo) * (h - bottom - 10.0);
    let mut svg = format!("<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">");
    for &c in &s.changes {
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"4\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#c00\" stroke-dasharray=\"4 3\"><title>change point: {2}</title></line>",
            x(c) - (x(1) - x(0)) / 2.0,
            h - bottom,
            esc(&label(&g.runs[c], c))
        );
    }
    let path: Vec<String> = s
        .points
        .iter()
        .map(|&(i, v)| format!("{:.1},{:.1}", x(i), y(v)))
        .collect();
    let _ = write!(
        svg,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#36c\"/>",
        path.join(" ")
    );
    for &(i, v) in &s.points {
        let _ = write!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#36c\"><title>{} {v:.3}</title></circle>",
            x(i),
            y(v),
            esc(&label(&g.runs[i], i))
        );
    }
    let _ = write!(svg, "<text x=\"4\" y=\"14\" font-size=\"11\">{hi:.3}</text><text x=\"4\" y=\"{:.1}\" font-size=\"11\">{lo:.3}</text>", h - bottom);
    let step = (g.runs.len() / 12).max(1);
    for (i, r) in g.runs.iter().enumerate().step_by(step) {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            x(i),
            h - bottom + 16.0,
            esc(&label(r, i))
        );
    }
    svg + "</svg>"
}

fn html(groups: &[Group]) -> String {
    let mut body = String::new();
    for g in groups {
        let _ = write!(body, "<h2>{} — {} runs</h2>", esc(&g.name), g.runs.len());
        for s in &g.series {
            let marks = if s.changes.is_empty() {
                "no change point".to_string()
            } else {
                format!(
                    "change points at {}",
                    s.changes
                        .iter()
                        .map(|&i| label(&g.runs[i], i))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let _ = write!(
                body,
                "<h3><code>{}</code> ({}) — {}</h3>{}",
                esc(&s.metric),
                s.family,
                esc(&marks),
                chart(g, s)
            );
        }
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>gameday trend</title><style>body{{font-family:system-ui,sans-serif;margin:2em}}h3{{font-size:1em;font-weight:normal}}</style></head><body><h1>gameday trend</h1><p>Each gated metric over the runs, oldest first, labelled by commit. Dashed red lines: change points (E-divisive means, permutation test p &lt; {ALPHA}, at least {MIN_SIZE} runs a side).</p>{body}</body></html>\n"
    )
}

/// `gameday trend`: 0, or 2 when the runs cannot be read.
pub fn command(dirs: &[PathBuf], out: &Path) -> u8 {
    match trend(dirs, out) {
        Ok(changes) => {
            for c in &changes {
                println!(
                    "change point: {} {} at run {}{}: {:.3} -> {:.3}",
                    c.group,
                    c.metric,
                    c.run_id,
                    c.commit.as_deref().map_or(String::new(), |h| format!(
                        " (commit {})",
                        &h[..h.len().min(12)]
                    )),
                    c.before,
                    c.after
                );
            }
            println!(
                "gameday: {} change points; trend in {}",
                changes.len(),
                out.display()
            );
            0
        }
        Err(e) => {
            eprintln!("gameday: {e}");
            2
        }
    }
}
