//! `two-level` against a cut pub/sub path: two instances subscribe on the
//! two replicas; the first replica's proxy goes down for the last 3 s of
//! the run (that instance's subscription is lost, the data path to the
//! primary is not; nothing supersedes a missed update before the end, so
//! each is held past the 500 ms bound, which in turn leaves room for a
//! loaded machine's slow deliveries before the cut).
//! Every update published meanwhile is missed by that instance, and the
//! instance that does not flush its L1 holds exactly those keys stale
//! (`stale_l1_keys`, judged against the origin's versions, equals
//! `missed_keys`, from what each subscription delivered) and serves them
//! stale; the one that drops its L1 when the subscription is lost, and
//! again when it is back, holds and serves none, and read L2 meanwhile.

use crate::common::{metric, phase, Scratch};

const SCENARIO: &str = r#"name = "two-level-cut"
duration = "6s"
seed = 37
expect = ["run.writes > 100"]

[topology]
kind = "replicated"
replicas = 2

[load]
users = 8
rate = 400

[workload]
kind = "two-level"
keys = 50
instances = 2
read_ratio = 0.9
subscribe = "replicas"
max_staleness = "500ms"
flush_on_reconnect = [false, true]

[[fault]]
name = "cut"
kind = "down"
target = "node:redis-1"
at = "3s"
for = "3s"
"#;

#[test]
fn exactly_the_keys_updated_while_unsubscribed_are_held_stale_unless_l1_is_flushed() {
    let _gate = crate::common::gate(module_path!());
    let scratch = Scratch::new(SCENARIO);
    scratch.run_ok(&[]);
    let summary = |variant: &str| scratch.variant_summary(variant);
    for variant in ["flush_on_reconnect-off", "flush_on_reconnect-on"] {
        let s = summary(variant);
        let (base, cut, run) = (
            phase(&s, "baseline"),
            phase(&s, "fault:cut"),
            phase(&s, "run"),
        );
        for k in ["missed_invalidations", "stale_l1_keys", "stale_l1_reads"] {
            assert_eq!(
                metric(base, k),
                0.0,
                "{variant} baseline {k}: {}",
                base["metrics"]
            );
        }
        assert_eq!(
            metric(run, "caller_errors"),
            0.0,
            "{variant}: the data path is untouched"
        );
        assert!(
            metric(cut, "missed_keys") > 0.0,
            "{variant}: {}",
            cut["metrics"]
        );
        let (stale_keys, missed_keys) = (metric(run, "stale_l1_keys"), metric(run, "missed_keys"));
        eprintln!(
            "two-level {variant}: missed keys {missed_keys}, stale keys {stale_keys}, stale reads {}, staleness max {} ms",
            metric(run, "stale_l1_reads"),
            metric(run, "l1_staleness_max_ms")
        );
        if variant.ends_with("off") {
            assert_eq!(stale_keys, missed_keys, "{}", run["metrics"]);
            assert!(metric(run, "stale_l1_reads") > 0.0);
            // A key missed early in the cut stayed stale past its end.
            assert!(
                metric(run, "l1_staleness_max_ms") > 1000.0,
                "{}",
                run["metrics"]
            );
            assert_eq!(metric(run, "l1_flushes"), 0.0);
        } else {
            assert_eq!(stale_keys, 0.0, "{}", run["metrics"]);
            assert_eq!(metric(run, "stale_l1_reads"), 0.0);
            assert!(metric(run, "l1_flushes") >= 1.0, "{}", run["metrics"]);
            assert!(metric(cut, "l2_hits") > 0.0, "{}", cut["metrics"]);
        }
    }
}
