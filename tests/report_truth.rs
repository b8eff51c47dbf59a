//! The report tells the truth: a real run with a 5 s outage and a 50 ms
//! latency fault, checked against what was injected, within stated
//! tolerances. Also pins the shape of summary.json and the other files.

use crate::common::Scratch;
use serde_json::Value;

const SCENARIO: &str = r#"
name = "truth"
description = "A 5 s outage, then 5 s of 50 ms latency"
duration = "20s"
seed = 7

[topology]
kind = "standalone"

[load]
users = 8
rate = 100

[workload]
kind = "cache-aside"
keys = 200
read_ratio = 0.9
ttl = "30s"
op_timeout = "500ms"
origin = { latency = "2ms", concurrency = 32 }
on_redis_error = { policy = "fallback" }

[[fault]]
name = "outage"
kind = "down"
at = "3s"
for = "5s"

[[fault]]
name = "slow"
kind = "latency"
latency = "50ms"
at = "11s"
for = "5s"

expect = [
  "fault:outage.caller_errors == 0",
  "fault:slow.redis_get.p50 >= 45ms",
]
"#;

/// Tolerance on the timing of errors vs the fault window.
const WINDOW_TOL_S: f64 = 0.3;

fn phase<'a>(s: &'a Value, name: &str) -> &'a Value {
    s["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no phase {name}"))
}

fn redis_ops(p: &Value) -> Vec<(&String, &Value)> {
    p["ops"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("redis_"))
        .collect()
}

#[test]
fn outage_and_latency_are_reported_as_injected() {
    let _gate = crate::common::gate(module_path!());
    let scratch = Scratch::new(SCENARIO);
    let out = scratch.run_cmd().output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "run failed: {stderr}");
    let s = scratch.summary();

    // The faults were applied when scheduled and lasted as long as asked.
    let faults = s["faults"].as_array().unwrap();
    let outage = &faults[0];
    let (applied, removed) = (
        outage["applied_at_s"].as_f64().unwrap(),
        outage["removed_at_s"].as_f64().unwrap(),
    );
    assert!(
        (applied - 3.0).abs() < WINDOW_TOL_S,
        "outage applied at {applied}"
    );
    assert!(
        (removed - applied - 5.0).abs() < WINDOW_TOL_S,
        "outage lasted {}",
        removed - applied
    );

    // Redis-level errors happen only inside the outage window (± 300 ms)...
    let fault = phase(&s, "fault:outage");
    let mut first = f64::INFINITY;
    let mut last = f64::NEG_INFINITY;
    let mut errors = 0;
    for (_, op) in redis_ops(fault) {
        errors += op["errors"].as_u64().unwrap();
        if let (Some(f), Some(l)) = (op["first_error_s"].as_f64(), op["last_error_s"].as_f64()) {
            first = first.min(f);
            last = last.max(l);
        }
    }
    assert!(
        errors > 100,
        "a 5 s outage at 100 ops/s gives hundreds of Redis errors, got {errors}"
    );
    assert!(
        (first - applied).abs() <= WINDOW_TOL_S,
        "first Redis error at {first}, fault applied at {applied}"
    );
    assert!(
        (last - removed).abs() <= WINDOW_TOL_S,
        "last Redis error at {last}, fault removed at {removed}"
    );
    for name in ["baseline", "recovery:outage", "fault:slow", "recovery:slow"] {
        for (op, stats) in redis_ops(phase(&s, name)) {
            if let Some(l) = stats["last_error_s"].as_f64() {
                assert!(
                    name == "recovery:outage" && l <= removed + WINDOW_TOL_S,
                    "{name}.{op} has an error at {l}s, outside the outage window"
                );
            }
        }
    }
    // ...and none reaches the caller under fallback.
    for p in s["phases"].as_array().unwrap() {
        assert_eq!(
            p["metrics"]["caller_errors"], 0.0,
            "caller errors in {}",
            p["name"]
        );
    }
    assert!(fault["metrics"]["fallbacks"].as_f64().unwrap() > 100.0);

    // A 50 ms latency fault shows a Redis p50 of 50 ms ± 5 ms.
    let slow = phase(&s, "fault:slow");
    let p50 = slow["ops"]["redis_get"]["p50_us"].as_f64().unwrap() / 1000.0;
    assert!(
        (45.0..=55.0).contains(&p50),
        "fault:slow redis_get p50 = {p50} ms"
    );
    let base = phase(&s, "baseline")["ops"]["redis_get"]["p50_us"]
        .as_f64()
        .unwrap()
        / 1000.0;
    assert!(base < 5.0, "baseline redis_get p50 = {base} ms");

    // The verdict follows the expectations.
    assert_eq!(s["verdict"], "pass");
    let e = s["expectations"].as_array().unwrap();
    assert!(e.iter().all(|e| e["passed"] == true));
    let observed = e[1]["observed"].as_f64().unwrap();
    assert!(
        (observed - p50).abs() < 0.01,
        "observed is in the rule's unit (ms): {observed}"
    );

    assert_report_files(&scratch.report(), &s);
    scratch.assert_nothing_left();
}

/// Pins summary.json's shape and checks the other files are real.
fn assert_report_files(dir: &std::path::Path, s: &Value) {
    assert_eq!(s["schema"], "gameday.summary/1");
    for key in [
        "scenario",
        "verdict",
        "seed",
        "started_at",
        "duration_s",
        "phases",
        "faults",
        "expectations",
    ] {
        assert!(!s[key].is_null(), "summary.json lacks `{key}`");
    }
    let p = &s["phases"][0];
    for key in ["name", "start_s", "end_s", "ops", "metrics"] {
        assert!(!p[key].is_null(), "phase lacks `{key}`");
    }
    let op = &p["ops"]["read"];
    for key in [
        "count",
        "errors",
        "errors_by_class",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
        "throughput",
    ] {
        assert!(!op[key].is_null(), "op lacks `{key}`");
    }
    for key in [
        "name",
        "kind",
        "target",
        "at_s",
        "for_s",
        "applied_at_s",
        "removed_at_s",
    ] {
        assert!(!s["faults"][0][key].is_null(), "fault lacks `{key}`");
    }
    for key in ["rule", "observed", "passed"] {
        assert!(
            !s["expectations"][0][key].is_null(),
            "expectation lacks `{key}`"
        );
    }
    let names: Vec<&str> = s["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "baseline",
            "fault:outage",
            "recovery:outage",
            "fault:slow",
            "recovery:slow",
            "run"
        ]
    );

    let csv = std::fs::read_to_string(dir.join("timeseries.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("t_s,phase,fault,op,count"));
    assert!(
        rows.iter()
            .any(|r| r.contains(",fault:outage,outage,redis_get,")),
        "the outage shows in the time series"
    );

    let hlog = std::fs::read(dir.join("latency.hlog")).unwrap();
    let intervals = hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&hlog)
        .filter(|e| {
            matches!(
                e,
                Ok(hdrhistogram::serialization::interval_log::LogEntry::Interval(_))
            )
        })
        .count();
    assert!(
        intervals >= 20 * 3,
        "one interval per second per op, got {intervals}"
    );

    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.matches("<svg").count() >= 5, "five charts");
    assert!(html.contains("fault:outage") && html.contains("PASS"));
    assert!(!html.contains("could not be drawn"));

    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase").count(), 2);
    assert!(junit.contains("failures=\"0\""));
    assert!(dir.join("goose.html").exists(), "goose's own report");
}
