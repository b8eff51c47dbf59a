//! `throughput` against Redis's own counts and a known corruption, on an
//! external redis-server the test owns:
//! - with `pipeline = 16`, the requests the report counts are 16 × its
//!   round trips, and Redis's own GET and SET calls (INFO commandstats)
//!   match them, give or take the round trips in flight when the load
//!   stopped; GETs are `read_ratio` of them, and hits + misses are the GETs;
//! - pipelining is real: 16 per round trip serves several times the
//!   requests of 1 per round trip, with the same users;
//! - values rewritten behind the harness with another key's name are
//!   counted as `wrong_values`, and there are none without that.

use crate::common::{metric, phase, Scratch};
use gameday::testing::{RedisProcess, Role, TopologyPlan};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const USERS: u64 = 4;

fn scenario(addr: SocketAddr, pipeline: u64) -> String {
    format!(
        r#"name = "throughput-truth"
duration = "4s"
seed = 3
expect = ["run.wrong_values == 0"]

[topology]
kind = "standalone"
backend = "external"

[[topology.endpoint]]
node = "n"
role = "primary"
addr = "{addr}"

[load]
users = {USERS}

[workload]
kind = "throughput"
keys = 256
read_ratio = 0.75
pipeline = {pipeline}
"#
    )
}

/// GET and SET calls the server has served so far.
fn calls(conn: &mut redis::Connection) -> (u64, u64) {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    let of = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    (of("get"), of("set"))
}

fn count(p: &Value, op: &str) -> u64 {
    p["ops"][op]["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("no {op}: {}", p["ops"]))
}

/// Rewrites every throughput key with the value of the next key, behind
/// the harness, until told to stop.
fn corrupt(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut conn = redis::Client::open(format!("redis://{addr}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let mut written = 0;
        while !stop.load(Ordering::Relaxed) {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("gameday:*tp:*")
                .query(&mut conn)
                .unwrap_or_default();
            for k in keys {
                let index: u64 = k.rsplit(':').next().unwrap().parse().unwrap();
                let wrong = format!("tp1:{:016x}:", index + 1);
                let _: Result<(), _> = redis::cmd("SET").arg(&k).arg(wrong).query(&mut conn);
                written += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        written
    })
}

#[test]
fn every_request_is_counted_and_every_wrong_reply_caught() {
    let _gate = crate::common::gate(module_path!());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = rt
        .block_on(RedisProcess::start(
            "tp",
            Role::Primary,
            &TopologyPlan::standalone(),
        ))
        .unwrap();
    let mut conn = redis::Client::open(format!("redis://{}/", node.addr))
        .unwrap()
        .get_connection()
        .unwrap();

    // 16 per round trip, against the server's own counts.
    let (get0, set0) = calls(&mut conn);
    let s = Scratch::new(&scenario(node.addr, 16)).run_ok(&[]);
    let (get1, set1) = calls(&mut conn);
    let run = phase(&s, "run");
    let (requests, trips) = (count(run, "request"), count(run, "redis_pipeline"));
    assert_eq!(requests, 16 * trips, "16 requests per round trip");
    let served = (get1 - get0) + (set1 - set0);
    let in_flight = USERS * 16;
    assert!(
        served >= requests && served - requests <= in_flight,
        "Redis served {served} GET+SET, the report counts {requests} requests"
    );
    let gets = get1 - get0;
    let judged = metric(run, "hits") + metric(run, "misses");
    assert!(
        judged as u64 <= gets && gets - judged as u64 <= in_flight,
        "hits + misses {judged} against {gets} GETs served"
    );
    let share = gets as f64 / served as f64;
    assert!(
        (share - 0.75).abs() < 0.03,
        "GET share {share:.3}, read_ratio 0.75"
    );
    assert_eq!(metric(run, "wrong_values"), 0.0, "{}", run["metrics"]);
    assert!(metric(run, "hit_ratio") > 0.5, "{}", run["metrics"]);

    // 1 per round trip: the same users serve far fewer requests.
    let single = Scratch::new(&scenario(node.addr, 1)).run_ok(&[]);
    let single = count(phase(&single, "run"), "request");
    assert!(
        requests as f64 > 3.0 * single as f64,
        "pipelined {requests} requests against {single} unpipelined"
    );

    // Another key's value behind the harness: wrong values, counted, and
    // the rule that forbids them fails the run.
    let stop = Arc::new(AtomicBool::new(false));
    let corrupter = corrupt(node.addr, stop.clone());
    let scratch = Scratch::new(&scenario(node.addr, 16));
    let out = scratch.run_cmd().output().unwrap();
    stop.store(true, Ordering::Relaxed);
    let written = corrupter.join().unwrap();
    assert!(written > 0, "the corrupter found no keys");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = phase(&scratch.summary(), "run").clone();
    assert!(metric(&run, "wrong_values") > 0.0, "{}", run["metrics"]);
}
