//! `replica_resync` against the primary's own counters: a replica cut off
//! for 3 s while 250 writes/s of 1 KB go on (about 750 KB, far beyond a
//! 16 KB backlog) needs a full resync when it comes back, exactly one, and
//! the fork it costs is recorded; with a 64 MB backlog the same cut heals
//! with a partial resync and no full one. Either way the replica is back
//! in sync before the fault's phase ends.

use crate::common::{phase, Scratch};

fn scenario(backlog: &str) -> String {
    format!(
        r#"
name = "resync"
duration = "9s"
seed = 5

[topology]
kind = "replicated"
replicas = 1

[load]
users = 4
rate = 500

[workload]
kind = "cache-aside"
keys = 5000
read_ratio = 0.5
value_size = 1024
ttl = "10m"

[[fault]]
name = "cut"
kind = "replica_resync"
target = "replicas"
at = "2s"
for = "3s"
{backlog}
"#
    )
}

fn metric(s: &serde_json::Value, k: &str) -> Option<f64> {
    phase(s, "fault:cut")["metrics"][k].as_f64()
}

#[test]
fn a_replica_cut_off_past_the_backlog_needs_one_full_resync_and_within_it_a_partial_one() {
    let _gate = crate::common::gate(module_path!());
    let small = Scratch::new(&scenario("")).run_ok(&[]);
    let m = &phase(&small, "fault:cut")["metrics"];
    assert_eq!(metric(&small, "full_syncs"), Some(1.0), "{m}");
    assert_eq!(metric(&small, "partial_syncs"), Some(0.0), "{m}");
    assert!(
        metric(&small, "fork_time_ms").is_some_and(|f| f > 0.0),
        "{m}"
    );
    let resync = metric(&small, "resync_time_ms").expect("back in sync");
    assert!(resync > 0.0 && resync < 30_000.0, "{m}");

    let large = Scratch::new(&scenario("backlog = \"64mb\"")).run_ok(&[]);
    let m = &phase(&large, "fault:cut")["metrics"];
    assert_eq!(metric(&large, "full_syncs"), Some(0.0), "{m}");
    assert_eq!(metric(&large, "partial_syncs"), Some(1.0), "{m}");
    assert!(metric(&large, "resync_time_ms").is_some(), "{m}");
}
