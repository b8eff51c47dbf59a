//! The regression gate against real runs: a small cache-aside scenario on
//! an external redis-server behind a proxy the test owns, so that a cause
//! can be injected without changing the scenario (and its content hash):
//! 3 ms of latency on every reply (a latency toxic on the test's proxy),
//! or stale values written behind the harness, or a busy machine. Five
//! baselines, five identical candidates, a slow one, a stale one, one on a
//! busy machine, a step for the trend.

use crate::common;
use crate::common::ChildGuard;
use gameday::testing::{free_port, RedisProcess, Role, TopologyPlan};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use toxiproxy_rust::client::Client;
use toxiproxy_rust::proxy::ProxyPack;

fn scenario(front: SocketAddr) -> String {
    format!(
        r#"name = "gate-small"
description = "cache-aside on an external node, for the regression gate's tests"
duration = "8s"

[topology]
kind = "standalone"
backend = "external"

[[topology.endpoint]]
node = "lab"
role = "primary"
addr = "{front}"

[load]
users = 8
rate = 200

[workload]
kind = "cache-aside"
keys = 100
read_ratio = 0.9
ttl = "4s"
op_timeout = "200ms"
on_redis_error = {{ policy = "fallback" }}
"#
    )
}

/// A redis-server behind the test's own proxy (a `gameday proxy` process:
/// the test process stays out of the measured path), and a place for runs.
struct Lab {
    node: RedisProcess,
    _proxy: ChildGuard,
    api: SocketAddr,
    root: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
}

impl Lab {
    fn start() -> Lab {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let node = rt
            .block_on(RedisProcess::start(
                "gate",
                Role::Primary,
                &TopologyPlan::standalone(),
            ))
            .unwrap();
        let api = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
        let proxy = ChildGuard(
            common::gameday()
                .args(["proxy", "--listen", &api.to_string()])
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(api).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "gameday proxy did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let front = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
        let upstream = node.addr.to_string();
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("scenario.toml"), scenario(front)).unwrap();
        std::fs::create_dir(root.path().join("tmp")).unwrap();
        client(api, move |c| {
            c.populate(vec![ProxyPack::new(
                "lab".into(),
                front.to_string(),
                upstream,
            )])
            .unwrap();
        });
        Lab {
            _rt: rt,
            node,
            _proxy: proxy,
            api,
            root,
        }
    }

    fn node_addr(&self) -> SocketAddr {
        self.node.addr
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join("runs").join(name)
    }

    fn run_args(&self, name: &str, extra: &[&str]) -> Output {
        common::gameday()
            .args(["run", "--quiet"])
            .arg(self.root.path().join("scenario.toml"))
            .arg("--out")
            .arg(self.dir(name))
            .args(extra)
            .env("TMPDIR", self.root.path().join("tmp"))
            .env("GAMEDAY_COMMIT", name)
            .output()
            .unwrap()
    }

