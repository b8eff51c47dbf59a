//! The scenario file exactly as written: serde types that mirror scenario
//! format v1 key for key. Unknown keys are refused here (`deny_unknown_fields`);
//! values that need cross-checking keep their position (`Spanned`) so that
//! `validate` can point at them.

use crate::fault::FaultKind;
use crate::vocab::topo::{Backend, MaxmemoryPolicy, Persistence, Role, TopologyKind};
use crate::vocab::units::{Bytes, Dur};
use crate::workload::WorkloadKind;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    pub duration: Spanned<Dur>,
    pub seed: Option<u64>,
    pub topology: RawTopology,
    pub load: Spanned<RawLoad>,
    pub workload: Option<RawWorkloadHead>,
    /// The team's own service instead of a reference workload.
    pub target: Option<RawTargetHead>,
    #[serde(default, rename = "fault")]
    pub faults: Vec<Spanned<RawFaultHead>>,
    #[serde(default)]
    pub expect: Vec<Spanned<String>>,
    /// Stop conditions: rules that, once they hold on the data so far,
    /// end the run.
    #[serde(default)]
    pub abort_if: Vec<Spanned<String>>,
    /// What `gameday compare` judges a run on against its baselines.
    pub gate: Option<super::gate::RawGate>,
    /// A search for the knee instead of one load.
    pub capacity: Option<Spanned<RawCapacity>>,
}

/// `[capacity]`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapacity {
    pub start: Spanned<f64>,
    pub factor: Option<Spanned<f64>>,
    pub step: Option<Spanned<f64>>,
    pub max: Spanned<f64>,
    pub hold: Spanned<Dur>,
    pub resolution: Option<Spanned<f64>>,
    pub slo: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTopology {
    pub kind: TopologyKind,
    pub backend: Option<Backend>,
    pub image: Option<String>,
    pub maxmemory: Option<Bytes>,
    pub maxmemory_policy: Option<MaxmemoryPolicy>,
    pub persistence: Option<Persistence>,
    /// replicated and sentinel: replicas of the primary.
    pub replicas: Option<Spanned<i64>>,
    /// sentinel: how long a node must be silent before it is deemed down.
    pub down_after: Option<Spanned<Dur>>,
    /// sentinel: Sentinel's failover-timeout.
    pub failover_timeout: Option<Spanned<Dur>>,
    /// cluster: masters, each owning an equal share of the slots.
    pub masters: Option<Spanned<i64>>,
    /// cluster: replicas of each master.
    pub replicas_per_master: Option<Spanned<i64>>,
    /// cluster: cluster-node-timeout.
    pub cluster_node_timeout: Option<Spanned<Dur>>,
    /// sentinel: the name the sentinels monitor the primary by.
    pub master_name: Option<Spanned<String>>,
    /// The Toxiproxy API in front of the nodes (the CLI's `--toxiproxy-url`
    /// wins).
    pub toxiproxy_url: Option<Spanned<String>>,
    /// external: node, memory and failover faults are allowed too (the
    /// command line must confirm with `--allow-destructive`).
    pub allow_destructive: Option<Spanned<bool>>,
    /// external: the endpoints of a topology gameday did not start.
    #[serde(default, rename = "endpoint")]
    pub endpoints: Vec<Spanned<RawEndpoint>>,
    /// TLS on every client port, replication, the cluster bus and Sentinel.
    pub tls: Option<Spanned<bool>>,
    /// external with TLS: the CA that signed the servers' certificates.
    pub ca_file: Option<Spanned<String>>,
    /// An ACL user every client authenticates as.
    pub auth: Option<Spanned<RawAuth>>,
}

/// `auth = { user = "app", password_env = "REDIS_PASSWORD" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub user: Spanned<String>,
    pub password_env: Spanned<String>,
}

/// One `[[topology.endpoint]]` of an external topology.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    /// The id fault targets use (`node:<id>`).
    pub node: Spanned<String>,
    pub role: Role,
    /// Where clients connect (loopback only).
    pub addr: Spanned<String>,
    /// The Toxiproxy proxy that `addr` is, if one is in front already.
    pub proxy: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoad {
    pub users: Option<Spanned<i64>>,
    pub rate: Option<Spanned<f64>>,
    pub ramp: Option<Spanned<Dur>>,
    pub model: Option<Spanned<ModelName>>,
    pub max_in_flight: Option<Spanned<i64>>,
    pub max_queue: Option<Spanned<i64>>,
    pub arrivals: Option<Spanned<crate::load::ArrivalProcess>>,
    /// `[[load.stage]]`, in order.
    #[serde(default, rename = "stage")]
    pub stages: Vec<Spanned<RawStage>>,
}

/// One `[[load.stage]]`: a `rate` held, or a ramp to `ramp_to`, `for` a
/// while.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStage {
    pub name: Option<Spanned<String>>,
    pub rate: Option<Spanned<f64>>,
    pub ramp_to: Option<Spanned<f64>>,
    #[serde(rename = "for")]
    pub for_: Spanned<Dur>,
}

/// `[load] model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelName {
    Closed,
    Open,
}

/// `[workload]` as the first reading sees it: its kind. The kind's own
/// keys are read by `params`.
#[derive(Debug, Deserialize)]
pub struct RawWorkloadHead {
    pub kind: Spanned<WorkloadKind>,
}

/// `[target]` as the first reading sees it: its kind.
#[derive(Debug, Deserialize)]
pub struct RawTargetHead {
    pub kind: Spanned<TargetKind>,
}

/// The kinds of `[target]`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    Http,
}

impl TargetKind {
    pub fn workload(self) -> WorkloadKind {
        match self {
            TargetKind::Http => WorkloadKind::Http,
        }
    }
}

/// A `[[fault]]` as the first reading sees it: what every kind has. The
/// kind's own keys are read by `params`.
#[derive(Debug, Deserialize)]
pub struct RawFaultHead {
    pub name: Spanned<String>,
    pub kind: Spanned<FaultKind>,
    #[serde(default = "default_target")]
    pub target: Spanned<String>,
    pub at: Spanned<Dur>,
    #[serde(rename = "for")]
    pub for_: Spanned<Dur>,
    /// Rules written after a `[[fault]]` header land here (TOML puts them in
    /// that table); they join the scenario's expectations.
    #[serde(default)]
    pub expect: Vec<Spanned<String>>,
}

fn default_target() -> Spanned<String> {
    Spanned::new(0..0, "primary".to_string())
}
