//! Bad scenarios are refused with the file, line and column of the culprit,
//! and `gameday run` on one exits 2 and starts nothing.

use gameday::ScenarioError;
use std::path::Path;
use std::process::Command;

const GOOD: &str = r#"name = "t"
duration = "20s"

[topology]
kind = "standalone"

[load]
users = 4
rate = 100

[workload]
kind = "cache-aside"
read_ratio = 0.9

[[fault]]
name = "outage"
kind = "down"
at = "5s"
for = "5s"
"#;

fn refuse(text: &str) -> ScenarioError {
    gameday::parse_scenario(Path::new("bad.toml"), text).expect_err("must be refused")
}

/// The 1-based line of the first occurrence of `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle present")
        + 1
}

fn assert_points_at(text: &str, needle: &str, message_part: &str) {
    let err = refuse(text);
    let shown = err.to_string();
    assert_eq!(err.file, "bad.toml");
    assert_eq!(err.line, line_of(text, needle), "wrong line in: {shown}");
    assert!(err.col >= 1);
    assert!(
        shown.starts_with(&format!("bad.toml:{}:", err.line)),
        "{shown}"
    );
    assert!(
        shown.contains(message_part),
        "`{message_part}` missing from: {shown}"
    );
}

#[test]
fn the_good_scenario_is_accepted() {
    let _gate = crate::common::gate(module_path!());
    let plan = gameday::parse_scenario(Path::new("good.toml"), GOOD).unwrap();
    assert_eq!(plan.faults.len(), 1);
}

#[test]
fn unknown_keys_are_named_with_their_place() {
    let _gate = crate::common::gate(module_path!());
    let text = GOOD.replace("users = 4", "users = 4\nusres = 5");
    assert_points_at(&text, "usres", "unknown field `usres`");
    let text = GOOD.replace("at = \"5s\"", "at = \"5s\"\ntargte = \"primary\"");
    assert_points_at(&text, "targte", "unknown field `targte`");
}

#[test]
fn bad_durations_are_refused() {
    let _gate = crate::common::gate(module_path!());
    let text = GOOD.replace("duration = \"20s\"", "duration = \"twenty seconds\"");
    assert_points_at(&text, "twenty", "invalid duration");
    let text = GOOD.replace("for = \"5s\"", "for = \"5\"");
    assert_points_at(&text, "for = ", "invalid duration");
}

#[test]
fn impossible_values_are_refused() {
    let _gate = crate::common::gate(module_path!());
    assert_points_at(
        &GOOD.replace("rate = 100", "rate = 0"),
        "rate = 0",
        "`rate` must be above 0",
    );
    assert_points_at(
        &GOOD.replace("users = 4", "users = 0"),
        "users = 0",
        "`users` must be at least 1",
    );
    assert_points_at(
        &GOOD.replace("read_ratio = 0.9", "read_ratio = 1.5"),
        "read_ratio",
        "between 0 and 1",
    );
    assert_points_at(
        &GOOD.replace("read_ratio = 0.9", "read_ratio = 0.9\nttl_jitter = -0.1"),
        "ttl_jitter",
        "between 0 and 1",
    );
}

#[test]
fn faults_outside_the_run_are_refused() {
    let _gate = crate::common::gate(module_path!());
    let text = GOOD.replace("at = \"5s\"", "at = \"18s\"");
    assert_points_at(&text, "at = \"18s\"", "past the end of the run");
}

#[test]
fn overlapping_faults_are_refused() {
    let _gate = crate::common::gate(module_path!());
    let text = format!("{GOOD}\n[[fault]]\nname = \"slow\"\nkind = \"latency\"\nlatency = \"50ms\"\nat = \"8s\"\nfor = \"4s\"\n");
    assert_points_at(&text, "at = \"8s\"", "overlaps fault `outage`");
}

#[test]
fn expectations_are_checked_at_validation() {
    let _gate = crate::common::gate(module_path!());
    let text =
        format!("expect = [\"baseline.p99 < 5ms\", \"fault:nope.caller_errors == 0\"]\n{GOOD}");
    assert_points_at(&text, "fault:nope", "names no fault");
}

#[test]
fn fault_parameters_must_fit_the_kind() {
    let _gate = crate::common::gate(module_path!());
    let text = GOOD.replace("kind = \"down\"", "kind = \"latency\"");
    assert_points_at(&text, "name = \"outage\"", "needs `latency`");
    let text = GOOD.replace("kind = \"down\"", "kind = \"down\"\nlatency = \"5ms\"");
    assert_points_at(&text, "name = \"outage\"", "does not apply");
}

