//! Faults (L2): what a scenario injects, when, and into which nodes.
//!
//! Each kind lives in its own file, which owns everything about it: the
//! keys it takes in a `[[fault]]` table and their validation (`plan`), how
//! it is applied (`apply`, returning what is in force) and removed
//! (`remove`), and what it adds to the fault's record. This module holds
//! the one enum arm per kind that ties a file in; the conductor only keeps
//! the clock, the phases and the records.
//!
//! | kinds | file |
//! |---|---|
//! | down, latency, bandwidth, timeout, slow_close, reset_peer, slicer, limit_data | `network` |
//! | partition | `partition` |
//! | redis_error, slow_commands | `redis_error` |
//! | replica_resync | `replica_resync` |
//! | kill, restart, pause, client_pause, debug_sleep | `node` |
//! | failover | `failover` |
//! | memory_pressure | `memory` |
//! | gc_pause | `gc_pause` |

pub mod bgsave;
pub mod big_key;
pub mod cold_cache;
pub mod connection_storm;
pub mod failover;
pub mod gc_pause;
pub mod memory;
pub mod network;
pub mod node;
pub mod partition;
mod record;
pub mod redis_error;
pub mod replica_resync;

use crate::proxy::control::{ControlError, NetFault, ProxyControl};
use crate::topology::handle::NodeHandle;
use crate::topology::plan::TopologyPlan;
use crate::topology::TopologyError;
use crate::vocab::check::Checked;
use crate::workload::lock::GcPause;
use failover::{FailoverCtx, FailoverMode};
use memory::MemoryPressure;
use network::NetKind;
use node::NodeFault;
pub use record::{FaultRecord, Notes};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use toml::Spanned;

/// The scenario's `kind = "..."` of fault.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Down,
    Latency,
    Bandwidth,
    Timeout,
    SlowClose,
    ResetPeer,
    Slicer,
    LimitData,
    Partition,
    RedisError,
    SlowCommands,
    Kill,
    Restart,
    Pause,
    ClientPause,
    DebugSleep,
    Failover,
    MemoryPressure,
    GcPause,
    ColdCache,
    Bgsave,
    BigKey,
    ConnectionStorm,
    ReplicaResync,
}

/// The keys every `[[fault]]` takes, whatever its kind.
pub const COMMON_KEYS: &[&str] = &["name", "kind", "target", "at", "for", "expect"];

