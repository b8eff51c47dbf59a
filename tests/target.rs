//! An HTTP target: the reference shop (examples/shop.rs, built by
//! `cargo test` itself), started by gameday with the proxied endpoints,
//! driven through its API while Redis fails behind it. The same scenario
//! fails the naive shop and passes the resilient one; no request bypasses
//! the proxies; the service never outlives the run; a known latency of the
//! shop's own is measured as such; bad target tables are refused at their
//! place.

use crate::common::{gameday, Scratch};
use gameday::testing::{Lab, NetFault, TopologyKind, TopologyPlan};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The shop `cargo test` built (examples are built with the tests).
fn shop() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_gameday"));
    exe.parent().unwrap().join("examples").join("shop")
}

fn free_port() -> u16 {
    gameday::testing::free_port().unwrap()
}

/// Whether a process whose environment says `SHOP_ADDR=127.0.0.1:<port>`
/// is alive.
fn shop_alive(port: u16) -> bool {
    let needle = format!("SHOP_ADDR=127.0.0.1:{port}");
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("environ"))
            .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
            .unwrap_or(false)
            && std::fs::read_to_string(e.path().join("stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
    })
}

/// The outage-then-latency scenario of scenarios/shop-outage.toml, shorter,
/// on `port`.
fn outage_scenario(port: u16) -> String {
    format!(
        r#"
name = "shop-outage-test"
duration = "15s"
seed = 3

[topology]
kind = "standalone"

[load]
users = 8
rate = 200

[target]
kind = "http"
base_url = "http://127.0.0.1:{port}"
command = ["{shop}"]
env = {{ SHOP_MODE = "resilient", SHOP_ADDR = "127.0.0.1:{port}" }}
keys = 500
distribution = "zipf"
count_header = "X-Cache"

[[target.request]]
name = "product"
path = "/product/{{key}}"
weight = 9

[[target.request]]
name = "checkout"
method = "POST"
path = "/checkout"
body = '{{"user": "u{{user}}", "sku": "{{key}}"}}'
weight = 1
expect_status = [200, 429]

[[fault]]
name = "outage"
kind = "down"
at = "4s"
for = "3s"

[[fault]]
name = "slow"
kind = "latency"
latency = "300ms"
at = "10s"
for = "3s"

expect = [
  "baseline.product.error_rate < 1%",
  "fault:outage.product.error_rate < 1%",
  "fault:outage.checkout.error_rate < 1%",
  "fault:outage.header.x-cache.fallback > 0",
  "fault:slow.product.p99 < 250ms",
  "recovery:outage.product.error_rate < 1%",
]
"#,
        shop = shop().display()
    )
}

