//! `report.html`: one self-contained page (inline SVG charts drawn with
//! plotters, inline CSS, no scripts): the verdicts, the faults as applied,
//! a table per phase and charts over time with fault windows shaded.

use super::summary::{PhaseSummary, Summary};
use super::RunReport;
use crate::recorder::{Counter, SecondStats};
use crate::scenario::units::fmt_micros;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use std::fmt::Write;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One line of a chart.
struct Series {
    label: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

const BLUE_: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const RED_: RGBColor = RGBColor(214, 39, 40);
const GREEN_: RGBColor = RGBColor(44, 160, 44);
const SHADE: RGBColor = RGBColor(255, 160, 160);

fn per_second(report: &RunReport, f: impl Fn(&SecondStats) -> Option<f64>) -> Vec<(f64, f64)> {
    report
        .recorder
        .seconds()
        .iter()
        .enumerate()
        .filter_map(|(t, s)| f(s).map(|v| (t as f64 + 0.5, v)))
        .collect()
}

fn quantile_ms(s: &SecondStats, op: &str, q: f64) -> Option<f64> {
    s.ops
        .get(op)
        .filter(|o| o.count > 0)
        .map(|o| o.hist.value_at_quantile(q).max(1) as f64 / 1e3)
}

/// What every chart shares: its titles, time axis and fault windows.
struct Frame<'a> {
    title: &'a str,
    y_desc: &'a str,
    x_max: f64,
    windows: &'a [(f64, f64)],
}

