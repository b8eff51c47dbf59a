//! What the benchmarks share: `redis-benchmark` as the peer, and a
//! workload of plain GETs that does what it does.

use crate::recorder::PhaseStats;
use crate::topology::ClientSpec;
use crate::vocab::outcome::{Outcome, Trace};
use crate::workload::conn::RedisConn;
use crate::workload::{Done, Oracle, Workload};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use tokio::time::Instant;

/// `redis-benchmark -t get` against `addr`; returns requests per second.
pub fn redis_benchmark(addr: SocketAddr, connections: usize, requests: u64) -> anyhow::Result<f64> {
    redis_benchmark_pipelined(addr, connections, 1, requests)
}

/// `redis-benchmark -t get -P pipeline` against `addr`; returns requests
/// per second.
pub fn redis_benchmark_pipelined(
    addr: SocketAddr,
    connections: usize,
    pipeline: usize,
    requests: u64,
) -> anyhow::Result<f64> {
    let out = Command::new("redis-benchmark")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args([
            "-c",
            &connections.to_string(),
            "-n",
            &requests.to_string(),
            "-P",
            &pipeline.max(1).to_string(),
            "-t",
            "get",
            "--csv",
        ])
        .output()
        .context("cannot run redis-benchmark (apt-get install redis-tools)")?;
    if !out.status.success() {
        bail!(
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // CSV: "test","rps",... ; the GET row's second field.
    text.lines()
        .find(|l| l.starts_with("\"GET\""))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|v| v.trim_matches('"').parse().ok())
        .with_context(|| format!("cannot read redis-benchmark's output: {text}"))
}

/// A workload of plain GETs of one 3-byte key, as redis-benchmark does;
/// `pipeline` GETs at a time, as `redis-benchmark -P`, when over 1.
pub struct GetOnly {
    pub addr: SocketAddr,
    pub t0: Instant,
    pub pipeline: usize,
}

impl Workload for GetOnly {
    type User = (RedisConn, Trace);

    fn new_user(&self, _index: usize) -> Self::User {
        (
            RedisConn::new(
                &ClientSpec::Direct(self.addr),
                Duration::from_secs(5),
                self.t0,
            ),
            Trace::default(),
        )
    }

    async fn op(&self, user: &mut Self::User, _intended_us: u64, _trace: &mut Trace) -> Done {
        let scratch = &mut user.1;
        scratch.clear();
        if self.pipeline <= 1 {
            let get = redis::cmd("GET").arg("key:__rand_int__").clone();
            let r = user
                .0
                .query::<Option<Vec<u8>>>("redis_get", &get, scratch)
                .await;
            return Done::new("get", r.map_or_else(Outcome::Err, |_| Outcome::Ok));
        }
        let mut pipe = redis::pipe();
        for _ in 0..self.pipeline {
            pipe.cmd("GET").arg("key:__rand_int__");
        }
        let r = user
            .0
            .query_pipe::<Vec<Option<Vec<u8>>>>("redis_get", &pipe, scratch)
            .await;
        // Each GET of the pipeline is one request, as redis-benchmark counts.
        Done::new("get", r.map_or_else(Outcome::Err, |_| Outcome::Ok)).times(self.pipeline)
    }
}

impl Oracle for GetOnly {
    fn caller_ops(&self) -> &'static [&'static str] {
        &["get"]
    }

    fn phase_metrics(&self, _phase: &PhaseStats, _baseline: &PhaseStats) -> BTreeMap<String, f64> {
        BTreeMap::new()
    }
}
