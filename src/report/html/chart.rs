//! The charts over time of a run's report: inline SVG drawn with
//! plotters, with the fault windows shaded.

use super::super::markup::escape as esc;
use super::super::RunReport;
use crate::recorder::SecondStats;
use crate::vocab::outcome::{is_redis_op, Counter, CALLER_ERRORS};
use crate::workload::cache_aside::{FALLBACKS, HITS, MISSES, ORIGIN_CALLS};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// A line of a chart.
pub(super) fn line(label: &str, color: RGBColor, points: Vec<(f64, f64)>) -> Series {
    Series {
        label: label.to_string(),
        color,
        points,
    }
}

/// One line of a chart.
pub(super) struct Series {
    pub(super) label: String,
    pub(super) color: RGBColor,
    pub(super) points: Vec<(f64, f64)>,
}

pub(super) const BLUE_: RGBColor = RGBColor(31, 119, 180);
pub(super) const ORANGE: RGBColor = RGBColor(255, 127, 14);
pub(super) const RED_: RGBColor = RGBColor(214, 39, 40);
pub(super) const GREEN_: RGBColor = RGBColor(44, 160, 44);
pub(super) const SHADE: RGBColor = RGBColor(255, 160, 160);

pub(super) fn per_second(
    report: &RunReport,
    f: impl Fn(&SecondStats) -> Option<f64>,
) -> Vec<(f64, f64)> {
    report
        .recorder
        .seconds()
        .iter()
        .enumerate()
        .filter_map(|(t, s)| f(s).map(|v| (t as f64 + 0.5, v)))
        .collect()
}

pub(super) fn quantile_ms(s: &SecondStats, op: &str, q: f64) -> Option<f64> {
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
                drawn.label(s.label.clone()).legend(move |(x, y)| {
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

pub(super) fn chart(
    report: &RunReport,
    title: &str,
    y_desc: &str,
    series: Vec<Series>,
    log: bool,
) -> String {
    // Nothing to draw (an op or a counter this workload does not have):
    // no chart.
    if series.iter().all(|s| s.points.iter().all(|p| p.1 == 0.0)) {
        return String::new();
    }
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

pub(super) fn charts(report: &RunReport) -> String {
    let caller = |q: f64| per_second(report, move |s| quantile_ms(s, "caller", q));
    let redis = |q: f64| per_second(report, move |s| quantile_ms(s, "redis_get", q));
    let count =
        |op: &'static str| per_second(report, move |s| s.ops.get(op).map(|o| o.count as f64));
    let counter = |c: Counter| per_second(report, move |s| Some(s.counter(c) as f64));
    let redis_errors = redis_errors(report);
    let hit_ratio = per_second(report, |s| {
        let (h, m) = (s.counter(HITS) as f64, s.counter(MISSES) as f64);
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
                line("p50", BLUE_, caller(0.5)),
                line("p99", ORANGE, caller(0.99)),
                line("max", RED_, max_caller),
            ],
            true,
        ),
        chart(
            report,
            "Redis GET latency per second (ms, log scale)",
            "ms",
            vec![
                line("p50", BLUE_, redis(0.5)),
                line("p99", ORANGE, redis(0.99)),
                line("server's own p99", GREEN_, server_get_p99(report)),
            ],
            true,
        ),
        chart(
            report,
            "Throughput and errors (per second)",
            "ops/s",
            vec![
                // The offered rate (its stages, an open model's arrivals)
                // against what was served; shed only in an open model.
                line("offered", GREEN_, counter(crate::load::OFFERED)),
                line("caller ops", BLUE_, count("caller")),
                line("shed", ORANGE, counter(crate::load::SHED)),
                line("Redis errors", RED_, redis_errors),
                line("caller errors", BLACK, counter(CALLER_ERRORS)),
            ],
            false,
        ),
        chart(
            report,
            "Cache hit ratio (%)",
            "%",
            vec![line("hit ratio", GREEN_, hit_ratio)],
            false,
        ),
        chart(
            report,
            "Origin calls and fallbacks (per second)",
            "calls/s",
            vec![
                line("origin calls", ORANGE, counter(ORIGIN_CALLS)),
                line("fallbacks", RED_, counter(FALLBACKS)),
            ],
            false,
        ),
    ]
    .into_iter()
    .chain(op_charts(report))
    .filter(|c| !c.is_empty())
    .collect::<Vec<_>>()
    .join("\n")
}

/// The servers' own GET p99 per second (`LATENCY HISTOGRAM`, the slowest
/// node), ms: what Redis spent, without the network.
fn server_get_p99(report: &RunReport) -> Vec<(f64, f64)> {
    let mut per: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for n in &report.telemetry {
        if let Some(us) = n.server_get_p99_us {
            let e = per.entry(n.t_s).or_default();
            *e = (*e).max(us);
        }
    }
    // A sample at t covers the second before it.
    per.into_iter()
        .map(|(t, us)| (t as f64 - 0.5, us.max(1) as f64 / 1e3))
        .collect()
}

/// Failed Redis commands per second, all commands together.
fn redis_errors(report: &RunReport) -> Vec<(f64, f64)> {
    per_second(report, |s| {
        Some(
            s.ops
                .iter()
                .filter(|(op, _)| is_redis_op(op))
                .map(|(_, o)| o.errors as f64)
                .sum(),
        )
    })
}

/// With more than one caller op (a target's requests, a workload's reads
/// and writes), each op's latency, throughput and errors per second.
fn op_charts(report: &RunReport) -> Vec<String> {
    let ops = report.recorder.caller_ops();
    if ops.len() < 2 {
        return Vec::new();
    }
    ops.iter()
        .map(|&op| {
            let count = per_second(report, move |s| s.ops.get(op).map(|o| o.count as f64));
            let errors = per_second(report, move |s| s.ops.get(op).map(|o| o.errors as f64));
            let latency = chart(
                report,
                &format!("{op}: latency per second (ms, log scale)"),
                "ms",
                vec![
                    line(
                        "p50",
                        BLUE_,
                        per_second(report, move |s| quantile_ms(s, op, 0.5)),
                    ),
                    line(
                        "p99",
                        ORANGE,
                        per_second(report, move |s| quantile_ms(s, op, 0.99)),
                    ),
                ],
                true,
            );
            let rate = chart(
                report,
                &format!("{op}: throughput and errors (per second)"),
                "ops/s",
                vec![line("ops", BLUE_, count), line("errors", RED_, errors)],
                false,
            );
            format!("{latency}\n{rate}")
        })
        .collect()
}