impl FaultKind {
    pub const ALL: [FaultKind; 24] = [
        FaultKind::Down,
        FaultKind::Latency,
        FaultKind::Bandwidth,
        FaultKind::Timeout,
        FaultKind::SlowClose,
        FaultKind::ResetPeer,
        FaultKind::Slicer,
        FaultKind::LimitData,
        FaultKind::Partition,
        FaultKind::RedisError,
        FaultKind::SlowCommands,
        FaultKind::Kill,
        FaultKind::Restart,
        FaultKind::Pause,
        FaultKind::ClientPause,
        FaultKind::DebugSleep,
        FaultKind::Failover,
        FaultKind::MemoryPressure,
        FaultKind::GcPause,
        FaultKind::ColdCache,
        FaultKind::Bgsave,
        FaultKind::BigKey,
        FaultKind::ConnectionStorm,
        FaultKind::ReplicaResync,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Down => "down",
            FaultKind::Latency => "latency",
            FaultKind::Bandwidth => "bandwidth",
            FaultKind::Timeout => "timeout",
            FaultKind::SlowClose => "slow_close",
            FaultKind::ResetPeer => "reset_peer",
            FaultKind::Slicer => "slicer",
            FaultKind::LimitData => "limit_data",
            FaultKind::Partition => "partition",
            FaultKind::RedisError => "redis_error",
            FaultKind::SlowCommands => "slow_commands",
            FaultKind::Kill => "kill",
            FaultKind::Restart => "restart",
            FaultKind::Pause => "pause",
            FaultKind::ClientPause => "client_pause",
            FaultKind::DebugSleep => "debug_sleep",
            FaultKind::Failover => "failover",
            FaultKind::MemoryPressure => "memory_pressure",
            FaultKind::GcPause => "gc_pause",
            FaultKind::ColdCache => "cold_cache",
            FaultKind::Bgsave => "bgsave",
            FaultKind::BigKey => "big_key",
            FaultKind::ConnectionStorm => "connection_storm",
            FaultKind::ReplicaResync => "replica_resync",
        }
    }

    /// The keys this kind takes besides `COMMON_KEYS`.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            FaultKind::Down => NetKind::Down.keys(),
            FaultKind::Latency => NetKind::Latency.keys(),
            FaultKind::Bandwidth => NetKind::Bandwidth.keys(),
            FaultKind::Timeout => NetKind::Timeout.keys(),
            FaultKind::SlowClose => NetKind::SlowClose.keys(),
            FaultKind::ResetPeer => NetKind::ResetPeer.keys(),
            FaultKind::Slicer => NetKind::Slicer.keys(),
            FaultKind::LimitData => NetKind::LimitData.keys(),
            FaultKind::Partition => partition::KEYS,
            FaultKind::RedisError => redis_error::KEYS,
            FaultKind::SlowCommands => redis_error::SLOW_KEYS,
            FaultKind::Kill
            | FaultKind::Restart
            | FaultKind::Pause
            | FaultKind::ClientPause
            | FaultKind::DebugSleep => node::KEYS,
            FaultKind::Failover => failover::KEYS,
            FaultKind::MemoryPressure => memory::KEYS,
            FaultKind::GcPause => gc_pause::KEYS,
            FaultKind::ColdCache => cold_cache::KEYS,
            FaultKind::Bgsave => bgsave::KEYS,
            FaultKind::BigKey => big_key::KEYS,
            FaultKind::ConnectionStorm => connection_storm::KEYS,
            FaultKind::ReplicaResync => replica_resync::KEYS,
        }
    }

    /// Whether the fault acts on the node itself rather than on its traffic.
    pub fn on_the_node(self) -> bool {
        match self {
            FaultKind::Down
            | FaultKind::Latency
            | FaultKind::Bandwidth
            | FaultKind::Timeout
            | FaultKind::SlowClose
            | FaultKind::ResetPeer
            | FaultKind::Slicer
            | FaultKind::LimitData
            | FaultKind::Partition
            | FaultKind::RedisError
            | FaultKind::SlowCommands => false,
            FaultKind::Kill
            | FaultKind::Restart
            | FaultKind::Pause
            | FaultKind::ClientPause
            | FaultKind::DebugSleep
            | FaultKind::Failover
            | FaultKind::MemoryPressure
            | FaultKind::GcPause
            | FaultKind::ColdCache
            | FaultKind::Bgsave
            | FaultKind::BigKey
            | FaultKind::ConnectionStorm
            | FaultKind::ReplicaResync => true,
        }
    }

    /// Reads and validates this kind's parameters from its `[[fault]]`
    /// table (the scenario layer calls it with the TOML deserializer of
    /// that table, so every value keeps its position). A kind without
    /// parameters reads nothing: the key check already refused any.
    pub fn read<'de, D: Deserializer<'de>>(
        self,
        d: D,
        ctx: &FaultCtx,
    ) -> Result<Checked<Fault>, D::Error> {
        let bare = |d: D, fault: Fault| IgnoredAny::deserialize(d).map(|_| Ok(fault));
        let net = |d: D, kind: NetKind| {
            network::Raw::deserialize(d).map(|r| r.plan(ctx, kind).map(Fault::Network))
        };
        match self {
            FaultKind::Down => net(d, NetKind::Down),
            FaultKind::Latency => net(d, NetKind::Latency),
            FaultKind::Bandwidth => net(d, NetKind::Bandwidth),
            FaultKind::Timeout => net(d, NetKind::Timeout),
            FaultKind::SlowClose => net(d, NetKind::SlowClose),
            FaultKind::ResetPeer => net(d, NetKind::ResetPeer),
            FaultKind::Slicer => net(d, NetKind::Slicer),
            FaultKind::LimitData => net(d, NetKind::LimitData),
            FaultKind::Partition => bare(d, Fault::Partition),
            FaultKind::RedisError => {
                redis_error::Raw::deserialize(d).map(|r| r.plan(ctx, false).map(Fault::Network))
            }
            FaultKind::SlowCommands => {
                redis_error::Raw::deserialize(d).map(|r| r.plan(ctx, true).map(Fault::Network))
            }
            FaultKind::Kill => bare(d, Fault::Node(NodeFault::Kill)),
            FaultKind::Restart => bare(d, Fault::Node(NodeFault::Restart)),
            FaultKind::Pause => bare(d, Fault::Node(NodeFault::Pause)),
            FaultKind::ClientPause => bare(d, Fault::Node(NodeFault::ClientPause)),
            FaultKind::DebugSleep => bare(d, Fault::Node(NodeFault::DebugSleep)),
            FaultKind::Failover => {
                failover::Raw::deserialize(d).map(|r| r.plan(ctx).map(Fault::Failover))
            }
            FaultKind::MemoryPressure => {
                memory::Raw::deserialize(d).map(|r| r.plan(ctx).map(Fault::Memory))
            }
            FaultKind::GcPause => bare(d, Fault::GcPause),
            FaultKind::ColdCache => {
                cold_cache::Raw::deserialize(d).map(|r| r.plan(ctx).map(Fault::ColdCache))
            }
            FaultKind::Bgsave => {
                bgsave::Raw::deserialize(d).map(|r| r.plan(ctx).map(Fault::Bgsave))
            }
            FaultKind::BigKey => {
                big_key::Raw::deserialize(d).map(|r| r.plan(ctx).map(Fault::BigKey))
            }
            FaultKind::ConnectionStorm => connection_storm::Raw::deserialize(d)
                .map(|r| r.plan(ctx).map(Fault::ConnectionStorm)),
            FaultKind::ReplicaResync => {
                replica_resync::Raw::deserialize(d).map(|r| r.plan(ctx).map(Fault::ReplicaResync))
            }
        }
    }
}

