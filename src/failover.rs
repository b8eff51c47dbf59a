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

use crate::recorder::Trace;
use crate::scenario::plan::{FailoverMode, Target};
use crate::scenario::raw::TopologyKind;
use crate::topology::process::NodeHandle;
use crate::topology::{ClientSpec, TopologyError};
use crate::workload::conn::RedisConn;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

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

fn err(what: impl std::fmt::Display) -> TopologyError {
    TopologyError::Provision(what.to_string())
}

async fn ask<T: redis::FromRedisValue>(addr: SocketAddr, cmd: &redis::Cmd) -> Option<T> {
    let run = async {
        let client = redis::Client::open(format!("redis://{addr}/")).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        cmd.query_async::<T>(&mut conn).await.ok()
    };
    tokio::time::timeout(Duration::from_millis(500), run)
        .await
        .ok()
        .flatten()
}

fn cmd(parts: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(parts[0]);
    for p in &parts[1..] {
        c.arg(*p);
    }
    c
}

/// The cluster key slot of `key` (CRC16/XMODEM of the key or of its
/// `{hash tag}`, modulo 16384).
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    let mut crc: u16 = 0;
    for &b in hashed {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// One line of `CLUSTER NODES`.
struct ClusterLine {
    id: String,
    addr: Option<SocketAddr>,
    master: bool,
    failed: bool,
    master_id: String,
    slots: Vec<(u16, u16)>,
}

fn cluster_nodes(text: &str) -> Vec<ClusterLine> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let addr = f[1].split('@').next().and_then(|a| a.parse().ok());
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|x| (x, x)),
                })
                .collect();
            Some(ClusterLine {
                id: f[0].to_string(),
                addr,
                master: f[2].contains("master"),
                failed: f[2].contains("fail"),
                master_id: f[3].to_string(),
                slots,
            })
        })
        .collect()
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
    pub async fn primary_now(&self, target: &Target) -> Result<NodeHandle, TopologyError> {
        match self.kind {
            TopologyKind::Sentinel => {
                let at = self
                    .sentinel_primary()
                    .await
                    .ok_or_else(|| err("no sentinel names a primary"))?;
                self.by_proxy(at)
                    .cloned()
                    .ok_or_else(|| err(format!("the sentinels name {at}, not a node of this lab")))
            }
            TopologyKind::Cluster => {
                let view = self
                    .cluster_view("")
                    .await
                    .ok_or_else(|| err("no cluster node answers CLUSTER NODES"))?;
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
                    Some((_, n)) => Err(err(format!("node {} is not a master with slots", n.id))),
                    None => Err(err(format!("target {target} names no cluster master"))),
                }
            }
            _ => Err(err("failover needs a sentinel or cluster topology")),
        }
    }

    /// Starts the failover; returns the primary it replaces.
    pub async fn begin(
        &self,
        mode: FailoverMode,
        target: &Target,
    ) -> Result<NodeHandle, TopologyError> {
        let old = self.primary_now(target).await?;
        match (self.kind, mode) {
            (_, FailoverMode::KillPrimary) => old.kill().await?,
            (TopologyKind::Sentinel, FailoverMode::Manual) => {
                let s = self.sentinels.first().ok_or_else(|| err("no sentinel"))?;
                ask::<String>(*s, &cmd(&["SENTINEL", "FAILOVER", &self.master_name]))
                    .await
                    .ok_or_else(|| err("SENTINEL FAILOVER was refused"))?;
            }
            (_, FailoverMode::Manual) => {
                let text: String = ask(old.addr, &cmd(&["CLUSTER", "NODES"]))
                    .await
                    .ok_or_else(|| err(format!("node {}: CLUSTER NODES", old.id)))?;
                let lines = cluster_nodes(&text);
                let old_id = lines
                    .iter()
                    .find(|l| l.addr == Some(self.proxy_of(&old)))
                    .map(|l| l.id.clone())
                    .ok_or_else(|| err(format!("node {} is not in its own view", old.id)))?;
                let replica = lines
                    .iter()
                    .filter(|l| l.master_id == old_id && !l.failed)
                    .find_map(|l| l.addr.and_then(|a| self.by_proxy(a)))
                    .ok_or_else(|| err(format!("master {} has no replica to promote", old.id)))?;
                ask::<String>(replica.addr, &cmd(&["CLUSTER", "FAILOVER"]))
                    .await
                    .ok_or_else(|| err(format!("node {}: CLUSTER FAILOVER refused", replica.id)))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_match_redis() {
        // Values from CLUSTER KEYSLOT.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}bar"), key_slot(b"foo{}bar"));
    }

    #[test]
    fn cluster_nodes_lines_are_read() {
        let text = "e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460\n\
                    a1b2 127.0.0.1:30004@40004 slave e7d1 0 1 4 connected\n\
                    c3d4 127.0.0.1:30002@40002 master,fail - 0 1 2 disconnected\n";
        let l = cluster_nodes(text);
        assert_eq!(l.len(), 3);
        assert!(l[0].master && !l[0].failed && l[0].slots == vec![(0, 5460)]);
        assert_eq!(l[1].master_id, "e7d1");
        assert!(!l[1].master);
        assert!(l[2].failed && l[2].slots.is_empty());
        assert_eq!(l[0].addr, Some("127.0.0.1:30001".parse().unwrap()));
    }
}
