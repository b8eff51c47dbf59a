//! `hot_key_share` on a cluster: half of the reads go to one key, so the
//! master that owns its slot serves several times what each other master
//! does, and the per-node `ops_per_sec` telemetry shows which one; without
//! the hot key the three masters serve alike.

use crate::common::Scratch;
use std::collections::BTreeMap;

fn scenario(hot: &str) -> String {
    format!(
        r#"
name = "hot"
duration = "8s"
seed = 12

[topology]
kind = "cluster"
masters = 3
replicas_per_master = 0

[load]
users = 16
rate = 1500

[workload]
kind = "cache-aside"
keys = 3000
distribution = "uniform"
read_ratio = 1.0
ttl = "10m"
op_timeout = "500ms"
{hot}
"#
    )
}

/// Each master's mean `ops_per_sec` over seconds 3..7, from the server
/// rows of timeseries.csv.
fn ops_per_master(scratch: &Scratch) -> BTreeMap<String, f64> {
    let mut r = csv::Reader::from_path(scratch.report().join("timeseries.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let (t, op, node, role, ops) = (
        col("t_s"),
        col("op"),
        col("node"),
        col("role"),
        col("ops_per_sec"),
    );
    let mut sum: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for row in r.records().map(|x| x.unwrap()) {
        let s: u64 = row[t].parse().unwrap();
        if &row[op] == "server" && &row[role] == "master" && (3..7).contains(&s) {
            let e = sum.entry(row[node].to_string()).or_default();
            e.0 += row[ops].parse::<f64>().unwrap();
            e.1 += 1.0;
        }
    }
    sum.into_iter().map(|(n, (v, c))| (n, v / c)).collect()
}

#[test]
fn the_hot_shard_shows_in_per_node_ops() {
    let _gate = crate::common::gate(module_path!());
    let mut ratios = Vec::new();
    for hot in ["", "hot_key_share = 0.5"] {
        let scratch = Scratch::new(&scenario(hot));
        scratch.run_ok(&[]);
        let per = ops_per_master(&scratch);
        assert_eq!(per.len(), 3, "{per:?}");
        let most = per.values().cloned().fold(0.0, f64::max);
        let least = per.values().cloned().fold(f64::INFINITY, f64::min);
        eprintln!(
            "hot_key ({}): per master {per:?}",
            if hot.is_empty() { "uniform" } else { "hot" }
        );
        ratios.push(most / least.max(1.0));
    }
    // Uniform: about a third each. Hot: 0.5 + 0.5 / 3 of the reads on one
    // master, 0.5 / 3 on each other: 4× the reads; the nodes' own counts
    // also hold what every node serves alike (the cluster client's own
    // commands), so less than that: 2.9× measured.
    assert!(ratios[0] < 1.5, "uniform: most/least {}", ratios[0]);
    assert!(ratios[1] > 2.0, "hot key: most/least {}", ratios[1]);
}
