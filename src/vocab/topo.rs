//! The words a topology is described in, shared by the scenario that names
//! them, the infrastructure that builds them and the reports that show
//! them. Each reported enum spells itself with `as_str()`, the same word the
//! scenario file uses.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Where nodes and sentinels connect to their peers from, so that a
/// `partition` can cut those connections and nothing else; clients connect
/// from 127.0.0.1.
pub const PEER_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The name sentinels monitor the primary by, unless `master_name` says.
pub const SENTINEL_MASTER: &str = "gameday";

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TopologyKind {
    Standalone,
    Replicated,
    Sentinel,
    Cluster,
}

impl TopologyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TopologyKind::Standalone => "standalone",
            TopologyKind::Replicated => "replicated",
            TopologyKind::Sentinel => "sentinel",
            TopologyKind::Cluster => "cluster",
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Process,
    Docker,
    External,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Process => "process",
            Backend::Docker => "docker",
            Backend::External => "external",
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Persistence {
    #[default]
    None,
    Aof,
    Rdb,
}

#[derive(Debug, Deserialize, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MaxmemoryPolicy {
    Noeviction,
    AllkeysLru,
    AllkeysLfu,
    AllkeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

impl MaxmemoryPolicy {
    /// The policy as Redis spells it (`allkeys-lru`).
    pub fn as_str(self) -> &'static str {
        match self {
            MaxmemoryPolicy::Noeviction => "noeviction",
            MaxmemoryPolicy::AllkeysLru => "allkeys-lru",
            MaxmemoryPolicy::AllkeysLfu => "allkeys-lfu",
            MaxmemoryPolicy::AllkeysRandom => "allkeys-random",
            MaxmemoryPolicy::VolatileLru => "volatile-lru",
            MaxmemoryPolicy::VolatileLfu => "volatile-lfu",
            MaxmemoryPolicy::VolatileRandom => "volatile-random",
            MaxmemoryPolicy::VolatileTtl => "volatile-ttl",
        }
    }
}

/// What a node is, as the scenario and the reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Primary,
    Replica,
    Sentinel,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
            Role::Sentinel => "sentinel",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `as_str` is the word serde reads, so scenario and report agree.
    #[test]
    fn names_match_the_scenario_words() {
        for p in [
            MaxmemoryPolicy::Noeviction,
            MaxmemoryPolicy::AllkeysLru,
            MaxmemoryPolicy::VolatileTtl,
            MaxmemoryPolicy::VolatileRandom,
        ] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        for r in [Role::Primary, Role::Replica, Role::Sentinel] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }
}
