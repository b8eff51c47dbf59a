//! `bgsave`: a fork under load. Optionally first writes a `dataset` of
//! filler keys (under `<prefix>bgsave:`), so the fork has pages to copy,
//! then asks each target node for `BGSAVE`. The fork happens in the
//! server's main thread before it answers, so every command waits for it:
//! the node's own `latest_fork_usec` says how long, and the fault phase's
//! latencies show what the clients felt. At the end it waits for the save
//! to finish, records how long it took, and deletes the filler.

use super::memory::{connect, err, info_u64, slot_tag};
use super::{Env, FaultCtx, Notes};
use crate::topology::handle::NodeHandle;
use crate::topology::TopologyError;
use crate::vocab::check::{check, Checked};
use crate::vocab::units::Bytes;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The keys of `kind = "bgsave"`.
pub const KEYS: &[&str] = &["dataset"];

/// What a bgsave fault does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bgsave {
    /// Bytes of filler written before the fork; none = the data as it is.
    pub dataset: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct Raw {
    dataset: Option<Bytes>,
}

impl Raw {
    pub fn plan(self, ctx: &FaultCtx) -> Checked<Bgsave> {
        check(
            ctx.name,
            self.dataset
                .is_none_or(|b| b.0 >= 1024 * 1024 && b.0 <= 8 << 30),
            format!(
                "fault `{}`: `dataset` must be between 1mb and 8gb",
                ctx.name.get_ref()
            ),
        )?;
        Ok(Bgsave {
            dataset: self.dataset.map(|b| b.0),
        })
    }
}

/// What one node's fork cost.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ForkOutcome {
    pub node: String,
    /// Filler keys written before the fork.
    pub filler_keys: u64,
    /// `used_memory` when the fork was asked for.
    pub used_memory: u64,
    /// `latest_fork_usec` after the `BGSAVE`.
    pub fork_usec: u64,
    /// `rdb_last_bgsave_time_sec`, once the save finished.
    pub save_s: Option<u64>,
}

/// Size of one filler value, and filler keys per pipeline.
const VALUE: usize = 4096;
const BATCH: usize = 64;

/// The forks, done; the saves running.
pub struct Active {
    forked: Vec<(NodeHandle, Vec<String>, ForkOutcome)>,
}

pub async fn apply(env: &Env, b: &Bgsave) -> Result<Active, TopologyError> {
    let mut forked = Vec::new();
    for n in &env.nodes {
        let mut c = connect(n).await?;
        let keys = fill(&mut c, n, b.dataset.unwrap_or(0), &env.prefix).await?;
        let used_memory = info_u64(&mut c, n, "memory", "used_memory").await?;
        redis::cmd("BGSAVE")
            .query_async::<()>(&mut c)
            .await
            .map_err(|e| err(n, e))?;
        let fork_usec = info_u64(&mut c, n, "stats", "latest_fork_usec").await?;
        let outcome = ForkOutcome {
            node: n.id.clone(),
            filler_keys: keys.len() as u64,
            used_memory,
            fork_usec,
            save_s: None,
        };
        forked.push((n.clone(), keys, outcome));
    }
    Ok(Active { forked })
}

impl Active {
    /// Waits for each save (a minute at most), then deletes the filler.
    pub async fn remove(self, notes: &Notes) -> Result<(), TopologyError> {
        let mut outcomes = Vec::new();
        for (n, keys, mut o) in self.forked {
            let mut c = connect(&n).await?;
            for _ in 0..1200 {
                if info_u64(&mut c, &n, "persistence", "rdb_bgsave_in_progress").await? == 0 {
                    o.save_s = Some(
                        info_u64(&mut c, &n, "persistence", "rdb_last_bgsave_time_sec").await?,
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for chunk in keys.chunks(BATCH * 8) {
                redis::cmd("UNLINK")
                    .arg(chunk)
                    .query_async::<()>(&mut c)
                    .await
                    .map_err(|e| err(&n, e))?;
            }
            outcomes.push(o);
        }
        notes.note(|r| r.forks = outcomes);
        Ok(())
    }
}

/// Writes `bytes` of filler in pipelined batches, between the load's
/// commands rather than in one blocking call; returns the keys.
async fn fill(
    c: &mut MultiplexedConnection,
    n: &NodeHandle,
    bytes: u64,
    prefix: &str,
) -> Result<Vec<String>, TopologyError> {
    if bytes == 0 {
        return Ok(Vec::new());
    }
    let tag = slot_tag(c)
        .await
        .map(|t| format!("{{{t}}}"))
        .unwrap_or_default();
    let count = (bytes as usize).div_ceil(VALUE);
    let value = vec![b'f'; VALUE];
    let keys: Vec<String> = (0..count)
        .map(|i| format!("{prefix}bgsave:{tag}{i}"))
        .collect();
    for chunk in keys.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("SET").arg(k).arg(&value[..]).ignore();
        }
        pipe.query_async::<()>(c).await.map_err(|e| err(n, e))?;
    }
    Ok(keys)
}