/// What validating a fault's parameters may look at.
pub struct FaultCtx<'a> {
    pub name: &'a Spanned<String>,
    pub kind: FaultKind,
    pub target: &'a Target,
    pub target_span: Range<usize>,
    pub topology: &'a TopologyPlan,
}

/// Which nodes a fault hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Primary,
    Replicas,
    All,
    Sentinels,
    Node(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Primary => f.write_str("primary"),
            Target::Replicas => f.write_str("replicas"),
            Target::All => f.write_str("all"),
            Target::Sentinels => f.write_str("sentinels"),
            Target::Node(id) => write!(f, "node:{id}"),
        }
    }
}

/// One validated fault of the timeline.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub name: String,
    pub kind: FaultKind,
    pub fault: Fault,
    pub target: Target,
    pub at: Duration,
    pub duration: Duration,
}

impl FaultPlan {
    pub fn end(&self) -> Duration {
        self.at + self.duration
    }

    /// Whether the fault acts on the nodes themselves (and so needs
    /// `allow_destructive` on an external topology). Network faults only
    /// touch the traffic through a proxy: none of them is.
    pub fn destructive(&self) -> bool {
        match self.fault {
            Fault::Node(_)
            | Fault::Failover(_)
            | Fault::Memory(_)
            | Fault::ColdCache(_)
            | Fault::Bgsave(_)
            | Fault::BigKey(_)
            | Fault::ConnectionStorm(_)
            | Fault::ReplicaResync(_) => true,
            Fault::Network(_) | Fault::Partition | Fault::GcPause => false,
        }
    }
}

/// What a fault does, one arm per fault file.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// A toxic, or a `down`, on the client paths of the targets.
    Network(NetFault),
    /// Peer connections of the targets held (replication, monitoring, bus).
    Partition,
    /// The target nodes themselves are killed, stopped or paused.
    Node(NodeFault),
    /// The primary is replaced.
    Failover(FailoverMode),
    /// Memory gets scarce on the targets.
    Memory(MemoryPressure),
    /// The next lock holder stalls (the application, not Redis).
    GcPause,
    /// Keys removed from the targets at once.
    ColdCache(cold_cache::ColdCache),
    /// A fork (BGSAVE) under load.
    Bgsave(bgsave::Bgsave),
    /// A huge key read whole, then deleted.
    BigKey(big_key::BigKey),
    /// Every client connection cut at once.
    ConnectionStorm(connection_storm::ConnectionStorm),
    /// Replicas cut off past the backlog, then back: full resyncs.
    ReplicaResync(replica_resync::ReplicaResync),
}

