//! `report.html`: one self-contained page (inline SVG charts drawn with
//! plotters, inline CSS, no scripts): the verdicts, the faults as applied,
//! a table per phase and charts over time with fault windows shaded.

mod chart;
mod servers;

use chart::charts;
use servers::{role_timeline, server_charts};

use super::markup::escape as esc;
use super::summary::{PhaseSummary, Summary};
use super::RunReport;
use crate::vocab::units::fmt_micros;
use std::fmt::Write;

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
<p class=\"meta\">run {run_id} · started {started} · {dur:.1}s of load · seed {seed} · {topo} on the {backend} backend · {load} · proxy: {pkind} {pver}{interrupted}<br>nodes: {nodes}</p>\n\
<h2>Verdict</h2>\n{verdicts}\n<h2>Faults</h2>\n{faults}\n<h2>Phases</h2>\n{phases}\n<h2>Over time</h2>\n<p class=\"meta\">Shaded: fault windows, from when gameday asked the proxy to apply the fault to when the proxy showed it removed.</p>\n{charts}\n{capacity}{servers}{ledger}\
<p class=\"meta\">Raw data: summary.json, timeseries.csv, latency.hlog (HdrHistogram interval log), junit.xml{goose}.</p>\n</body></html>\n",
        name = esc(&s.scenario),
        desc = esc(&s.description),
        run_id = esc(&s.run_id),
        started = esc(&s.started_at),
        dur = s.duration_s,
        seed = s.seed,
        topo = esc(&s.topology.kind),
        backend = esc(&s.backend),
        load = esc(&s.load.describe()),
        // goose drives the closed model only.
        goose = if s.load.model == "closed" { "; goose's own report: goose.html" } else { "" },
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
        capacity = s.capacity.as_ref().map_or(String::new(), crate::report::capacity::html),
    )
}
