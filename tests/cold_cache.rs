//! `cold_cache` against the origin's exact count: one user reads 50 keys,
//! all cached during the baseline with a TTL far beyond the run, so after
//! the fault every origin call is a read of a removed key, and every
//! removed key is read again (1 200 uniform reads of 50 keys leave none
//! unread). The origin's calls after the fault must equal the keys
//! removed, exactly.

use crate::common::{metric, phase, Scratch};

fn scenario(fault_keys: &str) -> String {
    format!(
        r#"
name = "cold"
duration = "9s"
seed = 9

[topology]
kind = "standalone"

[load]
users = 1
rate = 300

[workload]
kind = "cache-aside"
keys = 50
distribution = "uniform"
read_ratio = 1.0
ttl = "10m"
origin = {{ latency = "1ms", concurrency = 4 }}

[[fault]]
name = "cold"
kind = "cold_cache"
at = "3s"
for = "2s"
{fault_keys}
"#
    )
}

#[test]
fn the_origin_recomputes_exactly_the_removed_keys() {
    let _gate = crate::common::gate(module_path!());
    for (keys, removed) in [("fraction = 0.5", 25.0), ("keys = \"all\"", 50.0)] {
        let scratch = Scratch::new(&scenario(keys));
        let s = scratch.run_ok(&[]);
        let (baseline, fault, recovery) = (
            phase(&s, "baseline"),
            phase(&s, "fault:cold"),
            phase(&s, "recovery:cold"),
        );
        assert_eq!(metric(fault, "keys_removed"), removed, "{keys}");
        // Warm before: after the first 50 misses, every read hit.
        assert!(
            metric(baseline, "hit_ratio") > 0.9,
            "{}",
            baseline["metrics"]
        );
        let after = metric(fault, "origin_calls") + metric(recovery, "origin_calls");
        assert_eq!(after, removed, "{keys}: origin calls after the fault");
        assert_eq!(
            metric(recovery, "misses"),
            0.0,
            "{keys}: all re-warmed in the fault"
        );
        // Re-warmed within the first second or two (to the second).
        let rewarm = metric(fault, "rewarm_time_ms");
        assert!(
            rewarm > 0.0 && rewarm <= 2_100.0,
            "{keys}: rewarm {rewarm} ms"
        );
    }
}
