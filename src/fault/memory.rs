//! The `memory_pressure` fault: on each target node, optionally switch the
//! eviction policy, lower `maxmemory`, and write ballast keys (outside the
//! workload's key space, under `<prefix>ballast:`) as a batch job would;
//! afterwards count what was evicted, delete the ballast and restore the
//! settings. Every command goes to the node's own address.
//!
//! Evictions are split by key class: the ballast keys that are gone were
//! evicted (nothing else deletes them while the fault lasts); the rest of
//! the node's `evicted_keys` increase is workload keys.

use super::{Env, FaultCtx, Notes};
use crate::redis_admin::cluster::key_slot;
use crate::topology::handle::NodeHandle;
use crate::topology::TopologyError;
use crate::vocab::check::{check, Checked};
use crate::vocab::topo::MaxmemoryPolicy;
use crate::vocab::units::Bytes;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};

/// The keys of `kind = "memory_pressure"`.
pub const KEYS: &[&str] = &["maxmemory", "ballast", "policy"];

/// What changes on each target node for the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPressure {
    /// `maxmemory` during the fault, in bytes.
    pub maxmemory: Option<u64>,
    /// Bytes of ballast keys written at the start.
    pub ballast: Option<u64>,
    /// `maxmemory-policy` during the fault.
    pub policy: Option<MaxmemoryPolicy>,
}

/// The `[[fault]]` keys of `kind = "memory_pressure"`.
#[derive(Debug, Deserialize)]
pub struct Raw {
    /// `maxmemory` for the fault's length.
    maxmemory: Option<Bytes>,
    /// Bytes of ballast keys to write.
    ballast: Option<Bytes>,
    /// `maxmemory-policy` for the fault's length.
    policy: Option<MaxmemoryPolicy>,
}

impl Raw {
    /// `maxmemory` and/or `ballast`, each at least 1mb; `policy` optional.
    pub fn plan(self, ctx: &FaultCtx) -> Checked<MemoryPressure> {
        let name = ctx.name.get_ref();
        check(
            ctx.name,
            self.maxmemory.is_some() || self.ballast.is_some(),
            format!(
                "fault `{name}` of kind `memory_pressure` needs `maxmemory` (a lower limit for the fault) and/or `ballast` (bytes of keys to write)"
            ),
        )?;
        for (key, b) in [("maxmemory", self.maxmemory), ("ballast", self.ballast)] {
            check(
                ctx.name,
                b.is_none_or(|b| b.0 >= 1024 * 1024),
                format!("fault `{name}`: `{key}` must be at least 1mb"),
            )?;
        }
        Ok(MemoryPressure {
            maxmemory: self.maxmemory.map(|b| b.0),
            ballast: self.ballast.map(|b| b.0),
            policy: self.policy,
        })
    }
}

/// The pressure, in force on every target node.
pub struct Active {
    applied: Vec<Applied>,
}

/// Applies the pressure to every target node.
pub async fn apply_all(env: &Env, m: &MemoryPressure) -> Result<Active, TopologyError> {
    let mut applied = Vec::new();
    for n in &env.nodes {
        applied.push(apply(n, m, &env.prefix).await?);
    }
    Ok(Active { applied })
}

impl Active {
    /// Restores every node and records what each one evicted.
    pub async fn remove(self, notes: &Notes) -> Result<(), TopologyError> {
        let mut outcomes = Vec::new();
        for a in self.applied {
            outcomes.push(remove(a).await?);
        }
        notes.note(|r| r.memory = outcomes);
        Ok(())
    }
}

/// Size of one ballast value.
pub const BALLAST_VALUE: usize = 4096;
/// Ballast keys per pipeline.
const BATCH: usize = 64;

/// What was changed on one node, to count and undo it.
pub struct Applied {
    node: NodeHandle,
    maxmemory_before: String,
    policy_before: String,
    evicted_before: u64,
    keys: Vec<String>,
    /// Ballast writes refused with OOM (noeviction).
    refused: u64,
}

/// What a memory_pressure fault did to one node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemoryOutcome {
    pub node: String,
    pub ballast_keys: u64,
    pub ballast_refused: u64,
    pub evicted_keys: u64,
    pub evicted_ballast: u64,
    pub evicted_workload: u64,
}

pub(super) fn err(node: &NodeHandle, source: redis::RedisError) -> TopologyError {
    TopologyError::Command {
        node: node.id.clone(),
        source,
    }
}

pub(super) async fn connect(node: &NodeHandle) -> Result<MultiplexedConnection, TopologyError> {
    crate::redis_admin::connect(node.addr)
        .await
        .map_err(|source| TopologyError::Node {
            node: node.id.clone(),
            source,
        })
}

