//! Step 3 of provisioning: wire a topology through its proxies and wait
//! until it is ready. Admin commands go to the nodes' real addresses (the
//! harness's own path, never faulted); every address a node *learns or
//! announces* is a proxy address.

use super::process::RedisProcess;
use super::{ProxyMap, Topology, TopologyError};
use crate::redis_admin;
pub(super) use crate::redis_admin::info_field;
use crate::vocab::topo::Role;
use redis::aio::MultiplexedConnection;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

const SLOTS: u32 = 16384;

pub(super) async fn connect(addr: SocketAddr) -> Result<MultiplexedConnection, TopologyError> {
    Ok(redis_admin::connect(addr).await?)
}

/// Runs one admin command on `addr`.
pub(super) async fn admin<T: redis::FromRedisValue>(
    addr: SocketAddr,
    cmd: &redis::Cmd,
) -> Result<T, TopologyError> {
    Ok(redis_admin::run(addr, cmd).await?)
}

pub(super) fn args<const N: usize>(parts: [&str; N]) -> redis::Cmd {
    redis_admin::cmd(&parts)
}

/// Sets each `(key, value)` with the command prefix `set` (`CONFIG SET`,
/// `SENTINEL CONFIG SET`, `SENTINEL SET <master>`).
async fn config_set(
    addr: SocketAddr,
    set: &[&str],
    pairs: &[(&str, &str)],
) -> Result<(), TopologyError> {
    for (key, value) in pairs {
        let mut cmd = redis::cmd(set[0]);
        cmd.arg(&set[1..]).arg(*key).arg(*value);
        admin::<()>(addr, &cmd).await?;
    }
    Ok(())
}

