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

/// How fast the testbed itself was around a run, measured where no system
/// under test can change it: the wall time of a fixed piece of CPU work
/// just before the load starts and just after it ends, and the share of
/// CPU time the hypervisor gave to other guests meanwhile (steal). A
/// noisy neighbour shows here; a slower build of the service does not.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The fixed work's wall time before the load, µs (median of 7).
    pub before_us: f64,
    /// The same after the load.
    pub after_us: f64,
    /// Steal over the run, % of all CPU time; none off Linux or in a
    /// guest that does not report it.
    pub steal_pct: Option<f64>,
}

impl Calibration {
    /// The slower of the two measurements.
    pub fn slowest_us(&self) -> f64 {
        self.before_us.max(self.after_us)
    }
}

/// Iterations of the fixed work: a few milliseconds on a current core.
const WORK: u64 = 1 << 23;

/// The wall time of the fixed work, µs: the median of 7 repetitions, so
/// that one preemption does not count but a busy machine does. Blocking
/// (~100 ms): call it off the async workers.
pub fn work_time_us() -> f64 {
    let mut times: Vec<f64> = (0..7)
        .map(|_| {
            let t = std::time::Instant::now();
            let mut x = std::hint::black_box(0x9e37_79b9_7f4a_7c15u64);
            for _ in 0..WORK {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            std::hint::black_box(x);
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// CPU time counters of /proc/stat: (steal, total), in ticks.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice]:
    // guest time is already counted in user.
    let steal = *ticks.get(7)?;
    Some((steal, ticks.iter().take(8).sum()))
}

/// Measures the testbed around a run: `start` before the load, `finish`
/// after it.
pub struct Calibrator {
    before_us: f64,
    ticks: Option<(u64, u64)>,
}

impl Calibrator {
    pub async fn start() -> Calibrator {
        let before_us = tokio::task::spawn_blocking(work_time_us)
            .await
            .unwrap_or(f64::NAN);
        Calibrator {
            before_us,
            ticks: cpu_ticks(),
        }
    }

    /// The calibration; none if a measurement could not be made (its
    /// thread died), so that no NaN reaches summary.json.
    pub async fn finish(self) -> Option<Calibration> {
        let ticks = cpu_ticks();
        let after_us = tokio::task::spawn_blocking(work_time_us)
            .await
            .unwrap_or(f64::NAN);
        let steal_pct = self.ticks.zip(ticks).and_then(|((s0, t0), (s1, t1))| {
            (t1 > t0).then(|| s1.saturating_sub(s0) as f64 * 100.0 / (t1 - t0) as f64)
        });
        let c = Calibration {
            before_us: self.before_us,
            after_us,
            steal_pct,
        };
        (c.before_us.is_finite() && c.after_us.is_finite()).then_some(c)
    }
}