/// Where a fault acts: what the run resolved its target to.
pub struct Env {
    pub control: ProxyControl,
    /// The proxies in front of the targets (peer paths for a partition).
    pub proxies: Vec<String>,
    pub nodes: Vec<NodeHandle>,
    /// The topology's primary, if it has one (a `replica_resync` reads and
    /// tunes it).
    pub primary: Option<NodeHandle>,
    /// What a `failover` needs (sentinel and cluster topologies).
    pub failover: Option<FailoverCtx>,
    /// The run's key prefix (`gameday:<run id>:`), for ballast keys.
    pub prefix: String,
    /// Where a `gc_pause` is armed (the lock workload).
    pub gc: Option<Arc<GcPause>>,
    /// Whether the nodes make their peer connections from their own source
    /// address, which a partition needs.
    pub peer_source: bool,
    /// Whether the proxies are gameday's own (embedded, or `gameday proxy`
    /// behind `--toxiproxy-url`: its version says so), which alone know its
    /// toxics (`partition`, `redis_error`, `slow_commands`); a real
    /// Toxiproxy does not.
    pub own_proxy: bool,
}

/// A fault in force, until `remove`.
pub enum Active {
    Network(network::Active),
    Node(node::Active),
    Failover(failover::Active),
    Memory(memory::Active),
    GcPause(gc_pause::Active),
    Bgsave(bgsave::Active),
    BigKey(big_key::Active),
    ConnectionStorm(connection_storm::Active),
    ReplicaResync(replica_resync::Active),
    /// Done at once (a cold cache): nothing to remove.
    Done,
}

/// A fault that could not be applied or removed: the run is void.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error(transparent)]
    Proxy(#[from] ControlError),
    #[error("fault `{fault}`: {source}")]
    Node {
        fault: String,
        #[source]
        source: TopologyError,
    },
    #[error("fault `{fault}`: {source}")]
    Failover {
        fault: String,
        #[source]
        source: failover::FailoverError,
    },
    /// A gc_pause in a run whose workload has nothing to stall (validation
    /// refuses such a scenario).
    #[error("fault `{fault}`: a gc_pause needs the lock's holders or the queue's consumers")]
    NoLockHolders { fault: String },
}

/// A seed from a fault's name: the same fault chooses the same way.
fn name_seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// When a fault runs, on the run's clock.
pub struct Window {
    pub t0: Instant,
    /// When the fault is due to end.
    pub end: Instant,
    pub duration: Duration,
    /// Turns true when the run is stopped early.
    pub stop: watch::Receiver<bool>,
}

