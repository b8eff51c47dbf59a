//! The lock workload's oracle against a forced GC pause longer than the
//! lock's TTL: the lock expires under the paused holder, another takes it,
//! and the paused one writes late. Without fencing the resource takes that
//! stale write; with fencing it refuses it. With no pause, the lock holds.

use crate::common;
use crate::common::Scratch;
use serde_json::Value;

fn scenario(fencing: bool, pause: bool) -> String {
    let fault = if pause {
        "[[fault]]\nname = \"gc\"\nkind = \"gc_pause\"\nat = \"3s\"\nfor = \"1s\"\n"
    } else {
        ""
    };
    format!(
        r#"
name = "lock"
duration = "7s"

[topology]
kind = "standalone"

[load]
users = 8
rate = 100

[workload]
kind = "lock"
locks = 1
lock_ttl = "300ms"
critical_section = "5ms"
fencing = {fencing}
acquire_timeout = "2s"

{fault}"#
    )
}

fn run_metrics(fencing: bool, pause: bool) -> Value {
    let scratch = Scratch::new(&scenario(fencing, pause));
    let s = scratch.run_ok(&[]);
    scratch.assert_nothing_left();
    common::phase(&s, "run")["metrics"].clone()
}

#[test]
fn a_pause_longer_than_the_ttl_corrupts_without_fencing_and_not_with_it() {
    let _gate = crate::common::gate(module_path!());
    let off = run_metrics(false, true);
    assert!(off["overlaps"].as_f64().unwrap() >= 1.0, "{off}");
    assert!(
        off["stale_writes_accepted"].as_f64().unwrap() >= 1.0,
        "{off}"
    );
    assert_eq!(off["stale_writes_rejected"], 0.0, "{off}");

    let on = run_metrics(true, true);
    // The lock is still held twice at once: fencing does not prevent that…
    assert!(on["overlaps"].as_f64().unwrap() >= 1.0, "{on}");
    // …but the resource refuses the late holder's write.
    assert_eq!(on["stale_writes_accepted"], 0.0, "{on}");
    assert!(on["stale_writes_rejected"].as_f64().unwrap() >= 1.0, "{on}");
}

#[test]
fn without_a_pause_the_lock_holds() {
    let _gate = crate::common::gate(module_path!());
    let m = run_metrics(false, false);
    assert_eq!(m["overlaps"], 0.0, "{m}");
    assert_eq!(m["stale_writes_accepted"], 0.0, "{m}");
    assert_eq!(m["acquire_failures"], 0.0, "{m}");
    assert_eq!(m["caller_errors"], 0.0, "{m}");
}

/// The shipped scenario compares fencing off and on in one run: one report
/// per variant and a comparison, with the rules for each variant judged on
/// that variant only.
#[test]
fn lock_gc_pause_compares_fencing_off_and_on() {
    let _gate = crate::common::gate(module_path!());
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/lock-gc-pause.toml"),
    )
    .unwrap();
    let scratch = Scratch::new(&text);
    scratch.run_ok(&[]);
    let dir = scratch.report();
    let c: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("comparison.json")).unwrap())
            .unwrap();
    assert_eq!(c["verdict"], "pass");
    let names: Vec<&str> = c["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["variant"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fencing-off", "fencing-on"]);
    for name in names {
        let s: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(name).join("summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(s["variant"], name);
        // Each variant is judged on the shared rules and its own.
        let rules: Vec<&str> = s["expectations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["rule"].as_str().unwrap())
            .collect();
        assert!(rules
            .iter()
            .all(|r| !r.contains('/') || r.starts_with(name)));
        let own = if name == "fencing-off" { 1 } else { 2 };
        assert_eq!(rules.len(), 3 + own, "{rules:?}");
    }
    assert!(dir.join("report.html").is_file());
    scratch.assert_nothing_left();
}
