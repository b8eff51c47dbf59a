//! Beside the callers: the heartbeats (the primary's clock, written every
//! `heartbeat` to each lane's key, so that a replica's copy of it says how
//! far behind that replica is) and the discovery of the replicas once a
//! second: from the primary's `INFO replication` (they announce their
//! proxies), or on a Cluster from `CLUSTER NODES`, the replicas of the
//! master serving each lane's slot. Only loopback addresses are kept.

use super::Shared;
use crate::redis_admin::cluster::{cluster_nodes, replicas_of_slot};
use crate::vocab::outcome::Trace;
use crate::workload::conn::RedisConn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often the replicas are looked up again.
const DISCOVER_EVERY: Duration = Duration::from_secs(1);

/// Lane `lane`'s heartbeat, until the workload stops: one task per lane,
/// so that a slow master delays only its own lane's.
pub(super) async fn beat(sh: Arc<Shared>, lane: usize) {
    let mut conn = RedisConn::new(&sh.client, sh.plan.op_timeout, sh.t0);
    let mut scratch = Trace::default();
    while !sh.stopping() {
        let started = Instant::now();
        let mut set = redis::cmd("SET");
        set.arg(&sh.lanes[lane].heartbeat_key).arg(sh.now_us());
        let _ = conn
            .query::<()>("redis_heartbeat", &set, &mut scratch)
            .await;
        scratch.clear();
        let wait = sh.plan.heartbeat.saturating_sub(started.elapsed());
        tokio::time::sleep(wait).await;
    }
}

/// Each lane's replicas, looked up every `DISCOVER_EVERY` until the
/// workload stops.
pub(super) async fn discover(sh: Arc<Shared>) {
    let mut conn = RedisConn::new(&sh.client, sh.plan.op_timeout, sh.t0);
    let mut scratch = Trace::default();
    let cluster = sh.lanes[0].slot.is_some();
    while !sh.stopping() {
        let mut ask = redis::cmd(if cluster { "CLUSTER" } else { "INFO" });
        ask.arg(if cluster { "NODES" } else { "replication" });
        let text = conn
            .query::<String>("redis_discover", &ask, &mut scratch)
            .await;
        scratch.clear();
        if let Ok(text) = text {
            let lines = cluster.then(|| cluster_nodes(&text));
            for lane in &sh.lanes {
                lane.set_replicas(match (&lines, lane.slot) {
                    (Some(lines), Some(slot)) => replicas_of_slot(lines, slot),
                    _ => replicas_in(&text),
                });
            }
        }
        tokio::time::sleep(DISCOVER_EVERY).await;
    }
}

/// The online replicas a primary's `INFO replication` lists, loopback
/// addresses only.
pub fn replicas_in(info: &str) -> Vec<SocketAddr> {
    info.lines()
        .filter(|l| l.starts_with("slave") && l.contains("state=online"))
        .filter_map(|l| {
            let fields = l.split_once(':')?.1;
            let get = |k: &str| {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
            };
            let addr: SocketAddr = format!("{}:{}", get("ip")?, get("port")?).parse().ok()?;
            addr.ip().is_loopback().then_some(addr)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_loopback_replicas_only() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:3\r\n\
            slave0:ip=127.0.0.1,port=40001,state=online,offset=10,lag=0\r\n\
            slave1:ip=127.0.0.1,port=40002,state=wait_bgsave,offset=0,lag=0\r\n\
            slave2:ip=10.0.0.5,port=6379,state=online,offset=10,lag=0\r\n\
            master_replid:abc\r\n";
        assert_eq!(replicas_in(info), vec!["127.0.0.1:40001".parse().unwrap()]);
    }
}
