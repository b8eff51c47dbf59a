//! Where the keys and the heartbeats live. A replica's copy of the
//! heartbeat says how far behind that copy is, so a read fetches its key
//! and a heartbeat in one `MGET`: on a Cluster both must be in one slot.
//! There, the keys are spread over `CLUSTER_LANES` hash tags, one slot
//! each, spread over the slot space (so over the masters), and each tag has
//! a heartbeat of its own, written to the master that serves it. Elsewhere
//! there is one lane and no tag.

use crate::redis_admin::cluster::key_slot;
use std::net::SocketAddr;
use std::sync::RwLock;

/// The hash tags on a Cluster: 8 over the 16384 slots land on every master
/// of up to 8 even shares.
pub const CLUSTER_LANES: usize = 8;
const SLOTS: u32 = 16384;

/// One hash tag's keys, its heartbeat, and the replicas that serve it.
pub struct Lane {
    /// The key part before the key's own name: `rr:` or `rr:{t}:`.
    stem: String,
    pub heartbeat_key: String,
    /// The tag's slot, on a Cluster.
    pub slot: Option<u16>,
    replicas: RwLock<Vec<SocketAddr>>,
}

impl Lane {
    fn new(prefix: &str, tag: Option<String>) -> Lane {
        let slot = tag.as_deref().map(|t| key_slot(t.as_bytes()));
        let stem = match &tag {
            Some(t) => format!("{prefix}rr:{t}:"),
            None => format!("{prefix}rr:"),
        };
        Lane {
            heartbeat_key: format!("{stem}heartbeat"),
            stem,
            slot,
            replicas: RwLock::new(Vec::new()),
        }
    }

    pub fn key(&self, key: u64) -> String {
        format!("{}k{key}", self.stem)
    }

    pub fn set_replicas(&self, found: Vec<SocketAddr>) {
        *self.replicas.write().unwrap_or_else(|p| p.into_inner()) = found;
    }

    pub fn replicas(&self) -> Vec<SocketAddr> {
        self.replicas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The lanes of a run: `CLUSTER_LANES` tagged ones on a Cluster, else one.
pub fn lanes(prefix: &str, cluster: bool) -> Vec<Lane> {
    if !cluster {
        return vec![Lane::new(prefix, None)];
    }
    (0..CLUSTER_LANES as u32)
        .map(|i| {
            let share = SLOTS / CLUSTER_LANES as u32;
            let wanted = i * share..(i + 1) * share;
            let tag = (0u32..)
                .map(|n| format!("{{rr{n}}}"))
                .find(|t| wanted.contains(&(key_slot(t.as_bytes()) as u32)))
                .expect("some tag lands in every share of the slots");
            Lane::new(prefix, Some(tag))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_lanes_spread_over_the_slots_and_keep_key_and_heartbeat_together() {
        let l = lanes("gameday:x:", true);
        assert_eq!(l.len(), CLUSTER_LANES);
        for (i, lane) in l.iter().enumerate() {
            let slot = lane.slot.unwrap();
            assert_eq!(slot as usize / (16384 / CLUSTER_LANES), i);
            assert_eq!(key_slot(lane.key(7).as_bytes()), slot);
            assert_eq!(key_slot(lane.heartbeat_key.as_bytes()), slot);
        }
        let one = lanes("gameday:x:", false);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].key(7), "gameday:x:rr:k7");
        assert_eq!(one[0].heartbeat_key, "gameday:x:rr:heartbeat");
    }
}
