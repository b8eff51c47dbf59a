//! The open model against ground truth: arrivals keep their schedule while
//! Redis is paused (SIGSTOP), every arrival is accounted for exactly
//! (completed, shed or still queued), queue and service time are told
//! apart, and the closed model under the same faults offers measurably
//! less.

use crate::common::{phase, Scratch};
use serde_json::Value;

const RATE: u64 = 500;
const SECONDS: u64 = 8;

fn scenario(load: &str) -> String {
    format!(
        r#"
name = "open"
duration = "{SECONDS}s"
seed = 3

[topology]
kind = "standalone"

[load]
{load}

[workload]
kind = "cache-aside"
keys = 200
read_ratio = 0.9
ttl = "30s"
op_timeout = "5s"
origin = {{ latency = "1ms", concurrency = 64 }}

[[fault]]
name = "pause"
kind = "pause"
at = "2s"
for = "2s"

[[fault]]
name = "slow"
kind = "latency"
latency = "40ms"
at = "5s"
for = "2s"
"#
    )
}

fn metric(p: &Value, name: &str) -> f64 {
    p["metrics"][name]
        .as_f64()
        .unwrap_or_else(|| panic!("no metric {name} in {}", p["name"]))
}

/// Redis commands the phase's ops issued.
fn redis_commands(p: &Value) -> u64 {
    p["ops"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("redis_"))
        .map(|(_, o)| o["count"].as_u64().unwrap())
        .sum()
}