/// Polls `check` until it says ready or `limit` passes; `what` names the
/// condition in the error, with the last thing `check` saw.
pub(super) async fn wait_for<F, Fut>(
    what: &str,
    limit: Duration,
    mut check: F,
) -> Result<(), TopologyError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Result<(), String>, TopologyError>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let seen = match check().await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(seen)) => seen,
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(TopologyError::NotReady {
                what: what.to_string(),
                limit,
                seen,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Replicas replicate from the primary's proxy and announce their own.
pub(super) async fn replication(topo: &Topology, proxies: &ProxyMap) -> Result<(), TopologyError> {
    peer_source_on(topo).await?;
    let primary = topo.primary();
    let primary_proxy = proxies[&primary.id];
    let replicas: Vec<_> = topo.with_role(Role::Replica).collect();
    // Every node announces its proxy, the primary too: a failover may make
    // it a replica, and it must not then hand out its real address.
    for n in topo.nodes.iter().filter(|n| n.role != Role::Sentinel) {
        let port = proxies[&n.id].port().to_string();
        let announce = [
            ("replica-announce-ip", "127.0.0.1"),
            ("replica-announce-port", port.as_str()),
        ];
        config_set(n.addr, &["CONFIG", "SET"], &announce).await?;
    }
    for r in &replicas {
        let primary_port = primary_proxy.port().to_string();
        admin::<()>(r.addr, &args(["REPLICAOF", "127.0.0.1", &primary_port])).await?;
    }
    let want = replicas.len();
    wait_for(
        "replication links",
        Duration::from_secs(15),
        || async move {
            let info: String = admin(primary.addr, &args(["INFO", "replication"])).await?;
            let n: usize = info_field(&info, "connected_slaves")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if n < want {
                return Ok(Err(format!("primary has {n} of {want} replicas")));
            }
            for r in topo.with_role(Role::Replica) {
                let info: String = admin(r.addr, &args(["INFO", "replication"])).await?;
                if info_field(&info, "master_link_status") != Some("up") {
                    return Ok(Err(format!(
                        "{}: master_link_status {:?}",
                        r.id,
                        info_field(&info, "master_link_status")
                    )));
                }
            }
            Ok(Ok(()))
        },
    )
    .await
}

/// Sentinels announce their proxies and monitor the primary through its proxy.
pub(super) async fn sentinels(topo: &Topology, proxies: &ProxyMap) -> Result<(), TopologyError> {
    let primary_port = proxies[&topo.primary().id].port().to_string();
    let master = topo.plan.master_name.as_str();
    let down_after = topo.plan.down_after.as_millis().to_string();
    let failover = topo.plan.failover_timeout.as_millis().to_string();
    let sentinels: Vec<_> = topo.with_role(Role::Sentinel).collect();
    for s in &sentinels {
        let port = proxies[&s.id].port().to_string();
        let announce = [
            ("announce-ip", "127.0.0.1"),
            ("announce-port", port.as_str()),
        ];
        config_set(s.addr, &["SENTINEL", "CONFIG", "SET"], &announce).await?;
        admin::<()>(
            s.addr,
            &args([
                "SENTINEL",
                "MONITOR",
                master,
                "127.0.0.1",
                &primary_port,
                "2",
            ]),
        )
        .await?;
        let timing = [
            ("down-after-milliseconds", down_after.as_str()),
            ("failover-timeout", failover.as_str()),
        ];
        config_set(s.addr, &["SENTINEL", "SET", master], &timing).await?;
        // The sentinels reach the primary and replicas as the ACL user.
        if let Some((user, password)) = &topo.security.access.user {
            let auth = [
                ("auth-user", user.as_str()),
                ("auth-pass", password.expose()),
            ];
            config_set(s.addr, &["SENTINEL", "SET", master], &auth).await?;
        }
    }
    let (replicas, others) = (topo.plan.replicas, sentinels.len() - 1);
    for s in sentinels {
        let primary_port = primary_port.clone();
        wait_for(
            &format!("{} agreeing on the master", s.id),
            Duration::from_secs(20),
            || {
                let primary_port = primary_port.clone();
                async move {
                    let addr: Vec<String> = admin(
                        s.addr,
                        &args(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", master]),
                    )
                    .await?;
                    if addr != ["127.0.0.1".to_string(), primary_port.clone()] {
                        return Ok(Err(format!("master at {addr:?}")));
                    }
                    let fields: Vec<String> =
                        admin(s.addr, &args(["SENTINEL", "MASTER", master])).await?;
                    let get = |k: &str| {
                        fields
                            .chunks(2)
                            .find(|c| c[0] == k)
                            .and_then(|c| c[1].parse::<usize>().ok())
                            .unwrap_or(0)
                    };
                    let (r, o) = (get("num-slaves"), get("num-other-sentinels"));
                    if r < replicas || o < others {
                        return Ok(Err(format!(
                            "{r} of {replicas} replicas and {o} of {others} other sentinels known"
                        )));
                    }
                    Ok(Ok(()))
                }
            },
        )
        .await?;
    }
    Ok(())
}

/// Cluster nodes announce their proxies, meet through their bus proxies,
/// share the slots among the masters, and replicas follow their masters.
pub(super) async fn cluster(topo: &Topology, proxies: &ProxyMap) -> Result<(), TopologyError> {
    peer_source_on(topo).await?;
    for n in &topo.nodes {
        let port = proxies[&n.id].port().to_string();
        let bus = proxies[&format!("{}-bus", n.id)].port().to_string();
        let announce = [
            ("cluster-announce-ip", "127.0.0.1"),
            ("cluster-announce-port", port.as_str()),
            ("cluster-announce-bus-port", bus.as_str()),
        ];
        config_set(n.addr, &["CONFIG", "SET"], &announce).await?;
    }
    let first = &topo.nodes[0];
    for n in &topo.nodes[1..] {
        let port = proxies[&n.id].port().to_string();
        let bus = proxies[&format!("{}-bus", n.id)].port().to_string();
        admin::<()>(
            first.addr,
            &args(["CLUSTER", "MEET", "127.0.0.1", &port, &bus]),
        )
        .await?;
    }
    let masters: Vec<_> = topo.with_role(Role::Primary).collect();
    let m = masters.len() as u32;
    for (i, node) in masters.iter().enumerate() {
        let (from, to) = (i as u32 * SLOTS / m, (i as u32 + 1) * SLOTS / m - 1);
        admin::<()>(
            node.addr,
            &args([
                "CLUSTER",
                "ADDSLOTSRANGE",
                &from.to_string(),
                &to.to_string(),
            ]),
        )
        .await?;
    }
    wait_met(topo).await?;
    replicate(topo, &masters).await?;
    wait_cluster_ok(topo).await
}

/// Waits until every node knows every other one.
async fn wait_met(topo: &Topology) -> Result<(), TopologyError> {
    let total = topo.nodes.len();
    for n in &topo.nodes {
        wait_for(
            &format!("{} meeting every node", n.id),
            Duration::from_secs(20),
            || async move {
                let nodes: String = admin(n.addr, &args(["CLUSTER", "NODES"])).await?;
                let known = nodes
                    .lines()
                    .filter(|l| !l.contains("handshake") && !l.contains("noaddr"))
                    .count();
                Ok(if known == total {
                    Ok(())
                } else {
                    Err(format!("{known} of {total} nodes known"))
                })
            },
        )
        .await?;
    }
    Ok(())
}

/// Makes each replica replicate its master, round robin.
async fn replicate(topo: &Topology, masters: &[&RedisProcess]) -> Result<(), TopologyError> {
    let mut ids = Vec::new();
    for node in masters {
        ids.push(admin::<String>(node.addr, &args(["CLUSTER", "MYID"])).await?);
    }
    for (j, r) in topo.with_role(Role::Replica).enumerate() {
        let master_id = &ids[j % ids.len()];
        // A replica may not know its master's id yet right after the meet.
        wait_for(
            &format!("{} replicating its master", r.id),
            Duration::from_secs(20),
            || async move {
                match admin::<()>(r.addr, &args(["CLUSTER", "REPLICATE", master_id])).await {
                    Ok(()) => Ok(Ok(())),
                    Err(e) => Ok(Err(e.to_string())),
                }
            },
        )
        .await?;
    }
    Ok(())
}

/// Waits until every node sees `cluster_state:ok` with every slot
/// assigned and every replica, and each replica's link is up.
async fn wait_cluster_ok(topo: &Topology) -> Result<(), TopologyError> {
    let replicas = topo.with_role(Role::Replica).count();
    for n in &topo.nodes {
        wait_for(
            &format!("{} seeing cluster_state:ok", n.id),
            Duration::from_secs(30),
            || async move {
                let info: String = admin(n.addr, &args(["CLUSTER", "INFO"])).await?;
                let state = info_field(&info, "cluster_state")
                    .unwrap_or("?")
                    .to_string();
                let assigned: u32 = info_field(&info, "cluster_slots_assigned")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let nodes: String = admin(n.addr, &args(["CLUSTER", "NODES"])).await?;
                let replicas_seen = nodes
                    .lines()
                    .filter(|l| l.contains(" slave ") || l.contains(",slave "))
                    .count();
                if replicas_seen < replicas {
                    return Ok(Err(format!("{replicas_seen} of {replicas} replicas seen")));
                }
                let ok: u32 = info_field(&info, "cluster_slots_ok")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if n.role == Role::Replica {
                    let repl: String = admin(n.addr, &args(["INFO", "replication"])).await?;
                    if info_field(&repl, "master_link_status") != Some("up") {
                        return Ok(Err("replication link not up".into()));
                    }
                }
                Ok(if state == "ok" && assigned == SLOTS && ok == SLOTS {
                    Ok(())
                } else {
                    Err(format!(
                        "cluster_state:{state}, {assigned} slots assigned, {ok} ok"
                    ))
                })
            },
        )
        .await?;
    }
    Ok(())
}

/// `CONFIG REWRITE` on every node (not sentinels, which keep their own file).
pub(super) async fn persist(topo: &Topology) -> Result<(), TopologyError> {
    for n in topo.nodes.iter().filter(|n| n.role != Role::Sentinel) {
        admin::<()>(n.addr, &args(["CONFIG", "REWRITE"])).await?;
    }
    Ok(())
}

/// `PEER_SOURCE` if the server (from its `INFO server`) knows
/// `bind-source-addr`, which came with Redis 7.0.
pub(super) async fn peer_source_for(
    addr: SocketAddr,
) -> Result<Option<std::net::Ipv4Addr>, TopologyError> {
    let info: String = admin(addr, &args(["INFO", "server"])).await?;
    let major = info_field(&info, "redis_version")
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(0);
    Ok((major >= 7).then_some(crate::vocab::topo::PEER_SOURCE))
}

/// Nodes make their peer connections from the topology's peer source.
async fn peer_source_on(topo: &Topology) -> Result<(), TopologyError> {
    let Some(source) = topo.peer_source else {
        return Ok(());
    };
    let source = source.to_string();
    for n in topo.nodes.iter().filter(|n| n.role != Role::Sentinel) {
        config_set(n.addr, &["CONFIG", "SET"], &[("bind-source-addr", &source)]).await?;
    }
    Ok(())
}
