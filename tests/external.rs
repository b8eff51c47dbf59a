//! The external backend against real topologies gameday did not start in
//! that run: a Sentinel lab from `gameday up` (its proxies borrowed through
//! its Toxiproxy API), and a bare redis-server that gets gameday's own
//! proxy in front. The runs must inject what they say, leave the proxies
//! and nodes they borrowed as they found them, and delete exactly the keys
//! they wrote.

use crate::common;
use crate::common::{phase, ChildGuard, Scratch};
use gameday::testing::RedisProcess;
use gameday::testing::Role;
use gameday::testing::TopologyPlan;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::time::Duration;

const LOAD: &str = r#"
[load]
users = 8
rate = 400

[workload]
kind = "cache-aside"
keys = 500
on_redis_error = { policy = "fallback" }
"#;

fn redis(addr: SocketAddr) -> redis::Connection {
    redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap()
}

/// Starts `gameday up sentinel` and returns it with the scenario snippet it
/// prints for driving it as an external topology.
fn sentinel_lab() -> (ChildGuard, String) {
    let mut child = ChildGuard(
        common::gameday()
            .args(["up", "sentinel"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = BufReader::new(child.0.stdout.take().unwrap());
    let mut snippet = String::new();
    let mut inside = false;
    for line in out.lines() {
        let line = line.unwrap();
        if line.starts_with("[topology]") {
            inside = true;
        }
        if line.starts_with("# (end)") {
            return (child, snippet);
        }
        if inside {
            snippet.push_str(&line);
            snippet.push('\n');
        }
    }
    panic!("gameday up ended before printing its endpoints");
}

fn value_of(snippet: &str, key: &str, after: &str) -> String {
    let from = snippet.find(after).expect("marker in snippet");
    let line = snippet[from..]
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

#[test]
fn an_external_sentinel_lab_is_driven_through_its_own_proxies_and_left_as_found() {
    let _gate = crate::common::gate(module_path!());
    let (mut lab, snippet) = sentinel_lab();
    let api = value_of(&snippet, "toxiproxy_url", "[topology]");
    let primary: SocketAddr = value_of(&snippet, "addr", "role = \"primary\"")
        .parse()
        .unwrap();
    // A key that belongs to somebody else: the run must not touch it.
    let mut conn = redis(primary);
    redis::cmd("SET")
        .arg("theirs")
        .arg("1")
        .query::<()>(&mut conn)
        .unwrap();

    let scenario = format!(
        r#"name = "external-sentinel"
duration = "8s"
{snippet}
{LOAD}
[[fault]]
name = "slow"
kind = "latency"
target = "primary"
latency = "40ms"
at = "3s"
for = "2s"
"#
    );
    let scratch = Scratch::new(&scenario);
    scratch.run_ok(&[]);
    let s = scratch.summary();
    assert_eq!(s["backend"], "external");
    assert_eq!(s["proxy"]["kind"], "external");
    assert_eq!(s["proxy"]["url"], api);
    // The 40 ms toxic on the primary's borrowed proxy shows in the report:
    // each GET pays it once on the reply (downstream), within 35-55 ms.
    let slow = phase(&s, "fault:slow")["ops"]["redis_get"]["p50_us"]
        .as_f64()
        .unwrap()
        / 1000.0;
    assert!((35.0..55.0).contains(&slow), "fault p50 {slow} ms");
    let base = phase(&s, "baseline")["ops"]["redis_get"]["p50_us"]
        .as_f64()
        .unwrap()
        / 1000.0;
    assert!(base < 10.0, "baseline p50 {base} ms");
    let sets = phase(&s, "baseline")["ops"]["redis_set"]["count"]
        .as_u64()
        .unwrap();
    assert!(sets > 100, "the run wrote ({sets} SETs in the baseline)");

    // Borrowed proxies stay, idle; the run's keys are gone, theirs is not.
    let client = toxiproxy_rust::client::Client::new(api.trim_start_matches("http://"));
    let proxies = client.all().unwrap();
    assert_eq!(proxies.len(), 6, "every borrowed proxy is still there");
    for (name, p) in proxies {
        assert!(p.proxy_pack.enabled, "{name} enabled");
        assert!(p.toxics().unwrap().is_empty(), "{name} has no toxics left");
    }
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    assert_eq!(keys, vec!["theirs".to_string()]);
    scratch.assert_nothing_left();

    unsafe { libc::kill(lab.0.id() as i32, libc::SIGINT) };
    assert_eq!(lab.0.wait().unwrap().code(), Some(0));
}

#[test]
fn a_bare_external_server_gets_gameday_s_proxy_and_keeps_running() {
    let _gate = crate::common::gate(module_path!());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = rt
        .block_on(RedisProcess::start(
            "ext",
            Role::Primary,
            &TopologyPlan::standalone(),
        ))
        .unwrap();
    let mut conn = redis(node.addr);
    redis::cmd("SET")
        .arg("theirs")
        .arg("1")
        .query::<()>(&mut conn)
        .unwrap();
    let scenario = format!(
        r#"name = "external-standalone"
duration = "7s"

[topology]
kind = "standalone"
backend = "external"

[[topology.endpoint]]
node = "mine"
role = "primary"
addr = "{}"
{LOAD}
[[fault]]
name = "outage"
kind = "down"
target = "node:mine"
at = "2s"
for = "2s"
expect = ["fault:outage.caller_errors == 0", "fault:outage.redis_get.errors > 10"]
"#,
        node.addr
    );
    let scratch = Scratch::new(&scenario);
    scratch.run_ok(&[]);
    let s = scratch.summary();
    assert_eq!(s["backend"], "external");
    assert_eq!(s["proxy"]["kind"], "embedded");
    assert_eq!(s["topology"]["nodes"][0]["addr"], node.addr.to_string());
    // The outage ran where the report says, 2 s to 4 s, within 300 ms.
    let f = &s["faults"][0];
    assert!((f["applied_at_s"].as_f64().unwrap() - 2.0).abs() < 0.3);
    assert!((f["removed_at_s"].as_f64().unwrap() - 4.0).abs() < 0.3);

    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    assert_eq!(
        keys,
        vec!["theirs".to_string()],
        "the server is up, its key kept"
    );
    rt.block_on(node.shutdown());
}

#[test]
fn external_endpoints_are_checked_before_any_traffic() {
    let _gate = crate::common::gate(module_path!());
    let cases = [
        (
            r#"kind = "standalone"
backend = "external"
[[topology.endpoint]]
node = "a"
role = "primary"
addr = "192.0.2.1:6379""#,
            "is not a loopback address",
        ),
        (
            r#"kind = "sentinel"
backend = "external"
[[topology.endpoint]]
node = "a"
role = "primary"
addr = "127.0.0.1:7001"
[[topology.endpoint]]
node = "s"
role = "sentinel"
addr = "127.0.0.1:7002""#,
            "gameday's own proxies would be bypassed",
        ),
        (
            r#"kind = "standalone"
backend = "external"
maxmemory = "10mb"
[[topology.endpoint]]
node = "a"
role = "primary"
addr = "127.0.0.1:7001""#,
            "`maxmemory` configures nodes gameday starts",
        ),
        (
            r#"kind = "standalone"
[[topology.endpoint]]
node = "a"
role = "primary"
addr = "127.0.0.1:7001""#,
            "needs backend = \"external\"",
        ),
        (
            r#"kind = "standalone"
backend = "external""#,
            "needs the topology's endpoints",
        ),
    ];
    for (topology, message) in cases {
        let scratch = Scratch::new(&format!(
            "name = \"bad\"\nduration = \"2s\"\n[topology]\n{topology}\n{LOAD}"
        ));
        let out = scratch.run_cmd().output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(message), "expected `{message}` in: {err}");
        assert!(err.contains("scenario.toml:"), "names the file: {err}");
    }

    // An endpoint nobody listens on: exit 3, with the endpoint named.
    let port = gameday::testing::free_port().unwrap();
    let scratch = Scratch::new(&format!(
        "name = \"gone\"\nduration = \"2s\"\n[topology]\nkind = \"standalone\"\nbackend = \"external\"\n[[topology.endpoint]]\nnode = \"gone\"\nrole = \"primary\"\naddr = \"127.0.0.1:{port}\"\n{LOAD}"
    ));
    let out = scratch.run_cmd().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("endpoint gone"), "{err}");
    scratch.assert_nothing_left();
}
