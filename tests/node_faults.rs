//! Node faults against real nodes: what the report says happened must be
//! what happened. A 3 s pause (SIGSTOP, CLIENT PAUSE, DEBUG SLEEP) shows up
//! as ~3 s of stalled ops — latency, not missing samples; a kill or a
//! restart shows up as errors for its length and a node that serves again
//! after it; a restarted replica comes back a replica.

use crate::common::{docker_ready, phase, Scratch};
use gameday::testing::Lab;
use gameday::testing::Role;
use gameday::testing::TopologyKind;
use gameday::testing::TopologyPlan;
use std::time::Duration;

const RATE: f64 = 200.0;

fn scenario(kind: &str, topology: &str) -> String {
    format!(
        r#"name = "node-{kind}"
duration = "8s"

[topology]
{topology}

[load]
users = 8
rate = {RATE}

[workload]
kind = "cache-aside"
keys = 200
op_timeout = "10s"
on_redis_error = {{ policy = "fail" }}

[[fault]]
name = "f"
kind = "{kind}"
at = "2s"
for = "3s"
"#
    )
}

fn run(scenario: &str, extra: &[&str]) -> (Scratch, serde_json::Value) {
    let scratch = Scratch::new(scenario);
    let s = scratch.run_ok(extra);
    (scratch, s)
}

/// The fault phase of a 3 s stall: every op completes (no errors), the
/// longest waited 3 s ± 300 ms, and the ops meant for those 3 s are all
/// there (within 10 % of rate × 3 s).
fn assert_stalled_3s(s: &serde_json::Value, what: &str) {
    let f = &s["faults"][0];
    let (on, off) = (
        f["applied_at_s"].as_f64().unwrap(),
        f["removed_at_s"].as_f64().unwrap(),
    );
    assert!(
        (on - 2.0).abs() < 0.3 && (off - 5.0).abs() < 0.3,
        "{what}: {on}..{off}"
    );
    let fault = &phase(s, "fault:f")["ops"];
    assert_eq!(fault["caller"]["errors"], 0, "{what}: {fault}");
    let max = fault["redis_get"]["max_us"].as_f64().unwrap() / 1e6;
    assert!((2.7..3.3).contains(&max), "{what}: longest GET {max} s");
    let n = fault["caller"]["count"].as_f64().unwrap();
    let want = RATE * (off - on);
    assert!(
        (n - want).abs() < want * 0.1,
        "{what}: {n} ops in the fault phase, {want} meant"
    );
    let after = phase(s, "recovery:f")["ops"]["redis_get"]["p50_us"]
        .as_f64()
        .unwrap();
    assert!(after < 10_000.0, "{what}: recovery p50 {after} us");
}

#[test]
fn a_3s_pause_of_any_kind_is_3s_of_stalled_ops() {
    let _gate = crate::common::gate(module_path!());
    for kind in ["pause", "client_pause", "debug_sleep"] {
        let (scratch, s) = run(&scenario(kind, "kind = \"standalone\""), &[]);
        assert_stalled_3s(&s, kind);
        scratch.assert_nothing_left();
    }
}

/// A dead node: only errors while it is down (the proxy resets every
/// connection), serving again right after.
fn assert_down_3s(s: &serde_json::Value, what: &str) {
    let fault = &phase(s, "fault:f")["ops"];
    let n = fault["caller"]["count"].as_f64().unwrap();
    let errors = fault["caller"]["errors"].as_f64().unwrap();
    assert!(errors > 0.9 * n, "{what}: {errors} errors of {n} ops");
    let rec = &phase(s, "recovery:f")["ops"]["caller"];
    assert_eq!(rec["errors"], 0, "{what}: {rec}");
    // From the first failed command (at the kill, 2 s) to the first success
    // once the node is back (5 s): 3 s, within 300 ms (plus the restart).
    let down = phase(s, "fault:f")["metrics"]["unavailable_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: no unavailable_ms"));
    assert!(
        (2700.0..3500.0).contains(&down),
        "{what}: unavailable {down} ms"
    );
    assert!(rec["count"].as_f64().unwrap() > 400.0, "{what}: {rec}");
}

