//! The acknowledged-write ledger against an independent count: sessions
//! deleted behind the harness's back are exactly the lost writes the report
//! names; a session overwritten with another user's is caught; and a
//! restart loses every session without persistence and none with AOF.

use crate::common;
use crate::common::Scratch;
use gameday::testing::RedisProcess;
use gameday::testing::Role;
use gameday::testing::TopologyPlan;
use std::time::{Duration, Instant};

fn external(addr: std::net::SocketAddr) -> String {
    format!(
        r#"
name = "ledger"
duration = "8s"

[topology]
kind = "standalone"
backend = "external"

[[topology.endpoint]]
node = "mine"
role = "primary"
addr = "{addr}"

[load]
users = 8
rate = 400

[workload]
kind = "session"
sessions = 40
ttl = "10m"
read_ratio = 1.0
"#
    )
}

fn session_keys(conn: &mut redis::Connection) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("gameday:*:session:*")
        .query(conn)
        .unwrap();
    keys.sort();
    keys
}

/// Runs the external scenario while `meddle` acts on the server once all
/// 40 sessions exist; returns the summary.
fn run_meddling(meddle: impl FnOnce(&mut redis::Connection, &[String])) -> serde_json::Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = rt
        .block_on(RedisProcess::start(
            "ledger",
            Role::Primary,
            &TopologyPlan::standalone(),
        ))
        .unwrap();
    let scratch = Scratch::new(&external(node.addr));
    let mut child = scratch.run_cmd().spawn().unwrap();
    let mut conn = redis::Client::open(format!("redis://{}/", node.addr))
        .unwrap()
        .get_connection()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let keys = loop {
        let keys = session_keys(&mut conn);
        if keys.len() == 40 {
            break keys;
        }
        assert!(Instant::now() < deadline, "sessions never all existed");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(500));
    meddle(&mut conn, &keys);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let s = scratch.summary();
    rt.block_on(node.shutdown());
    s
}

#[test]
fn sessions_deleted_behind_the_harness_are_exactly_the_lost_writes() {
    let _gate = crate::common::gate(module_path!());
    let s = run_meddling(|conn, keys| {
        for k in keys.iter().step_by(5).take(7) {
            let n: u64 = redis::cmd("DEL").arg(k).query(conn).unwrap();
            assert_eq!(n, 1);
        }
    });
    let ledger = &s["ledger"];
    assert_eq!(ledger["keys"], 40, "{ledger}");
    assert_eq!(ledger["lost_writes"], 7, "{ledger}");
    let run = common::phase(&s, "run");
    assert_eq!(run["metrics"]["lost_writes"], 7.0);
    // Each owner noticed on its next read, and logged in again.
    assert_eq!(run["metrics"]["ryw_violations"], 7.0);
    assert_eq!(run["metrics"]["wrong_user"], 0.0);
    for lost in ledger["lost"].as_array().unwrap() {
        assert!(lost["found_version"].is_null(), "{lost}");
    }
}

#[test]
fn a_session_holding_another_users_data_is_caught() {
    let _gate = crate::common::gate(module_path!());
    let s = run_meddling(|conn, keys| {
        // The value of another session (another owner) under this key.
        let other: Vec<u8> = redis::cmd("GET").arg(&keys[1]).query(conn).unwrap();
        redis::cmd("SET")
            .arg(&keys[0])
            .arg(other)
            .query::<()>(conn)
            .unwrap();
    });
    let run = common::phase(&s, "run");
    assert!(
        run["metrics"]["wrong_user"].as_f64().unwrap() >= 1.0,
        "{}",
        run["metrics"]
    );
}

fn restart(persistence: &str) -> serde_json::Value {
    let scratch = Scratch::new(&format!(
        r#"
name = "restart-{persistence}"
duration = "10s"

[topology]
kind = "standalone"
persistence = "{persistence}"

[load]
users = 8
rate = 400

[workload]
kind = "session"
sessions = 400
ttl = "10m"
read_ratio = 0.8
op_timeout = "500ms"

[[fault]]
name = "bounce"
kind = "restart"
at = "4s"
for = "2s"
"#
    ));
    let s = scratch.run_ok(&[]);
    scratch.assert_nothing_left();
    s
}

#[test]
fn a_restart_loses_what_was_not_persisted() {
    let _gate = crate::common::gate(module_path!());
    let none = restart("none");
    let aof = restart("aof");
    let keys = none["ledger"]["keys"].as_u64().unwrap();
    let lost = none["ledger"]["lost_writes"].as_u64().unwrap();
    // Every session logged in before the restart is gone afterwards.
    assert!(keys > 300 && lost > keys * 3 / 4, "{}", none["ledger"]);
    assert_eq!(aof["ledger"]["lost_writes"], 0, "{}", aof["ledger"]);
}
