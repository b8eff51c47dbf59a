//! `partition`: the targets' peer connections (replication, monitoring,
//! the cluster bus) are held in both directions while their clients go on
//! being served. Nodes and sentinels make those connections from
//! `PEER_SOURCE` (`bind-source-addr`), so the `partition` toxic, gameday's
//! extension of the Toxiproxy API, holds only connections from there, on
//! every proxy of the targets. Holding rather than dropping keeps
//! replication streams intact across the heal.

use super::network::{self, Active};
use super::Env;
use crate::proxy::control::{ControlError, NetFault};
use crate::proxy::toxic::{Stream, ToxicKind};
use crate::vocab::topo::PEER_SOURCE;

/// A partition takes no parameters.
pub const KEYS: &[&str] = &[];

/// Why a topology cannot be partitioned.
pub const NEEDS: &str = "cannot be partitioned: a partition needs nodes gameday runs, more than one of them, on Redis 7.0 or later (bind-source-addr), behind gameday's own proxy";

fn toxic() -> NetFault {
    NetFault::Toxic {
        kind: ToxicKind::Partition {
            source: u32::from(PEER_SOURCE),
        },
        streams: vec![Stream::Upstream, Stream::Downstream],
        toxicity: 1.0,
        path: Default::default(),
    }
}

/// Holds the peer connections through every proxy of the targets.
pub async fn apply(env: &Env) -> Result<Active, ControlError> {
    let fault = toxic();
    network::switch_on(&env.control, &env.proxies, &fault).await?;
    Ok(Active::new(fault, env.proxies.clone()))
}
