//! Failovers under load, Sentinel and Cluster, requested and forced: the
//! report's `failover_time` must agree with what the topology itself said
//! (the sentinels' `+switch-master`), the primary must really change, and no
//! address the servers hand out afterwards may bypass the proxies.

use crate::common;
use crate::common::{docker_ready, Scratch};
use serde_json::Value;

fn scenario(topology: &str, mode: &str) -> String {
    format!(
        r#"
name = "failover-{topology}-{mode}"
duration = "12s"

[topology]
kind = "{topology}"

[load]
users = 8
rate = 200

[workload]
kind = "cache-aside"
keys = 200
op_timeout = "500ms"
on_redis_error = {{ policy = "fail" }}

[[fault]]
name = "fo"
kind = "failover"
mode = "{mode}"
at = "2s"
for = "8s"
"#
    )
}

fn run(topology: &str, mode: &str) -> (Scratch, Value) {
    run_on(topology, mode, "process")
}

fn run_on(topology: &str, mode: &str, backend: &str) -> (Scratch, Value) {
    let scratch = Scratch::new(&scenario(topology, mode));
    let s = scratch.run_ok(&["--backend", backend]);
    (scratch, s)
}

/// The failover record: the primary changed, and a client wrote to the new
/// one within the fault.
fn failover(s: &Value, what: &str) -> (f64, f64) {
    let f = &s["faults"][0];
    assert_eq!(f["replaced"], "redis-0", "{what}: {f}");
    let new = f["new_primary"].as_str().unwrap_or_default();
    assert!(new.starts_with("redis-") && new != "redis-0", "{what}: {f}");
    let applied = f["applied_at_s"].as_f64().unwrap();
    let ms = f["failover_time_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: no failover_time: {f}"));
    let switched = f["switched_at_s"].as_f64().unwrap();
    assert!(
        switched >= applied && switched * 1e3 <= applied * 1e3 + ms + 1.0,
        "{what}: switch at {switched} s, write {ms} ms after {applied} s"
    );
    (applied, ms)
}

/// Every address in the sentinels' events is one of the nodes' proxies.
fn events_name_only_proxies(s: &Value) {
    let proxies: Vec<String> = s["topology"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["proxy_addr"].as_str().unwrap().to_string())
        .collect();
    for e in s["events"].as_array().unwrap() {
        let words: Vec<&str> = e["detail"].as_str().unwrap().split(' ').collect();
        for pair in words.windows(2) {
            if pair[0] == "127.0.0.1" {
                let addr = format!("127.0.0.1:{}", pair[1]);
                assert!(
                    proxies.contains(&addr),
                    "{} names {addr}, not a proxy: {e}",
                    e["node"]
                );
            }
        }
    }
}

#[test]
fn a_manual_sentinel_failover_is_timed_as_the_sentinels_report_it() {
    let _gate = crate::common::gate(module_path!());
    let (scratch, s) = run("sentinel", "manual");
    let (applied, ms) = failover(&s, "sentinel manual");
    let first_switch = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "+switch-master")
        .map(|e| e["t_s"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert!(
        first_switch.is_finite(),
        "no +switch-master: {}",
        s["events"]
    );
    let by_sentinels = (first_switch - applied) * 1e3;
    assert!(
        (ms - by_sentinels).abs() < 500.0,
        "failover_time {ms} ms, +switch-master {by_sentinels} ms after the request"
    );
    events_name_only_proxies(&s);
    scratch.assert_nothing_left();
}

#[test]
fn a_killed_sentinel_primary_is_replaced_and_comes_back() {
    let _gate = crate::common::gate(module_path!());
    let (scratch, s) = run("sentinel", "kill_primary");
    let (_, ms) = failover(&s, "sentinel kill_primary");
    // Sentinel waits down_after (2 s) before it even agrees the primary is
    // down; the whole failover should not take more than the fault's 8 s.
    assert!((2000.0..8000.0).contains(&ms), "failover_time {ms} ms");
    let fault = common::phase(&s, "fault:fo");
    assert!(
        fault["ops"]["caller"]["errors"].as_u64().unwrap() > 50,
        "writes and reads failed while no primary was elected"
    );
    events_name_only_proxies(&s);
    scratch.assert_nothing_left();
}

#[test]
fn cluster_failovers_promote_a_replica_of_the_lost_master() {
    let _gate = crate::common::gate(module_path!());
    for mode in ["manual", "kill_primary"] {
        let (scratch, s) = run("cluster", mode);
        let (_, ms) = failover(&s, mode);
        let limit = if mode == "manual" { 2000.0 } else { 8000.0 };
        assert!(ms < limit, "cluster {mode}: failover_time {ms} ms");
        scratch.assert_nothing_left();
    }
}

#[test]
fn a_killed_sentinel_primary_is_replaced_on_the_docker_backend() {
    let _gate = crate::common::gate(module_path!());
    if !docker_ready() {
        return;
    }
    let (scratch, s) = run_on("sentinel", "kill_primary", "docker");
    assert_eq!(s["backend"], "docker");
    let (_, ms) = failover(&s, "docker sentinel kill_primary");
    assert!((2000.0..8000.0).contains(&ms), "failover_time {ms} ms");
    events_name_only_proxies(&s);
    scratch.assert_nothing_left();
}
