//! Beside the callers: the heartbeat (the primary's clock, written every
//! `heartbeat` to one key, so that a replica's copy of it says how far
//! behind that replica is) and the discovery of the replicas, from the
//! primary's `INFO replication` once a second (they announce their
//! proxies; only loopback addresses are kept).

use super::Shared;
use crate::vocab::outcome::Trace;
use crate::workload::conn::RedisConn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often the replicas are looked up again.
const DISCOVER_EVERY: Duration = Duration::from_secs(1);

/// Until the workload stops it.
pub(super) async fn beat(sh: Arc<Shared>) {
    let mut conn = RedisConn::new(&sh.client, sh.plan.op_timeout, sh.t0);
    let mut scratch = Trace::default();
    let mut next_discovery = Instant::now();
    while !sh.stopping() {
        let started = Instant::now();
        let mut set = redis::cmd("SET");
        set.arg(&sh.heartbeat_key).arg(sh.now_us());
        let _ = conn
            .query::<()>("redis_heartbeat", &set, &mut scratch)
            .await;
        scratch.clear();
        if Instant::now() >= next_discovery {
            next_discovery = Instant::now() + DISCOVER_EVERY;
            let mut info = redis::cmd("INFO");
            info.arg("replication");
            let info = conn
                .query::<String>("redis_heartbeat", &info, &mut scratch)
                .await;
            scratch.clear();
            if let Ok(info) = info {
                sh.set_replicas(replicas_in(&info));
            }
        }
        let wait = sh.plan.heartbeat.saturating_sub(started.elapsed());
        tokio::time::sleep(wait).await;
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
