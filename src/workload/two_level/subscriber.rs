//! One instance's subscription to the invalidation channel: subscribes,
//! applies each message to the instance's L1, and when the subscription is
//! lost, subscribes again every 100 ms. With `flush_on_reconnect`, the L1
//! is dropped when the subscription is lost (reads go to L2 meanwhile) and
//! again when it is back, as a client that knows it missed messages would.

use super::{Instance, Shared, SubscribeTo};
use crate::topology::ClientSpec;
use crate::vocab::outcome::Trace;
use crate::workload::conn::{client_for, RedisConn};
use crate::workload::replica_reads::heartbeat::replicas_in;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long a lost subscription waits before the next try.
const RETRY: Duration = Duration::from_millis(100);

/// Until the workload stops it.
pub(super) async fn subscribe(sh: Arc<Shared>, index: usize) {
    let inst = &sh.instances[index];
    loop {
        if let Some(addr) = where_to(&sh, index).await {
            if let Ok(mut pubsub) = tokio::time::timeout(sh.plan.op_timeout, async {
                let mut p = client_for(addr).get_async_pubsub().await?;
                p.subscribe(&sh.channel).await?;
                Ok::<_, redis::RedisError>(p)
            })
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from(std::io::Error::from(
                    std::io::ErrorKind::TimedOut,
                )))
            }) {
                on_subscribed(&sh, inst);
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    if let Ok(text) = msg.get_payload::<String>() {
                        if let Some((key, version)) = parse(&text) {
                            inst.update(&sh, key, version);
                        }
                    }
                }
                drop(messages);
                on_lost(&sh, inst);
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

fn on_subscribed(sh: &Shared, inst: &Instance) {
    if inst.ever.swap(true, Ordering::AcqRel) {
        inst.reconnects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sh.now_us());
        if sh.plan.flush_on_reconnect {
            inst.flush(sh);
        }
    }
    inst.subscribed.store(true, Ordering::Release);
}

fn on_lost(sh: &Shared, inst: &Instance) {
    inst.subscribed.store(false, Ordering::Release);
    if sh.plan.flush_on_reconnect {
        inst.flush(sh);
    }
}

/// `<key>:<version>`.
pub fn parse(text: &str) -> Option<(u64, u64)> {
    let (k, v) = text.split_once(':')?;
    Some((k.parse().ok()?, v.parse().ok()?))
}

/// The node instance `index` subscribes on: the primary (through the
/// sentinels when there are), or the replicas in turn.
async fn where_to(sh: &Shared, index: usize) -> Option<SocketAddr> {
    let mut scratch = Trace::default();
    let addr = match (sh.plan.subscribe, &sh.client) {
        (SubscribeTo::Primary, ClientSpec::Direct(a)) => Some(*a),
        (SubscribeTo::Primary, ClientSpec::Cluster { nodes }) => Some(nodes[index % nodes.len()]),
        (SubscribeTo::Primary, ClientSpec::Sentinel { sentinels, master }) => {
            let mut conn = RedisConn::new(
                &ClientSpec::Direct(sentinels[index % sentinels.len()]),
                sh.plan.op_timeout,
                sh.t0,
            );
            let mut ask = redis::cmd("SENTINEL");
            ask.arg("GET-MASTER-ADDR-BY-NAME").arg(master);
            let (ip, port) = conn
                .query::<(String, u16)>("redis_sentinel", &ask, &mut scratch)
                .await
                .ok()?;
            format!("{ip}:{port}").parse().ok()
        }
        (SubscribeTo::Replicas, spec) => {
            let mut conn = RedisConn::new(spec, sh.plan.op_timeout, sh.t0);
            let mut info = redis::cmd("INFO");
            info.arg("replication");
            let info = conn
                .query::<String>("redis_info", &info, &mut scratch)
                .await
                .ok()?;
            let replicas = replicas_in(&info);
            (!replicas.is_empty()).then(|| replicas[index % replicas.len()])
        }
    };
    // Load and faults go to loopback addresses only.
    addr.filter(|a| a.ip().is_loopback())
}
