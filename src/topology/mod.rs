//! Topologies: who provisions the Redis nodes a run talks to. Today the
//! `process` backend provisions a `standalone` node; the run puts a proxy in
//! front of every node, so clients only ever see proxy addresses.

pub mod process;

use crate::scenario::plan::TopologyPlan;
use crate::scenario::raw::{Backend, TopologyKind};
use process::RedisProcess;
use serde::Serialize;
use std::net::SocketAddr;

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

/// A provisioned topology. Dropping it stops every node it started.
pub struct Topology {
    pub nodes: Vec<RedisProcess>,
}

impl Topology {
    /// Starts the nodes `plan` describes, ready for load.
    pub async fn provision(
        plan: &TopologyPlan,
        backend: Backend,
    ) -> Result<Topology, TopologyError> {
        match (backend, plan.kind) {
            (Backend::Process, TopologyKind::Standalone) => {
                let node = RedisProcess::start("redis-0", Role::Primary, plan).await?;
                Ok(Topology { nodes: vec![node] })
            }
            (Backend::Process, kind) => Err(TopologyError::Unsupported(format!(
                "the {} topology is not available yet (only standalone runs today)",
                crate::scenario::topology_name(kind)
            ))),
            (other, _) => Err(TopologyError::Unsupported(format!(
                "the {} backend is not available yet (use --backend process)",
                match other {
                    Backend::Docker => "docker",
                    Backend::External => "external",
                    Backend::Process => "process",
                }
            ))),
        }
    }

    /// The node a client op addresses first.
    pub fn primary(&self) -> &RedisProcess {
        self.nodes
            .iter()
            .find(|n| n.role == Role::Primary)
            .expect("every topology has a primary")
    }

    /// Real addresses of the nodes, by id.
    pub fn addrs(&self) -> Vec<(String, Role, SocketAddr)> {
        self.nodes
            .iter()
            .map(|n| (n.id.clone(), n.role, n.addr))
            .collect()
    }
}
