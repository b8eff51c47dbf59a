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
    label: String,
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

fn chart(report: &RunReport, title: &str, y_desc: &str, series: Vec<Series>, log: bool) -> String {
    // Nothing to draw (an op this workload does not have): no chart.
    if series.iter().all(|s| s.points.is_empty()) {
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
                    label: "p50".into(),
                    color: BLUE_,
                    points: caller(0.5),
                },
                Series {
                    label: "p99".into(),
                    color: ORANGE,
                    points: caller(0.99),
                },
                Series {
                    label: "max".into(),
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
                    label: "p50".into(),
                    color: BLUE_,
                    points: redis(0.5),
                },
                Series {
                    label: "p99".into(),
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
                    label: "caller ops".into(),
                    color: BLUE_,
                    points: count("caller"),
                },
                Series {
                    label: "Redis errors".into(),
                    color: RED_,
                    points: redis_errors,
                },
                Series {
                    label: "caller errors".into(),
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
                label: "hit ratio".into(),
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
                    label: "origin calls".into(),
                    color: ORANGE,
                    points: counter(Counter::OriginCall),
                },
                Series {
                    label: "fallbacks".into(),
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

/// Every metric of every phase, one row per metric: the workload's oracle
/// (sessions, locks, stampedes, rate limits, ...) and the fault metrics.
fn metrics_table(phases: &[PhaseSummary]) -> String {
    let mut names: Vec<&String> = Vec::new();
    for p in phases {
        for k in p.metrics.keys() {
            if !names.contains(&k) {
                names.push(k);
            }
        }
    }
    if names.is_empty() {
        return String::new();
    }
    let mut t = String::from("<table><tr><th>metric</th>");
    for p in phases {
        let _ = write!(t, "<th>{}</th>", esc(&p.name));
    }
    t.push_str("</tr>\n");
    for name in names {
        let _ = write!(t, "<tr><td>{}</td>", esc(name));
        for p in phases {
            let cell = p.metrics.get(name).map_or("–".into(), |v| {
                if v.fract() == 0.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.3}")
                }
            });
            let _ = write!(t, "<td>{cell}</td>");
        }
        t.push_str("</tr>\n");
    }
    format!("<h3>All metrics</h3>\n{t}</table>")
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
    let mut t = String::from("<table><tr><th>fault</th><th>kind</th><th>target</th><th>scheduled (s)</th><th>applied at (s)</th><th>removed at (s)</th><th>what happened</th></tr>\n");
    for f in &s.faults {
        let at = |v: Option<f64>| v.map_or("not reached".into(), |v| format!("{v:.3}"));
        let mut detail = String::new();
        if let Some(old) = &f.replaced {
            detail = match (&f.new_primary, f.failover_time_ms) {
                (Some(new), Some(ms)) => {
                    format!("{old} → {new}; clients wrote to {new} {ms:.0} ms after the loss")
                }
                (Some(new), None) => {
                    format!("{old} → {new}; no client write to it while the fault lasted")
                }
                _ => format!("{old} lost; no new primary while the fault lasted"),
            };
        }
        for m in &f.memory {
            let _ = write!(
                detail,
                "{}: ballast {} keys ({} refused); evicted {} ({} workload, {} ballast). ",
                m.node,
                m.ballast_keys,
                m.ballast_refused,
                m.evicted_keys,
                m.evicted_workload,
                m.evicted_ballast
            );
        }
        let _ = writeln!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}–{:.1}</td><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
            esc(&f.name),
            esc(&f.kind),
            esc(&f.target),
            f.at_s,
            f.at_s + f.for_s,
            at(f.applied_at_s),
            at(f.removed_at_s),
            esc(&detail)
        );
    }
    t + "</table>"
}

/// A color per node, in order.
const PALETTE: [RGBColor; 8] = [
    BLUE_,
    ORANGE,
    GREEN_,
    RED_,
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// The nodes that have telemetry, in first-seen order.
fn telemetry_nodes(report: &RunReport) -> Vec<String> {
    let mut nodes: Vec<String> = Vec::new();
    for n in &report.telemetry {
        if !nodes.contains(&n.node) {
            nodes.push(n.node.clone());
        }
    }
    nodes
}

/// Each node's role, second by second, as colored cells; sentinel events
/// that change the primary are marked.
fn role_timeline(report: &RunReport) -> String {
    let nodes = telemetry_nodes(report);
    if nodes.is_empty() {
        return String::new();
    }
    let seconds = report.telemetry.iter().map(|n| n.t_s).max().unwrap_or(0) + 1;
    let (left, cell_w, row_h) = (110.0, (840.0 / seconds as f64).max(2.0), 18.0);
    let height = row_h * nodes.len() as f64 + 40.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">"
    );
    for (i, node) in nodes.iter().enumerate() {
        let y = i as f64 * row_h + 4.0;
        let _ = write!(svg, "<text x=\"4\" y=\"{}\">{}</text>", y + 12.0, esc(node));
        for n in report.telemetry.iter().filter(|n| &n.node == node) {
            let (color, what) = match (n.up, n.role.as_str()) {
                (false, _) => ("#c62828", "down"),
                (true, "master") => ("#1f4e9c", "primary"),
                (true, "slave") => ("#9ec3ef", "replica"),
                (true, "sentinel") => ("#cccccc", "sentinel"),
                _ => ("#eeeeee", "?"),
            };
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" fill=\"{color}\"><title>{} at {}s: {what}</title></rect>",
                left + n.t_s as f64 * cell_w,
                cell_w - 0.5,
                row_h - 3.0,
                esc(node),
                n.t_s
            );
        }
    }
    let bottom = row_h * nodes.len() as f64 + 4.0;
    let mut marked = Vec::new();
    for e in report
        .summary
        .events
        .iter()
        .filter(|e| e.event == "+switch-master" || e.event == "+convert-to-slave")
    {
        // One mark per event kind and second, however many sentinels said it.
        let key = (e.event.clone(), e.t_s as u64);
        if marked.contains(&key) {
            continue;
        }
        marked.push(key);
        let x = left + e.t_s * cell_w;
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"2\" x2=\"{x:.1}\" y2=\"{bottom}\" stroke=\"#000\" stroke-dasharray=\"3,2\"/><text x=\"{:.1}\" y=\"{}\">{} {:.1}s</text>",
            x + 2.0,
            bottom + 12.0 + 12.0 * (marked.len() % 2) as f64,
            esc(&e.event),
            e.t_s
        );
    }
    svg.push_str("</svg>");
    format!(
        "<p class=\"meta\">Role per second from INFO: <span style=\"color:#1f4e9c\">■</span> primary <span style=\"color:#9ec3ef\">■</span> replica <span style=\"color:#aaa\">■</span> sentinel <span style=\"color:#c62828\">■</span> no answer within 500 ms. Dashed: the sentinels' +switch-master / +convert-to-slave.</p>{svg}"
    )
}