impl FaultPlan {
    /// Why this fault cannot act on what its target resolved to, if so.
    pub fn unfit(&self, env: &Env) -> Option<&'static str> {
        const NO_NODE: &str = "matches no node of this topology";
        let no_proxy = env.proxies.is_empty().then_some(NO_NODE);
        let no_node = env.nodes.is_empty().then_some(NO_NODE);
        match &self.fault {
            Fault::Network(NetFault::Toxic { kind, .. }) if kind.reads_commands() => {
                (!env.own_proxy).then_some(redis_error::NEEDS).or(no_proxy)
            }
            Fault::Network(NetFault::Toxic { path, .. }) if !path.is_all() => (!env.peer_source
                || !env.own_proxy)
                .then_some(network::PATH_NEEDS)
                .or(no_proxy),
            Fault::Network(_) => no_proxy,
            Fault::Partition => (!env.peer_source || !env.own_proxy)
                .then_some(partition::NEEDS)
                .or(no_proxy),
            Fault::Node(n) => no_node.or((n.needs_owned() && env.nodes.iter().any(|n| !n.owned()))
                .then_some(node::NEEDS_OWNED)),
            Fault::Failover(_) => no_node.or(env.failover.is_none().then_some(failover::NEEDS)),
            Fault::Memory(_)
            | Fault::ColdCache(_)
            | Fault::Bgsave(_)
            | Fault::BigKey(_)
            | Fault::ConnectionStorm(_)
            | Fault::ReplicaResync(_) => no_node,
            Fault::GcPause => None,
        }
    }

    /// Whether the fault cuts peer paths (every proxy of the targets, bus
    /// included) rather than client paths.
    pub fn on_peer_paths(&self) -> bool {
        match self.fault {
            Fault::Partition => true,
            Fault::Network(_)
            | Fault::Node(_)
            | Fault::Failover(_)
            | Fault::Memory(_)
            | Fault::GcPause
            | Fault::ColdCache(_)
            | Fault::Bgsave(_)
            | Fault::BigKey(_)
            | Fault::ConnectionStorm(_)
            | Fault::ReplicaResync(_) => false,
        }
    }

    /// Puts the fault in force; `notes` takes what it measures.
    pub async fn apply(&self, env: &Env, w: &Window, notes: &Notes) -> Result<Active, FaultError> {
        let on_node = |source| FaultError::Node {
            fault: self.name.clone(),
            source,
        };
        Ok(match &self.fault {
            Fault::Network(net) => Active::Network(network::apply(env, net).await?),
            Fault::Partition => Active::Network(partition::apply(env).await?),
            Fault::Node(n) => Active::Node(node::apply(env, n, w).await.map_err(on_node)?),
            Fault::Failover(mode) => Active::Failover(
                failover::apply(env, *mode, &self.target, w, notes)
                    .await
                    .map_err(|source| FaultError::Failover {
                        fault: self.name.clone(),
                        source,
                    })?,
            ),
            Fault::Memory(m) => Active::Memory(memory::apply_all(env, m).await.map_err(on_node)?),
            Fault::GcPause => Active::GcPause(gc_pause::apply(env, w).ok_or_else(|| {
                FaultError::NoLockHolders {
                    fault: self.name.clone(),
                }
            })?),
            Fault::ColdCache(c) => {
                cold_cache::apply(env, c, &self.target, name_seed(&self.name), notes)
                    .await
                    .map_err(on_node)?;
                Active::Done
            }
            Fault::Bgsave(b) => Active::Bgsave(bgsave::apply(env, b).await.map_err(on_node)?),
            Fault::BigKey(b) => Active::BigKey(big_key::apply(env, b).await.map_err(on_node)?),
            Fault::ConnectionStorm(c) => {
                Active::ConnectionStorm(connection_storm::apply(env, c).await.map_err(on_node)?)
            }
            Fault::ReplicaResync(r) => {
                Active::ReplicaResync(replica_resync::apply(env, r).await.map_err(on_node)?)
            }
        })
    }
}

impl Active {
    /// Ends the fault and waits until it is gone; `notes` takes what it
    /// measured. A network fault is gone once the proxies acknowledged it,
    /// before they are read back: what is left to confirm is returned, for
    /// after the recovery phase has begun.
    pub async fn remove(
        self,
        plan: &FaultPlan,
        env: &Env,
        w: &Window,
        notes: &Notes,
    ) -> Result<Option<network::Unconfirmed>, FaultError> {
        let on_node = |source| FaultError::Node {
            fault: plan.name.clone(),
            source,
        };
        match self {
            Active::Network(a) => return Ok(Some(a.remove(env).await?)),
            Active::Node(a) => a.remove(env).await.map_err(on_node)?,
            Active::Failover(a) => {
                a.remove(w, notes)
                    .await
                    .map_err(|source| FaultError::Failover {
                        fault: plan.name.clone(),
                        source,
                    })?
            }
            Active::Memory(a) => a.remove(notes).await.map_err(on_node)?,
            Active::GcPause(a) => a.remove().await,
            Active::Bgsave(a) => a.remove(notes).await.map_err(on_node)?,
            Active::BigKey(a) => a.remove(notes).await.map_err(on_node)?,
            Active::ConnectionStorm(a) => a.remove(notes).await.map_err(on_node)?,
            Active::ReplicaResync(a) => a.remove(notes).await.map_err(on_node)?,
            Active::Done => {}
        }
        Ok(None)
    }
}
