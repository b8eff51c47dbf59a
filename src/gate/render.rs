//! The comparison's files: compare.json (`gameday.compare/1`), compare.md
//! (failures, warnings and inconclusive metrics first), compare.html (each
//! metric as its baselines' dots, the band and the candidate), junit.xml
//! (one case per gated metric), and the console's lines.

use super::decide::{fmt_p, Decision, Verdict};
use super::{Comparison, Skipped, SCHEMA};
use crate::report::markup::escape as esc;
use crate::vocab::units::fmt_micros;
use serde::Serialize;
use std::fmt::Write;

#[derive(Serialize)]
struct RunRef {
    dir: String,
    run_id: String,
    started_at: String,
    commit: Option<String>,
    calibration: Option<crate::testbed::Calibration>,
}

impl RunRef {
    fn of(r: &super::store::Run) -> RunRef {
        RunRef {
            dir: r.dir.display().to_string(),
            run_id: r.summary.run_id.clone(),
            started_at: r.summary.started_at.clone(),
            commit: r.summary.commit.clone(),
            calibration: r.summary.calibration,
        }
    }
}

#[derive(Serialize)]
struct Counts {
    fail: usize,
    warn: usize,
    inconclusive: usize,
    pass: usize,
}

#[derive(Serialize)]
struct Settings {
    alpha: f64,
    min_baselines: usize,
    max_cv: f64,
    warn: f64,
    noise_floor: f64,
}

#[derive(Serialize)]
struct CompareJson<'a> {
    schema: &'static str,
    scenario: &'a str,
    variant: Option<&'a str>,
    verdict: &'static str,
    exit_code: u8,
    reason: &'a str,
    /// Why the candidate's testbed was slower than its baselines', if it was.
    testbed_slower: Option<&'a str>,
    counts: Counts,
    settings: Settings,
    candidate: RunRef,
    baselines: Vec<RunRef>,
    skipped: &'a [Skipped],
    metrics: &'a [Decision],
}

pub fn json(c: &Comparison) -> String {
    let doc = CompareJson {
        schema: SCHEMA,
        scenario: &c.candidate.summary.scenario,
        variant: c.candidate.summary.variant.as_deref(),
        verdict: c.verdict.as_str(),
        exit_code: c.verdict.exit_code(),
        reason: &c.reason,
        testbed_slower: c.testbed_slower.as_deref(),
        counts: Counts {
            fail: c.count(Verdict::Fail),
            warn: c.count(Verdict::Warn),
            inconclusive: c.count(Verdict::Inconclusive),
            pass: c.count(Verdict::Pass),
        },
        settings: Settings {
            alpha: c.config.alpha,
            min_baselines: c.config.min_baselines,
            max_cv: c.config.max_cv,
            warn: c.config.warn,
            noise_floor: c.config.noise_floor,
        },
        candidate: RunRef::of(&c.candidate),
        baselines: c.baselines.iter().map(RunRef::of).collect(),
        skipped: &c.skipped,
        metrics: &c.decisions,
    };
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

/// A value in its family's unit.
fn show(family: &str, v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) => match family {
            "latency" => fmt_micros(v),
            "time" => format!("{v:.0} ms"),
            "throughput" => format!("{v:.1}/s"),
            "ratio" => format!("{:.2}%", v * 100.0),
            _ => format!("{v:.3}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string(),
        },
    }
}

fn signed(family: &str, v: Option<f64>) -> String {
    match v {
        Some(v) if v >= 0.0 => format!("+{}", show(family, Some(v))),
        Some(v) => format!("−{}", show(family, Some(-v))),
        None => "–".into(),
    }
}

/// Failures first, then warnings, inconclusive, passes.
fn ordered(c: &Comparison) -> Vec<&Decision> {
    let mut v: Vec<&Decision> = c.decisions.iter().collect();
    v.sort_by_key(|d| d.verdict);
    v
}

fn headline(c: &Comparison) -> String {
    format!(
        "{}: {} ({} failed, {} warned, {} inconclusive, {} passed; {} baselines, {} skipped)",
        c.verdict.as_str().to_uppercase(),
        c.reason,
        c.count(Verdict::Fail),
        c.count(Verdict::Warn),
        c.count(Verdict::Inconclusive),
        c.count(Verdict::Pass),
        c.baselines.len(),
        c.skipped.len()
    )
}

