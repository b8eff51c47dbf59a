//! The record of one fault: when it was asked for, seen in force and seen
//! gone, and what its kind measured. It goes into summary.json's `faults`
//! as it is; `Notes` is how a fault adds its measurements while it runs.

use super::memory::MemoryOutcome;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// What really happened to one fault (seconds from the start of load).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRecord {
    pub name: String,
    pub kind: String,
    pub target: String,
    pub proxies: Vec<String>,
    pub at_s: f64,
    pub for_s: f64,
    /// When gameday asked the proxy to apply the fault: the fault phase
    /// starts here, so it holds every moment the fault may have been in force.
    pub applied_at_s: Option<f64>,
    /// When the proxy server showed the fault in force.
    pub confirmed_at_s: Option<f64>,
    /// When the proxy server showed the fault removed: the recovery phase
    /// starts here.
    pub removed_at_s: Option<f64>,
    /// failover: the primary that was replaced.
    #[serde(default)]
    pub replaced: Option<String>,
    /// failover: when the topology named another primary (a sentinel's
    /// answer; the owner of the old primary's slots).
    #[serde(default)]
    pub switched_at_s: Option<f64>,
    /// failover: the node that became primary.
    #[serde(default)]
    pub new_primary: Option<String>,
    /// failover: from the loss of the primary (the apply) to the end of the
    /// first write a fresh client made to the new primary; absent when that
    /// did not happen while the fault lasted.
    #[serde(default)]
    pub failover_time_ms: Option<f64>,
    /// memory_pressure: per target node, ballast written and evictions by
    /// key class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory: Vec<MemoryOutcome>,
    /// bgsave: per target node, the fork's cost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forks: Vec<super::bgsave::ForkOutcome>,
    /// big_key: per target node, its reads and its delete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub big_keys: Vec<super::big_key::BigKeyOutcome>,
    /// connection_storm: per target node, connections cut, peak clients,
    /// connections refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storms: Vec<super::connection_storm::StormOutcome>,
    /// replica_resync: the primary's resyncs and fork, the time to be in
    /// sync again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resync: Option<super::replica_resync::ResyncOutcome>,
    /// cold_cache: keys removed from the target nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_removed: Option<u64>,
}

impl FaultRecord {
    /// The record of a fault not yet begun.
    pub fn planned(plan: &super::FaultPlan, proxies: &[String]) -> FaultRecord {
        FaultRecord {
            name: plan.name.clone(),
            kind: plan.kind.as_str().to_string(),
            target: plan.target.to_string(),
            proxies: proxies.to_vec(),
            at_s: plan.at.as_secs_f64(),
            for_s: plan.duration.as_secs_f64(),
            applied_at_s: None,
            confirmed_at_s: None,
            removed_at_s: None,
            replaced: None,
            switched_at_s: None,
            new_primary: None,
            failover_time_ms: None,
            memory: Vec::new(),
            keys_removed: None,
            forks: Vec::new(),
            big_keys: Vec::new(),
            storms: Vec::new(),
            resync: None,
        }
    }
}

/// A fault's way to its own record, which the run reads even when a fault
/// fails midway.
#[derive(Clone)]
pub struct Notes {
    records: Arc<Mutex<Vec<FaultRecord>>>,
    index: usize,
}

impl Notes {
    pub fn new(records: Arc<Mutex<Vec<FaultRecord>>>, index: usize) -> Notes {
        Notes { records, index }
    }

    /// Changes the record.
    pub fn note(&self, change: impl FnOnce(&mut FaultRecord)) {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut records[self.index]);
    }
}
