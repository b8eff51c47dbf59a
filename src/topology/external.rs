//! The external backend: a topology gameday did not start and must not
//! disturb. Before any load, `verify` checks that the endpoints the scenario
//! lists are what it says they are — each answers, each plays its declared
//! role, and the addresses the servers hand out (Sentinel's master address,
//! Cluster's slot map) are listed endpoints, so that no client bypasses the
//! proxies. Afterwards, `remove_keys` deletes what the run wrote under its
//! own prefix, and nothing else.

use super::assemble::{admin, args, connect, info_field};
use super::TopologyError;
use crate::scenario::plan::{ExternalEndpoint, TopologyPlan};
use crate::scenario::raw::TopologyKind;
use crate::topology::Role;
use std::net::SocketAddr;
use std::time::Duration;

/// How long one endpoint may take to answer before the run gives up on it.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

fn err(what: impl std::fmt::Display) -> TopologyError {
    TopologyError::Provision(what.to_string())
}

async fn ask<T: redis::FromRedisValue>(
    e: &ExternalEndpoint,
    cmd: &redis::Cmd,
) -> Result<T, TopologyError> {
    match tokio::time::timeout(ANSWER_WITHIN, admin(e.addr, cmd)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(x)) => Err(err(format!("endpoint {} ({}): {x}", e.node, e.addr))),
        Err(_) => Err(err(format!(
            "endpoint {} ({}) did not answer within {}s",
            e.node,
            e.addr,
            ANSWER_WITHIN.as_secs()
        ))),
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
            return Err(err(format!(
                "endpoint {} ({}) is listed as a {listed} but reports role:{role}; did a failover happen? Update the scenario's roles",
                e.node, e.addr
            )));
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
            return Err(err(format!(
                "sentinel {} ({}) monitors no master named `{}` (set `master_name`)",
                s.node, s.addr, plan.master_name
            )));
        };
        let at = format!("{host}:{port}");
        match at.parse::<SocketAddr>() {
            Ok(a) if a == primary.addr => {}
            Ok(a) => {
                let hint = match endpoints.iter().find(|e| e.addr == a) {
                    Some(e) => format!("that is endpoint {}: update the roles", e.node),
                    None => "which is not a listed endpoint: clients would bypass the proxies (nodes and sentinels must announce their proxy addresses)".into(),
                };
                return Err(err(format!(
                    "sentinel {} ({}) says the primary is {a}, not {} ({}); {hint}",
                    s.node, s.addr, primary.node, primary.addr
                )));
            }
            Err(_) => {
                return Err(err(format!(
                    "sentinel {} ({}) names the primary `{at}`, not a loopback address",
                    s.node, s.addr
                )))
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
        return Err(err(format!(
            "endpoint {} ({}) reports cluster_state:{}",
            first.node,
            first.addr,
            info_field(&info, "cluster_state").unwrap_or("?")
        )));
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
                return Err(err(format!(
                    "the cluster's slot map names {host}:{port}, which is not a listed endpoint: clients would bypass the proxies (nodes must announce their proxy addresses; list every node)"
                )));
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
