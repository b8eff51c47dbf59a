//! A partition cuts a node off from its peers while clients still reach
//! it: under Sentinel, the sentinels elect a new primary while the old one
//! still takes the clients' writes — two primaries at once (split brain).

use crate::common;
use crate::common::Scratch;

const SCENARIO: &str = r#"
name = "split-brain"
duration = "14s"

[topology]
kind = "sentinel"

[load]
users = 8
rate = 200

[workload]
kind = "cache-aside"
keys = 200
op_timeout = "500ms"
on_redis_error = { policy = "fail" }

[[fault]]
name = "split"
kind = "partition"
at = "2s"
for = "8s"
"#;

/// Per second: the nodes that said `role:master`.
fn masters_by_second(scratch: &Scratch) -> Vec<(u64, Vec<String>)> {
    let mut r = csv::Reader::from_path(scratch.report().join("timeseries.csv")).unwrap();
    let header = r.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (t, op, node, role) = (col("t_s"), col("op"), col("node"), col("role"));
    let mut out: Vec<(u64, Vec<String>)> = Vec::new();
    for rec in r.records().map(|r| r.unwrap()) {
        if &rec[op] != "server" {
            continue;
        }
        let second: u64 = rec[t].parse().unwrap();
        if out.last().is_none_or(|(s, _)| *s != second) {
            out.push((second, Vec::new()));
        }
        if &rec[role] == "master" {
            out.last_mut().unwrap().1.push(rec[node].to_string());
        }
    }
    out
}

#[test]
fn a_partitioned_primary_keeps_its_clients_while_sentinels_elect_another() {
    let _gate = crate::common::gate(module_path!());
    split_brain("process");
}

#[test]
fn partitions_work_on_the_docker_backend() {
    let _gate = crate::common::gate(module_path!());
    if common::docker_ready() {
        split_brain("docker");
    }
}

fn split_brain(backend: &str) {
    let scratch = Scratch::new(SCENARIO);
    let s = scratch.run_ok(&["--backend", backend]);
    let fault = common::phase(&s, "fault:split");
    // Clients were never cut: every op of the partition succeeded, and all
    // the ops meant for those 8 s are there.
    let caller = &fault["ops"]["caller"];
    assert_eq!(caller["errors"], 0, "{caller}");
    let n = caller["count"].as_f64().unwrap();
    assert!((n - 1600.0).abs() < 160.0, "{n} ops in 8 s at 200/s");
    assert!(fault["ops"]["redis_set"]["count"].as_u64().unwrap() > 20);

    // Before: one primary. During: the old one and a newly elected one.
    let masters = masters_by_second(&scratch);
    let at = |t: u64| &masters.iter().find(|(s, _)| *s == t).unwrap().1;
    assert_eq!(at(1), &vec!["redis-0".to_string()], "{masters:?}");
    let split = masters
        .iter()
        .filter(|(t, _)| (3..=10).contains(t))
        .any(|(_, m)| m.len() == 2 && m.contains(&"redis-0".to_string()));
    assert!(split, "no second of two primaries: {masters:?}");
    scratch.assert_nothing_left();
}
