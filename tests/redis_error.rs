//! `redis_error` and `slow_commands`, the proxy's command-aware toxics,
//! against what a real redis-server and its clients see: a pipeline of
//! 600 commands gets its 600 replies in order with exactly the matching
//! ones refused; a quarter of a cache's GETs refused with OOM shows as
//! 25 % ± 3 % `oom` errors on GET and none on SET; a slow SET leaves GET
//! fast.

use crate::common::{phase, Scratch};
use crate::faults::{connect, rig};
use gameday::testing::{NetFault, Stream, ToxicKind};
use serde_json::Value;
use std::io::Cursor;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn command_toxic(kind: ToxicKind) -> NetFault {
    NetFault::Toxic {
        kind,
        streams: vec![Stream::Upstream],
        toxicity: 1.0,
        path: Default::default(),
    }
}

fn matching(commands: &[&str], keys: &str, every: u64) -> serde_json::Value {
    serde_json::json!({"commands": commands, "keys": keys, "every": every})
}

fn kind(json: serde_json::Value) -> ToxicKind {
    serde_json::from_value(json).expect("a toxic")
}

fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n{a}\r\n", a.len()).into_bytes());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_gets_every_reply_in_order_and_only_matches_refused() {
    let _gate = crate::common::gate(module_path!());
    let rig = rig().await;
    // Every second GET of a `user:` key on the connection is refused.
    let mut attrs = matching(&["get"], "user:*", 2);
    attrs["error"] = "OOM".into();
    let fault = command_toxic(kind(
        serde_json::json!({"type": "redis_error", "attributes": attrs}),
    ));
    rig.apply(fault.clone()).await;
    let mut sock = TcpStream::connect(rig.addr).await.unwrap();
    let mut batch = Vec::new();
    for i in 0..200 {
        let (user, other) = (format!("user:{i}"), format!("other:{i}"));
        let value = i.to_string();
        batch.extend(resp(&["SET", &user, &value]));
        batch.extend(resp(&["GET", &user]));
        batch.extend(resp(&["GET", &other]));
    }
    // In odd pieces, so that commands straddle the proxy's reads.
    for piece in batch.chunks(777) {
        sock.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let replies = read_replies(&mut sock, 600).await;
    let mut refused = 0;
    for i in 0..200 {
        let (set, get, other) = (&replies[3 * i], &replies[3 * i + 1], &replies[3 * i + 2]);
        assert_eq!(*set, redis::Value::Okay, "SET {i} runs");
        assert_eq!(*other, redis::Value::Nil, "GET other:{i} passes");
        if i % 2 == 1 {
            let redis::Value::ServerError(e) = get else {
                panic!("GET user:{i} must be refused, got {get:?}")
            };
            assert_eq!(e.code(), "OOM", "{e:?}");
            refused += 1;
        } else {
            assert_eq!(
                *get,
                redis::Value::BulkString(i.to_string().into_bytes()),
                "GET user:{i} in its place"
            );
        }
    }
    assert_eq!(refused, 100);
    // The refused commands did not run on the server; taken off, all pass.
    rig.clear(fault).await;
    let mut conn = connect(rig.addr).await.unwrap();
    let v: Option<String> = redis::cmd("GET")
        .arg("user:1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("1"));
}

async fn read_replies(sock: &mut TcpStream, n: usize) -> Vec<redis::Value> {
    let mut bytes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut parser = redis::Parser::new();
        let mut cur = Cursor::new(&bytes[..]);
        let mut got = Vec::new();
        while got.len() < n {
            match parser.parse_value(&mut cur) {
                Ok(v) => got.push(v),
                Err(_) => break,
            }
        }
        if got.len() == n {
            return got;
        }
        assert!(Instant::now() < deadline, "{} of {n} replies", got.len());
        let mut buf = vec![0u8; 64 * 1024];
        let read = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .expect("replies arrive")
            .unwrap();
        assert!(read > 0, "the proxy closed the connection");
        bytes.extend_from_slice(&buf[..read]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_commands_slow_the_writes_and_not_the_reads() {
    let _gate = crate::common::gate(module_path!());
    let rig = rig().await;
    let mut attrs = matching(&["SET"], "", 0);
    attrs["latency"] = 40.into();
    rig.apply(command_toxic(kind(
        serde_json::json!({"type": "slow_commands", "attributes": attrs}),
    )))
    .await;
    let mut conn = connect(rig.addr).await.unwrap();
    let set = slowest(&mut conn, "SET").await;
    let get = slowest(&mut conn, "GET").await;
    assert!(set >= Duration::from_millis(40), "SET {set:?}");
    assert!(get < Duration::from_millis(20), "GET {get:?}");
}

/// The slowest of ten `name` commands.
async fn slowest(conn: &mut redis::aio::MultiplexedConnection, name: &str) -> Duration {
    let mut most = Duration::ZERO;
    for i in 0..10 {
        let t = Instant::now();
        let mut cmd = redis::cmd(name);
        cmd.arg(format!("k{i}"));
        if name == "SET" {
            cmd.arg("v");
        }
        let _: redis::Value = cmd.query_async(conn).await.unwrap();
        most = most.max(t.elapsed());
    }
    most
}

const SCENARIO: &str = r#"
name = "oom-gets"
duration = "8s"
seed = 3

[topology]
kind = "standalone"

[load]
users = 4
rate = 800

[workload]
kind = "cache-aside"
keys = 200
read_ratio = 0.8
ttl = "10m"

[[fault]]
name = "oom"
kind = "redis_error"
error = "OOM"
commands = ["GET"]
probability = 0.25
at = "2s"
for = "4s"
"#;

fn op<'a>(p: &'a Value, name: &str) -> &'a Value {
    &p["ops"][name]
}

fn count(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

#[test]
fn a_quarter_of_the_gets_refused_is_a_quarter_of_oom_errors_on_get_and_none_on_set() {
    let _gate = crate::common::gate(module_path!());
    let s = Scratch::new(SCENARIO).run_ok(&[]);
    let fault = phase(&s, "fault:oom");
    let get = op(fault, "redis_get");
    let (gets, oom) = (count(get, "count"), count(&get["errors_by_class"], "oom"));
    assert!(gets > 1500.0, "enough GETs to tell 25 % ± 3 %: {get}");
    let share = oom / gets;
    assert!(
        (0.22..=0.28).contains(&share),
        "oom share {share:.3} of {gets} GETs: {get}"
    );
    assert_eq!(
        count(get, "errors"),
        oom,
        "every error is the injected one: {get}"
    );
    for name in ["baseline", "fault:oom", "recovery:oom"] {
        let set = op(phase(&s, name), "redis_set");
        assert!(count(set, "count") > 0.0, "{name}: {set}");
        assert_eq!(count(set, "errors"), 0.0, "{name}: SET untouched: {set}");
    }
    for name in ["baseline", "recovery:oom"] {
        let get = op(phase(&s, name), "redis_get");
        assert_eq!(count(get, "errors"), 0.0, "{name}: {get}");
    }
}
