//! What the scenario asks of the topology, validated: the engine-owned
//! configuration `Topology::provision` and the external backend read.

use crate::vocab::topo::{
    Backend, MaxmemoryPolicy, Persistence, Role, TopologyKind, SENTINEL_MASTER,
};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct TopologyPlan {
    pub kind: TopologyKind,
    pub backend: Backend,
    pub image: Option<String>,
    pub maxmemory: Option<u64>,
    pub maxmemory_policy: Option<MaxmemoryPolicy>,
    pub persistence: Persistence,
    /// replicated / sentinel: replicas of the primary.
    pub replicas: usize,
    /// sentinel: down-after-milliseconds.
    pub down_after: Duration,
    /// sentinel: failover-timeout.
    pub failover_timeout: Duration,
    /// cluster: masters.
    pub masters: usize,
    /// cluster: replicas of each master.
    pub replicas_per_master: usize,
    /// cluster: cluster-node-timeout.
    pub cluster_node_timeout: Duration,
    /// sentinel: the name the sentinels monitor the primary by.
    pub master_name: String,
    /// The Toxiproxy API to use instead of the embedded one.
    pub toxiproxy_url: Option<String>,
    /// external: what the scenario says about the topology it attaches to.
    pub external: ExternalPlan,
    /// TLS and the ACL user (`tls`, `ca_file`, `auth`).
    pub security: super::security::SecurityPlan,
}

/// An existing topology, described by its endpoints.
#[derive(Debug, Clone, Default)]
pub struct ExternalPlan {
    pub endpoints: Vec<ExternalEndpoint>,
    /// Destructive faults are allowed: the scenario says so and, once the
    /// plan is resolved, the command line agrees.
    pub allow_destructive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalEndpoint {
    pub node: String,
    pub role: Role,
    /// Where clients connect: a loopback address.
    pub addr: SocketAddr,
    /// The Toxiproxy proxy that `addr` is, when one is there already.
    pub proxy: Option<String>,
}

impl TopologyPlan {
    /// One local redis-server, no memory limit, no persistence.
    pub fn standalone() -> Self {
        TopologyPlan {
            kind: TopologyKind::Standalone,
            backend: Backend::Process,
            image: None,
            maxmemory: None,
            maxmemory_policy: None,
            persistence: Persistence::None,
            replicas: 2,
            down_after: Duration::from_secs(2),
            failover_timeout: Duration::from_secs(10),
            masters: 3,
            replicas_per_master: 1,
            cluster_node_timeout: Duration::from_secs(2),
            master_name: SENTINEL_MASTER.to_string(),
            toxiproxy_url: None,
            external: ExternalPlan::default(),
            security: Default::default(),
        }
    }

    /// The replicas a client may read from: the declared replicas of an
    /// external topology, `replicas` of a replicated or Sentinel one, every
    /// master's of a cluster, none of a standalone node.
    pub fn readable_replicas(&self) -> usize {
        let external = self.external.endpoints.iter();
        match (self.backend, self.kind) {
            (_, TopologyKind::Standalone) => 0,
            (Backend::External, _) => external.filter(|e| e.role == Role::Replica).count(),
            (_, TopologyKind::Cluster) => self.masters * self.replicas_per_master,
            (_, TopologyKind::Replicated | TopologyKind::Sentinel) => self.replicas,
        }
    }

    /// The same settings for another topology kind.
    pub fn of_kind(kind: TopologyKind) -> Self {
        TopologyPlan {
            kind,
            ..Self::standalone()
        }
    }
}
