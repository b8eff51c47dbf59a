//! Topologies: the Redis nodes of a run. Provisioning happens in two steps
//! so that every path can go through a proxy:
//!
//! 1. `Topology::provision` starts bare processes (nodes and sentinels) on
//!    free loopback ports;
//! 2. the run puts a proxy in front of every `endpoint` (each node's client
//!    port, each cluster node's bus port, each sentinel);
//! 3. `Topology::assemble` wires the topology *through those proxies*: nodes
//!    announce their proxy addresses, replicas replicate from the primary's
//!    proxy, sentinels monitor through proxies, cluster nodes meet through
//!    their bus proxies. Clients, learning addresses from the servers, only
//!    ever see proxies.

mod assemble;
pub mod process;

use crate::scenario::plan::TopologyPlan;
use crate::scenario::raw::{Backend, TopologyKind};
use process::{Flavor, RedisProcess};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The name clients and sentinels know the monitored primary by.
pub const SENTINEL_MASTER: &str = "gameday";

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Provision(String),
    #[error("node {node} exited during start ({status}); its log ends with:\n{log}")]
    Exited {
        node: String,
        status: String,
        log: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Primary,
    Replica,
    Sentinel,
}

/// Which side of a node an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Where clients (and replicas, and sentinels) connect.
    Client,
    /// The cluster bus, node to node.
    Bus,
}

/// One TCP endpoint that gets its own proxy.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `<node id>` for client ports, `<node id>-bus` for bus ports.
    pub name: String,
    pub node: String,
    pub role: Role,
    pub port: Port,
    pub addr: SocketAddr,
}

/// Where each endpoint's proxy listens, by endpoint name.
pub type ProxyMap = BTreeMap<String, SocketAddr>;

/// How a workload reaches the topology.
#[derive(Debug, Clone)]
pub enum ClientSpec {
    /// One address (standalone, replicated: the primary's proxy).
    Direct(SocketAddr),
    /// Ask these sentinels (proxies) for the primary.
    Sentinel {
        sentinels: Vec<SocketAddr>,
        master: String,
    },
    /// Start from these cluster nodes (proxies); the rest is discovered.
    Cluster { nodes: Vec<SocketAddr> },
}

/// A provisioned topology. Dropping it stops every process it started.
pub struct Topology {
    pub kind: TopologyKind,
    pub plan: TopologyPlan,
    pub nodes: Vec<RedisProcess>,
}

impl Topology {
    /// Starts the bare processes `plan` describes (step 1 above).
    pub async fn provision(
        plan: &TopologyPlan,
        backend: Backend,
    ) -> Result<Topology, TopologyError> {
        if backend != Backend::Process {
            return Err(TopologyError::Unsupported(format!(
                "the {} backend is not available yet (use --backend process)",
                format!("{backend:?}").to_lowercase()
            )));
        }
        let mut nodes = Vec::new();
        let node = Flavor::Node;
        match plan.kind {
            TopologyKind::Standalone => {
                nodes.push(RedisProcess::start_as("redis-0", Role::Primary, plan, node).await?)
            }
            TopologyKind::Replicated | TopologyKind::Sentinel => {
                nodes.push(RedisProcess::start_as("redis-0", Role::Primary, plan, node).await?);
                for i in 1..=plan.replicas {
                    nodes.push(
                        RedisProcess::start_as(&format!("redis-{i}"), Role::Replica, plan, node)
                            .await?,
                    );
                }
                if plan.kind == TopologyKind::Sentinel {
                    for i in 0..3 {
                        let id = format!("sentinel-{i}");
                        nodes.push(
                            RedisProcess::start_as(&id, Role::Sentinel, plan, Flavor::Sentinel)
                                .await?,
                        );
                    }
                }
            }
            TopologyKind::Cluster => {
                let flavor = Flavor::ClusterNode {
                    node_timeout_ms: plan.cluster_node_timeout.as_millis() as u64,
                };
                let total = plan.masters * (1 + plan.replicas_per_master);
                for i in 0..total {
                    let role = if i < plan.masters {
                        Role::Primary
                    } else {
                        Role::Replica
                    };
                    nodes.push(
                        RedisProcess::start_as(&format!("redis-{i}"), role, plan, flavor).await?,
                    );
                }
            }
        }
        Ok(Topology {
            kind: plan.kind,
            plan: plan.clone(),
            nodes,
        })
    }

    /// Every endpoint that needs a proxy (step 2).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let mut out = Vec::new();
        for n in &self.nodes {
            out.push(Endpoint {
                name: n.id.clone(),
                node: n.id.clone(),
                role: n.role,
                port: Port::Client,
                addr: n.addr,
            });
            if let Some(bus) = n.bus {
                out.push(Endpoint {
                    name: format!("{}-bus", n.id),
                    node: n.id.clone(),
                    role: n.role,
                    port: Port::Bus,
                    addr: bus,
                });
            }
        }
        out
    }

    /// Wires the topology through the proxies and waits until it is ready
    /// (step 3).
    pub async fn assemble(&self, proxies: &ProxyMap) -> Result<(), TopologyError> {
        match self.kind {
            TopologyKind::Standalone => Ok(()),
            TopologyKind::Replicated => assemble::replication(self, proxies).await,
            TopologyKind::Sentinel => {
                assemble::replication(self, proxies).await?;
                assemble::sentinels(self, proxies).await
            }
            TopologyKind::Cluster => assemble::cluster(self, proxies).await,
        }
    }

    /// How clients reach this topology, given the proxies.
    pub fn client_spec(&self, proxies: &ProxyMap) -> ClientSpec {
        let addrs = |role: Role| -> Vec<SocketAddr> {
            self.nodes
                .iter()
                .filter(|n| n.role == role)
                .map(|n| proxies[&n.id])
                .collect()
        };
        match self.kind {
            TopologyKind::Standalone | TopologyKind::Replicated => {
                ClientSpec::Direct(addrs(Role::Primary)[0])
            }
            TopologyKind::Sentinel => ClientSpec::Sentinel {
                sentinels: addrs(Role::Sentinel),
                master: SENTINEL_MASTER.into(),
            },
            TopologyKind::Cluster => ClientSpec::Cluster {
                nodes: addrs(Role::Primary),
            },
        }
    }

    /// The first primary.
    pub fn primary(&self) -> &RedisProcess {
        self.nodes
            .iter()
            .find(|n| n.role == Role::Primary)
            .expect("every topology has a primary")
    }
}