pub fn markdown(c: &Comparison) -> String {
    let s = &c.candidate.summary;
    let mut out = format!(
        "### gameday compare: `{}`{}\n\n**{}**\n\n",
        s.scenario,
        s.variant
            .as_deref()
            .map_or(String::new(), |v| format!(" / `{v}`")),
        headline(c)
    );
    let shown: Vec<&Decision> = ordered(c)
        .into_iter()
        .filter(|d| d.verdict != Verdict::Pass)
        .collect();
    if !shown.is_empty() {
        out += "| verdict | metric | baseline median | candidate | delta | p | band | why |\n";
        out += "|---|---|---|---|---|---|---|---|\n";
        for d in shown {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} | {} | {} | {} | {} |",
                d.verdict.as_str(),
                d.metric,
                show(d.family, d.baseline_median),
                show(d.family, d.candidate),
                signed(d.family, d.delta),
                d.p_value.map_or("–".into(), fmt_p),
                show(d.family, d.band),
                d.reason.replace('|', "\\|")
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{} metrics passed. Candidate `{}`{}.",
        c.count(Verdict::Pass),
        s.run_id,
        s.commit.as_deref().map_or(String::new(), |h| format!(
            " at commit `{}`",
            &h[..h.len().min(12)]
        ))
    );
    if !c.skipped.is_empty() {
        let _ = writeln!(out, "\nSkipped runs:\n");
        for k in &c.skipped {
            let _ = writeln!(out, "- `{}`: {}", k.dir.display(), k.reason);
        }
    }
    out
}

pub fn junit(c: &Comparison) -> String {
    let name = esc(&c.candidate.summary.scenario);
    let failures = c.count(Verdict::Fail);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    let _ = writeln!(
        out,
        "  <testsuite name=\"gameday.compare.{name}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{}\">",
        c.decisions.len().max(1),
        c.count(Verdict::Inconclusive)
    );
    for d in &c.decisions {
        let _ = write!(
            out,
            "    <testcase classname=\"gameday.compare.{name}\" name=\"{}\">",
            esc(&d.metric)
        );
        let msg = esc(&format!(
            "{}: candidate {}, baseline median {}",
            d.reason,
            show(d.family, d.candidate),
            show(d.family, d.baseline_median)
        ));
        match d.verdict {
            Verdict::Fail => {
                let _ = write!(out, "<failure message=\"{msg}\"/>");
            }
            Verdict::Inconclusive => {
                let _ = write!(out, "<skipped message=\"{msg}\"/>");
            }
            Verdict::Warn => {
                let _ = write!(out, "<system-out>warning: {msg}</system-out>");
            }
            Verdict::Pass => {}
        }
        out += "</testcase>\n";
    }
    if c.decisions.is_empty() {
        let _ = writeln!(
            out,
            "    <testcase classname=\"gameday.compare.{name}\" name=\"baselines\"><skipped message=\"{}\"/></testcase>",
            esc(&c.reason)
        );
    }
    out + "  </testsuite>\n</testsuites>\n"
}

pub fn console(c: &Comparison) -> String {
    let mut out = format!("gameday compare: {}\n", headline(c));
    for d in ordered(c)
        .into_iter()
        .filter(|d| d.verdict != Verdict::Pass)
    {
        let _ = writeln!(
            out,
            "  {:<12} {:<40} {} → {} ({}): {}",
            d.verdict.as_str(),
            d.metric,
            show(d.family, d.baseline_median),
            show(d.family, d.candidate),
            signed(d.family, d.delta),
            d.reason
        );
    }
    for k in &c.skipped {
        let _ = writeln!(out, "  skipped      {}: {}", k.dir.display(), k.reason);
    }
    out
}

