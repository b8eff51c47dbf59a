//! `queue` against causes injected behind the harness and against Redis's
//! own counts, on an external redis-server the test owns:
//! - with the consumer behind, the 37 newest entries deleted from the
//!   stream (none delivered yet) are exactly the 37 `lost_jobs`; every
//!   other acknowledged job is processed, and 3 forged entries are the 3
//!   `corrupt_jobs`;
//! - a consumer stalled past `claim_after` by a `gc_pause` has its job
//!   reclaimed and processed twice: `duplicates ≥ 1`, all of them caught
//!   by the idempotency record when it is on and none when it is off; the
//!   server's XACK and SET calls match the jobs processed, the duplicates
//!   and the duplicates caught.

use crate::common::{calls, metric, phase, Scratch};
use gameday::testing::{RedisProcess, Role, TopologyPlan};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn external(addr: SocketAddr) -> String {
    format!(
        r#"
[topology]
kind = "standalone"
backend = "external"

[[topology.endpoint]]
node = "n"
role = "primary"
addr = "{addr}"
"#
    )
}

fn connect(addr: SocketAddr) -> redis::Connection {
    redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_connection()
        .unwrap()
}

fn start_node(rt: &tokio::runtime::Runtime, name: &str) -> RedisProcess {
    rt.block_on(RedisProcess::start(
        name,
        Role::Primary,
        &TopologyPlan::standalone(),
    ))
    .unwrap()
}

/// `<ms>-<seq>` as a pair, in the stream's order.
fn id(s: &str) -> (u64, u64) {
    let (ms, seq) = s.split_once('-').unwrap();
    (ms.parse().unwrap(), seq.parse().unwrap())
}

/// Waits for the run's stream to hold 500 entries, then deletes its 37
/// newest (checking that the group has not been handed any of them yet)
/// and forges 3 entries that are not jobs. Returns how many it deleted.
fn truncate(addr: SocketAddr) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut conn = connect(addr);
        let give_up = Instant::now() + Duration::from_secs(60);
        let key = loop {
            assert!(Instant::now() < give_up, "the run's stream never appeared");
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("gameday:*{queue}:jobs")
                .query(&mut conn)
                .unwrap();
            if let Some(k) = keys.into_iter().next() {
                let len: u64 = redis::cmd("XLEN").arg(&k).query(&mut conn).unwrap();
                if len >= 500 {
                    break k;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let groups: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&key)
            .query(&mut conn)
            .unwrap();
        let delivered: String =
            redis::from_redis_value(groups[0]["last-delivered-id"].clone()).unwrap();
        let newest: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(37)
            .query(&mut conn)
            .unwrap();
        let ids: Vec<&str> = newest.iter().map(|(i, _)| i.as_str()).collect();
        assert!(
            ids.iter().all(|i| id(i) > id(&delivered)),
            "the consumer is not behind: {delivered} vs {ids:?}"
        );
        let deleted: u64 = redis::cmd("XDEL")
            .arg(&key)
            .arg(&ids)
            .query(&mut conn)
            .unwrap();
        for n in 0..3 {
            let _: String = redis::cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("job")
                .arg(format!("forged-{n}"))
                .arg("sum")
                .arg("0")
                .query(&mut conn)
                .unwrap();
        }
        deleted
    })
}

#[test]
fn deleted_entries_are_exactly_the_lost_jobs() {
    let _gate = crate::common::gate(module_path!());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = start_node(&rt, "q-lost");
    let scenario = format!(
        r#"name = "queue-lost"
duration = "3s"
seed = 5
expect = ["run.enqueued > 500"]

[load]
users = 2
rate = 400

[workload]
kind = "queue"
consumers = 1
process_time = "5ms"
batch = 10
claim_after = "1s"
drain = "20s"
{}"#,
        external(node.addr)
    );
    let truncated = truncate(node.addr);
    let s = Scratch::new(&scenario).run_ok(&[]);
    assert_eq!(truncated.join().unwrap(), 37);
    let run = phase(&s, "run");
    let enqueued = metric(run, "enqueued");
    assert_eq!(enqueued, run["ops"]["enqueue"]["count"].as_f64().unwrap());
    assert_eq!(metric(run, "lost_jobs"), 37.0, "{}", run["metrics"]);
    assert_eq!(metric(run, "processed"), enqueued - 37.0);
    assert_eq!(metric(run, "corrupt_jobs"), 3.0);
    for zero in [
        "backlog",
        "trimmed",
        "duplicates",
        "reclaimed",
        "caller_errors",
    ] {
        assert_eq!(metric(run, zero), 0.0, "{zero}: {}", run["metrics"]);
    }
    // The consumer fell behind: hundreds of jobs waited at once.
    assert!(metric(run, "max_lag_jobs") > 100.0, "{}", run["metrics"]);
    assert!(metric(run, "job_latency_p50_ms") >= 5.0);
}

fn pause_scenario(addr: SocketAddr) -> String {
    format!(
        r#"name = "queue-pause"
duration = "6s"
seed = 6
expect = ["run.enqueued > 0"]

[load]
users = 2
rate = 100

[workload]
kind = "queue"
consumers = 2
process_time = "2ms"
batch = 5
claim_after = "300ms"
idempotency = [false, true]

[[fault]]
name = "gc"
kind = "gc_pause"
at = "2s"
for = "1.5s"
{}"#,
        external(addr)
    )
}

#[test]
fn a_consumer_paused_past_claim_after_processes_twice() {
    let _gate = crate::common::gate(module_path!());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = start_node(&rt, "q-pause");
    let mut conn = connect(node.addr);
    let (xack0, set0) = (calls(&mut conn, "xack"), calls(&mut conn, "set"));
    let scratch = Scratch::new(&pause_scenario(node.addr));
    scratch.run_ok(&[]);
    let (xack1, set1) = (calls(&mut conn, "xack"), calls(&mut conn, "set"));
    let mut commits = 0.0;
    for (variant, on) in [("idempotency-off", false), ("idempotency-on", true)] {
        let s = scratch.variant_summary(variant);
        let run = phase(&s, "run");
        let m = |k: &str| metric(run, k);
        assert_eq!(
            m("processed"),
            m("enqueued"),
            "{variant}: {}",
            run["metrics"]
        );
        assert_eq!((m("lost_jobs"), m("backlog")), (0.0, 0.0));
        assert!(m("reclaimed") >= 1.0, "{variant}: {}", run["metrics"]);
        assert!(m("duplicates") >= 1.0, "{variant}: {}", run["metrics"]);
        let (caught, uncaught) = (m("duplicates_caught"), m("duplicates_uncaught"));
        if on {
            assert_eq!((caught, uncaught), (m("duplicates"), 0.0));
            // Every commit is one SET NX: the first of each job, and each
            // duplicate it caught.
            assert_eq!((set1 - set0) as f64, m("processed") + caught);
        } else {
            assert_eq!((caught, uncaught), (0.0, m("duplicates")));
        }
        assert_eq!(metric(phase(&s, "baseline"), "duplicates"), 0.0);
        commits += m("processed") + m("duplicates");
    }
    // Every commit was acknowledged with one XACK.
    assert_eq!((xack1 - xack0) as f64, commits);
    scratch.assert_nothing_left();
}
