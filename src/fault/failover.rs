//! The `failover` fault: a Sentinel or Cluster primary is replaced, either
//! on request (`manual`: `SENTINEL FAILOVER`, or `CLUSTER FAILOVER` on one
//! of its replicas) or because it died (`kill_primary`: SIGKILL, and the
//! topology must notice and promote on its own; the node is started again
//! when the fault ends and rejoins as a replica).
//!
//! While the fault lasts, `watch` measures what clients live through:
//! when the topology switched (a sentinel names another primary; another
//! node owns the old primary's slots) and when a client, going through
//! the proxies as the workload does, first wrote to the new primary.
//! `failover_time` runs from the moment the primary was lost (the fault's
//! apply) to that write.

use super::{Env, FaultCtx, Notes, Target, Window};
use crate::redis_admin::cluster::{cluster_nodes, key_slot, ClusterLine};
use crate::redis_admin::{self, cmd};
use crate::topology::handle::NodeHandle;
use crate::topology::{ClientSpec, TopologyError};
use crate::vocab::check::{check, invalid, Checked};
use crate::vocab::outcome::Trace;
use crate::vocab::topo::TopologyKind;
use crate::workload::conn::RedisConn;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A failover takes its `mode`.
pub const KEYS: &[&str] = &["mode"];

/// Why a topology cannot fail over.
pub const NEEDS: &str =
    "cannot fail over: a failover needs a sentinel or cluster topology gameday runs";

/// How the primary is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailoverMode {
    /// `SENTINEL FAILOVER`, or `CLUSTER FAILOVER` on a replica.
    Manual,
    /// SIGKILL the primary; started again when the fault ends.
    KillPrimary,
}

/// The `[[fault]]` keys of `kind = "failover"`.
#[derive(Debug, serde::Deserialize)]
pub struct Raw {
    mode: Option<FailoverMode>,
}

impl Raw {
    /// A `mode`, a sentinel or cluster topology, and the primary (or, in a
    /// cluster, a master named by id) as target.
    pub fn plan(self, ctx: &FaultCtx) -> Checked<FailoverMode> {
        let name = ctx.name.get_ref();
        let Some(mode) = self.mode else {
            return Err(invalid(
                ctx.name.span(),
                format!("fault `{name}` of kind `failover` needs `mode` (\"manual\" or \"kill_primary\")"),
            ));
        };
        let kind = ctx.topology.kind;
        check(
            ctx.name,
            matches!(kind, TopologyKind::Sentinel | TopologyKind::Cluster),
            format!(
                "fault `{name}`: a failover needs a sentinel or cluster topology, not {}",
                kind.as_str()
            ),
        )?;
        let target_ok = match ctx.target {
            Target::Primary => true,
            Target::Node(_) => kind == TopologyKind::Cluster,
            _ => false,
        };
        if !target_ok {
            return Err(invalid(
                ctx.target_span.clone(),
                "a failover replaces the primary: target `primary` (or, in a cluster, `node:<id>` of a master)",
            ));
        }
        Ok(mode)
    }
}

/// A failover under way: the primary it replaced and the watcher that
/// measures the switch.
pub struct Active {
    old: NodeHandle,
    mode: FailoverMode,
    applied_us: u64,
    watcher: JoinHandle<Observed>,
}

/// Loses the primary (requests the failover, or kills it) and starts
/// watching for the switch and the first write to the new primary.
pub async fn apply(
    env: &Env,
    mode: FailoverMode,
    target: &Target,
    w: &Window,
    notes: &Notes,
) -> Result<Active, FailoverError> {
    let ctx = env.failover.clone().ok_or(FailoverError::WrongTopology)?;
    let applied_us = w.t0.elapsed().as_micros() as u64;
    let old = ctx.begin(mode, target).await?;
    notes.note(|r| r.replaced = Some(old.id.clone()));
    let (watched, t0, deadline) = (old.clone(), w.t0, w.end);
    let watcher = tokio::spawn(async move { ctx.watch(watched, t0, deadline).await });
    Ok(Active {
        old,
        mode,
        applied_us,
        watcher,
    })
}

impl Active {
    /// Records what the watcher saw; a killed primary is started again (it
    /// rejoins as a replica).
    pub async fn remove(mut self, w: &Window, notes: &Notes) -> Result<(), FailoverError> {
        // Interrupted: the watcher's deadline may be far; stop it.
        let mut stop = w.stop.clone();
        let seen = tokio::select! {
            s = &mut self.watcher => s.unwrap_or_default(),
            _ = stop.wait_for(|s| *s) => {
                self.watcher.abort();
                Observed::default()
            }
        };
        let secs = |us: u64| us as f64 / 1e6;
        notes.note(|r| {
            r.switched_at_s = seen.switched_us.map(secs);
            r.new_primary = seen.new_primary;
            r.failover_time_ms = seen
                .written_us
                .map(|at| at.saturating_sub(self.applied_us) as f64 / 1e3);
        });
        if self.mode == FailoverMode::KillPrimary {
            self.old.start_again().await?;
        }
        Ok(())
    }
}