/// Memory and evictions per node, from the telemetry.
fn server_charts(report: &RunReport) -> String {
    let nodes: Vec<String> = telemetry_nodes(report)
        .into_iter()
        .filter(|n| {
            report
                .telemetry
                .iter()
                .any(|s| &s.node == n && s.role != "sentinel" && s.up)
        })
        .collect();
    if nodes.is_empty() {
        return String::new();
    }
    let series = |f: &dyn Fn(
        &crate::telemetry::NodeSample,
        Option<&crate::telemetry::NodeSample>,
    ) -> Option<f64>| {
        nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let mut prev: Option<&crate::telemetry::NodeSample> = None;
                let mut points = Vec::new();
                for n in report.telemetry.iter().filter(|n| &n.node == node && n.up) {
                    if let Some(v) = f(n, prev) {
                        points.push((n.t_s as f64, v));
                    }
                    prev = Some(n);
                }
                Series {
                    label: node.clone(),
                    color: PALETTE[i % PALETTE.len()],
                    points,
                }
            })
            .collect::<Vec<_>>()
    };
    let memory = series(&|n, _| Some(n.used_memory as f64 / (1 << 20) as f64));
    let limit: Vec<(f64, f64)> = report
        .telemetry
        .iter()
        .filter(|n| Some(&n.node) == nodes.first() && n.up && n.maxmemory > 0)
        .map(|n| (n.t_s as f64, n.maxmemory as f64 / (1 << 20) as f64))
        .collect();
    let mut memory = memory;
    if !limit.is_empty() {
        memory.push(Series {
            label: format!("maxmemory ({})", nodes[0]),
            color: BLACK,
            points: limit,
        });
    }
    let evictions =
        series(&|n, prev| prev.map(|p| n.evicted_keys.saturating_sub(p.evicted_keys) as f64));
    [
        chart(report, "Memory used per node (MB)", "MB", memory, false),
        chart(
            report,
            "Evicted keys per second, per node",
            "keys/s",
            evictions,
            false,
        ),
    ]
    .join("\n")
}

/// The ledger's findings.
fn ledger_section(s: &Summary) -> String {
    let Some(l) = &s.ledger else {
        return String::new();
    };
    let mut t = format!(
        "<h2>Acknowledged writes</h2>\n<p>{} keys tracked; <b>{} acknowledged write(s) lost</b> (found missing before their TTL, or older).</p>\n",
        l.keys, l.lost_writes
    );
    if !l.lost.is_empty() {
        t.push_str("<table><tr><th>key</th><th>version</th><th>acknowledged at (s)</th><th>phase</th><th>seen lost at (s)</th><th>found</th><th>by</th></tr>\n");
        for w in l.lost.iter().take(20) {
            let _ = writeln!(
                t,
                "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td></tr>",
                esc(&w.key),
                w.version,
                w.acked_at_s,
                esc(&w.phase),
                w.detected_at_s,
                w.found_version
                    .map_or("nothing".into(), |v| format!("version {v}")),
                esc(&w.by)
            );
        }
        t.push_str("</table>");
        if l.lost_writes > 20 {
            let _ = write!(
                t,
                "<p class=\"meta\">The first 20 of {}; summary.json lists up to {}.</p>",
                l.lost_writes,
                crate::ledger::LISTED
            );
        }
    }
    t
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
<h2>Verdict</h2>\n{verdicts}\n<h2>Faults</h2>\n{faults}\n<h2>Phases</h2>\n{phases}\n<h2>Over time</h2>\n<p class=\"meta\">Shaded: fault windows, from when gameday asked the proxy to apply the fault to when the proxy showed it removed.</p>\n{charts}\n{servers}{ledger}\
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
        phases = phase_table(&s.phases) + &metrics_table(&s.phases),
        charts = charts(report),
        servers = if report.telemetry.is_empty() {
            String::new()
        } else {
            format!("<h2>Servers</h2>\n{}\n{}\n", role_timeline(report), server_charts(report))
        },
        ledger = ledger_section(s),
    )
}
