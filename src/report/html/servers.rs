//! The servers' part of a run's report: the role timeline (with switch
//! marks) and memory and evictions per node, from telemetry.

use super::super::markup::escape as esc;
use super::super::RunReport;
use super::chart::{chart, Series, BLUE_, GREEN_, ORANGE, RED_};
use crate::telemetry::NodeSample;
use plotters::prelude::*;
use std::fmt::Write;

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
pub(super) fn role_timeline(report: &RunReport) -> String {
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
/// One line per node of `f` (this second's sample, the one before).
fn node_series(
    report: &RunReport,
    nodes: &[String],
    f: &dyn Fn(&NodeSample, Option<&NodeSample>) -> Option<f64>,
) -> Vec<Series> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let mut prev: Option<&NodeSample> = None;
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
        .collect()
}

pub(super) fn server_charts(report: &RunReport) -> String {
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
    let series = |f: &dyn Fn(&NodeSample, Option<&NodeSample>) -> Option<f64>| {
        node_series(report, &nodes, f)
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
    // The node's own count: a hot shard stands out here.
    let ops = series(&|n, _| Some(n.ops_per_sec as f64));
    let clients = series(&|n, _| Some(n.connected_clients as f64));
    [
        chart(
            report,
            "Commands per second, per node (instantaneous_ops_per_sec)",
            "ops/s",
            ops,
            false,
        ),
        chart(
            report,
            "Connected clients per node",
            "clients",
            clients,
            false,
        ),
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
