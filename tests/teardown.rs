//! Nothing survives a run: after a run whose expectations fail, and after
//! SIGINT in the middle of one, no redis-server the run started is left and
//! its temporary directory is gone.

use crate::common;
use crate::common::Scratch;
use std::time::{Duration, Instant};

fn scenario(duration: &str, expect: &str) -> String {
    format!(
        r#"
name = "teardown"
duration = "{duration}"

[topology]
kind = "standalone"
persistence = "aof"

[load]
users = 4
rate = 200

[workload]
kind = "cache-aside"
keys = 100

[[fault]]
name = "blip"
kind = "down"
at = "1s"
for = "1s"

expect = [{expect}]
"#
    )
}

#[test]
fn a_failed_run_leaves_nothing_and_keeps_the_redis_log() {
    let _gate = crate::common::gate(module_path!());
    // No op is faster than a microsecond: this rule must fail.
    let scratch = Scratch::new(&scenario("3s", "\"baseline.p99 < 1us\""));
    let out = scratch.run_cmd().output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = scratch.summary();
    assert_eq!(s["verdict"], "fail");
    assert_eq!(s["expectations"][0]["passed"], false);
    assert!(
        scratch.report().join("redis-redis-0.log").exists(),
        "the node's log is kept when a run fails"
    );
    scratch.assert_nothing_left();
}

#[test]
fn sigint_mid_run_tears_everything_down() {
    let _gate = crate::common::gate(module_path!());
    let scratch = Scratch::new(&scenario("30s", ""));
    let mut child = common::ChildGuard(scratch.run_cmd().spawn().unwrap());
    // Wait until the node is up (its directory exists), then let load run.
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(scratch.tmp()).unwrap().count() == 0 {
        assert!(Instant::now() < deadline, "the run never started a node");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    let running = common::processes_mentioning(&scratch.tmp());
    assert_eq!(
        running.len(),
        1,
        "the run's redis-server is seen mid-run: {running:?}"
    );
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let status = child.0.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped promptly"
    );
    assert_eq!(status.code(), Some(130));
    let s = scratch.summary();
    assert_eq!(s["interrupted"], true);
    assert!(s["duration_s"].as_f64().unwrap() < 20.0);
    scratch.assert_nothing_left();
}

#[test]
fn sigint_mid_run_removes_every_container() {
    let _gate = crate::common::gate(module_path!());
    if std::env::var("GAMEDAY_REDIS_IMAGE").map_or(true, |v| v.is_empty()) {
        assert!(
            std::env::var("CI").is_err(),
            "CI must test the docker backend: run the tests through ci/test.sh"
        );
        eprintln!("skipped: needs GAMEDAY_REDIS_IMAGE (ci/test.sh sets it)");
        return;
    }
    let text = scenario("30s", "").replace("kind = \"standalone\"", "kind = \"sentinel\"");
    let scratch = Scratch::new(&text);
    let mut child = common::ChildGuard(
        scratch
            .run_cmd()
            .args(["--backend", "docker"])
            .spawn()
            .unwrap(),
    );
    let mine = format!("label=gameday.pid={}", child.0.id());
    let containers = || {
        let out = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &mine])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while containers() < 6 {
        assert!(
            Instant::now() < deadline,
            "the run never started its six containers"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(4));
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    assert_eq!(child.0.wait().unwrap().code(), Some(130));
    assert_eq!(containers(), 0, "every container of the run is removed");
    scratch.assert_nothing_left();
}
