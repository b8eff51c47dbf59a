//! `bgsave` against the server's own account: a fork of a node holding
//! 200 MB of filler under load. The node's `latest_fork_usec` is recorded
//! and becomes `fork_time`; the clients, whose commands wait for the fork
//! in the server's main thread, see a latency spike of about that length.

use crate::common::{phase, Scratch};

const SCENARIO: &str = r#"
name = "fork"
duration = "10s"
seed = 4

[topology]
kind = "standalone"

[load]
users = 8
rate = 2000

[workload]
kind = "cache-aside"
keys = 1000
read_ratio = 0.9
ttl = "10m"
op_timeout = "1s"

[[fault]]
name = "save"
kind = "bgsave"
dataset = "200mb"
at = "3s"
for = "4s"
"#;

#[test]
fn a_fork_under_load_is_timed_and_felt() {
    let _gate = crate::common::gate(module_path!());
    let scratch = Scratch::new(SCENARIO);
    let s = scratch.run_ok(&[]);
    let fork = &s["faults"][0]["forks"][0];
    let fork_usec = fork["fork_usec"].as_f64().unwrap();
    assert!(fork_usec > 0.0, "{fork}");
    assert_eq!(fork["filler_keys"], 200 * 1024 * 1024 / 4096, "{fork}");
    assert!(
        fork["used_memory"].as_u64().unwrap() > 200 * 1024 * 1024,
        "{fork}"
    );
    assert!(fork["save_s"].is_u64(), "the save finished: {fork}");
    let p = phase(&s, "fault:save");
    assert_eq!(p["metrics"]["fork_time_ms"].as_f64(), Some(fork_usec / 1e3));
    // Commands in flight when the fork began waited for it.
    let max_us = p["ops"]["redis_get"]["max_us"].as_f64().unwrap();
    eprintln!("bgsave: fork {fork_usec} µs, the slowest GET of the fault {max_us} µs");
    assert!(
        max_us >= 0.5 * fork_usec,
        "fork {fork_usec} µs, slowest GET {max_us} µs"
    );
}
