//! `connection_storm` against the server's counters: every client
//! connection cut at once while the node takes only 8 clients, with 16
//! users. Without a backoff the refused half retries on every op, and the
//! node refuses hundreds of connections; with the reference clients'
//! jittered backoff the same storm is refused far fewer times.

use crate::common::{phase, Scratch};

fn scenario(reconnect: &str) -> String {
    format!(
        r#"
name = "storm"
duration = "8s"
seed = 8

[topology]
kind = "standalone"

[load]
users = 16
rate = 800

[workload]
kind = "cache-aside"
keys = 1000
read_ratio = 0.9
ttl = "10m"
op_timeout = "300ms"
origin = {{ latency = "1ms", concurrency = 64 }}
on_redis_error = {{ policy = "fallback" }}
{reconnect}

[[fault]]
name = "storm"
kind = "connection_storm"
maxclients = 8
at = "3s"
for = "3s"
"#
    )
}

#[test]
fn a_reconnect_herd_is_refused_and_a_backoff_calms_it() {
    let _gate = crate::common::gate(module_path!());
    let mut rejected = Vec::new();
    for reconnect in ["", "reconnect = { backoff = \"20ms\", max = \"500ms\" }"] {
        let scratch = Scratch::new(&scenario(reconnect));
        let s = scratch.run_ok(&[]);
        let f = phase(&s, "fault:storm");
        let m = |k: &str| {
            f["metrics"][k]
                .as_f64()
                .unwrap_or_else(|| panic!("no {k}: {}", f["metrics"]))
        };
        assert!(m("connections_killed") >= 16.0, "{}", f["metrics"]);
        assert!(m("peak_clients") <= 9.0, "maxclients 8: {}", f["metrics"]);
        assert_eq!(m("caller_errors"), 0.0, "the fallback hides it");
        eprintln!(
            "connection_storm ({}): killed {}, peak clients {}, rejected {}",
            if reconnect.is_empty() {
                "herd"
            } else {
                "backoff"
            },
            m("connections_killed"),
            m("peak_clients"),
            m("rejected_connections")
        );
        rejected.push(m("rejected_connections"));
        // After the storm, everyone is back.
        let after = phase(&s, "recovery:storm");
        assert!(
            after["metrics"]["redis_errors"].as_f64().unwrap() < 50.0,
            "{}",
            after["metrics"]
        );
    }
    assert!(
        rejected[0] > 100.0,
        "the herd was refused {} times",
        rejected[0]
    );
    assert!(
        rejected[1] < 0.5 * rejected[0],
        "backoff {} vs herd {}",
        rejected[1],
        rejected[0]
    );
}
