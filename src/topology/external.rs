//! The external backend: a topology gameday did not start and must not
//! disturb. Before any load, `verify` checks that the endpoints the scenario
//! lists are what it says they are — each answers, each plays its declared
//! role, and the addresses the servers hand out (Sentinel's master address,
//! Cluster's slot map) are listed endpoints, so that no client bypasses the
//! proxies. Afterwards, `remove_keys` deletes what the run wrote under its
//! own prefix, and nothing else.

use super::assemble::{admin, args, connect, info_field};
use super::TopologyError;
use crate::topology::plan::{ExternalEndpoint, TopologyPlan};
use crate::vocab::topo::Role;
use crate::vocab::topo::TopologyKind;
use std::net::SocketAddr;
use std::time::Duration;

/// How long one endpoint may take to answer before the run gives up on it.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// How an external topology differs from what the scenario lists.
#[derive(Debug, thiserror::Error)]
pub enum Mismatch {
    #[error("endpoint {node} ({addr}): {source}")]
    Failed {
        node: String,
        addr: SocketAddr,
        #[source]
        source: Box<TopologyError>,
    },
    #[error("endpoint {node} ({addr}) did not answer within {}s", ANSWER_WITHIN.as_secs())]
    Silent { node: String, addr: SocketAddr },
    #[error("endpoint {node} ({addr}) is listed as a {listed} but reports role:{role}; did a failover happen? Update the scenario's roles")]
    Role {
        node: String,
        addr: SocketAddr,
        listed: &'static str,
        role: String,
    },
    #[error("sentinel {node} ({addr}) monitors no master named `{master}` (set `master_name`)")]
    NoMaster {
        node: String,
        addr: SocketAddr,
        master: String,
    },
    #[error("sentinel {node} ({addr}) says the primary is {says}, not {primary} ({primary_addr}); {}", match listed { Some(e) => format!("that is endpoint {e}: update the roles"), None => "which is not a listed endpoint: clients would bypass the proxies (nodes and sentinels must announce their proxy addresses)".to_string() })]
    OtherPrimary {
        node: String,
        addr: SocketAddr,
        says: SocketAddr,
        primary: String,
        primary_addr: SocketAddr,
        /// The listed endpoint at `says`, if any.
        listed: Option<String>,
    },
    #[error("sentinel {node} ({addr}) names the primary `{at}`, not a loopback address")]
    NotLoopback {
        node: String,
        addr: SocketAddr,
        at: String,
    },
    #[error("endpoint {node} ({addr}) reports cluster_state:{state}")]
    ClusterState {
        node: String,
        addr: SocketAddr,
        state: String,
    },
    #[error("the cluster's slot map names {at}, which is not a listed endpoint: clients would bypass the proxies (nodes must announce their proxy addresses; list every node)")]
    Unlisted { at: String },
}

async fn ask<T: redis::FromRedisValue>(
    e: &ExternalEndpoint,
    cmd: &redis::Cmd,
) -> Result<T, TopologyError> {
    match tokio::time::timeout(ANSWER_WITHIN, admin(e.addr, cmd)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(Mismatch::Failed {
            node: e.node.clone(),
            addr: e.addr,
            source: Box::new(source),
        }
        .into()),
        Err(_) => Err(Mismatch::Silent {
            node: e.node.clone(),
            addr: e.addr,
        }
        .into()),
    }
}

/// Checks the listed endpoints against what the servers say (see the module
/// docs). Every command goes through the endpoint's client address.
pub async fn verify(plan: &TopologyPlan) -> Result<(), TopologyError> {
    let endpoints = &plan.external.endpoints;
    for e in endpoints {
        let _: String = ask(e, &args(["PING"])).await?;
        if e.role == Role::Sentinel {
            continue;
        }
        let info: String = ask(e, &args(["INFO", "replication"])).await?;
        let role = info_field(&info, "role").unwrap_or("?");
        let expected = if e.role == Role::Primary {
            "master"
        } else {
            "slave"
        };
        if role != expected {
            let listed = if e.role == Role::Primary {
                "primary"
            } else {
                "replica"
            };
            return Err(Mismatch::Role {
                node: e.node.clone(),
                addr: e.addr,
                listed,
                role: role.to_string(),
            }
            .into());
        }
    }
    match plan.kind {
        TopologyKind::Sentinel => sentinels_agree(plan).await,
        TopologyKind::Cluster => slots_map_to_endpoints(endpoints).await,
        TopologyKind::Standalone | TopologyKind::Replicated => Ok(()),
    }
}