/// What a failover needs to know of the lab.
#[derive(Clone)]
pub struct FailoverCtx {
    pub kind: TopologyKind,
    pub master_name: String,
    /// The sentinels' own addresses (the harness's path, never faulted).
    pub sentinels: Vec<SocketAddr>,
    /// Every data node, with the proxy address peers and clients know it by.
    pub nodes: Vec<(NodeHandle, SocketAddr)>,
    /// How the workload reaches the topology.
    pub client: ClientSpec,
    /// Prefix of the probe keys the watcher writes.
    pub prefix: String,
}

/// What the watcher saw, in µs since t0.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub switched_us: Option<u64>,
    pub written_us: Option<u64>,
    /// The node that is primary after the switch.
    pub new_primary: Option<String>,
}

/// Why a failover could not be started or watched.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    #[error("{}", NEEDS)]
    WrongTopology,
    #[error("no sentinel")]
    NoSentinel,
    #[error("no sentinel names a primary")]
    NoPrimaryNamed,
    #[error("the sentinels name {0}, not a node of this lab")]
    UnknownPrimary(SocketAddr),
    #[error("no cluster node answers CLUSTER NODES")]
    NoClusterView,
    #[error("node {0} is not a master with slots")]
    NotAMaster(String),
    #[error("target {0} names no cluster master")]
    NoSuchMaster(String),
    #[error("SENTINEL FAILOVER was refused")]
    SentinelRefused,
    #[error("node {0}: CLUSTER NODES")]
    NoOwnView(String),
    #[error("node {0} is not in its own view")]
    NotInOwnView(String),
    #[error("master {0} has no replica to promote")]
    NoReplica(String),
    #[error("node {0}: CLUSTER FAILOVER refused")]
    ClusterRefused(String),
    #[error(transparent)]
    Node(#[from] TopologyError),
}

/// An admin command on a node's own address, if it answers within 500 ms.
async fn ask<T: redis::FromRedisValue>(addr: SocketAddr, cmd: &redis::Cmd) -> Option<T> {
    redis_admin::ask(addr, cmd, Duration::from_millis(500)).await
}

impl FailoverCtx {
    fn by_proxy(&self, addr: SocketAddr) -> Option<&NodeHandle> {
        self.nodes.iter().find(|(_, p)| *p == addr).map(|(n, _)| n)
    }

    fn proxy_of(&self, node: &NodeHandle) -> SocketAddr {
        self.nodes
            .iter()
            .find(|(n, _)| n.id == node.id)
            .map(|(_, p)| *p)
            .expect("a node of this lab")
    }

