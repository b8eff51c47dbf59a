//! `--toxiproxy-url` swaps the embedded proxy for another Toxiproxy API:
//! here `gameday proxy` in its own process. The faults must go through it,
//! and the run must delete the proxies it created there.

use crate::common;
use crate::common::{ChildGuard, Scratch};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SCENARIO: &str = r#"
name = "external"
duration = "6s"

[topology]
kind = "standalone"

[load]
users = 4
rate = 200

[workload]
kind = "cache-aside"
keys = 100
on_redis_error = { policy = "fallback" }

[[fault]]
name = "outage"
kind = "down"
at = "2s"
for = "2s"

expect = ["fault:outage.caller_errors == 0", "fault:outage.redis_get.errors > 10"]
"#;

#[test]
fn a_run_drives_an_external_toxiproxy_api_and_cleans_up_after_itself() {
    let _gate = crate::common::gate(module_path!());
    let port = gameday::testing::free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut proxy = ChildGuard(
        common::gameday()
            .args(["proxy", "--listen", &listen])
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&listen).is_err() {
        assert!(
            Instant::now() < deadline,
            "gameday proxy never listened on {listen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let scratch = Scratch::new(SCENARIO);
    let out = scratch
        .run_cmd()
        .args(["--toxiproxy-url", &format!("http://{listen}")])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = scratch.summary();
    assert_eq!(s["proxy"]["kind"], "external");
    assert_eq!(s["proxy"]["url"], format!("http://{listen}"));
    assert!(s["faults"][0]["confirmed_at_s"].as_f64().is_some());

    let client = toxiproxy_rust::client::Client::new(listen.as_str());
    assert!(
        client.all().unwrap().is_empty(),
        "the run deleted its proxies"
    );
    scratch.assert_nothing_left();

    unsafe { libc::kill(proxy.0.id() as i32, libc::SIGINT) };
    let status = proxy.0.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "gameday proxy stops cleanly on Ctrl-C"
    );
}

#[test]
fn a_non_loopback_toxiproxy_url_is_refused() {
    let _gate = crate::common::gate(module_path!());
    let scratch = Scratch::new(SCENARIO);
    let out = scratch
        .run_cmd()
        .args(["--toxiproxy-url", "http://192.0.2.1:8474"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "bad usage, refused before anything starts"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    scratch.assert_nothing_left();
    assert!(!scratch.report().exists());
}