/// Every sentinel names the listed primary's address for `master_name`.
async fn sentinels_agree(plan: &TopologyPlan) -> Result<(), TopologyError> {
    let endpoints = &plan.external.endpoints;
    let primary = endpoints
        .iter()
        .find(|e| e.role == Role::Primary)
        .expect("validated: one primary");
    for s in endpoints.iter().filter(|e| e.role == Role::Sentinel) {
        let named: Option<(String, u16)> = ask(
            s,
            &args(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &plan.master_name]),
        )
        .await?;
        let Some((host, port)) = named else {
            return Err(Mismatch::NoMaster {
                node: s.node.clone(),
                addr: s.addr,
                master: plan.master_name.clone(),
            }
            .into());
        };
        let at = format!("{host}:{port}");
        match at.parse::<SocketAddr>() {
            Ok(a) if a == primary.addr => {}
            Ok(a) => {
                return Err(Mismatch::OtherPrimary {
                    node: s.node.clone(),
                    addr: s.addr,
                    says: a,
                    primary: primary.node.clone(),
                    primary_addr: primary.addr,
                    listed: endpoints
                        .iter()
                        .find(|e| e.addr == a)
                        .map(|e| e.node.clone()),
                }
                .into());
            }
            Err(_) => {
                return Err(Mismatch::NotLoopback {
                    node: s.node.clone(),
                    addr: s.addr,
                    at,
                }
                .into())
            }
        }
    }
    Ok(())
}

/// `cluster_state:ok`, and every node in the slot map is a listed endpoint.
async fn slots_map_to_endpoints(endpoints: &[ExternalEndpoint]) -> Result<(), TopologyError> {
    let first = endpoints
        .iter()
        .find(|e| e.role == Role::Primary)
        .expect("validated: a primary");
    let info: String = ask(first, &args(["CLUSTER", "INFO"])).await?;
    if info_field(&info, "cluster_state") != Some("ok") {
        return Err(Mismatch::ClusterState {
            node: first.node.clone(),
            addr: first.addr,
            state: info_field(&info, "cluster_state")
                .unwrap_or("?")
                .to_string(),
        }
        .into());
    }
    let shards: Vec<redis::Value> = ask(first, &args(["CLUSTER", "SLOTS"])).await?;
    for shard in shards {
        let redis::Value::Array(parts) = shard else {
            continue;
        };
        for node in parts.iter().skip(2) {
            let redis::Value::Array(fields) = node else {
                continue;
            };
            let host: String = fields
                .first()
                .and_then(|v| redis::from_redis_value(v.clone()).ok())
                .unwrap_or_default();
            let port: u16 = fields
                .get(1)
                .and_then(|v| redis::from_redis_value(v.clone()).ok())
                .unwrap_or(0);
            let listed = format!("{host}:{port}")
                .parse::<SocketAddr>()
                .is_ok_and(|a| endpoints.iter().any(|e| e.addr == a));
            if !listed {
                return Err(Mismatch::Unlisted {
                    at: format!("{host}:{port}"),
                }
                .into());
            }
        }
    }
    Ok(())
}

/// Deletes the keys under `prefix` on every endpoint that is a primary now;
/// returns how many. Nothing outside the prefix is touched.
pub async fn remove_keys(endpoints: &[ExternalEndpoint], prefix: &str) -> u64 {
    let mut removed = 0;
    for e in endpoints.iter().filter(|e| e.role != Role::Sentinel) {
        let Ok(Ok(conn)) = tokio::time::timeout(ANSWER_WITHIN, connect(e.addr)).await else {
            continue;
        };
        // A multiplexed connection: clones share one socket.
        let q = |cmd: redis::Cmd| {
            let mut conn = conn.clone();
            async move {
                tokio::time::timeout(ANSWER_WITHIN, cmd.query_async::<redis::Value>(&mut conn))
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        let info = q(args(["INFO", "replication"])).await;
        let info: String = info
            .and_then(|v| redis::from_redis_value(v.clone()).ok())
            .unwrap_or_default();
        if info_field(&info, "role") != Some("master") {
            continue;
        }
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000);
            let page: Option<(u64, Vec<String>)> =
                q(scan).await.and_then(|v| redis::from_redis_value(v).ok());
            let Some((next, keys)) = page else {
                break;
            };
            // In a cluster, the keys of one page may sit in different
            // slots: one UNLINK each.
            for key in keys {
                let mut del = redis::cmd("UNLINK");
                del.arg(&key);
                if let Some(redis::Value::Int(n)) = q(del).await {
                    removed += n as u64;
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    removed
}
