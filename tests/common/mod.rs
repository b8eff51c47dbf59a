//! Helpers shared by the tests that run the `gameday` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn gameday() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gameday"))
}

/// A scratch area: a scenario file, a report dir and a TMPDIR for the run,
/// so the test can see what the run left behind.
pub struct Scratch {
    pub root: tempfile::TempDir,
}

impl Scratch {
    pub fn new(scenario: &str) -> Scratch {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("scenario.toml"), scenario).unwrap();
        std::fs::create_dir(root.path().join("tmp")).unwrap();
        Scratch { root }
    }
    pub fn scenario(&self) -> PathBuf {
        self.root.path().join("scenario.toml")
    }
    pub fn report(&self) -> PathBuf {
        self.root.path().join("report")
    }
    pub fn tmp(&self) -> PathBuf {
        self.root.path().join("tmp")
    }
    /// `gameday run` of the scenario into the report dir, with TMPDIR here.
    pub fn run_cmd(&self) -> Command {
        let mut cmd = gameday();
        cmd.args(["run", "--quiet"])
            .arg(self.scenario())
            .arg("--out")
            .arg(self.report())
            .env("TMPDIR", self.tmp());
        cmd
    }
    /// Runs the scenario with `args`, asserts exit code 0 (showing what the
    /// run printed otherwise) and returns its summary (its comparison, for
    /// a scenario with variants).
    pub fn run_ok(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run_cmd().args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let comparison = self.report().join("comparison.json");
        if comparison.is_file() {
            return serde_json::from_str(&std::fs::read_to_string(comparison).unwrap()).unwrap();
        }
        self.summary()
    }
    /// The run's summary.json. It is first read through the typed
    /// `Summary`, so every summary a test sees keeps the contract; the
    /// tests then index the JSON as a user's script would.
    pub fn summary(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.report().join("summary.json")).unwrap();
        let typed: gameday::Summary = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("summary.json does not fit the typed Summary: {e}"));
        assert_eq!(typed.schema, gameday::SCHEMA);
        serde_json::from_str(&text).unwrap()
    }

    /// The summary.json of one variant of the run.
    pub fn variant_summary(&self, variant: &str) -> serde_json::Value {
        let path = self.report().join(variant).join("summary.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The run's summary.json through the typed `Summary`.
    pub fn typed_summary(&self) -> gameday::Summary {
        let text = std::fs::read_to_string(self.report().join("summary.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
    /// Asserts that no process and no temporary directory of the run remain.
    pub fn assert_nothing_left(&self) {
        let left: Vec<String> = std::fs::read_dir(self.tmp())
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .collect();
        assert!(
            left.is_empty(),
            "temporary directories left behind: {left:?}"
        );
        let procs = processes_mentioning(&self.tmp());
        assert!(procs.is_empty(), "processes left running: {procs:?}");
    }
}

/// redis-server processes working under `path`: the harness starts each
/// node with `--dir` in its own temporary directory and Redis `chdir`s there
/// (its command line is no help: Redis rewrites its process title).
pub fn processes_mentioning(path: &Path) -> Vec<String> {
    let needle = path.display().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if !comm.trim().starts_with("redis") {
            continue;
        }
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        if cwd.display().to_string().starts_with(&needle) {
            found.push(format!(
                "pid {} ({}) in {}",
                entry.file_name().to_string_lossy(),
                comm.trim(),
                cwd.display()
            ));
        }
    }
    found
}

/// Kills the child on drop, so a failed assertion leaves nothing running.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether the docker backend can be tested here: `ci/test.sh` builds a
/// local image and sets GAMEDAY_REDIS_IMAGE. Under CI it must be set, so
/// these tests can never be skipped there.
pub fn docker_ready() -> bool {
    let set = std::env::var("GAMEDAY_REDIS_IMAGE").is_ok_and(|v| !v.is_empty());
    if !set {
        assert!(
            std::env::var("CI").is_err(),
            "CI must test the docker backend: run the tests through ci/test.sh"
        );
        eprintln!(
            "skipped: the docker backend tests need GAMEDAY_REDIS_IMAGE (ci/test.sh sets it)"
        );
    }
    set
}

/// The workload metric `k` of a phase (a panic names what is there).
pub fn metric(p: &serde_json::Value, k: &str) -> f64 {
    p["metrics"][k]
        .as_f64()
        .unwrap_or_else(|| panic!("no {k}: {}", p["metrics"]))
}

/// The calls a server has served of `command` so far (INFO commandstats).
pub fn calls(conn: &mut redis::Connection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// The phase named `name` of a summary.
pub fn phase<'a>(s: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    s["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no phase {name}"))
}

/// Tests of one module may run beside each other, as they did when each
/// module was its own test binary; tests of different modules never
/// overlap. The load and timing tolerances were calibrated that way, and a
/// heavy neighbour from another module (a cluster, a failover) would eat
/// the CPU they assume.
pub fn gate(module: &'static str) -> Gate {
    use std::sync::{Condvar, Mutex};
    static STATE: Mutex<(Option<&'static str>, usize)> = Mutex::new((None, 0));
    static CHANGED: Condvar = Condvar::new();
    gameday::cli::quiet_logs();
    let mut s = STATE.lock().unwrap_or_else(|p| p.into_inner());
    while s.0.is_some_and(|m| m != module) {
        s = CHANGED.wait(s).unwrap_or_else(|p| p.into_inner());
    }
    *s = (Some(module), s.1 + 1);
    let started = std::time::Instant::now();
    Gate {
        release: Box::new(move || {
            log_test_time(started.elapsed());
            let mut s = STATE.lock().unwrap_or_else(|p| p.into_inner());
            s.1 -= 1;
            if s.1 == 0 {
                s.0 = None;
            }
            CHANGED.notify_all();
        }),
    }
}

/// With GAMEDAY_TEST_TIMES=FILE, each gated test appends its name and how
/// long it held the gate: how CI's test time is tracked down.
fn log_test_time(took: std::time::Duration) {
    use std::io::Write;
    let Some(path) = std::env::var_os("GAMEDAY_TEST_TIMES") else {
        return;
    };
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("?");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{:8.1} {name}", took.as_secs_f64());
    }
}

/// A test's place behind the gate, given up when the test ends (also when
/// it panics).
pub struct Gate {
    release: Box<dyn Fn() + Send>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        (self.release)();
    }
}
