//! A capacity search's result, as summary.json records it and report.html
//! draws it: the step table, the knee, the first rule that broke, and the
//! curve of achieved rate and p99 against offered rate.

use super::markup::escape as esc;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// `capacity` in summary.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CapacitySummary {
    /// The highest offered rate whose step held every SLO rule; none if
    /// the first step already broke one.
    pub max_rate: Option<f64>,
    /// The lowest offered rate whose step broke one.
    pub first_bad_rate: Option<f64>,
    /// `resolved`, `reached_max`, `below_start` or `out_of_time`.
    pub stopped: String,
    /// The first rule that failed, on the first step that broke one.
    pub first_failed_rule: Option<String>,
    pub resolution: f64,
    pub steps: Vec<CapacityStep>,
}

/// One step of the search.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CapacityStep {
    pub step: usize,
    /// Its phase in `phases` (`stage:step-3`).
    pub phase: String,
    /// The rate it offered, ops/s, and what arrived, was served, was shed.
    pub rate: f64,
    pub offered: u64,
    /// Completed ops/s over the step.
    pub achieved: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
    pub shed: u64,
    pub held: bool,
    pub failed_rules: Vec<String>,
}

/// The HTML section: a sentence, the curve and the step table.
pub fn html(c: &CapacitySummary) -> String {
    let knee = match (c.max_rate, c.first_bad_rate) {
        (Some(g), Some(b)) => format!(
            "capacity <b>{g:.0} ops/s</b>: the highest offered rate that held every SLO rule; {b:.0} ops/s broke <code>{}</code>",
            esc(c.first_failed_rule.as_deref().unwrap_or("?"))
        ),
        (Some(g), None) => format!("every step held, up to <b>{g:.0} ops/s</b> (the search's `max`)"),
        (None, _) => format!(
            "the first step already broke <code>{}</code>: the capacity is below the search's `start`",
            esc(c.first_failed_rule.as_deref().unwrap_or("?"))
        ),
    };
    let mut rows = String::from("<table><tr><th>step</th><th>offered rate</th><th>offered</th><th>achieved ops/s</th><th>p50</th><th>p99</th><th>errors</th><th>shed</th><th>held</th><th>failed rules</th></tr>\n");
    for s in &c.steps {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{:.0}</td><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            s.step,
            s.rate,
            s.offered,
            s.achieved,
            crate::vocab::units::fmt_micros(s.p50_us as f64),
            crate::vocab::units::fmt_micros(s.p99_us as f64),
            s.errors,
            s.shed,
            if s.held { "yes" } else { "<b>no</b>" },
            esc(&s.failed_rules.join(", "))
        ));
    }
    rows.push_str("</table>\n");
    format!(
        "<h2>Capacity</h2>\n<p>{knee} (stopped: {}; resolution {:.0} ops/s).</p>\n{}\n{rows}",
        esc(&c.stopped),
        c.resolution,
        curve(c).unwrap_or_else(|e| format!(
            "<p class=\"err\">the capacity curve could not be drawn: {}</p>",
            esc(&e)
        ))
    )
}

/// Achieved rate (left axis) and p99 (right axis, log) against offered
/// rate, the knee a vertical line.
fn curve(c: &CapacitySummary) -> Result<String, String> {
    let mut steps: Vec<&CapacityStep> = c.steps.iter().collect();
    steps.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 320)).into_drawing_area();
        draw(root, &steps, c.max_rate).map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
type DrawResult<'a> =
    Result<(), DrawingAreaErrorKind<<SVGBackend<'a> as DrawingBackend>::ErrorType>>;

fn draw<'a>(root: Area<'a>, steps: &[&CapacityStep], knee: Option<f64>) -> DrawResult<'a> {
    let x_max = steps.last().map_or(1.0, |s| s.rate) * 1.1;
    let y_max = steps
        .iter()
        .map(|s| s.achieved.max(s.rate))
        .fold(1.0, f64::max)
        * 1.1;
    let p99_ms: Vec<(f64, f64)> = steps
        .iter()
        .map(|s| (s.rate, (s.p99_us.max(1) as f64) / 1e3))
        .collect();
    let lo = p99_ms
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .clamp(0.001, 1.0)
        * 0.8;
    let hi = (p99_ms.iter().map(|p| p.1).fold(0.0, f64::max) * 1.5).max(lo * 10.0);
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Capacity: achieved rate and p99 against offered rate",
            ("sans-serif", 16),
        )
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(64)
        .right_y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?
        .set_secondary_coord(0f64..x_max, (lo..hi).log_scale());
    chart
        .configure_mesh()
        .x_desc("offered ops/s")
        .y_desc("achieved ops/s")
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("p99 ms (log)")
        .draw()?;
    let legend = |c: RGBColor| {
        move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
    };
    let (blue, orange, red, grey) = (
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(214, 39, 40),
        RGBColor(170, 170, 170),
    );
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (x_max, x_max)], grey))?
        .label("achieved = offered")
        .legend(legend(grey));
    let achieved: Vec<(f64, f64)> = steps.iter().map(|s| (s.rate, s.achieved)).collect();
    chart
        .draw_series(LineSeries::new(achieved.clone(), blue.stroke_width(2)))?
        .label("achieved")
        .legend(legend(blue));
    chart.draw_series(achieved.iter().map(|&p| Circle::new(p, 3, blue.filled())))?;
    chart
        .draw_secondary_series(LineSeries::new(p99_ms, orange.stroke_width(2)))?
        .label("p99")
        .legend(legend(orange));
    if let Some(k) = knee {
        chart
            .draw_series(LineSeries::new([(k, 0.0), (k, y_max)], red.stroke_width(2)))?
            .label(format!("knee {k:.0} ops/s"))
            .legend(legend(red));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()
}
