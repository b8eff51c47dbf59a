//! The stampede oracle against what must happen: 12 readers, each reading
//! every 10 ms, of one key with a 1 s TTL in front of a 100 ms origin. With
//! no strategy, every reader misses during a recomputation and recomputes
//! too (~12 per expiry); with a lock or singleflight, exactly one
//! recomputation per expiry, and the number of expiries is what the TTL
//! cycle (1 s + 0.1 s of recomputation) allows in 8 s.

use crate::common::Scratch;
use serde_json::Value;

const SCENARIO: &str = r#"
name = "stampede-truth"
duration = "8s"

[topology]
kind = "standalone"

[load]
users = 12
rate = 1200

[workload]
kind = "stampede"
hot_keys = 1
ttl = "1s"
strategies = ["none", "lock", "singleflight"]
lock_ttl = "1s"
origin = { latency = "100ms", jitter = 0.0, concurrency = 64 }
"#;

#[test]
fn recomputations_per_expiry_are_counted_exactly() {
    let _gate = crate::common::gate(module_path!());
    let scratch = Scratch::new(SCENARIO);
    let c = scratch.run_ok(&[]);
    let metrics = |name: &str| -> Value {
        c["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["variant"] == name)
            .unwrap()["metrics"]
            .clone()
    };
    let none = metrics("none");
    let per = none["recomputes_per_event"].as_f64().unwrap();
    assert!((9.0..=12.0).contains(&per), "none: {none}");
    for name in ["lock", "singleflight"] {
        let m = metrics(name);
        let (recomputes, events) = (
            m["recomputes"].as_f64().unwrap(),
            m["expiry_events"].as_f64().unwrap(),
        );
        assert_eq!(
            recomputes, events,
            "{name}: one recomputation per expiry: {m}"
        );
        // Expiries at 0, 1.1, 2.2, … 7.7 s: 8, one fewer if a cycle ran late.
        assert!(
            (7.0..=8.0).contains(&events),
            "{name}: {events} expiries: {m}"
        );
        assert_eq!(m["caller_errors"], 0.0, "{name}: {m}");
    }
    scratch.assert_nothing_left();
}

/// The shipped comparison of every strategy passes its own expectations.
#[test]
fn stampede_hot_key_compares_every_strategy() {
    let _gate = crate::common::gate(module_path!());
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/stampede-hot-key.toml"),
    )
    .unwrap();
    let scratch = Scratch::new(&text);
    let c = scratch.run_ok(&[]);
    assert_eq!(c["variants"].as_array().unwrap().len(), 6);
    assert!(scratch
        .report()
        .join("xfetch")
        .join("report.html")
        .is_file());
    scratch.assert_nothing_left();
}
