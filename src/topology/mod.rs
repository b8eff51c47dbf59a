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
pub mod config;
mod container;
pub use container::OWNER_LABEL;
use security::Security;
pub mod external;
pub mod handle;
mod local;
pub mod plan;
pub mod process;
pub mod security;

use crate::topology::plan::TopologyPlan;
use crate::vocab::topo::Role;
use crate::vocab::topo::{Backend, TopologyKind};
use config::Flavor;
use container::resolve_image;
use process::{Launcher, RedisProcess};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

/// Why nodes could not be started, assembled, or acted on.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(transparent)]
    Security(#[from] security::SecurityError),
    /// An action on a node gameday does not run (an external lab's).
    #[error("node {node}: cannot {action} a node gameday does not run (an external lab's nodes are the lab's own)")]
    NotRun { node: String, action: &'static str },
    #[error("node {node} exited during start ({status}); its log ends with:\n{log}")]
    Exited {
        node: String,
        status: String,
        log: String,
    },
    #[error("cannot start `{}`: {source} (install Redis, e.g. `apt-get install redis-server`, or set GAMEDAY_REDIS_SERVER)", bin.display())]
    Spawn {
        bin: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("node {node}: {what}: {source}")]
    Io {
        node: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("node {node}: no free port after {attempts} attempts")]
    NoFreePort { node: String, attempts: usize },
    #[error("node {node}: cannot start a container from `{image}`: {source} (is a Docker engine running, and is the image present or pullable? ci/docker.sh builds a local one; name it with GAMEDAY_REDIS_IMAGE)")]
    Container {
        node: String,
        image: String,
        #[source]
        source: Box<testcontainers::TestcontainersError>,
    },
    #[error("node {node}: {action}: {source}")]
    Docker {
        node: String,
        action: &'static str,
        #[source]
        source: Box<testcontainers::TestcontainersError>,
    },
    #[error("node {node} did not answer PING on {addr} within {}s; log:\n{log}", limit.as_secs())]
    NoPing {
        node: String,
        addr: SocketAddr,
        limit: std::time::Duration,
        log: String,
    },
    #[error("{what}: not ready within {}s (last seen: {seen})", limit.as_secs())]
    NotReady {
        what: String,
        limit: std::time::Duration,
        seen: String,
    },
    #[error("node {node}: {source}")]
    Command {
        node: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("node {node}: {source}")]
    Node {
        node: String,
        #[source]
        source: crate::redis_admin::AdminError,
    },
    #[error(transparent)]
    Admin(#[from] crate::redis_admin::AdminError),
    #[error(transparent)]
    External(Box<external::Mismatch>),
    #[error("a node task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl From<external::Mismatch> for TopologyError {
    fn from(m: external::Mismatch) -> Self {
        TopologyError::External(Box::new(m))
    }
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

/// The environment variables that name Redis for a service under test
/// (the last three only with `tls` or `auth`).
pub const ENDPOINT_VARS: &[&str] = &[
    "REDIS_URL",
    "REDIS_SENTINELS",
    "REDIS_MASTER_NAME",
    "REDIS_CLUSTER_NODES",
    "REDIS_USERNAME",
    "REDIS_PASSWORD",
    "REDIS_CA_FILE",
];

impl ClientSpec {
    /// The first address clients start from.
    pub fn first_addr(&self) -> SocketAddr {
        match self {
            ClientSpec::Direct(a) => *a,
            ClientSpec::Sentinel { sentinels, .. } => sentinels[0],
            ClientSpec::Cluster { nodes } => nodes[0],
        }
    }

    /// The variables a service reads to reach this topology (the addresses
    /// are the client-path proxies).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let list = |addrs: &[SocketAddr]| {
            addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            ClientSpec::Direct(addr) => {
                let access = crate::redis_admin::access::access(*addr);
                let scheme = if access.tls_ca.is_some() {
                    "rediss"
                } else {
                    "redis"
                };
                vec![("REDIS_URL", format!("{scheme}://{addr}"))]
            }
            ClientSpec::Sentinel { sentinels, master } => vec![
                ("REDIS_SENTINELS", list(sentinels)),
                ("REDIS_MASTER_NAME", master.clone()),
            ],
            ClientSpec::Cluster { nodes } => vec![("REDIS_CLUSTER_NODES", list(nodes))],
        }
    }
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
    /// TLS and the ACL user, as every path to the nodes uses them.
    pub security: Security,
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
            Backend::External => {
                let mut topo = Self::external(plan);
                topo.security = Security::external(&plan.security)?;
                return Ok(topo);
            }
        };
        let mut topo = Topology {
            kind: plan.kind,
            plan: plan.clone(),
            nodes: Vec::new(),
            launcher,
            peer_source: None,
            security: Security::owned(&plan.security)?,
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
            security: Security::default(),
        }
    }

    async fn start_nodes(&mut self) -> Result<(), TopologyError> {
        let (plan, launcher, security) = (&self.plan, &self.launcher, &self.security);
        let nodes = &mut self.nodes;
        let peer_source = &mut self.peer_source;
        let start = |id: String, role: Role, flavor: Flavor| async move {
            RedisProcess::start_as(&id, role, plan, (flavor, security), launcher).await
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
