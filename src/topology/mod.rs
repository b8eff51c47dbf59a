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
pub mod external;
pub mod process;

use crate::scenario::plan::TopologyPlan;
use crate::scenario::raw::{Backend, TopologyKind};
use process::{resolve_image, Flavor, Launcher, RedisProcess};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

/// Where nodes and sentinels connect to their peers from (see
/// `Topology::peer_source`); clients connect from 127.0.0.1.
pub const PEER_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The name sentinels monitor the primary by, unless `master_name` says.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
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
    launcher: Launcher,
    /// The source address nodes and sentinels make their peer connections
    /// from (replication, monitoring, cluster bus), so that a `partition`
    /// can cut those and nothing else; `None` where the server is older
    /// than Redis 7.0 (no `bind-source-addr`) or for a single node.
    pub peer_source: Option<Ipv4Addr>,
}

impl Topology {
    /// Starts the bare processes `plan` describes (step 1 above).
    /// `run_id` labels containers on the docker backend.
    pub async fn provision(
        plan: &TopologyPlan,
        backend: Backend,
        run_id: &str,
    ) -> Result<Topology, TopologyError> {
        let launcher = match backend {
            Backend::Process => Launcher::Process,
            Backend::Docker => Launcher::Docker {
                image: resolve_image(plan),
                run_id: run_id.to_string(),
            },
            Backend::External => return Ok(Self::external(plan)),
        };
        let mut topo = Topology {
            kind: plan.kind,
            plan: plan.clone(),
            nodes: Vec::new(),
            launcher,
            peer_source: None,
        };
        // On failure, `topo` drops here and stops what had started.
        topo.start_nodes().await?;
        Ok(topo)
    }

    /// A topology gameday attaches to and does not own: no nodes to start
    /// or stop (see `external`).
    pub fn external(plan: &TopologyPlan) -> Topology {
        Topology {
            kind: plan.kind,
            plan: plan.clone(),
            nodes: Vec::new(),
            launcher: Launcher::External,
            peer_source: None,
        }
    }

    async fn start_nodes(&mut self) -> Result<(), TopologyError> {
        let (plan, launcher) = (&self.plan, &self.launcher);
        let nodes = &mut self.nodes;
        let peer_source = &mut self.peer_source;
        let start = |id: String, role: Role, flavor: Flavor| async move {
            RedisProcess::start_as(&id, role, plan, flavor, launcher).await
        };
        match plan.kind {
            TopologyKind::Standalone => {
                nodes.push(start("redis-0".into(), Role::Primary, Flavor::Node).await?)
            }
            TopologyKind::Replicated | TopologyKind::Sentinel => {
                nodes.push(start("redis-0".into(), Role::Primary, Flavor::Node).await?);
                for i in 1..=plan.replicas {
                    nodes.push(start(format!("redis-{i}"), Role::Replica, Flavor::Node).await?);
                }
                *peer_source = assemble::peer_source_for(nodes[0].addr).await?;
                if plan.kind == TopologyKind::Sentinel {
                    let flavor = Flavor::Sentinel {
                        peer_source: *peer_source,
                    };
                    for i in 0..3 {
                        nodes.push(start(format!("sentinel-{i}"), Role::Sentinel, flavor).await?);
                    }
                }
            }
            TopologyKind::Cluster => {
                let flavor = Flavor::ClusterNode {
                    node_timeout_ms: plan.cluster_node_timeout.as_millis() as u64,
                };
                for i in 0..plan.masters * (1 + plan.replicas_per_master) {
                    let role = if i < plan.masters {
                        Role::Primary
                    } else {
                        Role::Replica
                    };
                    nodes.push(start(format!("redis-{i}"), role, flavor).await?);
                }
                *peer_source = assemble::peer_source_for(nodes[0].addr).await?;
            }
        }
        Ok(())
    }

    /// Stops every node and waits until each is gone.
    pub async fn stop(mut self) {
        for node in self.nodes.drain(..) {
            node.shutdown().await;
        }
    }

    /// The image the nodes run, on the docker backend.
    pub fn image(&self) -> Option<&str> {
        match &self.launcher {
            Launcher::Docker { image, .. } => Some(image),
            Launcher::Process | Launcher::External => None,
        }
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
    /// Each node's settings are then written to its config file, so that a
    /// node restarted by a fault comes back as it was.
    pub async fn assemble(&self, proxies: &ProxyMap) -> Result<(), TopologyError> {
        match self.kind {
            TopologyKind::Standalone => {}
            TopologyKind::Replicated => assemble::replication(self, proxies).await?,
            TopologyKind::Sentinel => {
                assemble::replication(self, proxies).await?;
                assemble::sentinels(self, proxies).await?
            }
            TopologyKind::Cluster => assemble::cluster(self, proxies).await?,
        }
        assemble::persist(self).await
    }

    /// How clients reach this topology, given the proxies.
    pub fn client_spec(&self, proxies: &ProxyMap) -> ClientSpec {
        let addrs = |role: Role| -> Vec<SocketAddr> {
            self.with_role(role).map(|n| proxies[&n.id]).collect()
        };
        match self.kind {
            TopologyKind::Standalone | TopologyKind::Replicated => {
                ClientSpec::Direct(addrs(Role::Primary)[0])
            }
            TopologyKind::Sentinel => ClientSpec::Sentinel {
                sentinels: addrs(Role::Sentinel),
                master: self.plan.master_name.clone(),
            },
            TopologyKind::Cluster => ClientSpec::Cluster {
                nodes: addrs(Role::Primary),
            },
        }
    }

    /// The nodes playing `role`, in start order.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &RedisProcess> {
        self.nodes.iter().filter(move |n| n.role == role)
    }

    /// The first primary.
    pub fn primary(&self) -> &RedisProcess {
        self.nodes
            .iter()
            .find(|n| n.role == Role::Primary)
            .expect("every topology has a primary")
    }
}
