//! `gameday proxy` driven by an independent Toxiproxy client from the
//! registries: toxiproxy-python 0.1.1 from PyPI, in a venv made for the
//! test (kept under the target directory between runs), against a real
//! redis-server. The script (tests/compat/toxiproxy_python.py) checks
//! each call's effect on real traffic.

use crate::common::{gameday, ChildGuard};
use gameday::testing::{free_port, RedisProcess, Role, TopologyPlan};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CLIENT: &str = "toxiproxy-python==0.1.1";

/// A venv holding the client, made once.
fn venv() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("toxiproxy-python-venv");
    let python = dir.join("bin/python");
    let ready = dir.join("installed");
    if !ready.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "python3 -m venv failed (ci/deps.sh installs python3-venv)"
        );
        let pip = Command::new(&python)
            .args(["-m", "pip", "install", "-q", CLIENT])
            .status()
            .expect("pip runs");
        assert!(pip.success(), "pip install {CLIENT} failed");
        std::fs::write(&ready, CLIENT).unwrap();
    }
    python
}

#[test]
fn toxiproxy_python_drives_gameday_proxy() {
    let _gate = crate::common::gate(module_path!());
    let python = venv();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let redis = rt
        .block_on(RedisProcess::start(
            "compat",
            Role::Primary,
            &TopologyPlan::standalone(),
        ))
        .unwrap();
    let port = free_port().unwrap();
    let _proxy = ChildGuard(
        gameday()
            .args(["proxy", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "gameday proxy did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/toxiproxy_python.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(port.to_string())
        .arg(redis.addr.port().to_string())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("every check passed"), "{text}");
    rt.block_on(redis.shutdown());
}
