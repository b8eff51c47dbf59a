//! Server telemetry: every second, `INFO` from every node and sentinel, each
//! on its own deadline so that a paused or dead node costs its own sample
//! only. A node that does not answer within the deadline is recorded as
//! down (`up = false`) for that second. Sentinels' events (`+switch-master`
//! and the steps of a failover) are taken from their pub/sub channels as
//! they happen.

use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long one node may take to answer INFO.
const DEADLINE: Duration = Duration::from_millis(500);

/// One node, one second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeSample {
    /// Seconds from the start of load.
    pub t_s: u64,
    pub node: String,
    pub up: bool,
    /// `master`, `slave` or `sentinel` as the node reports it.
    pub role: String,
    pub connected_replicas: u64,
    pub repl_offset: i64,
    /// Replica: bytes behind its primary (from the primary's offset seen in
    /// the same second); primary: 0.
    pub repl_lag: Option<i64>,
    pub used_memory: u64,
    pub maxmemory: u64,
    pub evicted_keys: u64,
    pub expired_keys: u64,
    pub rejected_connections: u64,
    pub connected_clients: u64,
    /// Cluster nodes: `ok` or `fail` as `CLUSTER INFO` says; empty otherwise.
    pub cluster_state: String,
    /// `instantaneous_ops_per_sec`: the node's own view of its load (a hot
    /// shard shows here).
    pub ops_per_sec: u64,
    /// `latest_fork_usec`: how long the last fork (BGSAVE, a full sync)
    /// stopped the server.
    pub latest_fork_usec: u64,
    /// `sync_full`: full resyncs this primary has served.
    pub sync_full: u64,
    /// The server's own time for GET and SET in this second, p99, µs (to
    /// the power of 2 `LATENCY HISTOGRAM` buckets by): what the server
    /// spent, without the network or the client; none before Redis 7 or
    /// in a second without the command.
    pub server_get_p99_us: Option<u64>,
    pub server_set_p99_us: Option<u64>,
    /// `LATENCY HISTOGRAM get set` as read this second (cumulative), to
    /// take the next second's difference from.
    #[serde(skip)]
    hist: Option<Hists>,
}

/// Per command: total calls, and (bucket upper bound µs, cumulative count).
type Hists = BTreeMap<String, (u64, Vec<(u64, u64)>)>;

