//! `connection_storm`: every client connection of the target nodes cut at
//! once (`CLIENT KILL TYPE normal`, gameday's own admin connection
//! spared), so that every client reconnects at the same moment: the
//! reconnect herd. With `maxclients`, the nodes accept only that many
//! clients for the fault's length, as a node sized for steady state would,
//! and the herd's surplus is refused (`rejected_connections`). The record
//! keeps, per node, the connections cut, the most clients seen connected
//! while it lasted and the connections refused.

use super::memory::{connect, err, info_u64};
use super::{Env, FaultCtx, Notes};
use crate::topology::handle::NodeHandle;
use crate::topology::TopologyError;
use crate::vocab::check::{check, Checked};
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::watch;

/// The keys of `kind = "connection_storm"`.
pub const KEYS: &[&str] = &["maxclients"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStorm {
    /// `maxclients` for the fault's length.
    pub maxclients: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct Raw {
    maxclients: Option<u64>,
}

impl Raw {
    pub fn plan(self, ctx: &FaultCtx) -> Checked<ConnectionStorm> {
        check(
            ctx.name,
            self.maxclients.is_none_or(|m| (1..=100_000).contains(&m)),
            format!(
                "fault `{}`: `maxclients` must be between 1 and 100000",
                ctx.name.get_ref()
            ),
        )?;
        Ok(ConnectionStorm {
            maxclients: self.maxclients,
        })
    }
}

/// What the storm did on one node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StormOutcome {
    pub node: String,
    /// Client connections `CLIENT KILL` cut.
    pub killed: u64,
    /// The most `connected_clients` seen while the fault lasted (sampled
    /// every 100 ms, gameday's own connection included).
    pub peak_clients: u64,
    /// `rejected_connections` added while the fault lasted.
    pub rejected: u64,
}

/// The storm's watchers, one per node, until `remove`.
pub struct Active {
    stop: watch::Sender<bool>,
    watchers: Vec<tokio::task::JoinHandle<Result<StormOutcome, TopologyError>>>,
}

pub async fn apply(env: &Env, s: &ConnectionStorm) -> Result<Active, TopologyError> {
    let (stop, rx) = watch::channel(false);
    let mut watchers = Vec::new();
    for n in &env.nodes {
        let mut c = connect(n).await?;
        let rejected_before = info_u64(&mut c, n, "stats", "rejected_connections").await?;
        let maxclients_before = match s.maxclients {
            Some(m) => Some(set_maxclients(&mut c, n, &m.to_string()).await?),
            None => None,
        };
        let killed: u64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query_async(&mut c)
            .await
            .map_err(|e| err(n, e))?;
        let outcome = StormOutcome {
            node: n.id.clone(),
            killed,
            ..StormOutcome::default()
        };
        let (n, rx) = (n.clone(), rx.clone());
        watchers.push(tokio::spawn(async move {
            watch_node(n, c, outcome, rejected_before, maxclients_before, rx).await
        }));
    }
    Ok(Active { stop, watchers })
}

impl Active {
    pub async fn remove(self, notes: &Notes) -> Result<(), TopologyError> {
        let _ = self.stop.send(true);
        let mut outcomes = Vec::new();
        for w in self.watchers {
            if let Ok(o) = w.await {
                outcomes.push(o?);
            }
        }
        notes.note(|r| r.storms = outcomes);
        Ok(())
    }
}

/// Sets `maxclients`, returning what it was.
async fn set_maxclients(
    c: &mut MultiplexedConnection,
    n: &NodeHandle,
    value: &str,
) -> Result<String, TopologyError> {
    let pair: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxclients")
        .query_async(c)
        .await
        .map_err(|e| err(n, e))?;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg(value)
        .query_async::<()>(c)
        .await
        .map_err(|e| err(n, e))?;
    Ok(pair.get(1).cloned().unwrap_or_default())
}

/// Samples the node until told to stop; then restores `maxclients` and
/// counts what was refused.
async fn watch_node(
    n: NodeHandle,
    mut c: MultiplexedConnection,
    mut o: StormOutcome,
    rejected_before: u64,
    maxclients_before: Option<String>,
    mut stop: watch::Receiver<bool>,
) -> Result<StormOutcome, TopologyError> {
    loop {
        let clients = info_u64(&mut c, &n, "clients", "connected_clients").await?;
        o.peak_clients = o.peak_clients.max(clients);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    let rejected = info_u64(&mut c, &n, "stats", "rejected_connections").await?;
    o.rejected = rejected.saturating_sub(rejected_before);
    if let Some(m) = maxclients_before {
        set_maxclients(&mut c, &n, &m).await?;
    }
    Ok(o)
}
