//! A stop condition against its cause: an outage with `policy = "fail"`
//! turns every read into a caller error (400 ops/s), so `caller_errors >
//! 100` becomes true a quarter of a second into the fault. The run must
//! notice within its 1 s check, take the fault off within a second of
//! that, stop the load, write the report with verdict `aborted` and the
//! rule, and exit 5.

use crate::common::{phase, Scratch};

const SCENARIO: &str = r#"
name = "abort"
duration = "20s"
abort_if = ["run.caller_errors > 100", "fault:*.p99 > 10s"]

[topology]
kind = "standalone"

[load]
users = 8
rate = 400

[workload]
kind = "cache-aside"
keys = 100
read_ratio = 1.0
on_redis_error = { policy = "fail" }

[[fault]]
name = "outage"
kind = "down"
at = "2s"
for = "15s"
"#;

#[test]
fn a_stop_condition_ends_the_run_within_a_second_of_holding() {
    let _gate = crate::common::gate(module_path!());
    let scratch = Scratch::new(SCENARIO);
    let out = scratch.run_cmd().output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{text}");
    let s = scratch.summary();
    assert_eq!(s["verdict"], "aborted", "{}", s["aborted"]);
    let a = &s["aborted"];
    assert_eq!(a["rule"], "run.caller_errors > 100", "{a}");
    assert_eq!(a["phase"], "run", "{a}");
    assert!(a["observed"].as_f64().unwrap() > 100.0, "{a}");
    let fault = &s["faults"][0];
    let applied = fault["applied_at_s"].as_f64().unwrap();
    let at = a["at_s"].as_f64().unwrap();
    // 100 errors at 400/s take 0.25 s; the check runs every second.
    assert!(
        at > applied && at < applied + 1.6,
        "tripped at {at} s, fault at {applied} s"
    );
    let removed = fault["removed_at_s"]
        .as_f64()
        .expect("the fault was taken off");
    assert!(
        removed - at < 1.0,
        "fault removed {:.2} s after the trip",
        removed - at
    );
    let end = s["duration_s"].as_f64().unwrap();
    assert!(
        end - at < 1.0,
        "load stopped {:.2} s after the trip",
        end - at
    );
    assert!(
        phase(&s, "fault:outage")["ops"]["read"]["count"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    scratch.assert_nothing_left();
}
