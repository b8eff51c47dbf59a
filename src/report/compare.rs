//! The report of a scenario with variants (`fencing = [false, true]`,
//! ...): each variant has its own full report in `<dir>/<variant>/`; the
//! top of `<dir>` gets `comparison.json` and `report.html`, a table of every
//! variant's run-phase metrics side by side and their caller latency over
//! time on one chart.

use super::markup::escape as esc;
use super::summary::Summary;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// One variant in `comparison.json`.
#[derive(Debug, Serialize)]
pub struct VariantRow {
    pub variant: String,
    pub verdict: String,
    /// Its report directory, relative to the comparison's.
    pub dir: String,
    /// The `run` phase's workload metrics.
    pub metrics: BTreeMap<String, f64>,
    pub caller_p50_us: f64,
    pub caller_p99_us: f64,
    pub caller_errors: f64,
}

/// `comparison.json`, schema `gameday.comparison/1`.
#[derive(Debug, Serialize)]
pub struct Comparison {
    pub schema: &'static str,
    pub scenario: String,
    pub verdict: String,
    pub variants: Vec<VariantRow>,
}

/// Writes `comparison.json` and `report.html` into `dir`.
pub fn write(dir: &Path, scenario: &str, runs: &[(String, Summary)]) -> std::io::Result<bool> {
    let rows: Vec<VariantRow> = runs
        .iter()
        .map(|(name, s)| {
            let run = s.phases.iter().find(|p| p.name == "run");
            let caller = run.and_then(|p| p.ops.get("caller"));
            VariantRow {
                variant: name.clone(),
                verdict: s.verdict.clone(),
                dir: name.clone(),
                metrics: run.map(|p| p.metrics.clone()).unwrap_or_default(),
                caller_p50_us: caller.map_or(0.0, |c| c.p50_us as f64),
                caller_p99_us: caller.map_or(0.0, |c| c.p99_us as f64),
                caller_errors: caller.map_or(0.0, |c| c.errors as f64),
            }
        })
        .collect();
    let passed = runs.iter().all(|(_, s)| s.verdict == "pass");
    let comparison = Comparison {
        schema: "gameday.comparison/1",
        scenario: scenario.to_string(),
        verdict: if passed { "pass" } else { "fail" }.into(),
        variants: rows,
    };
    let json = serde_json::to_string_pretty(&comparison).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("comparison.json"), json + "\n")?;
    std::fs::write(dir.join("report.html"), html(&comparison))?;
    Ok(passed)
}

fn html(c: &Comparison) -> String {
    let mut metrics: Vec<&String> = Vec::new();
    for r in &c.variants {
        for k in r.metrics.keys() {
            if !metrics.contains(&k) {
                metrics.push(k);
            }
        }
    }
    let mut t = String::from("<table><tr><th>metric (whole run)</th>");
    for r in &c.variants {
        let _ = write!(
            t,
            "<th><a href=\"{0}/report.html\">{0}</a><br><span class=\"{1}\">{1}</span></th>",
            esc(&r.variant),
            esc(&r.verdict)
        );
    }
    t.push_str("</tr>\n");
    let mut row = |label: &str, values: Vec<String>| {
        let _ = write!(t, "<tr><td>{}</td>", esc(label));
        for v in values {
            let _ = write!(t, "<td>{}</td>", esc(&v));
        }
        t.push_str("</tr>\n");
    };
    row(
        "caller p50",
        c.variants
            .iter()
            .map(|r| format!("{:.2} ms", r.caller_p50_us / 1e3))
            .collect(),
    );
    row(
        "caller p99",
        c.variants
            .iter()
            .map(|r| format!("{:.2} ms", r.caller_p99_us / 1e3))
            .collect(),
    );
    for m in metrics {
        row(
            m,
            c.variants
                .iter()
                .map(|r| {
                    r.metrics.get(m).map_or("–".into(), |v| {
                        format!("{}", (v * 1000.0).round() / 1000.0)
                    })
                })
                .collect(),
        );
    }
    t.push_str("</table>");
    let mut bars = bar_chart(c);
    for (metric, what) in KEY_METRICS {
        if c.variants.iter().any(|r| r.metrics.contains_key(*metric)) {
            bars.push_str(&format!("<h2>{}</h2>\n", esc(what)));
            bars.push_str(&metric_bars(c, metric));
        }
    }
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>gameday: {name} (variants)</title><style>\
body{{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}}\
table{{border-collapse:collapse;margin:8px 0 20px}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}}\
th{{background:#f3f3f3}}td:first-child{{text-align:left}}.pass{{color:#1a7f37;font-weight:600}}.fail{{color:#c62828;font-weight:700}}\
</style></head><body>\n<h1>gameday: {name}: {n} variants, <span class=\"{v}\">{v}</span></h1>\n\
<p>Each variant ran the same scenario against the same topology, one after the other; each has its full report in its own directory.</p>\n\
<h2>Side by side</h2>\n{t}\n<h2>Caller latency (waiters included)</h2>\n{bars}\n</body></html>\n",
        name = esc(&c.scenario),
        n = c.variants.len(),
        v = esc(&c.verdict),
    )
}