/// One metric as a strip: the band around the baselines' median, a dot
/// per baseline, the candidate as a diamond.
fn strip(d: &Decision) -> String {
    let (w, h, pad) = (520.0, 34.0, 12.0);
    let mut lo = d
        .baseline_values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    let mut hi = d
        .baseline_values
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    if let Some(c) = d.candidate {
        lo = lo.min(c);
        hi = hi.max(c);
    }
    if let (Some(m), Some(b)) = (d.baseline_median, d.band) {
        lo = lo.min(m - b);
        hi = hi.max(m + b);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return String::new();
    }
    if hi - lo < 1e-9 {
        lo -= 1.0;
        hi += 1.0;
    }
    let x = |v: f64| pad + (v - lo) / (hi - lo) * (w - 2.0 * pad);
    let mut svg = format!("<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">");
    let _ = write!(
        svg,
        "<line x1=\"{pad}\" y1=\"17\" x2=\"{}\" y2=\"17\" stroke=\"#bbb\"/>",
        w - pad
    );
    if let (Some(m), Some(b)) = (d.baseline_median, d.band) {
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"6\" width=\"{:.1}\" height=\"22\" fill=\"#cfe3ff\"><title>band ±{}</title></rect>",
            x(m - b),
            x(m + b) - x(m - b),
            esc(&show(d.family, Some(b)))
        );
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"4\" x2=\"{0:.1}\" y2=\"30\" stroke=\"#36c\"/>",
            x(m)
        );
    }
    for (run, v) in d.baseline_runs.iter().zip(&d.baseline_values) {
        let _ = write!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"17\" r=\"4\" fill=\"#555\" fill-opacity=\"0.6\"><title>{} {}</title></circle>",
            x(*v),
            esc(run),
            esc(&show(d.family, Some(*v)))
        );
    }
    if let Some(c) = d.candidate {
        let colour = match d.verdict {
            Verdict::Fail => "#c00",
            Verdict::Warn => "#e80",
            Verdict::Inconclusive => "#888",
            Verdict::Pass => "#090",
        };
        let cx = x(c);
        let _ = write!(
            svg,
            "<polygon points=\"{:.1},9 {:.1},17 {:.1},25 {:.1},17\" fill=\"{colour}\"><title>candidate {}</title></polygon>",
            cx,
            cx + 7.0,
            cx,
            cx - 7.0,
            esc(&show(d.family, Some(c)))
        );
    }
    svg + "</svg>"
}

pub fn html(c: &Comparison) -> String {
    let s = &c.candidate.summary;
    let mut rows = String::new();
    for d in ordered(c) {
        let _ = writeln!(
            rows,
            "<tr class=\"{v}\"><td>{v}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&d.metric),
            strip(d),
            esc(&show(d.family, d.baseline_median)),
            esc(&show(d.family, d.candidate)),
            esc(&signed(d.family, d.delta)),
            d.p_value.map_or("–".into(), fmt_p),
            esc(&d.reason),
            v = d.verdict.as_str(),
        );
    }
    let mut skipped = String::new();
    for k in &c.skipped {
        let _ = writeln!(
            skipped,
            "<li><code>{}</code>: {}</li>",
            esc(&k.dir.display().to_string()),
            esc(&k.reason)
        );
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>gameday compare: {name}</title><style>\
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}\
td,th{{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:middle}}\
tr.fail td:first-child{{color:#c00;font-weight:bold}}tr.warn td:first-child{{color:#e80;font-weight:bold}}\
tr.inconclusive td:first-child{{color:#888;font-weight:bold}}tr.pass td:first-child{{color:#090}}\
</style></head><body><h1>gameday compare: {name}</h1><p><strong>{head}</strong></p>\
<p>Candidate <code>{run}</code> ({started}); {n} baselines. Each strip: the baselines (dots), the band around their median (blue), the candidate (diamond).</p>\
<table><tr><th>verdict</th><th>metric</th><th>baselines · band · candidate</th><th>median</th><th>candidate</th><th>delta</th><th>p</th><th>why</th></tr>\n{rows}</table>\
{skip}</body></html>\n",
        name = esc(&s.scenario),
        head = esc(&headline(c)),
        run = esc(&s.run_id),
        started = esc(&s.started_at),
        n = c.baselines.len(),
        skip = if skipped.is_empty() {
            String::new()
        } else {
            format!("<h2>Skipped runs</h2><ul>{skipped}</ul>")
        },
    )
}
