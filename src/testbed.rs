//! What a run ran on, as summary.json records it: the testbed fingerprint
//! (CPU model, cores, kernel, Redis version, gameday version), which decides
//! whether two runs may be compared, and the commit under test.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// Two runs are comparable only on equal fingerprints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Testbed {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    /// `redis_version` of the first node; `unknown` if it did not answer.
    pub redis_version: String,
    pub gameday_version: String,
}

impl Testbed {
    /// This machine, and the Redis at `node` (its real address).
    pub async fn probe(node: Option<SocketAddr>) -> Testbed {
        let info = match node {
            Some(addr) => {
                crate::redis_admin::ask::<String>(
                    addr,
                    &crate::redis_admin::cmd(&["INFO", "server"]),
                    Duration::from_secs(2),
                )
                .await
            }
            None => None,
        };
        let redis_version = info
            .as_deref()
            .and_then(|i| crate::redis_admin::info_field(i, "redis_version"))
            .unwrap_or("unknown")
            .to_string();
        Testbed {
            cpu: cpu_model(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            redis_version,
            gameday_version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// The fields that differ from `other`, as `name: ours ≠ theirs`.
    pub fn differences(&self, other: &Testbed) -> Vec<String> {
        let pairs = [
            ("cpu", self.cpu.clone(), other.cpu.clone()),
            ("cores", self.cores.to_string(), other.cores.to_string()),
            ("kernel", self.kernel.clone(), other.kernel.clone()),
            (
                "redis_version",
                self.redis_version.clone(),
                other.redis_version.clone(),
            ),
            (
                "gameday_version",
                self.gameday_version.clone(),
                other.gameday_version.clone(),
            ),
        ];
        pairs
            .into_iter()
            .filter(|(_, a, b)| a != b)
            .map(|(n, a, b)| format!("{n} `{a}` ≠ `{b}`"))
            .collect()
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The commit under test: `GAMEDAY_COMMIT`, else the HEAD of the git
/// checkout gameday runs in, else none.
pub fn commit() -> Option<String> {
    if let Ok(c) = std::env::var("GAMEDAY_COMMIT") {
        let c = c.trim().to_string();
        return (!c.is_empty()).then_some(c);
    }
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let head = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !head.is_empty()).then_some(head)
}