#[test]
fn node_memory_failover_and_client_faults_are_checked_against_the_scenario() {
    let _gate = crate::common::gate(module_path!());
    // A failover needs Sentinel or Cluster, and a mode.
    let text = GOOD.replace("kind = \"down\"", "kind = \"failover\"\nmode = \"manual\"");
    assert_points_at(
        &text,
        "name = \"outage\"",
        "needs a sentinel or cluster topology",
    );
    let text = GOOD
        .replace("kind = \"standalone\"", "kind = \"sentinel\"")
        .replace("kind = \"down\"", "kind = \"failover\"");
    assert_points_at(&text, "name = \"outage\"", "needs `mode`");
    // `mode` belongs to failovers only.
    let text = GOOD.replace("kind = \"down\"", "kind = \"kill\"\nmode = \"manual\"");
    assert_points_at(&text, "mode = ", "applies to kind `failover` only");
    // memory_pressure needs something to do.
    let text = GOOD.replace("kind = \"down\"", "kind = \"memory_pressure\"");
    assert_points_at(&text, "name = \"outage\"", "needs `maxmemory`");
    let text = GOOD.replace(
        "kind = \"down\"",
        "kind = \"memory_pressure\"\nballast = \"10kb\"",
    );
    assert_points_at(&text, "name = \"outage\"", "at least 1mb");
    // A node fault takes no toxic parameters.
    let text = GOOD.replace("kind = \"down\"", "kind = \"pause\"\nlatency = \"5ms\"");
    assert_points_at(&text, "name = \"outage\"", "acts on the node itself");
    // A gc_pause stalls a lock holder.
    let text = GOOD.replace("kind = \"down\"", "kind = \"gc_pause\"");
    assert_points_at(
        &text,
        "name = \"outage\"",
        "needs the lock or queue workload",
    );
}