pub(super) async fn config_get(
    c: &mut MultiplexedConnection,
    key: &str,
) -> redis::RedisResult<String> {
    let pair: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(key)
        .query_async(c)
        .await?;
    Ok(pair.get(1).cloned().unwrap_or_default())
}

async fn evicted(c: &mut MultiplexedConnection) -> redis::RedisResult<u64> {
    let info: String = redis::cmd("INFO").arg("stats").query_async(c).await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("evicted_keys:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// An `INFO <section>` field of the node as a number (0 if absent).
pub(super) async fn info_u64(
    c: &mut MultiplexedConnection,
    n: &NodeHandle,
    section: &str,
    key: &str,
) -> Result<u64, TopologyError> {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(c)
        .await
        .map_err(|e| err(n, e))?;
    Ok(crate::redis_admin::info_field(&info, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// A hash tag that lands in the node's own slots, for a cluster node.
pub(super) async fn slot_tag(c: &mut MultiplexedConnection) -> Option<String> {
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(c)
        .await
        .ok()?;
    let mine = nodes.lines().find(|l| l.contains("myself"))?;
    let (from, to) = mine.split_whitespace().skip(8).find_map(|r| {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?))
    })?;
    (0u32..).map(|i| format!("b{i}")).find(|tag| {
        let s = key_slot(tag.as_bytes());
        (from..=to).contains(&s)
    })
}

/// Applies the pressure to one node.
async fn apply(
    node: &NodeHandle,
    m: &MemoryPressure,
    prefix: &str,
) -> Result<Applied, TopologyError> {
    let mut c = connect(node).await?;
    let e = |x: redis::RedisError| err(node, x);
    let maxmemory_before = config_get(&mut c, "maxmemory").await.map_err(e)?;
    let policy_before = config_get(&mut c, "maxmemory-policy").await.map_err(e)?;
    let evicted_before = evicted(&mut c).await.map_err(e)?;
    if let Some(p) = &m.policy {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg(p.as_str())
            .query_async::<()>(&mut c)
            .await
            .map_err(e)?;
    }
    if let Some(bytes) = m.maxmemory {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(bytes)
            .query_async::<()>(&mut c)
            .await
            .map_err(e)?;
    }
    let mut applied = Applied {
        node: node.clone(),
        maxmemory_before,
        policy_before,
        evicted_before,
        keys: Vec::new(),
        refused: 0,
    };
    let Some(ballast) = m.ballast else {
        return Ok(applied);
    };
    let tag = slot_tag(&mut c)
        .await
        .map(|t| format!("{{{t}}}"))
        .unwrap_or_default();
    let count = (ballast as usize).div_ceil(BALLAST_VALUE);
    let value = vec![b'b'; BALLAST_VALUE];
    let mut written = 0;
    while written < count {
        let n = BATCH.min(count - written);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let keys: Vec<String> = (written..written + n)
            .map(|i| format!("{prefix}ballast:{tag}{i}"))
            .collect();
        for k in &keys {
            pipe.cmd("SET").arg(k).arg(&value[..]);
        }
        // Each SET answers on its own: OOM refusals are counted, not fatal.
        let replies: Vec<redis::Value> = pipe.query_async(&mut c).await.map_err(e)?;
        for (k, r) in keys.into_iter().zip(replies) {
            match r {
                redis::Value::ServerError(_) => applied.refused += 1,
                _ => applied.keys.push(k),
            }
        }
        written += n;
    }
    Ok(applied)
}

/// Counts what was evicted, deletes the ballast, restores the settings.
async fn remove(a: Applied) -> Result<MemoryOutcome, TopologyError> {
    let node = &a.node;
    let mut c = connect(node).await?;
    let e = |x: redis::RedisError| err(node, x);
    let evicted_now = evicted(&mut c).await.map_err(e)?;
    let mut remaining = 0u64;
    for chunk in a.keys.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("EXISTS").arg(k);
        }
        let found: Vec<u64> = pipe.query_async(&mut c).await.map_err(e)?;
        remaining += found.iter().sum::<u64>();
        let mut del = redis::pipe();
        for k in chunk {
            del.cmd("UNLINK").arg(k).ignore();
        }
        del.query_async::<()>(&mut c).await.map_err(e)?;
    }
    for (key, value) in [
        ("maxmemory", &a.maxmemory_before),
        ("maxmemory-policy", &a.policy_before),
    ] {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut c)
            .await
            .map_err(e)?;
    }
    let total = evicted_now.saturating_sub(a.evicted_before);
    let ballast_gone = a.keys.len() as u64 - remaining;
    Ok(MemoryOutcome {
        node: node.id.clone(),
        ballast_keys: a.keys.len() as u64,
        ballast_refused: a.refused,
        evicted_keys: total,
        evicted_ballast: ballast_gone.min(total),
        evicted_workload: total.saturating_sub(ballast_gone),
    })
}