fn draw<Y>(
    root: DrawingArea<SVGBackend, plotters::coord::Shift>,
    frame: &Frame,
    y_range: Y,
    y_bounds: (f64, f64),
    series: &[Series],
) -> Result<(), String>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(frame.title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(64)
        .build_cartesian_2d::<RangedCoordf64, Y>((0f64..frame.x_max).into(), y_range)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds since start of load")
        .y_desc(frame.y_desc)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| e.to_string())?;
    for &(a, b) in frame.windows {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, y_bounds.0), (b, y_bounds.1)],
                SHADE.mix(0.35).filled(),
            )))
            .map_err(|e| e.to_string())?;
    }
    for s in series {
        let color = s.color;
        // A second with no value breaks the line rather than bridging it.
        let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
        for &p in &s.points {
            match runs.last_mut() {
                Some(run) if run.last().is_some_and(|q| p.0 - q.0 < 1.5) => run.push(p),
                _ => runs.push(vec![p]),
            }
        }
        for (i, run) in runs.into_iter().enumerate() {
            let drawn = chart
                .draw_series(LineSeries::new(run, color.stroke_width(2)))
                .map_err(|e| e.to_string())?;
            if i == 0 {
                drawn.label(s.label).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

fn chart(report: &RunReport, title: &str, y_desc: &str, series: Vec<Series>, log: bool) -> String {
    let windows: Vec<(f64, f64)> = report
        .summary
        .faults
        .iter()
        .filter_map(|f| {
            f.applied_at_s
                .map(|a| (a, f.removed_at_s.unwrap_or(report.summary.duration_s)))
        })
        .collect();
    let x_max = report.summary.duration_s.max(1.0);
    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let y_max = values.clone().fold(0.0f64, f64::max);
    let frame = Frame {
        title,
        y_desc,
        x_max,
        windows: &windows,
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 280)).into_drawing_area();
        let result = if log {
            let lo = values.fold(f64::INFINITY, f64::min).clamp(0.001, 1.0) * 0.8;
            let hi = (y_max * 1.5).max(lo * 10.0);
            draw(root, &frame, (lo..hi).log_scale(), (lo, hi), &series)
        } else {
            let hi = (y_max * 1.15).max(1.0);
            draw(root, &frame, 0f64..hi, (0.0, hi), &series)
        };
        if let Err(e) = result {
            return format!(
                "<p class=\"err\">chart `{}` could not be drawn: {}</p>",
                esc(title),
                esc(&e)
            );
        }
    }
    svg
}

fn charts(report: &RunReport) -> String {
    let caller = |q: f64| per_second(report, move |s| quantile_ms(s, "caller", q));
    let redis = |q: f64| per_second(report, move |s| quantile_ms(s, "redis_get", q));
    let count =
        |op: &'static str| per_second(report, move |s| s.ops.get(op).map(|o| o.count as f64));
    let counter = |c: Counter| per_second(report, move |s| Some(s.counters[c as usize] as f64));
    let redis_errors = per_second(report, |s| {
        Some(
            s.ops
                .iter()
                .filter(|(op, _)| crate::recorder::is_redis_op(op))
                .map(|(_, o)| o.errors as f64)
                .sum(),
        )
    });
    let hit_ratio = per_second(report, |s| {
        let (h, m) = (
            s.counters[Counter::Hit as usize] as f64,
            s.counters[Counter::Miss as usize] as f64,
        );
        (h + m > 0.0).then(|| 100.0 * h / (h + m))
    });
    let max_caller = per_second(report, |s| {
        s.ops
            .get("caller")
            .map(|o| o.hist.max().max(1) as f64 / 1e3)
    });
    [
        chart(
            report,
            "Caller latency per second (ms, log scale)",
            "ms",
            vec![
                Series {
                    label: "p50",
                    color: BLUE_,
                    points: caller(0.5),
                },
                Series {
                    label: "p99",
                    color: ORANGE,
                    points: caller(0.99),
                },
                Series {
                    label: "max",
                    color: RED_,
                    points: max_caller,
                },
            ],
            true,
        ),
        chart(
            report,
            "Redis GET latency per second (ms, log scale)",
            "ms",
            vec![
                Series {
                    label: "p50",
                    color: BLUE_,
                    points: redis(0.5),
                },
                Series {
                    label: "p99",
                    color: ORANGE,
                    points: redis(0.99),
                },
            ],
            true,
        ),
        chart(
            report,
            "Throughput and errors (per second)",
            "ops/s",
            vec![
                Series {
                    label: "caller ops",
                    color: BLUE_,
                    points: count("caller"),
                },
                Series {
                    label: "Redis errors",
                    color: RED_,
                    points: redis_errors,
                },
                Series {
                    label: "caller errors",
                    color: BLACK,
                    points: counter(Counter::CallerError),
                },
            ],
            false,
        ),
        chart(
            report,
            "Cache hit ratio (%)",
            "%",
            vec![Series {
                label: "hit ratio",
                color: GREEN_,
                points: hit_ratio,
            }],
            false,
        ),
        chart(
            report,
            "Origin calls and fallbacks (per second)",
            "calls/s",
            vec![
                Series {
                    label: "origin calls",
                    color: ORANGE,
                    points: counter(Counter::OriginCall),
                },
                Series {
                    label: "fallbacks",
                    color: RED_,
                    points: counter(Counter::Fallback),
                },
            ],
            false,
        ),
    ]
    .join("\n")
}

fn phase_table(phases: &[PhaseSummary]) -> String {
    let mut t = String::from("<table><tr><th>phase</th><th>window (s)</th><th>caller ops</th><th>ops/s</th><th>caller errors</th><th>p50</th><th>p99</th><th>max</th><th>Redis errors</th><th>hit ratio</th><th>origin calls/s</th><th>fallbacks</th><th>time to recover</th></tr>\n");
    for p in phases {
        let c = p.ops.get("caller");
        let m = |k: &str| p.metrics.get(k).copied();
        let num = |v: Option<f64>, d: usize| v.map_or("–".into(), |v| format!("{v:.d$}"));
        let _ = writeln!(
            t,
            "<tr><td>{}</td><td>{:.2}–{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.name), p.start_s, p.end_s,
            c.map_or(0, |c| c.count), num(c.map(|c| c.throughput), 0), num(m("caller_errors"), 0),
            c.map_or("–".into(), |c| fmt_micros(c.p50_us as f64)),
            c.map_or("–".into(), |c| fmt_micros(c.p99_us as f64)),
            c.map_or("–".into(), |c| fmt_micros(c.max_us as f64)),
            num(m("redis_errors"), 0),
            m("hit_ratio").map_or("–".into(), |v| format!("{:.1}%", v * 100.0)),
            num(m("origin_rate"), 0), num(m("fallbacks"), 0),
            m("time_to_recover_ms").map_or("–".into(), |v| format!("{v:.1} ms")),
        );
    }
    t + "</table>"
}

fn verdict_table(s: &Summary) -> String {
    if s.expectations.is_empty() {
        return "<p>No expectations: the verdict is pass by default.</p>".into();
    }
    let mut t =
        String::from("<table><tr><th>expectation</th><th>observed</th><th>result</th></tr>\n");
    for e in &s.expectations {
        let observed = e
            .observed
            .map_or("no value".into(), |v| format!("{v:.3}{}", e.unit));
        let (class, word) = if e.passed {
            ("pass", "pass")
        } else {
            ("fail", "FAIL")
        };
        let _ = writeln!(
            t,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"{class}\">{word}</td></tr>",
            esc(&e.rule),
            esc(&observed)
        );
    }
    t + "</table>"
}

fn fault_table(s: &Summary) -> String {
    if s.faults.is_empty() {
        return "<p>No faults.</p>".into();
    }
    let mut t = String::from("<table><tr><th>fault</th><th>kind</th><th>target</th><th>scheduled (s)</th><th>applied at (s)</th><th>removed at (s)</th></tr>\n");
    for f in &s.faults {
        let at = |v: Option<f64>| v.map_or("not reached".into(), |v| format!("{v:.3}"));
        let _ = writeln!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}–{:.1}</td><td>{}</td><td>{}</td></tr>",
            esc(&f.name),
            esc(&f.kind),
            esc(&f.target),
            f.at_s,
            f.at_s + f.for_s,
            at(f.applied_at_s),
            at(f.removed_at_s)
        );
    }
    t + "</table>"
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}\
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}\
th{background:#f3f3f3}td:first-child{text-align:left}.pass{color:#1a7f37;font-weight:600}.fail{color:#c62828;font-weight:700}\
.badge{display:inline-block;padding:4px 12px;border-radius:4px;color:#fff;font-weight:700}.bp{background:#1a7f37}.bf{background:#c62828}\
.meta{color:#555;font-size:13px}svg{display:block;margin:6px 0}";

/// The whole page.
pub fn render(report: &RunReport) -> String {
    let s = &report.summary;
    let badge = if s.verdict == "pass" {
        "<span class=\"badge bp\">PASS</span>"
    } else {
        "<span class=\"badge bf\">FAIL</span>"
    };
    let nodes: Vec<String> = s
        .topology
        .nodes
        .iter()
        .map(|n| {
            format!(
                "{} ({}) {} via proxy {}",
                n.id, n.role, n.addr, n.proxy_addr
            )
        })
        .collect();
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>gameday: {name}</title><style>{STYLE}</style></head><body>\n\
<h1>gameday: {name} {badge}</h1>\n<p>{desc}</p>\n\
<p class=\"meta\">run {run_id} · started {started} · {dur:.1}s of load · seed {seed} · {topo} on the {backend} backend · {users} users, {rate} · proxy: {pkind} {pver}{interrupted}<br>nodes: {nodes}</p>\n\
<h2>Verdict</h2>\n{verdicts}\n<h2>Faults</h2>\n{faults}\n<h2>Phases</h2>\n{phases}\n<h2>Over time</h2>\n<p class=\"meta\">Shaded: fault windows, from when gameday asked the proxy to apply the fault to when the proxy showed it removed.</p>\n{charts}\n\
<p class=\"meta\">Raw data: summary.json, timeseries.csv, latency.hlog (HdrHistogram interval log), junit.xml; goose's own report: goose.html.</p>\n</body></html>\n",
        name = esc(&s.scenario),
        desc = esc(&s.description),
        run_id = esc(&s.run_id),
        started = esc(&s.started_at),
        dur = s.duration_s,
        seed = s.seed,
        topo = esc(&s.topology.kind),
        backend = esc(&s.backend),
        users = s.load.users,
        rate = s.load.rate.map_or("as fast as possible".to_string(), |r| format!("{r:.0} ops/s target")),
        pkind = esc(&s.proxy.kind),
        pver = esc(&s.proxy.version),
        interrupted = if s.interrupted { " · <b>interrupted</b>" } else { "" },
        nodes = esc(&nodes.join("; ")),
        verdicts = verdict_table(s),
        faults = fault_table(s),
        phases = phase_table(&s.phases),
        charts = charts(report),
    )
}