fn failed_rules(s: &serde_json::Value) -> Vec<String> {
    s["expectations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["passed"] != true)
        .map(|e| e["rule"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_same_scenario_fails_the_naive_shop_and_passes_the_resilient_one() {
    let _gate = crate::common::gate(module_path!());
    let port = free_port();
    let scratch = Scratch::new(&outage_scenario(port));
    let out = scratch
        .run_cmd()
        .args(["--target-env", "SHOP_MODE=naive"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "naive must fail: {err}");
    assert!(!shop_alive(port), "the naive shop outlived a failed run");
    let naive = scratch.summary();
    let failed = failed_rules(&naive);
    for rule in [
        "fault:outage.product.error_rate < 1%",
        "fault:outage.header.x-cache.fallback > 0",
        "fault:slow.product.p99 < 250ms",
    ] {
        assert!(
            failed.iter().any(|f| f == rule),
            "`{rule}` should fail for naive: {failed:?}"
        );
    }
    let outage = crate::common::phase(&naive, "fault:outage");
    assert!(
        outage["ops"]["product"]["errors_by_class"]["http_5xx"].as_u64() > Some(0),
        "naive product errors are 5xx: {}",
        outage["ops"]["product"]
    );
    assert_eq!(
        outage["metrics"]["caller_errors"].as_f64(),
        outage["ops"]["caller"]["errors"].as_f64(),
        "every failed request is a caller error"
    );
    assert!(scratch.report().join("app.log").is_file(), "app.log");
    assert!(std::fs::read_to_string(scratch.report().join("app.log"))
        .unwrap()
        .contains("Naive"));

    let good = Scratch::new(&outage_scenario(port));
    let out = good.run_cmd().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let s = good.summary();
    assert_eq!(
        out.status.code(),
        Some(0),
        "resilient must pass: {:?} {err}",
        failed_rules(&s)
    );
    assert!(!shop_alive(port), "the resilient shop outlived the run");
    let outage = crate::common::phase(&s, "fault:outage");
    assert!(
        outage["metrics"]["header.x-cache.fallback"].as_f64() > Some(10.0),
        "{}",
        outage["metrics"]
    );
    let html = std::fs::read_to_string(good.report().join("report.html")).unwrap();
    for op in ["product", "checkout"] {
        assert!(
            html.contains(&format!("{op}: latency per second")),
            "a chart per request name: {op}"
        );
    }
    let csv = std::fs::read_to_string(good.report().join("timeseries.csv")).unwrap();
    assert!(
        csv.lines().any(|l| l.contains(",product,")),
        "timeseries rows per request"
    );
    let base = crate::common::phase(&s, "baseline");
    assert!(
        base["metrics"]["header.x-cache.hit"].as_f64() > Some(0.0),
        "{}",
        base["metrics"]
    );
}

/// The shop in `mode`, started by hand with exactly the endpoint variables
/// gameday passes for `lab`, once it answers: its guard, a client and its
/// base URL.
fn start_shop(
    lab: &Lab,
    mode: &str,
) -> (crate::common::ChildGuard, reqwest::blocking::Client, String) {
    let port = free_port();
    let mut cmd = std::process::Command::new(shop());
    cmd.env("SHOP_MODE", mode)
        .env("SHOP_ADDR", format!("127.0.0.1:{port}"))
        .stderr(std::process::Stdio::null());
    for var in [
        "REDIS_URL",
        "REDIS_SENTINELS",
        "REDIS_MASTER_NAME",
        "REDIS_CLUSTER_NODES",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(lab.client.env());
    let guard = crate::common::ChildGuard(cmd.spawn().unwrap());
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().is_err() {
        assert!(Instant::now() < deadline, "the shop did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    (guard, http, base)
}

/// A lab, the shop started by hand with exactly the variables gameday
/// passes, and every client-path proxy down: the shop's requests reach no
/// Redis (the server's GET counter does not move), in either mode.
#[test]
fn with_every_client_proxy_down_no_request_reaches_redis() {
    let _gate = crate::common::gate(module_path!());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_tx, shutdown) = tokio::sync::watch::channel(false);
    let plan = TopologyPlan::of_kind(TopologyKind::Standalone);
    let lab = rt.block_on(Lab::start(&plan, "bypass", shutdown)).unwrap();
    let real = lab.wired[0].endpoint.addr;
    let gets = || -> u64 {
        let mut c = redis::Client::open(format!("redis://{real}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut c)
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
            .and_then(|v| v.split(',').next())
            .map_or(0, |v| v.parse().unwrap())
    };
    for (mode, want) in [("resilient", 200), ("naive", 500)] {
        let (_shop, http, base) = start_shop(&lab, mode);
        // Through the proxies, Redis is reached.
        let before = gets();
        assert_eq!(
            http.get(format!("{base}/product/1"))
                .send()
                .unwrap()
                .status(),
            200
        );
        assert!(
            gets() > before,
            "a product read goes to Redis through the proxy"
        );
        for w in &lab.wired {
            let (control, name) = (lab.control.clone(), w.proxy.clone());
            rt.block_on(
                async move { control.call(move |c| c.apply(&name, &NetFault::Down)).await },
            )
            .unwrap();
        }
        let before = gets();
        for i in 0..50 {
            let r = http.get(format!("{base}/product/{i}")).send().unwrap();
            assert_eq!(r.status().as_u16(), want, "{mode} with Redis unreachable");
        }
        assert_eq!(
            gets(),
            before,
            "{mode}: a request reached Redis around the proxies"
        );
        for w in &lab.wired {
            let (control, name) = (lab.control.clone(), w.proxy.clone());
            rt.block_on(async move {
                control
                    .call(move |c| c.take_off(&name, &NetFault::Down))
                    .await
            })
            .unwrap();
        }
    }
    rt.block_on(lab.stop());
}

/// A target scenario with one request `path`, on `port`, started with
/// `command`.
fn small_scenario(port: u16, command: &str, extra: &str, path: &str) -> String {
    format!(
        r#"
name = "target-small"
duration = "{secs}s"

[topology]
kind = "standalone"

[load]
users = 8
rate = 100

[target]
kind = "http"
base_url = "http://127.0.0.1:{port}"
{command}
{extra}

[[target.request]]
name = "r"
path = "{path}"
"#,
        secs = 6,
    )
}

fn shop_command(port: u16) -> String {
    format!(
        "command = [\"{}\"]\nenv = {{ SHOP_ADDR = \"127.0.0.1:{port}\" }}",
        shop().display()
    )
}

/// The shop's own `/debug/sleep/50`: every request takes 50 ms more than
/// the shop's base (its `/healthz`, requested in the same run, which on a
/// busy machine is a few ms itself); gameday's p50s differ by 50 ms within
/// ±5 ms.
#[test]
fn a_known_latency_of_the_service_is_measured_as_such() {
    let _gate = crate::common::gate(module_path!());
    let port = free_port();
    let mut text = small_scenario(port, &shop_command(port), "", "/debug/sleep/50");
    text.push_str("\n[[target.request]]\nname = \"base\"\npath = \"/healthz\"\n");
    let scratch = Scratch::new(&text);
    let s = scratch.run_ok(&[]);
    let p50 = |op: &str| {
        crate::common::phase(&s, "run")["ops"][op]["p50_us"]
            .as_i64()
            .unwrap()
    };
    let (slow, base) = (p50("r"), p50("base"));
    assert!(
        (45_000..=55_000).contains(&(slow - base)),
        "p50 {slow} µs for a 50 ms sleep, {base} µs without it"
    );
    assert!(base < 20_000, "the shop's base p50 is {base} µs");
    assert!(!shop_alive(port));
}

#[test]
fn the_service_never_outlives_the_run() {
    let _gate = crate::common::gate(module_path!());
    // Ctrl-C mid-run.
    let port = free_port();
    let scratch = Scratch::new(&small_scenario(port, &shop_command(port), "", "/healthz"));
    let mut child = scratch.run_cmd().spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !shop_alive(port) {
        assert!(Instant::now() < deadline, "the shop never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(!shop_alive(port), "the shop outlived Ctrl-C");
    scratch.assert_nothing_left();

    // A panic inside gameday (the test hook panics on the main thread).
    let port = free_port();
    let scratch = Scratch::new(&small_scenario(port, &shop_command(port), "", "/healthz"));
    let out = scratch
        .run_cmd()
        .env("GAMEDAY_TEST_PANIC_AFTER", "2s")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GAMEDAY_TEST_PANIC_AFTER"), "{err}");
    assert_ne!(out.status.code(), Some(0));
    assert!(!shop_alive(port), "the shop outlived a panic");

    // Never healthy: exit 3 with the tail of its log, and it is stopped.
    let port = free_port();
    let command = format!(
        "command = [\"sh\", \"-c\", \"echo booting; echo cannot reach the config server >&2; exec sleep 60\"]\nenv = {{ SHOP_ADDR = \"127.0.0.1:{port}\" }}\nhealth_timeout = \"2s\""
    );
    let scratch = Scratch::new(&small_scenario(port, &command, "", "/"));
    let started = Instant::now();
    let out = scratch.run_cmd().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("cannot reach the config server"),
        "the log's tail: {err}"
    );
    assert!(err.contains("not healthy within 2s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!shop_alive(port), "an unhealthy service was left running");
    scratch.assert_nothing_left();

    // Something else already answers on the target's port: refused, or the
    // run would measure that process instead of the one it starts.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let scratch = Scratch::new(&small_scenario(port, &shop_command(port), "", "/healthz"));
    let out = scratch.run_cmd().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("already listens"), "{err}");
    assert!(!shop_alive(port));
    scratch.assert_nothing_left();
    drop(squatter);

    // A command that does not exist: exit 2 before anything starts.
    let scratch = Scratch::new(&small_scenario(
        port,
        "command = [\"target/no/such/shop\"]",
        "",
        "/",
    ));
    let started = Instant::now();
    let out = scratch.run_cmd().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("target/no/such/shop") && err.contains("does not exist"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "nothing should start"
    );
    assert!(!scratch.report().join("summary.json").exists());
    scratch.assert_nothing_left();
}

/// Each bad target table is refused at its place, with exit 2.
#[test]
fn bad_target_tables_are_refused_at_their_place() {
    let _gate = crate::common::gate(module_path!());
    let cases: &[(&str, &str, &str, &str)] = &[
        ("base_url = \"http://10.0.0.1:8080\"", "", "", "loopback"),
        ("base_url = \"http://127.0.0.1:8080\"", "path = \"/p/{id}\"", "", "unknown placeholder `{id}`"),
        ("base_url = \"http://127.0.0.1:8080\"", "path = \"/\"\nweight = 0", "", "`weight` must be"),
        ("base_url = \"http://127.0.0.1:8080\"", "path = \"/\"\nmethod = \"FETCH\"", "", "unknown method `FETCH`"),
        ("base_url = \"http://127.0.0.1:8080\"", "path = \"/\"\nexpect_status = [200, 999]", "", "not an HTTP status"),
        ("base_url = \"http://127.0.0.1:8080\"\ncommand = [\"x\"]\nenv = { REDIS_URL = \"redis://127.0.0.1:6379\" }", "path = \"/\"", "", "may not set REDIS_URL"),
        ("base_url = \"http://127.0.0.1:8080\"\ncolour = \"blue\"", "path = \"/\"", "", "unknown field `colour`"),
    ];
    for (target, request, _, wanted) in cases {
        let text = format!(
            "name = \"bad\"\nduration = \"5s\"\n\n[topology]\nkind = \"standalone\"\n\n[load]\nusers = 1\n\n[target]\nkind = \"http\"\n{target}\n\n[[target.request]]\nname = \"r\"\n{}\n",
            if request.is_empty() { "path = \"/\"" } else { request }
        );
        let err = gameday::parse_scenario(std::path::Path::new("bad.toml"), &text)
            .expect_err(&format!("must be refused: {target} / {request}"));
        assert!(
            err.message.contains(wanted),
            "{wanted}: got `{}`",
            err.message
        );
        assert!(err.line > 1 && err.col >= 1, "a place: {err}");
    }
    // And through the command line: exit 2, file:line:col.
    let scratch = Scratch::new(
        "name = \"bad\"\nduration = \"5s\"\n[topology]\nkind = \"standalone\"\n[load]\nusers = 1\n[target]\nkind = \"http\"\nbase_url = \"http://192.168.1.1:80\"\n[[target.request]]\nname = \"r\"\npath = \"/\"\n",
    );
    let out = scratch.run_cmd().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("scenario.toml:9:"), "{err}");
    // A target and a workload at once.
    let out = gameday()
        .args(["validate"])
        .arg(scratch.scenario())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The shop finds Sentinel and Cluster through the variables gameday
/// passes: a product is a miss, then a hit, and a reservation takes and
/// releases its lock.
#[test]
fn the_shop_reaches_sentinel_and_cluster_through_the_proxies() {
    let _gate = crate::common::gate(module_path!());
    let rt = tokio::runtime::Runtime::new().unwrap();
    for kind in [TopologyKind::Sentinel, TopologyKind::Cluster] {
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let plan = TopologyPlan::of_kind(kind);
        let lab = rt
            .block_on(Lab::start(&plan, "shop-topo", shutdown))
            .unwrap();
        let (_shop, http, base) = start_shop(&lab, "resilient");
        let cache = |id: u32| {
            let r = http.get(format!("{base}/product/{id}")).send().unwrap();
            assert_eq!(r.status(), 200, "{kind:?}");
            r.headers()["x-cache"].to_str().unwrap().to_string()
        };
        for id in [1, 2, 3] {
            assert_eq!(cache(id), "miss", "{kind:?}: the first read of {id}");
            assert_eq!(cache(id), "hit", "{kind:?}: the second read of {id}");
        }
        let r = http.post(format!("{base}/reserve/sku-9")).send().unwrap();
        assert_eq!(r.status(), 200, "{kind:?}: a reservation");
        rt.block_on(lab.stop());
    }
}

/// The open model drives a service too: 100 arrivals/s at a request that
/// takes 50 ms, with 4 in flight, can be served 80 times a second; the
/// rest wait, then are shed, and every arrival is accounted for.
#[test]
fn open_arrivals_reach_a_service_and_its_overload_is_shed() {
    let _gate = crate::common::gate(module_path!());
    let port = free_port();
    let text = small_scenario(port, &shop_command(port), "", "/debug/sleep/50").replace(
        "users = 8\nrate = 100",
        "model = \"open\"\nrate = 100\nmax_in_flight = 4\nmax_queue = 20",
    );
    let scratch = Scratch::new(&text);
    let s = scratch.run_ok(&[]);
    let run = crate::common::phase(&s, "run");
    let m = |k: &str| run["metrics"][k].as_f64().unwrap();
    assert_eq!(m("offered"), 600.0, "6 s at 100/s");
    assert_eq!(
        m("completed") + m("shed") + m("queued_at_end"),
        m("offered")
    );
    assert!(m("in_flight_max") <= 4.0, "{}", run["metrics"]);
    // 4 / 50 ms = 80/s at most, a little less with the shop's own time.
    let served = m("completed") / 6.0;
    assert!((60.0..=82.0).contains(&served), "{served}/s served");
    assert!(m("shed") > 50.0, "{}", run["metrics"]);
    let service = run["ops"]["load_service"]["p50_us"].as_u64().unwrap();
    assert!(
        (50_000..=56_000).contains(&service),
        "service p50 {service} µs"
    );
    assert!(!shop_alive(port));
}
