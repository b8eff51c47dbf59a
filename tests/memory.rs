//! memory_pressure against a real server: what the report counts (ballast
//! written and refused, evictions by key class, OOM errors) adds up, the
//! limit really was lowered for the fault's length only, and the cache
//! degrades as its policy says.

use crate::common::{phase, Scratch};
use serde_json::Value;

fn scenario(policy: &str) -> String {
    format!(
        r#"
name = "memory-{policy}"
duration = "12s"

[topology]
kind = "standalone"
maxmemory = "64mb"
maxmemory_policy = "{policy}"

[load]
users = 8
rate = 400

[workload]
kind = "cache-aside"
keys = 2000
value_size = 2048
ttl = "60s"
op_timeout = "500ms"
on_redis_error = {{ policy = "fallback" }}

[[fault]]
name = "mem"
kind = "memory_pressure"
maxmemory = "6mb"
ballast = "4mb"
at = "3s"
for = "6s"
"#
    )
}

fn run(policy: &str) -> (Scratch, Value) {
    let scratch = Scratch::new(&scenario(policy));
    let s = scratch.run_ok(&[]);
    (scratch, s)
}

/// `maxmemory` by second, from timeseries.csv's server rows.
fn maxmemory_by_second(scratch: &Scratch) -> Vec<(u64, u64)> {
    let mut r = csv::Reader::from_path(scratch.report().join("timeseries.csv")).unwrap();
    let header = r.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (t, op, mm) = (col("t_s"), col("op"), col("maxmemory"));
    r.records()
        .map(|rec| rec.unwrap())
        .filter(|rec| &rec[op] == "server")
        .map(|rec| (rec[t].parse().unwrap(), rec[mm].parse().unwrap()))
        .collect()
}

/// The limit was 6 MB while the fault lasted (3 s to 9 s) and 64 MB around it.
fn limit_lowered_for_the_fault_only(scratch: &Scratch) {
    for (t, mm) in maxmemory_by_second(scratch) {
        match t {
            0..=2 | 10.. => assert_eq!(mm, 64 << 20, "at {t}s"),
            4..=8 => assert_eq!(mm, 6 << 20, "at {t}s"),
            _ => {}
        }
    }
}

#[test]
fn under_allkeys_lru_ballast_evicts_workload_keys_and_they_are_counted() {
    let _gate = crate::common::gate(module_path!());
    let (scratch, s) = run("allkeys-lru");
    let m = &s["faults"][0]["memory"][0];
    // 4 MB of 4 KB values: 1024 keys, all accepted under an evicting policy.
    assert_eq!(m["ballast_keys"], 1024, "{m}");
    assert_eq!(m["ballast_refused"], 0, "{m}");
    let (total, ballast, workload) = (
        m["evicted_keys"].as_u64().unwrap(),
        m["evicted_ballast"].as_u64().unwrap(),
        m["evicted_workload"].as_u64().unwrap(),
    );
    assert_eq!(total, ballast + workload, "{m}");
    assert!(workload > 100, "the cache lost keys to the ballast: {m}");
    let fault = &phase(&s, "fault:mem")["metrics"];
    assert_eq!(fault["evicted_workload"].as_f64(), Some(workload as f64));
    assert_eq!(fault["oom_errors"], 0.0);
    assert_eq!(fault["caller_errors"], 0.0);
    limit_lowered_for_the_fault_only(&scratch);
    scratch.assert_nothing_left();
}

#[test]
fn under_noeviction_writes_are_refused_and_the_fallback_hides_it() {
    let _gate = crate::common::gate(module_path!());
    let (scratch, s) = run("noeviction");
    let m = &s["faults"][0]["memory"][0];
    let (written, refused) = (
        m["ballast_keys"].as_u64().unwrap(),
        m["ballast_refused"].as_u64().unwrap(),
    );
    assert_eq!(written + refused, 1024, "{m}");
    assert!(refused > 0, "6 MB cannot hold 4 MB of ballast on top: {m}");
    assert_eq!(m["evicted_keys"], 0, "{m}");
    let fault = phase(&s, "fault:mem");
    let oom = fault["metrics"]["oom_errors"].as_f64().unwrap();
    assert!(oom > 10.0, "cache fills refused with OOM: {oom}");
    assert_eq!(
        fault["ops"]["redis_set"]["errors_by_class"]["oom"].as_f64(),
        Some(oom),
        "only SETs write"
    );
    assert_eq!(fault["metrics"]["caller_errors"], 0.0);
    assert_eq!(phase(&s, "recovery:mem")["metrics"]["oom_errors"], 0.0);
    limit_lowered_for_the_fault_only(&scratch);
    scratch.assert_nothing_left();
}