/// `LATENCY HISTOGRAM get set`, read from the RESP2 reply.
async fn latency_hist(conn: &mut redis::aio::MultiplexedConnection) -> Option<Hists> {
    let v: redis::Value = redis::cmd("LATENCY")
        .arg("HISTOGRAM")
        .arg("get")
        .arg("set")
        .query_async(conn)
        .await
        .ok()?;
    let items = as_list(&v)?;
    let mut out = Hists::new();
    for pair in items.chunks(2) {
        let [name, body] = pair else { continue };
        let name: String = redis::from_redis_value(name.clone()).ok()?;
        let fields = as_list(body)?;
        let (mut calls, mut buckets) = (0u64, Vec::new());
        for f in fields.chunks(2) {
            let [k, val] = f else { continue };
            match redis::from_redis_value::<String>(k.clone()).ok()?.as_str() {
                "calls" => calls = redis::from_redis_value(val.clone()).ok()?,
                "histogram_usec" => {
                    for b in as_list(val)?.chunks(2) {
                        if let [bound, count] = b {
                            buckets.push((
                                redis::from_redis_value(bound.clone()).ok()?,
                                redis::from_redis_value(count.clone()).ok()?,
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        out.insert(name.to_lowercase(), (calls, buckets));
    }
    Some(out)
}

/// An array reply, or a map's keys and values in turn (RESP3).
fn as_list(v: &redis::Value) -> Option<Vec<redis::Value>> {
    match v {
        redis::Value::Array(a) => Some(a.clone()),
        redis::Value::Map(m) => Some(m.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect()),
        _ => None,
    }
}

/// The p-quantile (µs, a bucket's upper bound) of the calls between two
/// cumulative readings of one command's histogram.
fn quantile_between(
    prev: Option<&(u64, Vec<(u64, u64)>)>,
    now: &(u64, Vec<(u64, u64)>),
    q: f64,
) -> Option<u64> {
    let cum = |h: Option<&(u64, Vec<(u64, u64)>)>, bound: u64| {
        h.map_or(0, |(_, b)| {
            b.iter()
                .take_while(|(ub, _)| *ub <= bound)
                .last()
                .map_or(0, |(_, c)| *c)
        })
    };
    let calls = now.0.saturating_sub(prev.map_or(0, |p| p.0));
    if calls == 0 {
        return None;
    }
    let want = (q * calls as f64).ceil() as u64;
    now.1
        .iter()
        .map(|(bound, _)| *bound)
        .find(|&b| cum(Some(now), b).saturating_sub(cum(prev, b)) >= want)
}

impl NodeSample {
    /// Column names, in `csv_row` order.
    pub const COLUMNS: [&'static str; 18] = [
        "node",
        "up",
        "role",
        "connected_replicas",
        "repl_offset",
        "repl_lag",
        "used_memory",
        "maxmemory",
        "evicted_keys",
        "expired_keys",
        "rejected_connections",
        "connected_clients",
        "cluster_state",
        "ops_per_sec",
        "latest_fork_usec",
        "sync_full",
        "server_get_p99_us",
        "server_set_p99_us",
    ];

    pub fn csv_row(&self) -> Vec<String> {
        vec![
            self.node.clone(),
            u8::from(self.up).to_string(),
            self.role.clone(),
            self.connected_replicas.to_string(),
            self.repl_offset.to_string(),
            self.repl_lag.map(|l| l.to_string()).unwrap_or_default(),
            self.used_memory.to_string(),
            self.maxmemory.to_string(),
            self.evicted_keys.to_string(),
            self.expired_keys.to_string(),
            self.rejected_connections.to_string(),
            self.connected_clients.to_string(),
            self.cluster_state.clone(),
            self.ops_per_sec.to_string(),
            self.latest_fork_usec.to_string(),
            self.sync_full.to_string(),
            self.server_get_p99_us
                .map(|v| v.to_string())
                .unwrap_or_default(),
            self.server_set_p99_us
                .map(|v| v.to_string())
                .unwrap_or_default(),
        ]
    }
}

fn parse(info: &str) -> BTreeMap<&str, &str> {
    info.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .collect()
}

async fn sample(node: &str, addr: SocketAddr, t_s: u64) -> NodeSample {
    let down = NodeSample {
        t_s,
        node: node.to_string(),
        ..NodeSample::default()
    };
    let ask = async {
        let mut conn = crate::redis_admin::connect(addr).await.ok()?;
        let info = redis::cmd("INFO")
            .arg("all")
            .query_async::<String>(&mut conn)
            .await
            .ok()?;
        let hist = latency_hist(&mut conn).await;
        let cluster = if info.contains("cluster_enabled:1") {
            redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        } else {
            None
        };
        Some((info, cluster, hist))
    };
    let Ok(Some((info, cluster, hist))) = tokio::time::timeout(DEADLINE, ask).await else {
        return down;
    };
    let cluster_state = cluster
        .as_deref()
        .and_then(|c| parse(c).get("cluster_state").map(|v| v.to_string()))
        .unwrap_or_default();
    let f = parse(&info);
    let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let role = if f.contains_key("sentinel_masters") {
        "sentinel".to_string()
    } else {
        f.get("role").unwrap_or(&"?").to_string()
    };
    NodeSample {
        up: true,
        role,
        connected_replicas: num("connected_slaves"),
        repl_offset: f
            .get("master_repl_offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        used_memory: num("used_memory"),
        maxmemory: num("maxmemory"),
        evicted_keys: num("evicted_keys"),
        expired_keys: num("expired_keys"),
        rejected_connections: num("rejected_connections"),
        connected_clients: num("connected_clients"),
        cluster_state,
        ops_per_sec: num("instantaneous_ops_per_sec"),
        latest_fork_usec: num("latest_fork_usec"),
        sync_full: num("sync_full"),
        hist,
        ..down
    }
}

/// Samples `nodes` (id, admin address) once a second from `t0` until `stop`
/// turns true, appending to `out`.
pub async fn watch_nodes(
    nodes: Vec<(String, SocketAddr)>,
    t0: Instant,
    out: Arc<Mutex<Vec<NodeSample>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last: BTreeMap<String, Hists> = BTreeMap::new();
    for t_s in 0u64.. {
        let due = t0 + Duration::from_secs(t_s);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let asks: Vec<_> = nodes
            .iter()
            .map(|(id, addr)| {
                let (id, addr) = (id.clone(), *addr);
                tokio::spawn(async move { sample(&id, addr, t_s).await })
            })
            .collect();
        let mut second = Vec::with_capacity(asks.len());
        for a in asks {
            if let Ok(s) = a.await {
                second.push(s);
            }
        }
        // A replica's lag: its primary's offset this second minus its own,
        // when there is one primary (not in a cluster).
        let masters: Vec<i64> = second
            .iter()
            .filter(|s| s.up && s.role == "master")
            .map(|s| s.repl_offset)
            .collect();
        let primary = (masters.len() == 1).then(|| masters[0]);
        for s in second.iter_mut().filter(|s| s.up) {
            s.repl_lag = match (s.role.as_str(), primary) {
                ("master", _) => Some(0),
                ("slave", Some(p)) => Some((p - s.repl_offset).max(0)),
                _ => None,
            };
        }
        for s in second.iter_mut() {
            // The cumulative reading is kept only until the next second's
            // difference: a long run stores the p99s, not the histograms.
            let Some(now) = s.hist.take() else { continue };
            let before = last.get(&s.node);
            let q = |cmd: &str| {
                now.get(cmd)
                    .and_then(|h| quantile_between(before.and_then(|b| b.get(cmd)), h, 0.99))
            };
            s.server_get_p99_us = q("get");
            s.server_set_p99_us = q("set");
            last.insert(s.node.clone(), now);
        }
        out.lock().unwrap_or_else(|p| p.into_inner()).extend(second);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_of_latency_is_the_difference_of_two_cumulative_readings() {
        // Before: 100 calls, all ≤ 2 µs. Now: 200 calls, 99 more ≤ 2 µs
        // and one at 1024 µs: p99 of the second is 2 µs, p100 1024.
        let before = (100, vec![(1, 60), (2, 100)]);
        let now = (200, vec![(1, 120), (2, 199), (1024, 200)]);
        assert_eq!(quantile_between(Some(&before), &now, 0.99), Some(2));
        assert_eq!(quantile_between(Some(&before), &now, 1.0), Some(1024));
        assert_eq!(quantile_between(Some(&now), &now, 0.99), None);
        assert_eq!(quantile_between(None, &now, 0.5), Some(1));
    }

    #[test]
    fn info_fields_are_read_by_name() {
        let info = "# Replication\r\nrole:slave\r\nmaster_repl_offset:42\r\n# Memory\r\nused_memory:1024\r\n";
        let f = parse(info);
        assert_eq!(f["role"], "slave");
        assert_eq!(f["master_repl_offset"], "42");
        assert_eq!(f["used_memory"], "1024");
    }
}

/// One event a sentinel published.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ServerEvent {
    /// Seconds from the start of load, when gameday received it.
    pub t_s: f64,
    pub node: String,
    /// The channel: `+switch-master`, `+odown`, `+convert-to-slave`, ...
    pub event: String,
    pub detail: String,
}

/// The sentinel channels worth a line in the report.
pub const SENTINEL_EVENTS: [&str; 7] = [
    "+switch-master",
    "+sdown",
    "-sdown",
    "+odown",
    "-odown",
    "+failover-end",
    "+convert-to-slave",
];

/// Subscribes to every sentinel's event channels until `stop` turns true,
/// appending what they publish to `out`. A sentinel that cannot be reached
/// is retried every 500 ms.
pub async fn watch_sentinels(
    sentinels: Vec<(String, SocketAddr)>,
    t0: Instant,
    out: Arc<Mutex<Vec<ServerEvent>>>,
    stop: watch::Receiver<bool>,
) {
    let tasks: Vec<_> = sentinels
        .into_iter()
        .map(|(id, addr)| {
            let (out, mut stop) = (out.clone(), stop.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = listen(&id, addr, t0, &out) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn listen(id: &str, addr: SocketAddr, t0: Instant, out: &Mutex<Vec<ServerEvent>>) {
    use futures_util::StreamExt;
    loop {
        let subscribed = async {
            let client = crate::redis_admin::access::client(addr).ok()?;
            let mut pubsub = client.get_async_pubsub().await.ok()?;
            for channel in SENTINEL_EVENTS {
                pubsub.subscribe(channel).await.ok()?;
            }
            Some(pubsub)
        };
        if let Some(pubsub) = subscribed.await {
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                let event = ServerEvent {
                    t_s: t0.elapsed().as_secs_f64(),
                    node: id.to_string(),
                    event: msg.get_channel_name().to_string(),
                    detail: msg.get_payload::<String>().unwrap_or_default(),
                };
                out.lock().unwrap_or_else(|p| p.into_inner()).push(event);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