/// `up` of `node` in timeseries.csv's server rows, by second.
fn telemetry_up(scratch: &Scratch, node: &str) -> Vec<(u64, bool)> {
    let mut r = csv::Reader::from_path(scratch.report().join("timeseries.csv")).unwrap();
    let header = r.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (t, op, n, up) = (col("t_s"), col("op"), col("node"), col("up"));
    r.records()
        .map(|rec| rec.unwrap())
        .filter(|rec| &rec[op] == "server" && &rec[n] == node)
        .map(|rec| (rec[t].parse().unwrap(), &rec[up] == "1"))
        .collect()
}

#[test]
fn kill_and_restart_take_the_node_away_for_their_length() {
    let _gate = crate::common::gate(module_path!());
    for kind in ["kill", "restart"] {
        let (scratch, s) = run(&scenario(kind, "kind = \"standalone\""), &[]);
        assert_down_3s(&s, kind);
        // Telemetry saw the node gone from 2 s to 5 s, and there around it.
        let up = telemetry_up(&scratch, "redis-0");
        assert!(up.len() >= 8, "{kind}: {up:?}");
        for (t, is_up) in up {
            match t {
                0 | 1 | 6.. => assert!(is_up, "{kind}: down at {t}s"),
                3 | 4 => assert!(!is_up, "{kind}: up at {t}s"),
                _ => {}
            }
        }
        scratch.assert_nothing_left();
    }
}

#[test]
fn node_faults_work_on_the_docker_backend() {
    let _gate = crate::common::gate(module_path!());
    if !docker_ready() {
        return;
    }
    let (_, s) = run(
        &scenario("pause", "kind = \"standalone\"\nbackend = \"docker\""),
        &[],
    );
    assert_stalled_3s(&s, "docker pause");
    for kind in ["client_pause", "debug_sleep"] {
        let (_, s) = run(
            &scenario(kind, "kind = \"standalone\"\nbackend = \"docker\""),
            &[],
        );
        assert_stalled_3s(&s, &format!("docker {kind}"));
    }
    for kind in ["kill", "restart"] {
        let (_, s) = run(
            &scenario(kind, "kind = \"standalone\"\nbackend = \"docker\""),
            &[],
        );
        assert_down_3s(&s, &format!("docker {kind}"));
    }
}

#[tokio::test]
async fn a_restarted_replica_comes_back_a_replica() {
    let _gate = crate::common::gate(module_path!());
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let plan = TopologyPlan::of_kind(TopologyKind::Replicated);
    let lab = Lab::start(&plan, "restart-test", rx).await.unwrap();
    let replica = lab
        .topology
        .with_role(Role::Replica)
        .next()
        .unwrap()
        .handle();
    replica.stop().await.unwrap();
    replica.start_again().await.unwrap();
    let client = redis::Client::open(format!("redis://{}/", replica.addr)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(info.contains("role:slave"), "{info}");
        if info.contains("master_link_status:up") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the link never came up: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lab.stop().await;
}

#[test]
fn node_faults_on_an_external_topology_need_both_confirmations() {
    let _gate = crate::common::gate(module_path!());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = rt
        .block_on(gameday::testing::RedisProcess::start(
            "ext",
            Role::Primary,
            &TopologyPlan::standalone(),
        ))
        .unwrap();
    let topology = |allow: &str| {
        format!(
            "kind = \"standalone\"\nbackend = \"external\"\n{allow}\n[[topology.endpoint]]\nnode = \"ext\"\nrole = \"primary\"\naddr = \"{}\"",
            node.addr
        )
    };
    // Neither, or only one of the two: refused before any traffic.
    for (allow, flag) in [
        ("", None),
        ("allow_destructive = true", None),
        ("", Some("--allow-destructive")),
    ] {
        let scratch = Scratch::new(&scenario("client_pause", &topology(allow)));
        let out = scratch.run_cmd().args(flag).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("--allow-destructive"), "{err}");
    }
    // A kill cannot reach a node gameday does not run, even when allowed.
    let scratch = Scratch::new(&scenario("kill", &topology("allow_destructive = true")));
    let out = scratch
        .run_cmd()
        .arg("--allow-destructive")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("process or docker backend"), "{err}");
    // Both: the CLIENT PAUSE reaches the external node.
    let (_, s) = run(
        &scenario("client_pause", &topology("allow_destructive = true")),
        &["--allow-destructive"],
    );
    assert_stalled_3s(&s, "external client_pause");
    rt.block_on(node.shutdown());
}
