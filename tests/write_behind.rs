//! `write-behind` against a cause injected behind the harness and against
//! Redis's own counts, on an external redis-server the test owns, once a
//! flush has reached the origin and the pending lists hold 150 or more
//! writes:
//! - one MULTI counts what the lists hold and empties the server
//!   (FLUSHALL): exactly those writes are `unflushed_lost`, every other
//!   acknowledged write reached the origin (`flushed`), the server's RPUSH
//!   calls are the acknowledged writes, and readers then get the origin's
//!   older versions (`stale_reads`);
//! - a real restart without persistence: writes paused on the server
//!   (CLIENT PAUSE WRITE: no write lands and no flush takes one), the lists
//!   counted, SIGTERM, started again empty. Exactly the counted writes are
//!   lost; the origin's count (`flushed`) is every other acknowledged
//!   write.

use crate::common::{calls, metric, phase, Scratch};
use gameday::testing::{RedisProcess, Role, TopologyPlan};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const LANES: usize = 4;

fn connect(addr: SocketAddr) -> redis::Connection {
    redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Waits for a flush (LPOP served) and 150 pending writes, then counts the
/// lists and empties the server in one MULTI. Returns the count.
fn wipe(addr: SocketAddr) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut conn = connect(addr);
        let lists = filled(&mut conn);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for l in &lists {
            pipe.cmd("LLEN").arg(l);
        }
        pipe.cmd("FLUSHALL").ignore();
        let lens: Vec<u64> = pipe.query(&mut conn).unwrap();
        lens.iter().sum()
    })
}

/// Waits (polling `conn`) for a flush and 150 pending writes in all
/// `LANES` lists; returns the lists.
fn filled(conn: &mut redis::Connection) -> Vec<String> {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < give_up,
            "the run's pending lists never filled"
        );
        let lists: Vec<String> = redis::cmd("KEYS")
            .arg("gameday:*:pending")
            .query(conn)
            .unwrap();
        let mut total = 0;
        for l in &lists {
            total += redis::cmd("LLEN").arg(l).query::<u64>(conn).unwrap();
        }
        if calls(conn, "lpop") > 0 && total >= 150 && lists.len() == LANES {
            return lists;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn scenario(name: &str, addr: SocketAddr) -> String {
    format!(
        r#"name = "{name}"
duration = "4s"
seed = 8
expect = ["run.writes > 300"]

[load]
users = 4
rate = 300

[workload]
kind = "write-behind"
keys = 200
read_ratio = 0.5
flush_interval = "1s"
batch = 50
lanes = {LANES}
op_timeout = "500ms"

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

#[test]
fn a_restart_without_persistence_loses_exactly_the_unflushed_writes() {
    let _gate = crate::common::gate(module_path!());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = rt
        .block_on(RedisProcess::start(
            "wb-restart",
            Role::Primary,
            &TopologyPlan::standalone(),
        ))
        .unwrap();
    let scratch = Scratch::new(&scenario("write-behind-restart", node.addr));
    let mut run = scratch.run_cmd().spawn().unwrap();
    let mut conn = connect(node.addr);
    let lists = filled(&mut conn);
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(5000)
        .arg("WRITE")
        .query(&mut conn)
        .unwrap();
    let mut pending = 0;
    for l in &lists {
        pending += redis::cmd("LLEN").arg(l).query::<u64>(&mut conn).unwrap();
    }
    drop(conn);
    // Stopped and started from this thread, which outlives the node.
    let handle = node.handle();
    rt.block_on(handle.stop()).unwrap();
    rt.block_on(handle.start_again()).unwrap();
    assert_eq!(run.wait().unwrap().code(), Some(0));
    let s = scratch.summary();
    let run = phase(&s, "run");
    let writes = metric(run, "writes");
    assert_eq!(
        metric(run, "unflushed_lost"),
        pending as f64,
        "{}",
        run["metrics"]
    );
    assert_eq!(metric(run, "flushed"), writes - pending as f64);
    assert_eq!(metric(run, "unflushed"), 0.0);
    assert!(metric(run, "stale_reads") > 0.0, "{}", run["metrics"]);
    eprintln!(
        "write-behind restart: {writes} writes, {pending} pending at the restart, lost {}, caller errors {}",
        metric(run, "unflushed_lost"),
        metric(run, "caller_errors")
    );
}

#[test]
fn a_wipe_before_the_flush_loses_exactly_the_pending_writes() {
    let _gate = crate::common::gate(module_path!());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = rt
        .block_on(RedisProcess::start(
            "wb-lost",
            Role::Primary,
            &TopologyPlan::standalone(),
        ))
        .unwrap();
    let scenario = scenario("write-behind-lost", node.addr);
    let wiped = wipe(node.addr);
    let s = Scratch::new(&scenario).run_ok(&[]);
    let wiped = wiped.join().unwrap();
    assert!(wiped >= 150, "{wiped}");
    let run = phase(&s, "run");
    let writes = metric(run, "writes");
    assert_eq!(writes, run["ops"]["write"]["count"].as_f64().unwrap());
    assert_eq!(
        metric(run, "unflushed_lost"),
        wiped as f64,
        "{}",
        run["metrics"]
    );
    assert_eq!(metric(run, "flushed"), writes - wiped as f64);
    // Every acknowledged write was one MULTI with one RPUSH on the server.
    assert_eq!(calls(&mut connect(node.addr), "rpush") as f64, writes);
    for zero in [
        "unflushed",
        "caller_errors",
        "flush_errors",
        "divergent_keys",
    ] {
        assert_eq!(metric(run, zero), 0.0, "{zero}: {}", run["metrics"]);
    }
    // Readers of the wiped keys got the origin's older version.
    assert!(metric(run, "stale_reads") > 0.0, "{}", run["metrics"]);
    // Flushed every second: the median write waited about half of that.
    let lag = metric(run, "flush_lag_p50_ms");
    eprintln!(
        "write-behind: {writes} writes, {wiped} wiped, lost {}, stale reads {}, flush lag p50 {lag} ms",
        metric(run, "unflushed_lost"),
        metric(run, "stale_reads")
    );
    assert!((200.0..=900.0).contains(&lag), "flush lag p50 {lag} ms");
}