/// timeseries.csv's `offered` for each second (a second's counters are on
/// each of its op rows; `load_lateness` has one in every second).
fn offered_per_second(report: &std::path::Path) -> Vec<u64> {
    let mut r = csv::Reader::from_path(report.join("timeseries.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let (t, op, offered) = (col("t_s"), col("op"), col("offered"));
    let mut per: Vec<u64> = Vec::new();
    for row in r.records() {
        let row = row.unwrap();
        if &row[op] == "load_lateness" {
            let s: usize = row[t].parse().unwrap();
            per.resize(per.len().max(s + 1), 0);
            per[s] = row[offered].parse().unwrap();
        }
    }
    per
}

#[test]
fn open_arrivals_keep_coming_while_redis_is_paused() {
    let _gate = crate::common::gate(module_path!());
    let open = Scratch::new(&scenario(&format!(
        "model = \"open\"\nrate = {RATE}\nmax_in_flight = 64\nmax_queue = 200"
    )));
    let s = open.run_ok(&[]);
    let run = phase(&s, "run");

    // Constant arrivals at 500/s: exactly 500 offered in every second,
    // paused or not.
    let per = offered_per_second(&open.report());
    assert_eq!(per.len() as u64, SECONDS, "{per:?}");
    assert!(
        per.iter().all(|&n| n == RATE),
        "offered per second: {per:?}"
    );
    assert_eq!(metric(run, "offered") as u64, RATE * SECONDS);

    // Every arrival is accounted for, exactly.
    let (offered, completed, shed, queued) = (
        metric(run, "offered"),
        metric(run, "completed"),
        metric(run, "shed"),
        metric(run, "queued_at_end"),
    );
    assert_eq!(completed + shed + queued, offered, "{:#}", run["metrics"]);
    assert_eq!(metric(run, "started"), completed);

    // The pause: 64 in flight, 200 waiting, the rest shed.
    let pause = phase(&s, "fault:pause");
    let offered_pause = metric(pause, "offered");
    assert!(
        (offered_pause - 1000.0).abs() <= 60.0,
        "2 s at 500/s: {offered_pause}"
    );
    assert_eq!(metric(pause, "in_flight_max"), 64.0);
    assert!(
        metric(pause, "queued_max") >= 190.0,
        "{:#}",
        pause["metrics"]
    );
    let shed_pause = metric(pause, "shed");
    assert!(
        (600.0..=800.0).contains(&shed_pause),
        "about 1000 − 64 − 200 shed: {shed_pause}"
    );
    assert_eq!(metric(phase(&s, "baseline"), "shed"), 0.0);
    // Waiting for a slot shows as queue time; the caller sees it too.
    let q = &pause["ops"]["load_queue"];
    assert!(q["p50_us"].as_u64().unwrap() > 500_000, "{q}");

    // 40 ms on every reply, with capacity to spare (64 / 40 ms ≫ 500/s):
    // service time carries the latency, queue time stays near zero.
    let slow = phase(&s, "fault:slow");
    let service = slow["ops"]["load_service"]["p50_us"].as_u64().unwrap();
    let queue = slow["ops"]["load_queue"]["p50_us"].as_u64().unwrap();
    assert!(service >= 40_000, "service p50 {service} µs");
    assert!(queue < 5_000, "queue p50 {queue} µs");
    assert!(
        metric(slow, "completed_rate") > 0.9 * RATE as f64,
        "{:#}",
        slow["metrics"]
    );
    // The scheduler itself kept time: a scheduler held up by the paused
    // Redis would be seconds late. The bound leaves room for a debug build
    // on a shared 2-core CI machine (10 ms seen there); sub-millisecond
    // precision is what `gameday bench open` measures, in release.
    let late = run["ops"]["load_lateness"]["p99_us"].as_u64().unwrap();
    assert!(late < 50_000, "scheduler lateness p99 {late} µs");

    // The closed model under the same faults: 8 users that each wait for
    // their op offer nothing while Redis is paused, and at most 8 / 40 ms
    // = 200 ops/s under the latency.
    let closed = Scratch::new(&scenario(&format!("users = 8\nrate = {RATE}")));
    let c = closed.run_ok(&[]);
    let c_pause = metric(phase(&c, "fault:pause"), "offered");
    assert!(
        c_pause < 0.1 * offered_pause,
        "closed offered {c_pause} while paused, open {offered_pause}"
    );
    let (open_cmds, closed_cmds) = (
        redis_commands(slow),
        redis_commands(phase(&c, "fault:slow")),
    );
    assert!(
        (closed_cmds as f64) < 0.6 * open_cmds as f64,
        "Redis commands under latency: closed {closed_cmds}, open {open_cmds}"
    );
}

const STAGES: &str = r#"
[[load.stage]]
name = "warm"
rate = 200
for = "2s"

[[load.stage]]
name = "ramp"
ramp_to = 600
for = "2s"

[[load.stage]]
name = "peak"
rate = 600
for = "2s"

[[load.stage]]
name = "spike"
rate = 1000
for = "1s"

[[load.stage]]
name = "cool"
rate = 200
for = "1s"
"#;

/// `rules`: the open model's offered counts are exact, so rules may hold
/// it to them; a closed model offers what its users keep up with.
fn staged(load: &str, rules: &str) -> String {
    format!(
        r#"
name = "stages"
duration = "8s"
seed = 5
expect = [{rules}]

[topology]
kind = "standalone"

[load]
{load}
{STAGES}
[workload]
kind = "cache-aside"
keys = 200
read_ratio = 0.9
ttl = "30s"
origin = {{ latency = "1ms", concurrency = 64 }}
"#
    )
}

/// timeseries.csv's `stage` for each second.
fn stage_per_second(report: &std::path::Path) -> Vec<String> {
    let mut r = csv::Reader::from_path(report.join("timeseries.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let (t, op, stage) = (col("t_s"), col("op"), col("stage"));
    let mut per: Vec<String> = Vec::new();
    for row in r.records() {
        let row = row.unwrap();
        if &row[op] == "caller" {
            let s: usize = row[t].parse().unwrap();
            per.resize(per.len().max(s + 1), String::new());
            per[s] = row[stage].to_string();
        }
    }
    per
}

#[test]
fn stages_shape_the_offered_rate_in_both_models() {
    let _gate = crate::common::gate(module_path!());
    // Per second: 2 s at 200, a ramp 200 → 600 (300 and 500 on average),
    // 2 s at 600, 1 s at 1000, 1 s at 200.
    let want = [200.0, 200.0, 300.0, 500.0, 600.0, 600.0, 1000.0, 200.0];
    let open = Scratch::new(&staged(
        "model = \"open\"\nmax_in_flight = 32",
        "\"stage:peak.p99 < 1s\", \"stage:spike.offered >= 990\"",
    ));
    let s = open.run_ok(&[]);
    let per = offered_per_second(&open.report());
    for (t, (&got, &w)) in per.iter().zip(&want).enumerate() {
        assert!(
            (got as f64 - w).abs() <= 3.0,
            "second {t}: {got} offered, {w} wanted: {per:?}"
        );
    }
    for (stage, n) in [
        ("warm", 400.0),
        ("ramp", 800.0),
        ("peak", 1200.0),
        ("spike", 1000.0),
        ("cool", 200.0),
    ] {
        let p = phase(&s, &format!("stage:{stage}"));
        let got = metric(p, "offered");
        assert!((got - n).abs() <= 3.0, "{stage}: {got} offered, {n} wanted");
        assert_eq!(metric(p, "shed"), 0.0, "{stage}");
    }
    let stages = stage_per_second(&open.report());
    assert_eq!(
        stages,
        ["warm", "warm", "ramp", "ramp", "peak", "peak", "spike", "cool"]
    );
    assert!(
        s["expectations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["passed"] == true),
        "{:#}",
        s["expectations"]
    );

    // The closed model follows the same stages with its users' schedules.
    // Its first stage also holds goose's start-up (each user's schedule
    // begins once goose has started it, up to ~0.2 s after the load's
    // clock on a busy machine: 352 of 400 once), so the check is on the
    // later stages.
    let closed = Scratch::new(&staged("users = 16", ""));
    let c = closed.run_ok(&[]);
    for (stage, n) in [("peak", 1200.0), ("spike", 1000.0)] {
        let got = metric(phase(&c, &format!("stage:{stage}")), "offered");
        eprintln!("closed {stage}: {got} begun, {n} scheduled");
        assert!(
            (got / n - 1.0).abs() < 0.05,
            "closed {stage}: {got} begun, {n} scheduled"
        );
    }
}

/// The one-writer workloads (their keys split over the users) and the
/// queue under open arrivals: the open model's slots are their users. Each
/// takes the offered load and its invariants hold with no fault.
#[test]
fn the_newer_workloads_run_under_open_arrivals() {
    let _gate = crate::common::gate(concat!(module_path!(), "::workloads"));
    for (topology, workload, active, zero) in [
        (
            "standalone",
            "kind = \"queue\"\nconsumers = 2\nprocess_time = \"2ms\"\ndrain = \"5s\"",
            "processed",
            &["lost_jobs", "duplicates_uncaught", "corrupt_jobs"][..],
        ),
        (
            "replicated",
            "kind = \"replica-reads\"\nkeys = 200",
            "replica_reads",
            &["stale_reads"][..],
        ),
        (
            "standalone",
            "kind = \"write-behind\"\nkeys = 200\nflush_interval = \"200ms\"",
            "flushed",
            &["unflushed_lost", "stale_reads"][..],
        ),
        (
            "standalone",
            "kind = \"two-level\"\nkeys = 200\ninstances = 2",
            "l1_hits",
            &["stale_l1_reads", "missed_invalidations"][..],
        ),
    ] {
        let text = format!(
            "name = \"open-workloads\"\nduration = \"5s\"\nseed = 5\n\n[topology]\nkind = \"{topology}\"\n\n\
             [load]\nmodel = \"open\"\nrate = 200\nmax_in_flight = 8\n\n[workload]\n{workload}\n"
        );
        let s = Scratch::new(&text).run_ok(&[]);
        let run = phase(&s, "run");
        let name = workload.lines().next().unwrap();
        eprintln!("open model, {name}: {}", run["metrics"]);
        assert!(metric(run, active) > 0.0, "{name}: {}", run["metrics"]);
        assert_eq!(
            metric(run, "caller_errors"),
            0.0,
            "{name}: {}",
            run["metrics"]
        );
        for m in zero {
            assert_eq!(metric(run, m), 0.0, "{name} {m}: {}", run["metrics"]);
        }
        // About 200 arrivals a second were served, not a closed loop's
        // pace.
        let ops = run["ops"]["caller"]["count"].as_f64().unwrap();
        assert!(
            (800.0..=1100.0).contains(&ops),
            "{name}: {ops} caller ops in 5 s"
        );
    }
}
