//! The rate limiter's oracle: 100 per 1 s window under 300 requests/s, the
//! admitted counts against the exact reference (shipped scenario
//! rate-limit-accuracy); and during an outage the decisions follow the
//! declared policy exactly, open or closed.

use crate::common::{phase, Scratch};

#[test]
fn five_algorithms_match_the_reference_within_their_documented_error() {
    let _gate = crate::common::gate(module_path!());
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/rate-limit-accuracy.toml"),
    )
    .unwrap();
    let scratch = Scratch::new(&text);
    let c = scratch.run_ok(&[]);
    let metrics = |name: &str| {
        c["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["variant"] == name)
            .unwrap()["metrics"]
            .clone()
    };
    // 8 s at 300/s from one client (1 s of ramp), 100 allowed per second:
    // the reference admits ~100 per second of load.
    let log = metrics("sliding_log");
    let reference = log["reference_admitted"].as_f64().unwrap();
    assert!((700.0..=900.0).contains(&reference), "{log}");
    assert!(log["reference_error"].as_f64().unwrap() < 0.01, "{log}");
    // The boundary burst: more than the limit within one window's span,
    // never more than the limit within an aligned window.
    let fixed = metrics("fixed_window");
    assert!(
        fixed["max_admitted_per_window"].as_f64().unwrap() > 110.0,
        "{fixed}"
    );
    assert_eq!(fixed["over_admitted"], 0.0, "{fixed}");
    assert!(
        log["max_admitted_per_window"].as_f64().unwrap() <= 100.0,
        "{log}"
    );
    scratch.assert_nothing_left();
}

fn outage(policy: &str) -> serde_json::Value {
    let scratch = Scratch::new(&format!(
        r#"
name = "rl-{policy}"
duration = "8s"

[topology]
kind = "standalone"

[load]
users = 8
rate = 400

[workload]
kind = "rate-limit"
algorithm = "fixed_window"
limit = 20
window = "10s"
clients = 5
op_timeout = "50ms"
on_redis_error = {{ policy = "{policy}" }}

# The whole run is one window, and every client is over its limit within
# the first quarter second: the few requests that meet Redis in the instant
# the proxy takes to switch, at either edge of the outage, are denied by
# Redis itself, not admitted. (With 1 s windows, the window that follows
# the outage starts empty, and a request that met Redis just before the
# proxies acknowledged the removal was admitted and counted in the fault
# phase.)
[[fault]]
name = "outage"
kind = "down"
at = "3.5s"
for = "3s"
"#
    ));
    let s = scratch.run_ok(&[]);
    scratch.assert_nothing_left();
    s
}

#[test]
fn during_an_outage_the_decisions_follow_the_declared_policy() {
    let _gate = crate::common::gate(module_path!());
    let open = outage("fail_open");
    let f = &phase(&open, "fault:outage")["metrics"];
    assert!(f["degraded_admitted"].as_f64().unwrap() > 800.0, "{f}");
    assert_eq!(f["degraded_denied"], 0.0, "{f}");
    // An op belongs to the phase of its intended start: the ops in flight
    // when the proxy cut the connections (one per user at most) began in
    // the baseline and met the outage (CI: 1).
    let early = phase(&open, "baseline")["metrics"]["degraded_admitted"]
        .as_f64()
        .unwrap();
    assert!(early <= 8.0, "{early} degraded before the outage");

    let closed = outage("fail_closed");
    let f = &phase(&closed, "fault:outage")["metrics"];
    assert!(f["degraded_denied"].as_f64().unwrap() > 800.0, "{f}");
    assert_eq!(f["degraded_admitted"], 0.0, "{f}");
    // Closed: nothing at all gets through while Redis is down.
    assert!(f["admitted"].as_f64().unwrap() <= 5.0, "{f}");
}
