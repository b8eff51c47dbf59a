//! `run::run`, called in-process as the CLI calls it: a real redis-server
//! behind the embedded proxy, a 50 ms latency fault, and the outcome it
//! returns agrees with the summary.json it wrote, read back through the
//! typed `Summary`.

use gameday::RunOptions;
use gameday::Summary;
use std::path::Path;
use tokio::sync::watch;

const SCENARIO: &str = r#"name = "seam"
duration = "6s"
seed = 7

[topology]
kind = "standalone"

[load]
users = 4
rate = 200

[workload]
kind = "cache-aside"
keys = 100

[[fault]]
name = "slow"
kind = "latency"
latency = "50ms"
at = "2s"
for = "2s"

expect = ["baseline.caller_errors == 0", "fault:slow.redis_get.p50 >= 45ms"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_seam_reports_what_was_injected() {
    let _gate = crate::common::gate(module_path!());
    let plan = gameday::parse_scenario(Path::new("seam.toml"), SCENARIO).unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        out_dir: Some(out_dir.path().join("report")),
        ..RunOptions::default()
    };
    let (_shutdown_tx, shutdown) = watch::channel(false);
    let outcome = gameday::run(&plan, &opts, shutdown).await.unwrap();
    assert!(outcome.passed, "{:#?}", outcome.summary.expectations);
    let text = std::fs::read_to_string(outcome.dir.join("summary.json")).unwrap();
    let written: Summary = serde_json::from_str(&text).unwrap();
    assert_eq!(written.run_id, outcome.summary.run_id);
    assert_eq!(written.verdict, "pass");
    assert_eq!(written.seed, 7);
    let names: Vec<&str> = written.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["baseline", "fault:slow", "recovery:slow", "run"]);
    let fault = &written.phases[1];
    let p50_ms = fault.ops["redis_get"].p50_us as f64 / 1e3;
    assert!(
        (45.0..=60.0).contains(&p50_ms),
        "fault-phase GET p50 {p50_ms} ms, injected 50 ms"
    );
    let baseline_ms = written.phases[0].ops["redis_get"].p50_us as f64 / 1e3;
    assert!(baseline_ms < 10.0, "baseline GET p50 {baseline_ms} ms");
    assert_eq!(written.faults[0].kind, "latency");
    assert!(written.faults[0].removed_at_s.is_some());
}
