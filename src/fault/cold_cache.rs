//! `cold_cache`: a `fraction` of the keys removed from the target nodes at
//! once, as a flush, a bad deploy or a lost cache fleet would (the "cache
//! addiction" pattern: the origin takes every read of a removed key). By
//! default the keys are the workload's own (under the run's prefix, ballast
//! aside); `keys = "all"` takes every key of the nodes, for a service whose
//! keys gameday does not name. Which keys go is chosen by a seeded shuffle,
//! so a run is repeatable; how many went is recorded (`keys_removed`), and
//! the report measures how long the hit ratio took to come back
//! (`rewarm_time`). Nothing is restored: the fault's window is how long
//! its phase watches the cache refill.
//!
//! The keys are removed where they live: on the nodes that are primaries
//! when the fault strikes (after a failover, not the ones that were at the
//! start): with `target = "primary"` (the default) or `"all"`, every
//! primary of the topology; with `node:<id>`, that node. Replicas lose
//! them by replication.

use super::{Env, FaultCtx, Notes};
use crate::topology::handle::NodeHandle;
use crate::topology::TopologyError;
use crate::vocab::check::{check, Checked};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Deserialize;

/// The keys of `kind = "cold_cache"`.
pub const KEYS: &[&str] = &["fraction", "keys"];

/// Which keys a cold cache removes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// The workload's keys (the run's prefix).
    Workload,
    /// Every key of the target nodes.
    All,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColdCache {
    /// Share of the keys removed, in (0, 1].
    pub fraction: f64,
    pub keys: KeyScope,
}

/// The `[[fault]]` keys of `kind = "cold_cache"`.
#[derive(Debug, Deserialize)]
pub struct Raw {
    fraction: Option<f64>,
    keys: Option<KeyScope>,
}

impl Raw {
    pub fn plan(self, ctx: &FaultCtx) -> Checked<ColdCache> {
        let fraction = self.fraction.unwrap_or(1.0);
        check(
            ctx.name,
            fraction > 0.0 && fraction <= 1.0,
            format!(
                "fault `{}`: `fraction` must be above 0 and at most 1 (the share of keys removed), not {fraction}",
                ctx.name.get_ref()
            ),
        )?;
        Ok(ColdCache {
            fraction,
            keys: self.keys.unwrap_or(KeyScope::Workload),
        })
    }
}

/// Keys per SCAN reply and per UNLINK.
const BATCH: usize = 500;

/// Removes the keys from every target node and records how many went.
pub async fn apply(
    env: &Env,
    c: &ColdCache,
    target: &super::Target,
    seed: u64,
    notes: &Notes,
) -> Result<(), TopologyError> {
    // `primary` and `all` mean the cache wherever it lives now; a named
    // node means that node (if it is a primary when the fault strikes).
    let whole = matches!(target, super::Target::Primary | super::Target::All);
    let candidates: Vec<NodeHandle> = match &env.failover {
        Some(f) if whole => f.nodes.iter().map(|(n, _)| n.clone()).collect(),
        _ => env.nodes.clone(),
    };
    let mut removed = 0u64;
    for (i, n) in candidates.iter().enumerate() {
        if is_primary(n).await {
            removed += cool(n, c, &env.prefix, seed.wrapping_add(i as u64)).await?;
        }
    }
    notes.note(|r| r.keys_removed = Some(removed));
    Ok(())
}

/// Whether the node says it is a primary now.
async fn is_primary(n: &NodeHandle) -> bool {
    let info = crate::redis_admin::ask::<String>(
        n.addr,
        &crate::redis_admin::cmd(&["INFO", "replication"]),
        std::time::Duration::from_secs(2),
    )
    .await;
    info.as_deref()
        .and_then(|i| crate::redis_admin::info_field(i, "role"))
        == Some("master")
}

/// One node: scan, choose, unlink; returns how many went.
async fn cool(
    n: &NodeHandle,
    c: &ColdCache,
    prefix: &str,
    seed: u64,
) -> Result<u64, TopologyError> {
    let err = |source| TopologyError::Command {
        node: n.id.clone(),
        source,
    };
    let mut conn = crate::redis_admin::connect(n.addr)
        .await
        .map_err(|source| TopologyError::Node {
            node: n.id.clone(),
            source,
        })?;
    let pattern = match c.keys {
        KeyScope::Workload => format!("{prefix}*"),
        KeyScope::All => "*".to_string(),
    };
    let ballast = format!("{prefix}ballast:");
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(BATCH)
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        keys.extend(batch.into_iter().filter(|k| !k.starts_with(&ballast)));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    // SCAN may return a key twice; sorted, deduplicated, then shuffled
    // with the seed, the choice is the same for the same keys.
    keys.sort();
    keys.dedup();
    keys.shuffle(&mut SmallRng::seed_from_u64(seed));
    let take = ((keys.len() as f64) * c.fraction).round() as usize;
    let mut removed = 0u64;
    for chunk in keys[..take].chunks(BATCH) {
        let n: u64 = redis::cmd("UNLINK")
            .arg(chunk)
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        removed += n;
    }
    Ok(removed)
}
