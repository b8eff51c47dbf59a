//! Redis's own `LATENCY HISTOGRAM`, per second beside the client's view:
//! 20 ms of network latency in front of the node is the client's, not the
//! server's, so the server's GET p99 stays under a millisecond while the
//! client's GET p50 is past 20 ms.

use crate::common::{phase, Scratch};

const SCENARIO: &str = r#"
name = "server-latency"
duration = "7s"
seed = 2

[topology]
kind = "standalone"

[load]
users = 8
rate = 400

[workload]
kind = "cache-aside"
keys = 500
read_ratio = 0.9
ttl = "10m"
op_timeout = "1s"

[[fault]]
name = "slow"
kind = "latency"
latency = "20ms"
at = "2s"
for = "3s"
"#;

#[test]
fn the_servers_own_latency_is_not_the_networks() {
    let _gate = crate::common::gate(module_path!());
    let scratch = Scratch::new(SCENARIO);
    let s = scratch.run_ok(&[]);
    let client_p50 = phase(&s, "fault:slow")["ops"]["redis_get"]["p50_us"]
        .as_u64()
        .unwrap();
    assert!(client_p50 >= 20_000, "client GET p50 {client_p50} µs");
    let mut r = csv::Reader::from_path(scratch.report().join("timeseries.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let (t, op, get, set) = (
        col("t_s"),
        col("op"),
        col("server_get_p99_us"),
        col("server_set_p99_us"),
    );
    let mut seen = Vec::new();
    for row in r.records().map(|x| x.unwrap()) {
        if &row[op] == "server" && !row[get].is_empty() {
            let us: u64 = row[get].parse().unwrap();
            seen.push((row[t].to_string(), us, row[set].to_string()));
        }
    }
    eprintln!("server GET p99 per second: {seen:?}");
    assert!(seen.len() >= 5, "{seen:?}");
    assert!(seen.iter().all(|(_, us, _)| *us < 1_000), "{seen:?}");
}
