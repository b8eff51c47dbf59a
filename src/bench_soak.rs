//! `gameday bench soak --minutes M`: a long cache-aside run (with a fault
//! every five minutes, so phases and recoveries pile up as in a rehearsal)
//! by this very binary, its resident memory read from /proc every minute.
//! Memory is bounded when RSS at M minutes stays under 1.5× RSS at 10
//! (for M < 10: at 1 minute); the ratio is printed, and exit 1 says it
//! did not hold.

use anyhow::{bail, Context};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The bound: RSS at the end over RSS at the reference minute.
const GROWTH_LIMIT: f64 = 1.5;

#[derive(Debug, clap::Args)]
pub struct SoakBench {
    /// How long the run lasts.
    #[arg(long, default_value_t = 60)]
    pub minutes: u64,
    /// Requests per second.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// Keep the run's report directory here (default: a temporary one).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// The soak's scenario: cache-aside at `rate` for `minutes`, a fault every
/// five minutes (latency, an outage, a latency on one stream).
fn scenario(minutes: u64, rate: u64) -> String {
    let mut s = format!(
        r#"name = "soak"
description = "gameday bench soak: memory over a long cache-aside run"
duration = "{minutes}m"

[topology]
kind = "standalone"

[load]
users = 32
rate = {rate}

[workload]
kind = "cache-aside"
keys = 20000
on_redis_error = {{ policy = "fallback" }}
"#
    );
    let kinds = [
        ("latency", "latency = \"5ms\""),
        ("down", ""),
        ("latency", "latency = \"20ms\"\nstream = \"downstream\""),
    ];
    for (i, at) in (2..minutes).step_by(5).enumerate() {
        let (kind, extra) = kinds[i % kinds.len()];
        let _ = write!(
            s,
            "\n[[fault]]\nname = \"f{i}\"\nkind = \"{kind}\"\n{extra}\nat = \"{at}m\"\nfor = \"20s\"\n"
        );
    }
    s
}

/// The resident set of process `pid`, in MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

pub async fn bench_soak(args: SoakBench) -> anyhow::Result<u8> {
    if args.minutes < 2 {
        bail!("--minutes must be at least 2");
    }
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("soak.toml");
    std::fs::write(&file, scenario(args.minutes, args.rate))?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| tmp.path().join("report"));
    let exe = std::env::current_exe().context("cannot find the gameday binary")?;
    let mut child = tokio::process::Command::new(exe)
        .args(["run", "--quiet"])
        .arg(&file)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("the run has no pid")?;
    println!(
        "soak: cache-aside at {} req/s for {} min, RSS of the run (pid {pid}) each minute",
        args.rate, args.minutes
    );
    let started = Instant::now();
    let mut rss = Vec::new();
    for minute in 1..=args.minutes {
        let at = started + Duration::from_secs(minute * 60) - Duration::from_secs(2);
        tokio::select! {
            _ = tokio::time::sleep_until(at.into()) => {}
            status = child.wait() => bail!("the run ended after {} s: {}", started.elapsed().as_secs(), status?),
        }
        let Some(now) = rss_mib(pid) else {
            bail!("cannot read the run's memory at minute {minute}");
        };
        println!("  minute {minute:>3}: RSS {now:>7.1} MiB");
        rss.push(now);
    }
    let status = child.wait().await?;
    if status.code() != Some(0) {
        bail!(
            "the soak run did not pass: {status} (report: {})",
            out.display()
        );
    }
    let reference_minute = if args.minutes >= 10 { 10 } else { 1 };
    let (first, reference, last) = (rss[0], rss[reference_minute - 1], rss[rss.len() - 1]);
    let ratio = last / reference;
    println!("RSS at 1 min {first:.1} MiB, at {reference_minute} min {reference:.1} MiB, at {} min {last:.1} MiB", args.minutes);
    let verdict = if ratio < GROWTH_LIMIT {
        "holds"
    } else {
        "FAILS"
    };
    println!(
        "ratio RSS({}m) / RSS({reference_minute}m) = {ratio:.2} (bound < {GROWTH_LIMIT}: {verdict})",
        args.minutes
    );
    Ok(u8::from(ratio >= GROWTH_LIMIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soak_scenario_is_valid_and_has_a_fault_every_five_minutes() {
        for minutes in [2, 12, 60] {
            let text = scenario(minutes, 2000);
            let plan = crate::scenario::parse(std::path::Path::new("soak.toml"), &text)
                .unwrap_or_else(|e| panic!("{minutes} min: {e}"));
            assert_eq!(plan.duration, Duration::from_secs(minutes * 60));
            assert_eq!(plan.faults.len() as u64, (minutes - 2).div_ceil(5));
        }
    }
}
