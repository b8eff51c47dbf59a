//! The rate-limit, stampede and lock workloads keep every key of one limiter,
//! hot key or lock in one hash slot, so they run on a cluster as they do on
//! one node: no cross-slot errors, and the same oracle results.

use crate::common::{phase, Scratch};

fn run(workload: &str) -> serde_json::Value {
    let scratch = Scratch::new(&format!(
        "name = \"cluster-workload\"\nduration = \"6s\"\n[topology]\nkind = \"cluster\"\n[load]\nusers = 8\nrate = 300\n[workload]\n{workload}\n"
    ));
    let out = scratch.run_ok(&[]);
    scratch.assert_nothing_left();
    out
}

fn variant(c: &serde_json::Value, name: &str) -> serde_json::Value {
    c["variants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["variant"] == name)
        .unwrap()["metrics"]
        .clone()
}

#[test]
fn rate_limit_stampede_and_lock_run_on_a_cluster() {
    let _gate = crate::common::gate(module_path!());
    let c = run("kind = \"rate-limit\"\nalgorithms = [\"fixed_window\", \"sliding_log\", \"token_bucket\"]\nlimit = 20\nwindow = \"1s\"\nclients = 5");
    for name in ["fixed_window", "sliding_log", "token_bucket"] {
        let m = variant(&c, name);
        assert_eq!(m["redis_errors"], 0.0, "{name}: {m}");
        assert!(m["admitted"].as_f64().unwrap() > 100.0, "{name}: {m}");
    }
    assert!(
        variant(&c, "sliding_log")["reference_error"]
            .as_f64()
            .unwrap()
            < 0.02
    );

    let c = run("kind = \"stampede\"\nhot_keys = 3\nttl = \"1s\"\nstrategies = [\"lock\", \"stale_while_revalidate\"]\norigin = { latency = \"100ms\" }");
    let lock = variant(&c, "lock");
    assert_eq!(lock["redis_errors"], 0.0, "{lock}");
    assert!(
        lock["recomputes_per_event"].as_f64().unwrap() <= 1.2,
        "{lock}"
    );
    assert_eq!(variant(&c, "stale_while_revalidate")["redis_errors"], 0.0);

    let s = run("kind = \"lock\"\nlocks = 3\nfencing = true");
    let m = &phase(&s, "run")["metrics"];
    assert_eq!(m["redis_errors"], 0.0, "{m}");
    assert_eq!(m["overlaps"], 0.0, "{m}");
    assert_eq!(m["acquire_failures"], 0.0, "{m}");
}
