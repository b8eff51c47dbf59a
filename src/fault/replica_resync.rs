//! `replica_resync`: the target replicas cut off from their primary for
//! the fault's length while the primary's replication backlog is small
//! (`backlog`, default 16kb, Redis's least), so that when they come back
//! the writes they missed are no longer in it and each needs a full
//! resync: a fork and an RDB transfer on the primary, under load (the
//! Twilio 2013 pattern). A replica is cut off by pointing it at a loopback
//! port nobody listens on (`REPLICAOF`): it keeps its replication id and
//! offset, so on its return it asks for a partial resync, as after a
//! network cut, and the primary decides. The record keeps the primary's
//! full and partial resyncs over the fault (`INFO stats` `sync_full`,
//! `sync_partial_ok`), its `latest_fork_usec` and how long the replicas
//! took to be back in sync; the recovery phase's latencies are the
//! primary's callers' during the resync. Needs `kind = "replicated"`:
//! sentinels would point a diverted replica back, and a cluster refuses
//! `REPLICAOF`.

use super::memory::{config_get, connect, err, info_u64};
use super::{Env, FaultCtx, Notes, Target};
use crate::topology::handle::NodeHandle;
use crate::topology::TopologyError;
use crate::vocab::check::{check, invalid, Checked};
use crate::vocab::topo::TopologyKind;
use crate::vocab::units::Bytes;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use toml::Spanned;

/// The keys of `kind = "replica_resync"`.
pub const KEYS: &[&str] = &["backlog"];

/// Redis's least `repl-backlog-size`.
const LEAST_BACKLOG: u64 = 16 * 1024;
/// How long the replicas may take to be back in sync.
const RESYNC_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaResync {
    /// `repl-backlog-size` on the primary for the fault's length.
    pub backlog: u64,
}

#[derive(Debug, Deserialize)]
pub struct Raw {
    backlog: Option<Spanned<Bytes>>,
}

impl Raw {
    pub fn plan(self, ctx: &FaultCtx) -> Checked<ReplicaResync> {
        check(
            ctx.name,
            ctx.topology.kind == TopologyKind::Replicated,
            format!(
                "fault `{}`: `replica_resync` needs [topology] kind = \"replicated\" (sentinels would point the cut-off replica back; a cluster refuses REPLICAOF)",
                ctx.name.get_ref()
            ),
        )?;
        if matches!(
            ctx.target,
            Target::Primary | Target::All | Target::Sentinels
        ) {
            return Err(invalid(
                ctx.target_span.clone(),
                format!(
                    "fault `{}`: `replica_resync` cuts replicas off: target = \"replicas\" or \"node:<replica id>\"",
                    ctx.name.get_ref()
                ),
            ));
        }
        let backlog = match &self.backlog {
            Some(b) => {
                let v = b.get_ref().0;
                check(
                    b,
                    (LEAST_BACKLOG..=1 << 30).contains(&v),
                    "`backlog` must be between 16kb (Redis's least) and 1gb",
                )?;
                v
            }
            None => LEAST_BACKLOG,
        };
        Ok(ReplicaResync { backlog })
    }
}

/// What the resync cost the primary.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResyncOutcome {
    pub primary: String,
    pub replicas: Vec<String>,
    /// `sync_full` added over the fault: full resyncs the primary served.
    pub full_syncs: u64,
    /// `sync_partial_ok` added over the fault.
    pub partial_syncs: u64,
    /// The primary's `latest_fork_usec` once the replicas were back.
    pub fork_usec: u64,
    /// From the replicas' return to every one of them in sync; absent if
    /// that took longer than a minute.
    pub resync_ms: Option<f64>,
}

/// The replicas cut off, and what to put back.
pub struct Active {
    primary: NodeHandle,
    /// Each replica and the address it replicated from.
    cut: Vec<(NodeHandle, String, u16)>,
    backlog_before: String,
    full_before: u64,
    partial_before: u64,
}