    /// The primary the sentinels name now.
    async fn sentinel_primary(&self) -> Option<SocketAddr> {
        for s in &self.sentinels {
            let named: Option<Option<(String, u16)>> = ask(
                *s,
                &cmd(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.master_name]),
            )
            .await;
            if let Some(Some((host, port))) = named {
                if let Ok(a) = format!("{host}:{port}").parse() {
                    return Some(a);
                }
            }
        }
        None
    }

    /// The cluster as a live node other than `not` sees it.
    async fn cluster_view(&self, not: &str) -> Option<Vec<ClusterLine>> {
        for (n, _) in self.nodes.iter().filter(|(n, _)| n.id != not) {
            if let Some(text) = ask::<String>(n.addr, &cmd(&["CLUSTER", "NODES"])).await {
                return Some(cluster_nodes(&text));
            }
        }
        None
    }

    /// The node that is the target's primary now.
    pub async fn primary_now(&self, target: &Target) -> Result<NodeHandle, FailoverError> {
        match self.kind {
            TopologyKind::Sentinel => {
                let at = self
                    .sentinel_primary()
                    .await
                    .ok_or(FailoverError::NoPrimaryNamed)?;
                self.by_proxy(at)
                    .cloned()
                    .ok_or(FailoverError::UnknownPrimary(at))
            }
            TopologyKind::Cluster => {
                let view = self
                    .cluster_view("")
                    .await
                    .ok_or(FailoverError::NoClusterView)?;
                let node_of = |l: &ClusterLine| l.addr.and_then(|a| self.by_proxy(a)).cloned();
                let found = match target {
                    Target::Node(id) => view
                        .iter()
                        .filter_map(|l| node_of(l).filter(|n| &n.id == id).map(|n| (l, n)))
                        .next(),
                    _ => view
                        .iter()
                        .filter(|l| l.master && !l.failed && !l.slots.is_empty())
                        .filter_map(|l| node_of(l).map(|n| (l, n)))
                        .min_by(|a, b| a.0.slots.cmp(&b.0.slots)),
                };
                match found {
                    Some((l, n)) if l.master && !l.slots.is_empty() => Ok(n),
                    Some((_, n)) => Err(FailoverError::NotAMaster(n.id)),
                    None => Err(FailoverError::NoSuchMaster(target.to_string())),
                }
            }
            _ => Err(FailoverError::WrongTopology),
        }
    }

    /// Starts the failover; returns the primary it replaces.
    pub async fn begin(
        &self,
        mode: FailoverMode,
        target: &Target,
    ) -> Result<NodeHandle, FailoverError> {
        let old = self.primary_now(target).await?;
        match (self.kind, mode) {
            (_, FailoverMode::KillPrimary) => old.kill().await?,
            (TopologyKind::Sentinel, FailoverMode::Manual) => {
                let s = self.sentinels.first().ok_or(FailoverError::NoSentinel)?;
                ask::<String>(*s, &cmd(&["SENTINEL", "FAILOVER", &self.master_name]))
                    .await
                    .ok_or(FailoverError::SentinelRefused)?;
            }
            (_, FailoverMode::Manual) => {
                let text: String = ask(old.addr, &cmd(&["CLUSTER", "NODES"]))
                    .await
                    .ok_or_else(|| FailoverError::NoOwnView(old.id.clone()))?;
                let lines = cluster_nodes(&text);
                let old_id = lines
                    .iter()
                    .find(|l| l.addr == Some(self.proxy_of(&old)))
                    .map(|l| l.id.clone())
                    .ok_or_else(|| FailoverError::NotInOwnView(old.id.clone()))?;
                let replica = lines
                    .iter()
                    .filter(|l| l.master_id == old_id && !l.failed)
                    .find_map(|l| l.addr.and_then(|a| self.by_proxy(a)))
                    .ok_or_else(|| FailoverError::NoReplica(old.id.clone()))?;
                ask::<String>(replica.addr, &cmd(&["CLUSTER", "FAILOVER"]))
                    .await
                    .ok_or_else(|| FailoverError::ClusterRefused(replica.id.clone()))?;
            }
        }
        Ok(old)
    }

    /// Has the topology replaced `old`? Returns the new primary's id.
    async fn switched(&self, old: &NodeHandle, old_slot: Option<u16>) -> Option<String> {
        match self.kind {
            TopologyKind::Sentinel => {
                let now = self.sentinel_primary().await?;
                (now != self.proxy_of(old)).then(|| self.by_proxy(now).map(|n| n.id.clone()))?
            }
            _ => {
                let slot = old_slot?;
                let view = self.cluster_view(&old.id).await?;
                let owner = view.iter().find(|l| {
                    l.master && !l.failed && l.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
                })?;
                let addr = owner.addr?;
                (addr != self.proxy_of(old)).then(|| self.by_proxy(addr).map(|n| n.id.clone()))?
            }
        }
    }

    /// A probe key that lands on `old`'s shard (any key under Sentinel).
    async fn probe_key(&self, old: &NodeHandle) -> (String, Option<u16>) {
        let base = format!("{}failover-probe", self.prefix);
        if self.kind != TopologyKind::Cluster {
            return (base, None);
        }
        let Some(view) = self.cluster_view(&old.id).await else {
            return (base, None);
        };
        let proxy = self.proxy_of(old);
        let Some(first) = view
            .iter()
            .find(|l| l.addr == Some(proxy))
            .and_then(|l| l.slots.first().copied())
        else {
            return (base, None);
        };
        for i in 0u32.. {
            let key = format!("{base}:{i}");
            let slot = key_slot(key.as_bytes());
            if (first.0..=first.1).contains(&slot) {
                return (key, Some(slot));
            }
        }
        unreachable!("some key hashes into any non-empty slot range")
    }

    /// Watches until the topology has switched away from `old` and a client
    /// wrote to the new primary, or `deadline` passes.
    pub async fn watch(&self, old: NodeHandle, t0: Instant, deadline: Instant) -> Observed {
        let now_us = || t0.elapsed().as_micros() as u64;
        let (key, slot) = self.probe_key(&old).await;
        let mut seen = Observed::default();
        while Instant::now() < deadline {
            if seen.switched_us.is_none() {
                if let Some(id) = self.switched(&old, slot).await {
                    seen.switched_us = Some(now_us());
                    seen.new_primary = Some(id);
                }
            }
            if seen.switched_us.is_some() {
                // A fresh client each time, as a restarted application
                // instance would be: it asks the topology where to write.
                let mut conn = RedisConn::new(&self.client, Duration::from_millis(500), t0);
                let mut trace = Trace::default();
                let mut set = redis::cmd("SET");
                set.arg(&key).arg(now_us());
                if conn.query::<()>("probe", &set, &mut trace).await.is_ok() {
                    seen.written_us = trace.samples.last().map(|s| s.end_us);
                    return seen;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen
    }
}