#[test]
fn workload_keys_are_checked_against_the_workload() {
    let _gate = crate::common::gate(module_path!());
    let session = GOOD.replace("kind = \"cache-aside\"", "kind = \"session\"");
    assert_points_at(
        &session.replace("read_ratio = 0.9", "read_ratio = 0.9\nkeys = 10"),
        "keys = 10",
        "applies to the cache-aside, throughput, write-behind, replica-reads and two-level workloads",
    );
    assert_points_at(
        &session.replace(
            "read_ratio = 0.9",
            "read_ratio = 0.9\non_redis_error = { policy = \"fallback\" }",
        ),
        "on_redis_error",
        "only policy is `fail`",
    );
    assert_points_at(
        &session.replace("read_ratio = 0.9", "read_ratio = 0.9\nsessions = 2"),
        "sessions = 2",
        "every user needs a session",
    );
    let raw = GOOD.replace("kind = \"cache-aside\"", "kind = \"throughput\"");
    for (key, says) in [
        ("pipeline = 0", "must be at least 1"),
        ("pipeline = 1001", "at most 1000 requests per round trip"),
        ("value_size = 5", "between 21 bytes"),
        ("fencing = true", "applies to the lock workload"),
    ] {
        assert_points_at(
            &raw.replace("read_ratio = 0.9", &format!("read_ratio = 0.9\n{key}")),
            key,
            says,
        );
    }
    let queue = GOOD.replace(
        "kind = \"cache-aside\"\nread_ratio = 0.9",
        "kind = \"queue\"\nconsumers = 2",
    );
    for (key, says) in [
        (
            "process_time = \"200ms\"",
            "must be longer than a batch's processing time",
        ),
        (
            "claim_after = \"40ms\"",
            "`batch` 10 × `process_time` 5ms = 50ms",
        ),
        ("maxlen = 0", "must be at least 1"),
        ("consumers = 0", "must be at least 1"),
        ("idempotency = []", "lists no value"),
        ("claim_atfer = \"1s\"", "unknown field `claim_atfer`"),
        ("read_ratio = 0.5", "applies to the cache-aside"),
    ] {
        let text = queue.replace("consumers = 2", key);
        assert_points_at(&text, key.split(' ').next().unwrap(), says);
    }
    let wb = GOOD.replace(
        "kind = \"cache-aside\"\nread_ratio = 0.9",
        "kind = \"write-behind\"\nlanes = 4",
    );
    for (key, says) in [
        ("keys = 3", "3 keys for 4 users"),
        ("lanes = 0", "must be at least 1"),
        ("lanes = 5000", "must be at most 1024"),
        ("flush_interval = \"0s\"", "flush_interval"),
        (
            "modes = [\"write-behind\", \"write-behind\"]",
            "lists `write-behind` twice",
        ),
        ("modes = []", "`modes` lists none"),
        ("mode = \"write-around\"", "unknown variant `write-around`"),
        ("claim_after = \"1s\"", "applies to the queue workload"),
    ] {
        let text = wb.replace("lanes = 4", key);
        assert_points_at(&text, key.split(' ').next().unwrap(), says);
    }
    // replica-reads: replicas to read from, a bound before a fallback.
    let rr = GOOD.replace(
        "kind = \"cache-aside\"\nread_ratio = 0.9",
        "kind = \"replica-reads\"\nkeys = 100",
    );
    let replicated = rr.replace("kind = \"standalone\"", "kind = \"replicated\"");
    for (text, at, says) in [
        (
            rr.clone(),
            "kind = \"replica-reads\"",
            "this topology has no replicas to read from",
        ),
        (
            rr.replace("keys = 100", "max_staleness = \"100ms\""),
            "max_staleness",
            "`max_staleness` bounds replica reads, but this topology has no replicas",
        ),
        (
            rr.replace(
                "kind = \"standalone\"",
                "kind = \"cluster\"\nreplicas_per_master = 0",
            ),
            "kind = \"replica-reads\"",
            "or a cluster with `replicas_per_master` of 1 or more",
        ),
        (
            replicated.replace("keys = 100", "fallback = true"),
            "fallback",
            "`fallback` needs `max_staleness`",
        ),
        (
            replicated.replace("keys = 100", "max_staleness = \"0s\""),
            "max_staleness",
            "max_staleness",
        ),
        (
            replicated.replace("keys = 100", "keys = 2"),
            "keys = 2",
            "2 keys for 4 users",
        ),
        (
            replicated.replace("keys = 100", "lanes = 2"),
            "lanes",
            "applies to the write-behind workload",
        ),
    ] {
        assert_points_at(&text, at, says);
    }
    gameday::parse_scenario(Path::new("good.toml"), &replicated).expect("replicated is fine");
    // two-level: instances need users, replicas to subscribe on.
    let tl = GOOD.replace(
        "kind = \"cache-aside\"\nread_ratio = 0.9",
        "kind = \"two-level\"\ninstances = 2",
    );
    for (key, says) in [
        ("instances = 5", "`instances` must be at most `users` (4)"),
        ("instances = 0", "must be at least 1"),
        ("subscribe = \"replicas\"", "needs replicas"),
        ("subscribe = \"everywhere\"", "unknown variant `everywhere`"),
        ("keys = 3", "3 keys for 4 users"),
        ("max_staleness = \"0s\"", "max_staleness"),
        ("flush_on_reconnect = [true, true]", "lists a value twice"),
        ("fallback = true", "applies to the replica-reads workload"),
    ] {
        let text = tl.replace("instances = 2", key);
        assert_points_at(&text, key.split(' ').next().unwrap(), says);
    }
    // On a Cluster, PUBLISH reaches every node: no replicas to pick.
    let cluster = tl.replace("kind = \"standalone\"", "kind = \"cluster\"");
    assert_points_at(
        &cluster.replace("instances = 2", "subscribe = \"replicas\""),
        "subscribe",
        "needs replicas",
    );
    assert_points_at(
        &wb.replace(
            "lanes = 4",
            "mode = \"write-through\"\nmodes = [\"write-behind\"]",
        ),
        "modes",
        "give `mode` (one) or `modes`",
    );
    let text = format!(
        "expect = [\"nope/run.overlaps == 0\"]\n{}",
        GOOD.replace(
            "kind = \"cache-aside\"\nread_ratio = 0.9",
            "kind = \"lock\"\nfencing = [false, true]"
        )
    );
    assert_points_at(&text, "nope/", "names no variant");
    let rl = GOOD.replace(
        "kind = \"cache-aside\"\nread_ratio = 0.9",
        "kind = \"rate-limit\"\non_redis_error = { policy = \"fallback\" }",
    );
    assert_points_at(&rl, "on_redis_error", "`fail_open`");
    assert_points_at(
        &GOOD.replace("read_ratio = 0.9", "read_ratio = 0.9\nlimit = 5"),
        "limit = 5",
        "applies to the rate-limit workload",
    );
    let st = GOOD.replace(
        "kind = \"cache-aside\"\nread_ratio = 0.9",
        "kind = \"stampede\"\nstrategy = \"lock\"\nstrategies = [\"none\"]",
    );
    assert_points_at(&st, "strategies", "not both");
    let lock = GOOD.replace(
        "kind = \"cache-aside\"\nread_ratio = 0.9",
        "kind = \"lock\"\nlock_ttl = \"10ms\"\ncritical_section = \"20ms\"",
    );
    assert_points_at(&lock, "critical_section", "shorter than `lock_ttl`");
    assert_points_at(
        &GOOD.replace("read_ratio = 0.9", "read_ratio = 0.9\nfencing = true"),
        "fencing",
        "applies to the lock workload",
    );
}