pub async fn apply(env: &Env, r: &ReplicaResync) -> Result<Active, TopologyError> {
    let primary = env.primary.clone().ok_or_else(|| TopologyError::NotReady {
        what: "replica_resync".into(),
        limit: Duration::ZERO,
        seen: "no primary in this topology".into(),
    })?;
    let mut p = connect(&primary).await?;
    let backlog_before = config_get(&mut p, "repl-backlog-size")
        .await
        .map_err(|e| err(&primary, e))?;
    set_backlog(&mut p, &primary, &r.backlog.to_string()).await?;
    let full_before = info_u64(&mut p, &primary, "stats", "sync_full").await?;
    let partial_before = info_u64(&mut p, &primary, "stats", "sync_partial_ok").await?;
    let mut cut = Vec::new();
    for n in &env.nodes {
        let mut c = connect(n).await?;
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut c)
            .await
            .map_err(|e| err(n, e))?;
        let field = |k: &str| crate::redis_admin::info_field(&info, k).map(str::to_string);
        let (Some(host), Some(port)) = (field("master_host"), field("master_port")) else {
            continue;
        };
        let port: u16 = port.parse().unwrap_or(0);
        // A loopback port nobody listens on: every connection refused.
        let nowhere =
            crate::topology::process::free_port().map_err(|source| TopologyError::Io {
                node: n.id.clone(),
                what: "find a port nobody listens on",
                source,
            })?;
        replicaof(&mut c, n, "127.0.0.1", nowhere).await?;
        cut.push((n.clone(), host, port));
    }
    if cut.is_empty() {
        return Err(TopologyError::NotReady {
            what: "replica_resync".into(),
            limit: Duration::ZERO,
            seen: "no replica among the targets".into(),
        });
    }
    Ok(Active {
        primary,
        cut,
        backlog_before,
        full_before,
        partial_before,
    })
}

impl Active {
    /// Points the replicas back at their primary, waits for them to be in
    /// sync, records what it cost and restores the backlog size.
    pub async fn remove(self, notes: &Notes) -> Result<(), TopologyError> {
        let back = Instant::now();
        for (n, host, port) in &self.cut {
            let mut c = connect(n).await?;
            replicaof(&mut c, n, host, *port).await?;
        }
        let mut resync_ms = Some(0.0);
        for (n, _, _) in &self.cut {
            if !in_sync(n, back + RESYNC_LIMIT).await? {
                resync_ms = None;
            }
        }
        if resync_ms.is_some() {
            resync_ms = Some(back.elapsed().as_secs_f64() * 1e3);
        }
        let primary = &self.primary;
        let mut p = connect(primary).await?;
        let outcome = ResyncOutcome {
            primary: primary.id.clone(),
            replicas: self.cut.iter().map(|(n, _, _)| n.id.clone()).collect(),
            full_syncs: info_u64(&mut p, primary, "stats", "sync_full").await? - self.full_before,
            partial_syncs: info_u64(&mut p, primary, "stats", "sync_partial_ok").await?
                - self.partial_before,
            fork_usec: info_u64(&mut p, primary, "stats", "latest_fork_usec").await?,
            resync_ms,
        };
        if !self.backlog_before.is_empty() {
            set_backlog(&mut p, primary, &self.backlog_before).await?;
        }
        notes.note(|r| r.resync = Some(outcome));
        Ok(())
    }
}

/// Whether replica `n` reports its link up and no sync in progress before
/// `deadline`.
async fn in_sync(n: &NodeHandle, deadline: Instant) -> Result<bool, TopologyError> {
    let mut c = connect(n).await?;
    while Instant::now() < deadline {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut c)
            .await
            .map_err(|e| err(n, e))?;
        let field = |k: &str| crate::redis_admin::info_field(&info, k);
        if field("master_link_status") == Some("up")
            && field("master_sync_in_progress") == Some("0")
        {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(false)
}

async fn replicaof(
    c: &mut MultiplexedConnection,
    n: &NodeHandle,
    host: &str,
    port: u16,
) -> Result<(), TopologyError> {
    redis::cmd("REPLICAOF")
        .arg(host)
        .arg(port)
        .query_async::<()>(c)
        .await
        .map_err(|e| err(n, e))
}

async fn set_backlog(
    c: &mut MultiplexedConnection,
    n: &NodeHandle,
    size: &str,
) -> Result<(), TopologyError> {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("repl-backlog-size")
        .arg(size)
        .query_async::<()>(c)
        .await
        .map_err(|e| err(n, e))
}
