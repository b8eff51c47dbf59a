//! `big_key` against what it causes: a 200 000-field hash read whole
//! (HGETALL) every 500 ms stalls the server's main thread for the length of
//! each read (as the server's own commandstats time it), so the workload's
//! slowest GET in the fault phase is at least about one read; deleting it with DEL stalls again, UNLINK
//! does not.

use crate::common::{phase, Scratch};

fn scenario(delete: &str) -> String {
    format!(
        r#"
name = "big"
duration = "9s"
seed = 6

[topology]
kind = "standalone"

[load]
users = 8
rate = 1000

[workload]
kind = "cache-aside"
keys = 1000
read_ratio = 0.9
ttl = "10m"
op_timeout = "2s"

[[fault]]
name = "big"
kind = "big_key"
fields = 200000
every = "500ms"
delete = "{delete}"
at = "3s"
for = "3s"
"#
    )
}

#[test]
fn a_big_key_stalls_the_other_commands() {
    let _gate = crate::common::gate(module_path!());
    let mut deletes = Vec::new();
    for delete in ["del", "unlink"] {
        let scratch = Scratch::new(&scenario(delete));
        let s = scratch.run_ok(&[]);
        let o = &s["faults"][0]["big_keys"][0];
        let reads = o["reads"].as_u64().unwrap();
        let read_ms = o["read_ms"].as_f64().unwrap();
        assert!(reads >= 3, "{o}");
        assert!(read_ms > 5.0, "the server's HGETALL of 200 000 fields: {o}");
        let fault = phase(&s, "fault:big");
        assert_eq!(fault["metrics"]["big_key_read_ms"].as_f64(), Some(read_ms));
        let max_get_ms = fault["ops"]["redis_get"]["max_us"].as_f64().unwrap() / 1e3;
        let base_get_ms = phase(&s, "baseline")["ops"]["redis_get"]["max_us"]
            .as_f64()
            .unwrap()
            / 1e3;
        eprintln!("big_key ({delete}): {reads} reads, {read_ms:.1} ms each in the server; GET max {max_get_ms:.1} ms in the fault, {base_get_ms:.1} ms before; delete {} ms", o["delete_ms"]);
        // A GET that arrived during a read waited for it.
        assert!(
            max_get_ms >= 0.5 * read_ms,
            "GET max {max_get_ms} ms, big read {read_ms} ms"
        );
        assert!(max_get_ms > base_get_ms, "{max_get_ms} vs {base_get_ms}");
        deletes.push(o["delete_ms"].as_f64().unwrap());
    }
    assert!(
        deletes[1] < deletes[0],
        "UNLINK {} ms vs DEL {} ms",
        deletes[1],
        deletes[0]
    );
}