/// The metrics that tell variants apart, charted when present.
const KEY_METRICS: &[(&str, &str)] = &[
    (
        "recomputes_per_event",
        "Origin recomputations per expiry (ideal 1)",
    ),
    ("redis_ops_per_read", "Redis commands per read"),
    (
        "burst_ratio",
        "Most admitted in one window's span, over the limit",
    ),
    (
        "reference_error",
        "Admitted vs the exact reference (relative error)",
    ),
    (
        "over_admission",
        "Over-admission (share of what was allowed)",
    ),
    (
        "stale_writes_accepted",
        "Stale writes the resource accepted",
    ),
    (
        "stale_writes_rejected",
        "Stale writes the fencing check refused",
    ),
];

/// One horizontal bar per variant for `metric` (inline SVG).
fn metric_bars(c: &Comparison, metric: &str) -> String {
    let value = |r: &VariantRow| r.metrics.get(metric).copied().unwrap_or(0.0);
    let max = c
        .variants
        .iter()
        .map(value)
        .fold(f64::MIN_POSITIVE, f64::max);
    let (left, width, row) = (180.0, 640.0, 24.0);
    let height = row * c.variants.len() as f64 + 8.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    for (i, r) in c.variants.iter().enumerate() {
        let y = i as f64 * row + 4.0;
        let v = value(r);
        let w = width * v / max;
        let _ = write!(
            svg,
            "<text x=\"4\" y=\"{}\">{}</text><rect x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"16\" fill=\"#2ca02c\"/><text x=\"{:.1}\" y=\"{}\">{}</text>",
            y + 13.0,
            esc(&r.variant),
            left + w + 4.0,
            y + 13.0,
            (v * 1000.0).round() / 1000.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Caller p50 and p99 per variant, as horizontal bars (inline SVG).
fn bar_chart(c: &Comparison) -> String {
    let max = c
        .variants
        .iter()
        .map(|r| r.caller_p99_us)
        .fold(1.0f64, f64::max);
    let (left, width, row) = (140.0, 680.0, 44.0);
    let height = row * c.variants.len() as f64 + 20.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    for (i, r) in c.variants.iter().enumerate() {
        let y = i as f64 * row + 6.0;
        let w50 = width * r.caller_p50_us / max;
        let w99 = width * r.caller_p99_us / max;
        let _ = write!(
            svg,
            "<text x=\"4\" y=\"{}\">{}</text>\
<rect x=\"{left}\" y=\"{y}\" width=\"{w99:.1}\" height=\"16\" fill=\"#ff7f0e\"/>\
<rect x=\"{left}\" y=\"{}\" width=\"{w50:.1}\" height=\"16\" fill=\"#1f77b4\"/>\
<text x=\"{:.1}\" y=\"{}\">p99 {:.2} ms</text><text x=\"{:.1}\" y=\"{}\">p50 {:.2} ms</text>",
            y + 20.0,
            esc(&r.variant),
            y + 18.0,
            left + w99 + 4.0,
            y + 12.0,
            r.caller_p99_us / 1e3,
            left + w50 + 4.0,
            y + 30.0,
            r.caller_p50_us / 1e3,
        );
    }
    svg.push_str("</svg>");
    svg
}
