//! The shipped scenarios (topology baselines on both backends, failure
//! scenarios on the process backend), and a short cache-aside game day on every
//! topology, pass on both backends; `gameday up` serves a lab until Ctrl-C,
//! then leaves nothing behind.

use crate::common;
use crate::common::{docker_ready, ChildGuard, Scratch};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

fn run_shipped(name: &str, backend: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"));
    run_text(name, &std::fs::read_to_string(path).unwrap(), backend);
}

fn run_text(name: &str, text: &str, backend: &str) {
    let scratch = Scratch::new(text);
    let out = scratch
        .run_cmd()
        .args(["--backend", backend])
        .output()
        .unwrap();
    // One summary, or one per variant (each in its own directory).
    let report = scratch.report();
    let summaries: Vec<serde_json::Value> = if report.join("summary.json").is_file() {
        vec![scratch.summary()]
    } else {
        let mut dirs: Vec<_> = std::fs::read_dir(&report)
            .unwrap_or_else(|e| {
                panic!(
                    "{name}: no report ({e})\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .map(|e| e.unwrap().path())
            .filter(|d| d.join("summary.json").is_file())
            .collect();
        dirs.sort();
        assert!(
            !dirs.is_empty(),
            "{name}: no summary\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dirs.iter()
            .map(|d| {
                serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap())
                    .unwrap()
            })
            .collect()
    };
    for s in &summaries {
        let failed: Vec<String> = s["expectations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["passed"] != true)
            .map(|e| format!("{} (observed {})", e["rule"], e["observed"]))
            .collect();
        // Which errors, in which phase: a failure on a shared CI machine must
        // say whether it was a timeout or the fault reaching too far.
        let errors: Vec<String> = s["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{}: {}", p["name"], p["ops"]["caller"]["errors_by_class"]))
            .collect();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name} {} on {backend} failed: {failed:?}\ncaller errors by phase: {errors:?}\n{}",
            s["variant"],
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(s["backend"], backend, "the report names the backend");
    }
    scratch.assert_nothing_left();
}

/// A short cache-aside game day with 30 ms of latency on the primary.
fn short(kind: &str) -> String {
    format!(
        r#"
name = "short-{kind}"
duration = "8s"
[topology]
kind = "{kind}"
[load]
users = 32
rate = 500
[workload]
kind = "cache-aside"
keys = 500
op_timeout = "100ms"
[[fault]]
name = "slow"
kind = "latency"
latency = "30ms"
target = "primary"
at = "3s"
for = "3s"
expect = ["fault:slow.redis_get.p50 >= 28ms", "run.caller_errors == 0", "baseline.redis_get.p50 < 5ms"]
"#
    )
}

/// One after the other: runs at once would share two cores.
#[test]
fn every_topology_runs_cache_aside_on_both_backends() {
    let _gate = crate::common::gate(module_path!());
    let mut backends = vec!["process"];
    if docker_ready() {
        backends.push("docker");
    }
    for backend in backends {
        run_shipped("sentinel-baseline", backend);
        run_shipped("cluster-baseline", backend);
        for kind in ["standalone", "replicated"] {
            run_text(kind, &short(kind), backend);
        }
    }
}

#[test]
fn up_serves_a_lab_until_ctrl_c() {
    let _gate = crate::common::gate(module_path!());
    let scratch = Scratch::new("");
    let mut child = ChildGuard(
        common::gameday()
            .args(["up", "cluster"])
            .env("TMPDIR", scratch.tmp())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "no lab within 30 s: {seen:?}");
        let line = lines.next().expect("gameday up ended early").unwrap();
        seen.push(line.clone());
        if line.starts_with("Ctrl-C") {
            break;
        }
    }
    let cli = seen
        .iter()
        .find(|l| l.starts_with("redis-cli -c"))
        .expect("a redis-cli line");
    let port: u16 = cli.rsplit(' ').next().unwrap().parse().unwrap();
    // The variables a service under test reads: the proxies, every one.
    let nodes = seen
        .iter()
        .find_map(|l| l.strip_prefix("export REDIS_CLUSTER_NODES="))
        .expect("the endpoint variables for a service");
    assert_eq!(nodes.split(',').count(), 3, "the three masters: {nodes}");
    assert!(nodes.contains(&format!("127.0.0.1:{port}")), "{nodes}");
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut conn = client.get_connection().unwrap();
    let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).unwrap();
    assert!(info.contains("cluster_state:ok"), "{info}");
    assert_eq!(common::processes_mentioning(&scratch.tmp()).len(), 6);
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
    scratch.assert_nothing_left();
}

/// The failure scenarios (node, memory, partition and failover faults) pass their own
/// expectations on the process backend, one after the other, and alone:
/// their `caller_errors == 0` rules hold 200 ms op timeouts, which a debug
/// build sharing two cores with a Cluster on Docker can miss.
#[test]
fn the_failure_scenarios_pass_on_the_process_backend() {
    let _gate = crate::common::gate(concat!(module_path!(), "::failures"));
    for name in [
        "sentinel-failover-under-load",
        "cluster-master-kill",
        "restart-no-persistence",
        "restart-aof",
        "memory-pressure-lru",
        "memory-pressure-noeviction",
        "split-brain",
        "rate-limit-outage-fail-open",
        "rate-limit-memory-pressure",
        "queue-failover",
        "write-behind-restart",
    ] {
        run_shipped(name, "process");
    }
}
