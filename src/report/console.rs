//! What a person watching the terminal sees: one progress line per second
//! while the run goes, and at the end a table per phase and the verdicts.
//! Printers take any `Write`, so tests can read what a user would.

use super::summary::Summary;
use crate::recorder::Recorder;
use crate::vocab::outcome::{is_redis_op, Counter, CALLER_ERRORS, REDIS_ERRORS};
use crate::vocab::units::fmt_micros;
use crate::workload::cache_aside::{HITS, MISSES, ORIGIN_CALLS};
use std::io::Write;

/// The most of a workload's own counters a progress line shows.
const OWN_COLUMNS: usize = 3;

/// The line for second `t` (which must be complete), with the columns of
/// the workload that counts `counters`: the hit ratio and origin calls
/// when it counts them, then up to three of its other counters.
pub fn progress_line(rec: &Recorder, t: usize, counters: &[Counter]) -> Option<String> {
    let sec = rec.seconds().get(t)?;
    let caller = sec.ops.get("caller");
    let p99 = caller.filter(|c| c.count > 0).map_or("-".into(), |c| {
        fmt_micros(c.hist.value_at_quantile(0.99) as f64)
    });
    let redis_errors: u64 = sec
        .ops
        .iter()
        .filter(|(op, _)| is_redis_op(op))
        .map(|(_, o)| o.errors)
        .sum();
    let mut own = String::new();
    if counters.contains(&HITS) {
        let (h, m) = (sec.counter(HITS), sec.counter(MISSES));
        let hit = if h + m > 0 {
            format!("{:.0}%", 100.0 * h as f64 / (h + m) as f64)
        } else {
            "-".into()
        };
        own.push_str(&format!("  hit {hit:>4}"));
    }
    if counters.contains(&ORIGIN_CALLS) {
        own.push_str(&format!("  origin {:>5}/s", sec.counter(ORIGIN_CALLS)));
    }
    let shown = [CALLER_ERRORS, REDIS_ERRORS, HITS, MISSES, ORIGIN_CALLS];
    for c in counters
        .iter()
        .filter(|c| !shown.contains(c))
        .take(OWN_COLUMNS)
    {
        own.push_str(&format!("  {} {:>5}", c.as_str(), sec.counter(*c)));
    }
    // The open model's queue, when there is one: its scheduler records its
    // lateness every second, whatever Redis does.
    let queue = if sec.ops.contains_key(crate::load::OPEN_OPS[2]) {
        format!(
            "  shed {:>5}  queued {:>5}",
            sec.counter(crate::load::SHED),
            sec.gauge(crate::load::QUEUED)
        )
    } else {
        String::new()
    };
    Some(format!(
        "[{:>4}s] {:<22} offered {:>6}/s  done {:>6}/s  p99 {:>8}  caller errors {:>5}  redis errors {:>6}{own}{queue}",
        t + 1,
        match rec.stage_at(t as u64 * 1_000_000) {
            Some(stage) => format!("{} @{stage}", rec.phase_at(t as u64 * 1_000_000)),
            None => rec.phase_at(t as u64 * 1_000_000).to_string(),
        },
        sec.counter(crate::load::OFFERED),
        sec.counter(crate::load::COMPLETED),
        p99,
        // A workload's own count, or the caller ops' failures (a target's
        // requests).
        sec.counter(CALLER_ERRORS)
            .max(caller.map_or(0, |c| c.errors)),
        redis_errors,
    ))
}

/// The end-of-run tables.
pub fn print_summary(s: &Summary, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "\n{:<24} {:>9} {:>8} {:>9} {:>9} {:>9} {:>7} {:>8} {:>9}",
        "phase", "window s", "ops/s", "p50", "p99", "max", "errors", "hit", "recover"
    )?;
    for p in &s.phases {
        let c = p.ops.get("caller");
        let q = |f: fn(&super::summary::OpSummary) -> u64| {
            c.map_or("-".into(), |c| fmt_micros(f(c) as f64))
        };
        writeln!(
            out,
            "{:<24} {:>9} {:>8.0} {:>9} {:>9} {:>9} {:>7} {:>8} {:>9}",
            p.name,
            format!("{:.1}-{:.1}", p.start_s, p.end_s),
            c.map_or(0.0, |c| c.throughput),
            q(|c| c.p50_us),
            q(|c| c.p99_us),
            q(|c| c.max_us),
            p.metrics
                .get("caller_errors")
                .map_or(0, |v| *v as u64)
                .max(c.map_or(0, |c| c.errors)),
            p.metrics
                .get("hit_ratio")
                .map_or("-".into(), |v| format!("{:.1}%", v * 100.0)),
            p.metrics
                .get("time_to_recover_ms")
                .map_or("-".into(), |v| format!("{v:.0}ms")),
        )?;
    }
    if !s.faults.is_empty() {
        writeln!(out)?;
        for f in &s.faults {
            let at = |v: Option<f64>| v.map_or("not reached".into(), |v| format!("{v:.3}s"));
            writeln!(
                out,
                "fault {:<16} {:<10} on {:<10} applied {:>10}  removed {:>10}",
                f.name,
                f.kind,
                f.target,
                at(f.applied_at_s),
                at(f.removed_at_s)
            )?;
        }
    }
    writeln!(out)?;
    for e in &s.expectations {
        let observed = e
            .observed
            .map_or("no value".into(), |v| format!("{v:.3}{}", e.unit));
        writeln!(
            out,
            "  {}  {:<44} observed {}",
            if e.passed { "pass" } else { "FAIL" },
            e.rule,
            observed
        )?;
    }
    let why = match (&s.aborted, s.interrupted) {
        (Some(a), _) => format!(
            " (stop condition `{}` held in {} at {:.1}s: {} {})",
            a.rule, a.phase, a.at_s, a.observed, a.unit
        ),
        (None, true) => " (interrupted)".to_string(),
        (None, false) => String::new(),
    };
    writeln!(out, "verdict: {}{why}", s.verdict.to_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::outcome::{Outcome, Sample, Trace};

    /// One second with 3 ops, each bumping `counters`.
    fn second(counters: &[Counter]) -> Recorder {
        let mut rec = Recorder::new(tokio::time::Instant::now(), &["enqueue"]);
        for i in 0..3 {
            let sample = Sample {
                op: "enqueue",
                intended_us: 1000 * i,
                start_us: 1000 * i,
                end_us: 1000 * i + 500,
                outcome: Outcome::Ok,
            };
            let trace = Trace {
                samples: vec![sample],
                counters: counters.to_vec(),
            };
            rec.record(&trace);
        }
        rec
    }

    #[test]
    fn a_line_shows_the_workloads_own_columns() {
        let queue = crate::workload::queue::COUNTERS;
        let line = progress_line(&second(&[crate::workload::queue::ENQUEUED]), 0, queue).unwrap();
        assert!(line.contains("enqueued     3"), "{line}");
        assert!(!line.contains("hit") && !line.contains("origin"), "{line}");
        let cache = crate::workload::cache_aside::COUNTERS;
        let line = progress_line(&second(&[HITS, HITS, MISSES, ORIGIN_CALLS]), 0, cache).unwrap();
        assert!(
            line.contains("hit  67%") && line.contains("origin     3/s"),
            "{line}"
        );
        assert!(line.contains("stale_reads     0"), "{line}");
    }
}