    /// One run into runs/<name>, which must pass its own expectations.
    fn run(&self, name: &str) -> PathBuf {
        let out = self.run_args(name, &[]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
        self.dir(name)
    }

    /// Runs with 3 ms of latency on every reply of the node.
    fn run_slow(&self, name: &str, extra: &[&str]) -> Output {
        client(self.api, |c| {
            c.find_proxy("lab")
                .unwrap()
                .with_latency("downstream".into(), 3, 0, 1.0);
        });
        let out = self.run_args(name, extra);
        client(self.api, |c| {
            c.find_proxy("lab").unwrap().delete_all_toxics().unwrap();
        });
        out
    }
}

fn client(api: SocketAddr, f: impl FnOnce(&Client) + Send + 'static) {
    std::thread::spawn(move || f(&Client::new(api)))
        .join()
        .unwrap();
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn compare(candidate: &Path, baselines: &[&Path], env: &[(&str, &Path)]) -> (i32, Value, String) {
    let mut cmd = common::gameday();
    cmd.arg("compare").arg(candidate);
    for b in baselines {
        cmd.arg("--baseline").arg(b);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let json = std::fs::read_to_string(candidate.join("compare/compare.json"))
        .ok()
        .map_or(Value::Null, |t| serde_json::from_str(&t).unwrap());
    (out.status.code().unwrap_or(-1), json, text(&out))
}

fn verdicts<'a>(j: &'a Value, verdict: &str) -> Vec<&'a str> {
    j["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["verdict"] == verdict)
        .map(|m| m["metric"].as_str().unwrap())
        .collect()
}

/// Writes stale versions into every cached key, behind the harness, until
/// told to stop.
fn corrupt(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut conn = redis::Client::open(format!("redis://{addr}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let mut written = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("gameday:*")
                .query(&mut conn)
                .unwrap_or_default();
            for k in keys {
                let stale = format!("gd1:{:016x}:", 0u64);
                let _: Result<(), _> = redis::cmd("SET").arg(&k).arg(stale).query(&mut conn);
                written += 1;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        written
    })
}

/// A run's summary.json.
fn summary(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

/// Spins until told to stop: a noisy neighbour on one core.
fn spin(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut x = 1u64;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

fn edit_summary(dir: &Path, f: impl FnOnce(&mut Value)) {
    let path = dir.join("summary.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn the_gate_finds_real_regressions_and_no_false_ones() {
    let _gate = crate::common::gate(module_path!());
    let lab = Lab::start();
    // The first run after a start is slower (caches, pages, the proxy's
    // pools): warm up once, as one does before measuring.
    lab.run("warm-up");
    // Baselines and identical candidates interleaved (b1 c1 b2 c2 ...), as
    // a CI store's baselines come from other times than the candidate: a
    // slow spell of the shared machine then falls on both. (Five
    // candidates here; `gameday bench gate` measures the false-alarm rate
    // over more, in release, in CI.)
    let mut base = Vec::new();
    let mut same = Vec::new();
    for i in 1..=5 {
        base.push(lab.run(&format!("b{i}")));
        same.push(lab.run(&format!("c{i}")));
    }
    let refs: Vec<&Path> = base.iter().map(PathBuf::as_path).collect();

    // The summary records what the gate matches on.
    let s = summary(&base[0]);
    assert_eq!(s["scenario_hash"].as_str().unwrap().len(), 64);
    assert_eq!(s["commit"], "b1", "GAMEDAY_COMMIT");
    assert!(s["testbed"]["cpu"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(
        s["testbed"]["redis_version"]
            .as_str()
            .unwrap()
            .contains('.'),
        "{}",
        s["testbed"]
    );
    assert!(s["calibration"]["before_us"].as_f64().unwrap() > 0.0);
    assert!(s["gate"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["path"] == "run.stale_reads" && m["class"] == "invariant"));

    // Identical candidates: no failure, at most one warning.
    let (mut failed, mut warned) = (Vec::new(), 0);
    for c in &same {
        let (code, j, out) = compare(c, &refs, &[]);
        assert!(
            matches!(code, 0 | 1 | 4),
            "{}: exit {code}\n{out}",
            c.display()
        );
        assert_eq!(j["baselines"].as_array().unwrap().len(), 5, "{out}");
        failed.extend(verdicts(&j, "fail").iter().map(|m| m.to_string()));
        warned += verdicts(&j, "warn").len();
    }
    eprintln!(
        "gate: {} identical candidates: {} failures {failed:?}, {warned} warnings",
        same.len(),
        failed.len()
    );
    assert!(
        failed.is_empty() && warned <= 1,
        "false alarms: {failed:?}, {warned} warnings"
    );

    // A noisy neighbour (two busy threads per core) during an identical
    // candidate: the calibration sees a slower testbed, and the gate does
    // not call a slower machine a regression. (One thread per core was not
    // always enough: the scheduler may favour the run's process.)
    let hog = Arc::new(AtomicBool::new(false));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hogs: Vec<_> = (0..2 * cores).map(|_| spin(hog.clone())).collect();
    let busy = lab.run("busy");
    hog.store(true, Ordering::Relaxed);
    hogs.into_iter().for_each(|h| h.join().unwrap());
    let (code, j, out) = compare(&busy, &refs, &[]);
    assert!(
        j["testbed_slower"]
            .as_str()
            .is_some_and(|w| w.contains("CPU work")),
        "{out}\ncandidate {:#}\nbaselines' calibrations {:?}",
        j["candidate"],
        base.iter()
            .map(|b| summary(b)["calibration"].clone())
            .collect::<Vec<_>>()
    );
    assert_ne!(code, 1, "a busy machine is no regression: {out}");

    // 3 ms on every reply: a regression, named by the latency metrics.
    // (`gameday bench gate` measures the smallest step caught, +1–2 ms in
    // release; in this debug build on a shared machine, +2 ms sat at the
    // edge: a CI run caught it in one slow run and missed it in the next,
    // with the baselines' p50 spread at 20 %.)
    let summary_file = lab.root.path().join("step-summary.md");
    let slow = lab.dir("r1");
    let out = lab.run_slow("r1", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (code, j, out) = compare(&slow, &refs, &[("GITHUB_STEP_SUMMARY", &summary_file)]);
    assert_eq!(
        code, 1,
        "{} (testbed: {})\n{out}\n{:#}",
        j["reason"], j["testbed_slower"], j["metrics"]
    );
    let failed = verdicts(&j, "fail");
    assert!(
        !failed.is_empty() && failed.iter().all(|m| m.contains(".caller.p")),
        "latency, only: {failed:?}"
    );
    assert_eq!(j["schema"], "gameday.compare/1");
    let p50 = j["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "run.caller.p50")
        .unwrap();
    assert!(
        p50["delta"].as_f64().unwrap() > 1500.0,
        "≥ 1.5 ms slower: {p50}"
    );
    assert!(p50["p_value"].as_f64().unwrap() < 0.01);
    assert_eq!(p50["baseline_runs"].as_array().unwrap().len(), 5);
    let md = std::fs::read_to_string(&summary_file).unwrap();
    assert!(md.contains("REGRESSION") && md.contains(failed[0]), "{md}");
    for f in ["compare.md", "compare.html", "junit.xml"] {
        assert!(slow.join("compare").join(f).is_file(), "{f}");
    }
    let junit = std::fs::read_to_string(slow.join("compare/junit.xml")).unwrap();
    assert!(junit.contains("<failure"), "{junit}");

    // `run --baseline` against a store of the five: the run passes its own
    // rules, the comparison fails.
    let store = lab.root.path().join("store");
    for (i, b) in base.iter().enumerate() {
        copy_dir(b, &store.join(format!("b{}", i + 1)));
    }
    let out = lab.run_slow("r2", &["--baseline", store.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(lab.dir("r2").join("compare/compare.json").is_file());

    // Stale values written behind the harness: the invariant fails at once.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = corrupt(lab.node_addr(), stop.clone());
    let stale = lab.run("s1");
    stop.store(true, Ordering::Relaxed);
    assert!(writer.join().unwrap() > 0);
    let (code, j, out) = compare(&stale, &refs, &[]);
    assert_eq!(code, 1, "{}: {out}", j["reason"]);
    let failed = verdicts(&j, "fail");
    assert!(failed.contains(&"run.stale_reads"), "{failed:?}");
    assert_eq!(failed, ["run.stale_reads"], "latency within noise");

    // Two baselines are too few.
    let (code, j, out) = compare(&lab.dir("c1"), &refs[..2], &[]);
    assert_eq!(code, 4, "{out}");
    assert_eq!(j["verdict"], "inconclusive");

    // A baseline from another testbed is skipped, with the reason.
    let other = lab.root.path().join("elsewhere/b1");
    copy_dir(&base[0], &other);
    edit_summary(&other, |v| {
        v["testbed"]["cpu"] = "Another CPU @ 1 GHz".into()
    });
    let (_, j, _) = compare(&lab.dir("c1"), &[&other, refs[1], refs[2], refs[3]], &[]);
    let skipped = j["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    let reason = skipped[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("another testbed") && reason.contains("Another CPU"),
        "{reason}"
    );
    assert_eq!(j["baselines"].as_array().unwrap().len(), 3);

    // An empty store is an error, not a pass.
    let empty = lab.root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, out) = compare(&lab.dir("c1"), &[&empty], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no report directories"), "{out}");

    // Runs of another scenario are refused.
    let renamed = lab.root.path().join("renamed/b1");
    copy_dir(&base[0], &renamed);
    edit_summary(&renamed, |v| v["scenario"] = "another-one".into());
    let (code, _, out) = compare(&lab.dir("c1"), &[&renamed], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("different scenarios"), "{out}");

    // The trend over b1..b5 then three more slow runs: a step at the first slow one.
    for i in 3..=5 {
        let out = lab.run_slow(&format!("r{i}"), &[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let series = lab.root.path().join("series");
    for name in ["b1", "b2", "b3", "b4", "b5", "r1", "r2", "r3", "r4", "r5"] {
        copy_dir(&lab.dir(name), &series.join(name));
    }
    let trend_out = lab.root.path().join("trend");
    let out = common::gameday()
        .arg("trend")
        .arg(&series)
        .arg("--out")
        .arg(&trend_out)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let csv = std::fs::read_to_string(trend_out.join("trend.csv")).unwrap();
    let marked: Vec<&str> = csv
        .lines()
        .filter(|l| l.contains(",run.caller.p50,") && l.ends_with(",1"))
        .collect();
    assert_eq!(
        marked.len(),
        1,
        "one change point in run.caller.p50: {marked:?}"
    );
    assert!(
        marked[0].contains(",r1,"),
        "at the first slow run: {}",
        marked[0]
    );
    assert!(trend_out.join("trend.html").is_file());
}

#[test]
fn bad_comparisons_are_refused_with_a_reason() {
    let _gate = crate::common::gate(module_path!());
    let root = tempfile::tempdir().unwrap();
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let odd = root.path().join("odd");
    std::fs::create_dir(&odd).unwrap();
    std::fs::write(
        odd.join("summary.json"),
        r#"{"schema": "gameday.summary/9"}"#,
    )
    .unwrap();
    let cases: [(&Path, &str); 2] = [
        (&empty, "no summary.json"),
        (&odd, "unknown schema `gameday.summary/9`"),
    ];
    for (candidate, says) in cases {
        let (code, _, out) = compare(candidate, &[&odd], &[]);
        assert_eq!(code, 2, "{out}");
        assert!(out.contains(says), "`{says}` not in: {out}");
    }
}

#[test]
fn gate_table_mistakes_are_placed() {
    let _gate = crate::common::gate(module_path!());
    let cases = [
        ("alpha = 2", "4:9", "`alpha` must be above 0"),
        ("min_baselines = 1", "4:17", "at least 2"),
        ("metrics = [\"run.p98\"]", "4:12", "unknown metric `p98`"),
        ("speed = 1", "4:1", "unknown field `speed`"),
        (
            "[gate.tolerance]\nlatencies = { relative = \"10%\" }",
            "5:13",
            "neither a family",
        ),
        (
            "[gate.tolerance]\nlatency = { floor = \"5\" }",
            "5:21",
            "give the value a unit",
        ),
    ];
    for (table, at, says) in cases {
        let scenario = format!(
            "name = \"g\"\nduration = \"5s\"\n[gate]\n{table}\n[topology]\nkind = \"standalone\"\n[load]\nusers = 1\n[workload]\nkind = \"cache-aside\"\n"
        );
        let scratch = common::Scratch::new(&scenario);
        let out = common::gameday()
            .arg("validate")
            .arg(scratch.scenario())
            .output()
            .unwrap();
        let err = text(&out);
        assert_eq!(out.status.code(), Some(2), "{table}: {err}");
        assert!(
            err.contains(&format!("scenario.toml:{at}:")),
            "{table}: want {at}: {err}"
        );
        assert!(err.contains(says), "{table}: want `{says}`: {err}");
    }
}
