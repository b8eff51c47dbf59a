//! `timeseries.csv`: one row per second per op, with that second's workload
//! counters and the phase and fault in force; then one `server` row per node
//! per second with its telemetry (role, replication, memory, evictions).

use super::RunReport;
use crate::telemetry::NodeSample;
use crate::workload::all_counters;
use std::io::Write;

pub fn write(report: &RunReport, out: &mut impl Write) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    let mut header: Vec<String> = [
        "t_s", "phase", "fault", "op", "count", "errors", "timeouts", "p50_us", "p90_us", "p99_us",
        "max_us",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut counters = all_counters();
    counters.extend(crate::load::COUNTERS);
    header.extend(counters.iter().map(|c| c.as_str().to_string()));
    header.extend(crate::load::GAUGES.iter().map(|g| format!("{g}_max")));
    header.push("stage".into());
    header.extend(NodeSample::COLUMNS.iter().map(|c| c.to_string()));
    w.write_record(&header)?;
    let op_cols = header.len() - NodeSample::COLUMNS.len();
    for (t, sec) in report.recorder.seconds().iter().enumerate() {
        let t_s = t as f64;
        let phase = report.phase_at(t_s);
        let fault = report.faults_during(t_s, t_s + 1.0).join("+");
        for (op, s) in &sec.ops {
            let q = |p: f64| s.hist.value_at_quantile(p).to_string();
            let timeouts = s
                .by_class
                .get(&crate::vocab::outcome::ErrorClass::Timeout)
                .copied()
                .unwrap_or(0);
            let mut row = vec![
                t.to_string(),
                phase.to_string(),
                fault.clone(),
                op.to_string(),
                s.count.to_string(),
                s.errors.to_string(),
                timeouts.to_string(),
                q(0.5),
                q(0.9),
                q(0.99),
                s.hist.max().to_string(),
            ];
            row.extend(counters.iter().map(|&c| sec.counter(c).to_string()));
            row.extend(crate::load::GAUGES.iter().map(|g| sec.gauge(g).to_string()));
            row.push(
                report
                    .recorder
                    .stage_at(t as u64 * 1_000_000)
                    .unwrap_or("")
                    .to_string(),
            );
            row.resize(header.len(), String::new());
            w.write_record(&row)?;
        }
    }
    // Server telemetry: one `server` row per node per second, with the op
    // columns left empty.
    for n in &report.telemetry {
        let t_s = n.t_s as f64;
        let mut row = vec![
            n.t_s.to_string(),
            report.phase_at(t_s).to_string(),
            report.faults_during(t_s, t_s + 1.0).join("+"),
            "server".to_string(),
        ];
        row.resize(op_cols, String::new());
        row.extend(n.csv_row());
        w.write_record(&row)?;
    }
    w.flush()
}
