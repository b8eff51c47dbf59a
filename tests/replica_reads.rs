//! `replica-reads` against a known replication delay: a 500 ms latency
//! toxic on the primary's peer path only (the replicas' replication
//! stream; the clients' path untouched) makes the copies served by the
//! replicas 500 ms old (staleness p50 within ±100 ms of it), some of them
//! older than the reader's own last write, while the replicas' lag in
//! bytes, as the telemetry reads it from the servers, is above 0 in every
//! second of the fault and 0 before it. With `max_staleness = 100ms` and
//! the fallback on, each of those reads goes to the primary: nothing
//! served is staler than the bound, and the staleness p50 is 0 (a bound on
//! staleness is no read-your-writes: a few reads inside it may still miss
//! the reader's last write).

use crate::common::{metric, phase, Scratch};

const SCENARIO: &str = r#"name = "replica-lag"
duration = "8s"
seed = 23
expect = ["run.writes > 100"]

[topology]
kind = "replicated"
replicas = 2

[load]
users = 4
rate = 300

[workload]
kind = "replica-reads"
keys = 200
read_ratio = 0.8
max_staleness = "100ms"
fallback = [false, true]

[[fault]]
name = "lag"
kind = "latency"
target = "primary"
path = "peers"
latency = "500ms"
at = "2s"
for = "4s"
"#;

/// Each replica's `repl_lag` (bytes) per second, from timeseries.csv.
fn replica_lag(path: &std::path::Path) -> Vec<(u64, String, i64)> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (t, node, role, lag) = (col("t_s"), col("node"), col("role"), col("repl_lag"));
    r.records()
        .map(|row| row.unwrap())
        .filter(|row| &row[role] == "slave")
        .map(|row| {
            (
                row[t].parse().unwrap(),
                row[node].to_string(),
                row[lag].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_500ms_replication_delay_is_500ms_of_staleness_unless_reads_fall_back() {
    let _gate = crate::common::gate(module_path!());
    let scratch = Scratch::new(SCENARIO);
    scratch.run_ok(&[]);
    let summary = |variant: &str| scratch.variant_summary(variant);
    let off = summary("fallback-off");
    let (base, lag) = (phase(&off, "baseline"), phase(&off, "fault:lag"));
    assert!(
        metric(base, "staleness_p50_ms") < 20.0,
        "{}",
        base["metrics"]
    );
    assert_eq!(metric(base, "stale_reads"), 0.0);
    let p50 = metric(lag, "staleness_p50_ms");
    eprintln!(
        "replica-reads: fault staleness p50 {p50} ms, p99 {} ms, stale reads {}",
        metric(lag, "staleness_p99_ms"),
        metric(lag, "stale_reads")
    );
    assert!((400.0..=600.0).contains(&p50), "staleness p50 {p50} ms");
    assert!(metric(lag, "stale_reads") > 0.0, "{}", lag["metrics"]);
    assert_eq!(
        metric(lag, "caller_errors"),
        0.0,
        "the clients' path is untouched"
    );
    // The servers agree: the replicas fell behind in every second of the
    // fault (its edges aside), and not before it.
    let lags = replica_lag(&scratch.report().join("fallback-off").join("timeseries.csv"));
    let nodes: std::collections::BTreeSet<&String> = lags.iter().map(|(_, n, _)| n).collect();
    assert_eq!(nodes.len(), 2, "{lags:?}");
    for (t, node, bytes) in &lags {
        match t {
            0..=1 => assert_eq!(*bytes, 0, "{node} at {t}s: {lags:?}"),
            3..=5 => assert!(*bytes > 0, "{node} at {t}s: {lags:?}"),
            _ => {}
        }
    }
    let stale_off = metric(lag, "stale_reads");
    let on = summary("fallback-on");
    let lag = phase(&on, "fault:lag");
    assert_eq!(metric(lag, "staleness_p50_ms"), 0.0, "{}", lag["metrics"]);
    assert_eq!(metric(lag, "beyond_bound"), 0.0);
    assert!(metric(lag, "staleness_max_ms") <= 100.0);
    // A bound on staleness is no read-your-writes: a copy less than 100 ms
    // behind may still miss the reader's write of 50 ms ago, as it did
    // while the delay took hold. Far fewer than without the fallback.
    assert!(
        metric(lag, "stale_reads") * 10.0 < stale_off,
        "{}",
        lag["metrics"]
    );
    // Nearly every read went to the primary; the ones a replica served
    // were from just before the delay took hold.
    assert!(
        metric(lag, "fallback_reads") > 10.0 * metric(lag, "replica_reads"),
        "{}",
        lag["metrics"]
    );
}

/// The same on a Cluster: three masters, a replica each; the keys spread
/// over the lanes' hash tags (every master serves some), each read asks
/// the replica of its key's master (READONLY). A 500 ms delay on every
/// master's peer path is 500 ms of staleness, and the fallback bounds it.
#[test]
fn on_a_cluster_each_read_asks_its_masters_replica_and_the_delay_shows() {
    // Alone: beside the replicated test, the two would share two cores,
    // and a replica starved of CPU lags in the baseline too.
    let _gate = crate::common::gate(concat!(module_path!(), "::cluster"));
    let text = SCENARIO
        .replace(
            "kind = \"replicated\"\nreplicas = 2",
            "kind = \"cluster\"\nmasters = 3\nreplicas_per_master = 1",
        )
        .replace("users = 4", "users = 6");
    let scratch = Scratch::new(&text);
    scratch.run_ok(&[]);
    let off = scratch.variant_summary("fallback-off");
    let (base, lag) = (phase(&off, "baseline"), phase(&off, "fault:lag"));
    // Every lane found its master's replica (none read from a primary for
    // want of one), and the lanes spread over all three masters: the
    // replicas served the reads before the fault.
    assert_eq!(metric(base, "primary_reads"), 0.0, "{}", base["metrics"]);
    assert_eq!(metric(base, "fallback_reads"), 0.0, "{}", base["metrics"]);
    assert!(metric(base, "replica_reads") > 100.0, "{}", base["metrics"]);
    assert!(
        metric(base, "staleness_p50_ms") < 20.0,
        "{}",
        base["metrics"]
    );
    assert_eq!(metric(base, "stale_reads"), 0.0);
    let p50 = metric(lag, "staleness_p50_ms");
    eprintln!(
        "replica-reads on a cluster: fault staleness p50 {p50} ms, p99 {} ms, stale reads {}",
        metric(lag, "staleness_p99_ms"),
        metric(lag, "stale_reads")
    );
    assert!((400.0..=600.0).contains(&p50), "staleness p50 {p50} ms");
    assert!(metric(lag, "stale_reads") > 0.0, "{}", lag["metrics"]);
    assert_eq!(metric(lag, "caller_errors"), 0.0, "{}", lag["metrics"]);
    let on = scratch.variant_summary("fallback-on");
    let lag = phase(&on, "fault:lag");
    assert_eq!(metric(lag, "staleness_p50_ms"), 0.0, "{}", lag["metrics"]);
    assert_eq!(metric(lag, "beyond_bound"), 0.0, "{}", lag["metrics"]);
    assert!(metric(lag, "fallback_reads") > 0.0, "{}", lag["metrics"]);
}
