//! `latency.hlog`: an HdrHistogram interval log, one interval per second per
//! op (tagged with the op's name), latencies in µs. Standard tools
//! (HistogramLogProcessor, hdrhistogram readers) merge such logs across runs
//! and machines.

use super::RunReport;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use std::io::Write;
use std::time::Duration;

pub fn write(report: &RunReport, out: &mut impl Write) -> std::io::Result<()> {
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder
        .add_comment(&format!(
            "gameday {} scenario {}",
            env!("CARGO_PKG_VERSION"),
            report.summary.scenario
        ))
        .add_comment("values in microseconds, one interval per second per op (tag)")
        .with_start_time(report.started)
        .with_base_time(report.started)
        .with_max_value_divisor(1.0);
    let mut log = builder.begin_log_with(out, &mut serializer)?;
    for (t, sec) in report.recorder.seconds().iter().enumerate() {
        for (op, s) in &sec.ops {
            log.write_histogram(
                &*s.hist.histogram(),
                Duration::from_secs(t as u64),
                Duration::from_secs(1),
                Tag::new(op),
            )
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        }
    }
    Ok(())
}