fn gameday() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gameday"))
}

#[test]
fn run_on_a_bad_file_exits_2_and_starts_nothing() {
    let _gate = crate::common::gate(module_path!());
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, GOOD.replace("rate = 100", "rate = 0")).unwrap();
    let scratch = tmp.path().join("tmp");
    std::fs::create_dir(&scratch).unwrap();
    let out = gameday()
        .args([
            "run",
            bad.to_str().unwrap(),
            "--out",
            tmp.path().join("report").to_str().unwrap(),
        ])
        .env("TMPDIR", &scratch)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:9:"), "names the place: {stderr}");
    assert!(!tmp.path().join("report").exists(), "no report directory");
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "no node directory was created"
    );

    let out = gameday()
        .args(["validate", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = gameday()
        .args(["run", tmp.path().join("missing.toml").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the scenario"));
}

#[test]
fn every_shipped_scenario_validates() {
    let _gate = crate::common::gate(module_path!());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            gameday::load_scenario(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[test]
fn topology_keys_must_fit_the_kind() {
    let _gate = crate::common::gate(module_path!());
    let text = GOOD.replace(
        "kind = \"standalone\"",
        "kind = \"standalone\"\nreplicas = 2",
    );
    assert_points_at(
        &text,
        "replicas = 2",
        "applies to replicated and sentinel topologies, not standalone",
    );
    let text = GOOD.replace("kind = \"standalone\"", "kind = \"cluster\"\nmasters = 2");
    assert_points_at(&text, "masters = 2", "`masters` must be between 3 and 9");
    let text = GOOD.replace(
        "kind = \"standalone\"",
        "kind = \"sentinel\"\ndown_after = \"0s\"",
    );
    assert_points_at(&text, "down_after", "longer than 0s");
    let text = GOOD.replace(
        "kind = \"standalone\"",
        "kind = \"replicated\"\ncluster_node_timeout = \"2s\"",
    );
    assert_points_at(
        &text,
        "cluster_node_timeout",
        "applies to cluster topologies",
    );
    let text = GOOD.replace("at = \"5s\"", "at = \"5s\"\ntarget = \"sentinels\"");
    assert_points_at(
        &text,
        "target = \"sentinels\"",
        "a standalone topology has no sentinels",
    );
}

#[test]
fn open_model_keys_are_checked_at_their_place() {
    let _gate = crate::common::gate(module_path!());
    let open = |keys: &str| GOOD.replace("users = 4\nrate = 100", keys);
    let ok = open(
        "model = \"open\"\nrate = 100\nmax_in_flight = 8\nmax_queue = 0\narrivals = \"poisson\"",
    );
    let plan = gameday::parse_scenario(Path::new("good.toml"), &ok).unwrap();
    assert_eq!(plan.load.users, 8, "one client per slot");
    assert_points_at(
        &open("model = \"open\"\nmax_in_flight = 8"),
        "model = \"open\"",
        "needs a `rate`",
    );
    assert_points_at(
        &open("model = \"open\"\nrate = 100\nusers = 4"),
        "users = 4",
        "has no users",
    );
    assert_points_at(
        &open("model = \"open\"\nrate = 100\nmax_queue = -1"),
        "max_queue",
        "between 0 and 1000000",
    );
    assert_points_at(
        &open("model = \"open\"\nrate = 100\nmax_in_flight = 0"),
        "max_in_flight",
        "between 1 and 10000",
    );
    assert_points_at(
        &open("model = \"open\"\nrate = 100\narrivals = \"bursty\""),
        "arrivals",
        "unknown variant",
    );
    assert_points_at(
        &open("model = \"lifo\"\nrate = 100"),
        "model",
        "unknown variant",
    );
    assert_points_at(
        &open("users = 4\nmax_queue = 10"),
        "max_queue",
        "belongs to the open model",
    );
    assert_points_at(&open("rate = 100"), "[load]", "needs `users`");
}

#[test]
fn load_stages_are_checked_at_their_place() {
    let _gate = crate::common::gate(module_path!());
    // Stages go in [load], just before [workload].
    let staged = |stages: &str| GOOD.replace("\n[workload]", &format!("{stages}\n[workload]"));
    let ok = staged("[[load.stage]]\nrate = 50\nfor = \"5s\"\n[[load.stage]]\nname = \"peak\"\nramp_to = 300\nfor = \"10s\"\n");
    let plan = gameday::parse_scenario(Path::new("good.toml"), &ok).unwrap();
    assert_eq!(plan.load.stages.len(), 2);
    assert_eq!(plan.load.stages[1].from, 50.0);
    assert_points_at(
        &staged(
            "[[load.stage]]\nrate = 50\nfor = \"15s\"\n[[load.stage]]\nrate = 60\nfor = \"10s\"\n",
        ),
        "for = \"10s\"",
        "past `duration`",
    );
    assert_points_at(
        &staged("[[load.stage]]\nrate = 50\nramp_to = 60\nfor = \"5s\"\n"),
        "[[load.stage]]",
        "exactly one",
    );
    assert_points_at(
        &staged("[[load.stage]]\nrate = 50\nfor = \"5s\"\n[[load.stage]]\nname = \"1\"\nrate = 60\nfor = \"5s\"\n"),
        "name = \"1\"",
        "comes earlier",
    );
    let no_rate =
        staged("[[load.stage]]\nramp_to = 60\nfor = \"5s\"\n").replace("rate = 100\n", "");
    assert_points_at(&no_rate, "ramp_to = 60", "ramps from [load] `rate`");
    let rule = format!("expect = [\"stage:nope.p99 < 5ms\"]\n{ok}");
    assert_points_at(&rule, "stage:nope", "names no stage");
}

#[test]
fn capacity_searches_are_checked_at_their_place() {
    let _gate = crate::common::gate(module_path!());
    let open = GOOD.replace("users = 4\nrate = 100", "model = \"open\"");
    let search = |keys: &str| format!("{open}\n[capacity]\n{keys}\n");
    let ok = search("start = 100\nfactor = 2\nmax = 1000\nhold = \"2s\"\nslo = [\"p99 < 50ms\", \"shed == 0\", \"error_rate < 1%\"]");
    let plan = gameday::parse_scenario(Path::new("good.toml"), &ok).unwrap();
    assert_eq!(plan.capacity.unwrap().slo.len(), 3);
    assert_points_at(
        &search("start = 100\nfactor = 2\nmax = 1000\nhold = \"2s\"\nslo = []"),
        "slo = []",
        "needs SLO rules",
    );
    assert_points_at(
        &search("start = 100\nfactor = 2\nmax = 1000\nhold = \"2s\""),
        "[capacity]",
        "needs SLO rules",
    );
    assert_points_at(
        &search("start = 100\nfactor = 2\nmax = 1000\nhold = \"2s\"\nslo = [\"run.p99 < 5ms\"]"),
        "slo = [",
        "names no phase",
    );
    assert_points_at(
        &search("start = 100\nfactor = 1\nmax = 1000\nhold = \"2s\"\nslo = [\"p99 < 5ms\"]"),
        "factor = 1",
        "above 1",
    );
    assert_points_at(
        &search(
            "start = 100\nfactor = 2\nstep = 50\nmax = 1000\nhold = \"2s\"\nslo = [\"p99 < 5ms\"]",
        ),
        "[capacity]",
        "exactly one",
    );
    let closed = format!("{GOOD}\n[capacity]\nstart = 100\nfactor = 2\nmax = 1000\nhold = \"2s\"\nslo = [\"p99 < 5ms\"]\n");
    assert_points_at(&closed, "[capacity]", "needs [load] `model = \"open\"`");
}

#[test]
fn command_faults_are_checked_at_their_place() {
    let _gate = crate::common::gate(module_path!());
    let fault = |keys: &str| {
        GOOD.replace(
            "kind = \"down\"",
            &format!("kind = \"redis_error\"\n{keys}"),
        )
    };
    let ok = fault("error = \"OOM\"\ncommands = [\"GET\"]\nkeys = \"user:*\"\nprobability = 0.25");
    gameday::parse_scenario(Path::new("good.toml"), &ok).unwrap();
    assert_points_at(
        &fault("error = \"NOPE\""),
        "error = \"NOPE\"",
        "unknown Redis error `NOPE`",
    );
    assert_points_at(
        &fault("error = \"OOM\"\nprobability = 1.5"),
        "probability = 1.5",
        "between 0 and 1",
    );
    assert_points_at(
        &fault("error = \"OOM\"\nprobability = 0.5\nevery = 3"),
        "probability = 0.5",
        "not both",
    );
    assert_points_at(
        &fault("error = \"OOM\"\nevery = 0"),
        "every = 0",
        "at least 1",
    );
    assert_points_at(
        &fault("error = \"OOM\"\nkeys = \"[a\""),
        "keys = \"[a\"",
        "not a glob",
    );
    assert_points_at(
        &fault("commands = [\"GET\"]"),
        "name = \"outage\"",
        "needs `error`",
    );
    assert_points_at(
        &fault("error = \"OOM\"\nlatency = \"5ms\""),
        "name = \"outage\"",
        "`latency` does not apply to kind `redis_error`",
    );
    let slow = GOOD.replace(
        "kind = \"down\"",
        "kind = \"slow_commands\"\ncommands = [\"SET\"]",
    );
    assert_points_at(&slow, "name = \"outage\"", "needs `latency`");
    gameday::parse_scenario(
        Path::new("good.toml"),
        &slow.replace("[\"SET\"]", "[\"SET\"]\nlatency = \"20ms\""),
    )
    .unwrap();
}

#[test]
fn replica_resyncs_are_checked_at_their_place() {
    let _gate = crate::common::gate(module_path!());
    let fault = |topology: &str, keys: &str| {
        GOOD.replace("kind = \"standalone\"", topology).replace(
            "kind = \"down\"",
            &format!("kind = \"replica_resync\"\n{keys}"),
        )
    };
    let replicated = "kind = \"replicated\"\nreplicas = 1";
    let ok = fault(replicated, "target = \"replicas\"\nbacklog = \"1mb\"");
    gameday::parse_scenario(Path::new("good.toml"), &ok).unwrap();
    assert_points_at(
        &fault("kind = \"sentinel\"\nreplicas = 1", "target = \"replicas\""),
        "name = \"outage\"",
        "needs [topology] kind = \"replicated\"",
    );
    assert_points_at(
        &fault(replicated, "target = \"primary\""),
        "target = \"primary\"",
        "cuts replicas off",
    );
    assert_points_at(
        &fault(replicated, "target = \"replicas\"\nbacklog = \"1kb\""),
        "backlog = \"1kb\"",
        "between 16kb",
    );
}

#[test]
fn stop_conditions_are_checked_at_their_place() {
    let _gate = crate::common::gate(module_path!());
    let with = |rules: &str| {
        GOOD.replace(
            "duration = \"20s\"",
            &format!("duration = \"20s\"\nabort_if = {rules}"),
        )
    };
    let plan = gameday::parse_scenario(
        Path::new("good.toml"),
        &with("[\"run.caller_errors > 500\", \"fault:*.p99 > 2s\"]"),
    )
    .unwrap();
    assert_eq!(plan.abort_if.len(), 2);
    assert_points_at(
        &with("[\"fault:nope.p99 > 2s\"]"),
        "abort_if",
        "names no fault",
    );
    assert_points_at(&with("[\"run.p99 >\"]"), "abort_if", "expected");
}

#[test]
fn tls_and_auth_keys_are_checked_at_their_place() {
    let _gate = crate::common::gate(module_path!());
    let with = |lines: &str| {
        GOOD.replace(
            "kind = \"standalone\"",
            &format!("kind = \"standalone\"\n{lines}"),
        )
    };
    let text = with("tls = true\nca_file = \"ca.crt\"");
    assert_points_at(
        &text,
        "ca_file",
        "`ca_file` needs backend = \"external\" and tls = true",
    );
    let text = with("auth = { user = \"app\", password_env = \"NOT A VAR\" }");
    assert_points_at(
        &text,
        "auth =",
        "`password_env` must name an environment variable",
    );
    let text = with("auth = { user = \"\", password_env = \"REDIS_PASSWORD\" }");
    assert_points_at(&text, "auth =", "`user` must be non-empty");
    let text = with("auth = { user = \"app\", password = \"plain\" }");
    assert_points_at(&text, "auth =", "unknown field `password`");
    let text = with("tls = \"yes\"");
    assert_points_at(&text, "tls =", "invalid type");
    gameday::parse_scenario(
        Path::new("ok.toml"),
        &with("tls = true\nauth = { user = \"app\", password_env = \"REDIS_PASSWORD\" }"),
    )
    .expect("tls and auth are accepted");
}
