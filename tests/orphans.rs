//! Nothing left behind even after SIGKILL: containers and temporary
//! directories of a killed run, and the faults it left on a borrowed
//! Toxiproxy, are removed by `gameday clean` and by the next run's sweep,
//! while a live run's are left alone. The two tests take turns (a `static`
//! lock): each one's runs sweep, and would take the other's orphans.

use crate::common;
use crate::common::Scratch;
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn scenario(duration: &str, topology: &str) -> String {
    format!(
        r#"
name = "orphans"
duration = "{duration}"

[topology]
kind = "{topology}"

[load]
users = 2
rate = 50

[workload]
kind = "cache-aside"
keys = 100
"#
    )
}

/// The owner tags (`<pid>.<start>.<boot>`) of the containers labelled as
/// gameday's, one per container.
fn gameday_containers() -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "label=gameday.pid",
            "--format",
            "{{.Label \"gameday.owner\"}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn sigkill_leaves_containers_that_gameday_clean_removes_and_a_live_run_s_stay() {
    let _gate = crate::common::gate(module_path!());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !common::docker_ready() {
        return;
    }
    let text = scenario("60s", "replicated");
    let killed = Scratch::new(&text);
    let mut victim = common::ChildGuard(
        killed
            .run_cmd()
            .args(["--backend", "docker"])
            .spawn()
            .unwrap(),
    );
    let pid = victim.0.id().to_string();
    let of = |pid: &str| {
        gameday_containers()
            .iter()
            .filter(|t| t.starts_with(&format!("{pid}.")))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while of(&pid) < 2 {
        assert!(
            Instant::now() < deadline,
            "the run never started its containers"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    unsafe { libc::kill(victim.0.id() as i32, libc::SIGKILL) };
    victim.0.wait().unwrap();
    let orphans = of(&pid);
    assert_eq!(
        orphans, 3,
        "SIGKILL left the containers (what clean is for)"
    );
    let left = std::fs::read_dir(killed.tmp()).unwrap().count();
    assert!(left >= 1, "and the nodes' temporary directories");

    // The next run's sweep removes the dead run's containers, not its own;
    // its temporary directories are elsewhere (another TMPDIR), so
    // `gameday clean` removes those.
    let live = Scratch::new(&scenario("60s", "standalone"));
    let mut alive = common::ChildGuard(
        live.run_cmd()
            .args(["--backend", "docker"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let live_pid = alive.0.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while of(&live_pid) < 1 {
        assert!(Instant::now() < deadline, "the live run never started");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        of(&pid),
        0,
        "the next run removed the dead run's containers"
    );
    let out = common::gameday()
        .arg("clean")
        .env("TMPDIR", killed.tmp())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("removed directory"), "{said}");
    assert_eq!(std::fs::read_dir(killed.tmp()).unwrap().count(), 0);
    assert_eq!(of(&live_pid), 1, "the live run's container stays");

    unsafe { libc::kill(alive.0.id() as i32, libc::SIGINT) };
    let mut stderr = String::new();
    use std::io::Read;
    alive
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(alive.0.wait().unwrap().code(), Some(130));
    assert_eq!(
        stderr.matches("removed container").count(),
        orphans,
        "the next run says what it removed: {stderr}"
    );
    assert_eq!(of(&live_pid), 0);
    live.assert_nothing_left();
}

/// Borrowed proxies: a run killed mid-fault leaves its toxic (or its
/// disabled proxy) on the Toxiproxy it borrowed from; the next run's sweep
/// removes it, and leaves alone what is not gameday's.
#[test]
fn a_killed_run_s_faults_on_a_borrowed_toxiproxy_are_undone_by_clean_and_by_the_next_run() {
    let _gate = crate::common::gate(module_path!());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    use toxiproxy_rust::proxy::ProxyPack;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let plan = gameday::testing::TopologyPlan::standalone();
    let node = rt
        .block_on(gameday::testing::RedisProcess::start(
            "lab",
            gameday::testing::Role::Primary,
            &plan,
        ))
        .unwrap();
    let api = format!("127.0.0.1:{}", gameday::testing::free_port().unwrap());
    let _proxy = common::ChildGuard(
        common::gameday()
            .args(["proxy", "--listen", &api])
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&api).is_err() {
        assert!(Instant::now() < deadline, "gameday proxy never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let client = toxiproxy_rust::client::Client::new(api.as_str());
    let packs = vec![
        ProxyPack::new("shared".into(), "127.0.0.1:0".into(), node.addr.to_string()),
        ProxyPack::new("theirs".into(), "127.0.0.1:0".into(), node.addr.to_string()),
    ];
    let listen = client.populate(packs).unwrap()[0].proxy_pack.listen.clone();
    let http = reqwest::blocking::Client::new();
    let show = |name: &str| -> serde_json::Value {
        http.get(format!("http://{api}/proxies/{name}"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    for (kind, extra) in [("latency", "latency = \"50ms\""), ("down", "")] {
        let text = format!(
            r#"name = "borrowed"
duration = "60s"
[topology]
kind = "standalone"
backend = "external"
toxiproxy_url = "http://{api}"
[[topology.endpoint]]
node = "lab"
role = "primary"
addr = "{listen}"
proxy = "shared"
[load]
users = 2
rate = 50
[workload]
kind = "cache-aside"
keys = 50
on_redis_error = {{ policy = "fallback" }}
[[fault]]
name = "f"
kind = "{kind}"
{extra}
at = "1s"
for = "50s"
"#
        );
        let scratch = Scratch::new(&text);
        let mut run = common::ChildGuard(scratch.run_cmd().spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        while show("shared")["toxics"].as_array().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "{kind}: the fault never showed");
            std::thread::sleep(Duration::from_millis(100));
        }
        unsafe { libc::kill(run.0.id() as i32, libc::SIGKILL) };
        run.0.wait().unwrap();
        let left = show("shared");
        assert_eq!(
            left["toxics"].as_array().unwrap().len(),
            1,
            "{kind}: {left}"
        );
        assert_eq!(left["enabled"], kind != "down", "{kind}: {left}");
        // Somebody else's toxic and disabled proxy, to be left alone.
        let r = http
            .post(format!("http://{api}/proxies/theirs/toxics"))
            .json(&serde_json::json!({"name": "gameday-not-ours", "type": "latency", "attributes": {"latency": 1}}))
            .send()
            .unwrap();
        assert!(r.status().is_success());
        let r = http
            .post(format!("http://{api}/proxies/theirs"))
            .json(&serde_json::json!({"enabled": false}))
            .send()
            .unwrap();
        assert!(r.status().is_success());

        // The latency toxic goes by `gameday clean`, the disabled proxy by
        // the next run's own sweep (which then finds the proxy idle).
        let out = if kind == "latency" {
            common::gameday()
                .args(["clean", "--toxiproxy-url", &format!("http://{api}")])
                .output()
                .unwrap()
        } else {
            let short = text
                .split("[[fault]]")
                .next()
                .unwrap()
                .replace("\"60s\"", "\"2s\"");
            let next = Scratch::new(&short);
            next.run_cmd().output().unwrap()
        };
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{said}");
        let after = show("shared");
        assert!(
            after["toxics"].as_array().unwrap().is_empty(),
            "{kind}: {said} {after}"
        );
        assert_eq!(after["enabled"], true, "{kind}: {said}");
        assert!(said.contains("of proxy shared"), "{kind}: {said}");
        let theirs = show("theirs");
        assert_eq!(theirs["toxics"][0]["name"], "gameday-not-ours");
        assert_eq!(theirs["enabled"], false);
        http.delete(format!(
            "http://{api}/proxies/theirs/toxics/gameday-not-ours"
        ))
        .send()
        .unwrap();
    }
    rt.block_on(node.shutdown());
}
