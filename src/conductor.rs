//! The conductor applies and removes every fault at its offset from the
//! start of load — network faults through the proxies in front of the
//! targeted nodes, node faults on the nodes themselves — and marks the
//! phases: `fault:<name>` from the moment gameday starts applying the fault,
//! `recovery:<name>` from the moment it is seen gone (the proxy shows it
//! removed; the node answers PING again). The fault phase thus covers every
//! instant the fault may have been in force.

use crate::failover::{FailoverCtx, Observed};
use crate::ledger::Ledger;
use crate::memory::{self, MemoryOutcome};
use crate::proxy::control::{ControlError, NetFault, ProxyControl};
use crate::recorder::Recorder;
use crate::scenario::plan::{ClientFault, FailoverMode, Fault, FaultPlan, NodeFault};
use crate::topology::process::NodeHandle;
use crate::topology::{ClientSpec, TopologyError};
use crate::workload::lock::GcPause;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What really happened to one fault (seconds from the start of load).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRecord {
    pub name: String,
    pub kind: String,
    pub target: String,
    pub proxies: Vec<String>,
    pub at_s: f64,
    pub for_s: f64,
    /// When gameday asked the proxy to apply the fault: the fault phase
    /// starts here, so it holds every moment the fault may have been in force.
    pub applied_at_s: Option<f64>,
    /// When the proxy server showed the fault in force.
    pub confirmed_at_s: Option<f64>,
    /// When the proxy server showed the fault removed: the recovery phase
    /// starts here.
    pub removed_at_s: Option<f64>,
    /// failover: the primary that was replaced.
    #[serde(default)]
    pub replaced: Option<String>,
    /// failover: when the topology named another primary (a sentinel's
    /// answer; the owner of the old primary's slots).
    #[serde(default)]
    pub switched_at_s: Option<f64>,
    /// failover: the node that became primary.
    #[serde(default)]
    pub new_primary: Option<String>,
    /// failover: from the loss of the primary (the apply) to the end of the
    /// first write a fresh client made to the new primary; absent when that
    /// did not happen while the fault lasted.
    #[serde(default)]
    pub failover_time_ms: Option<f64>,
    /// memory_pressure: per target node, ballast written and evictions by
    /// key class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory: Vec<MemoryOutcome>,
}

/// One fault with what it acts on: the proxies in front of its targets
/// (network faults) or the target nodes (node faults).
pub struct Scheduled {
    pub plan: FaultPlan,
    pub proxies: Vec<String>,
    pub nodes: Vec<NodeHandle>,
    /// What a `failover` needs (sentinel and cluster topologies).
    pub failover: Option<FailoverCtx>,
    /// The run's key prefix (`gameday:<run id>:`), for ballast keys.
    pub prefix: String,
    /// Where a `gc_pause` is armed (the lock workload).
    pub gc: Option<Arc<GcPause>>,
}

/// A fault that could not be applied or removed: the run is void.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error(transparent)]
    Proxy(#[from] ControlError),
    #[error("fault `{fault}`: {err}")]
    Node { fault: String, err: TopologyError },
}

async fn switch(
    control: &ProxyControl,
    proxies: &[String],
    fault: &NetFault,
    on: bool,
) -> Result<(), ControlError> {
    for name in proxies {
        let (n, f) = (name.clone(), fault.clone());
        control
            .call(move |c| if on { c.apply(&n, &f) } else { c.clear(&n, &f) })
            .await?;
    }
    Ok(())
}

/// Runs one admin command on a node's own address (never through a proxy).
async fn admin(node: &NodeHandle, cmd: redis::Cmd) -> Result<(), TopologyError> {
    let fail = |e: String| TopologyError::Provision(format!("node {}: {e}", node.id));
    let client =
        redis::Client::open(format!("redis://{}/", node.addr)).map_err(|e| fail(e.to_string()))?;
    // DEBUG SLEEP answers only when the sleep is over.
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(None);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| fail(e.to_string()))?;
    cmd.query_async::<()>(&mut conn)
        .await
        .map_err(|e| fail(e.to_string()))
}

/// Turns a node fault on for every target node. A `debug_sleep` leaves the
/// sleeping command behind, to be awaited when the fault ends.
async fn node_on(
    nodes: &[NodeHandle],
    fault: &NodeFault,
    duration: Duration,
) -> Result<Vec<JoinHandle<Result<(), TopologyError>>>, TopologyError> {
    let mut sleepers = Vec::new();
    for n in nodes {
        match fault {
            NodeFault::Kill => n.kill().await?,
            NodeFault::Restart => n.stop().await?,
            NodeFault::Pause => n.pause().await?,
            // Redis blocks even CLIENT UNPAUSE while all clients are paused,
            // so the pause is set for exactly the fault's length.
            NodeFault::ClientPause => {
                let mut cmd = redis::cmd("CLIENT");
                cmd.arg("PAUSE").arg(duration.as_millis() as u64).arg("ALL");
                admin(n, cmd).await?
            }
            NodeFault::Failover(_) | NodeFault::MemoryPressure(_) => {
                unreachable!("conducted apart")
            }
            NodeFault::DebugSleep => {
                let (n, secs) = (n.clone(), duration.as_secs_f64());
                sleepers.push(tokio::spawn(async move {
                    let mut cmd = redis::cmd("DEBUG");
                    cmd.arg("SLEEP").arg(format!("{secs:.3}"));
                    admin(&n, cmd).await
                }));
            }
        }
    }
    Ok(sleepers)
}

/// Ends a node fault: start the node again, resume it, or wait until it
/// answers again on its own (client_pause, debug_sleep).
async fn node_off(
    nodes: &[NodeHandle],
    fault: &NodeFault,
    sleepers: Vec<JoinHandle<Result<(), TopologyError>>>,
) -> Result<(), TopologyError> {
    for s in sleepers {
        s.await
            .map_err(|e| TopologyError::Provision(format!("DEBUG SLEEP task: {e}")))??;
    }
    for n in nodes {
        match fault {
            NodeFault::Kill | NodeFault::Restart => n.start_again().await?,
            NodeFault::Pause => n.resume().await?,
            NodeFault::ClientPause | NodeFault::DebugSleep => n.wait_ready().await?,
            NodeFault::Failover(_) | NodeFault::MemoryPressure(_) => {
                unreachable!("conducted apart")
            }
        }
    }
    Ok(())
}

/// Runs the fault timeline. Returns early, with every applied fault
/// removed, when `stop` turns true. `records` is filled as it goes, so a
/// caller sees what happened even if the conductor fails midway.
#[allow(clippy::too_many_arguments)]
pub async fn conduct(
    faults: Vec<Scheduled>,
    control: ProxyControl,
    recorder: Arc<Mutex<Recorder>>,
    t0: Instant,
    mut stop: watch::Receiver<bool>,
    records: Arc<Mutex<Vec<FaultRecord>>>,
    ledger: Option<LedgerCheck>,
) -> Result<(), FaultError> {
    let mut checks = Vec::new();
    let result = timeline(
        &faults,
        &control,
        &recorder,
        t0,
        &mut stop,
        &records,
        ledger.as_ref(),
        &mut checks,
    )
    .await;
    for c in checks {
        let _ = c.await;
    }
    result
}

/// What the ledger's read-back after each fault needs.
#[derive(Clone)]
pub struct LedgerCheck {
    pub ledger: Arc<Ledger>,
    pub decode: crate::ledger::VersionOf,
    pub client: ClientSpec,
}

/// How long after a fault's removal the ledger reads everything back.
const SETTLE: Duration = Duration::from_secs(1);

#[allow(clippy::too_many_arguments)]
async fn timeline(
    faults: &[Scheduled],
    control: &ProxyControl,
    recorder: &Arc<Mutex<Recorder>>,
    t0: Instant,
    stop: &mut watch::Receiver<bool>,
    records: &Arc<Mutex<Vec<FaultRecord>>>,
    ledger: Option<&LedgerCheck>,
    checks: &mut Vec<JoinHandle<u64>>,
) -> Result<(), FaultError> {
    let control = control.clone();
    let mut stop = stop.clone();
    let secs = |us: u64| us as f64 / 1e6;
    let now_us = || t0.elapsed().as_micros() as u64;
    for (i, f) in faults.iter().enumerate() {
        records.lock().expect("records lock").push(FaultRecord {
            name: f.plan.name.clone(),
            kind: f.plan.kind_name.clone(),
            target: f.plan.target.to_string(),
            proxies: f.proxies.clone(),
            at_s: f.plan.at.as_secs_f64(),
            for_s: f.plan.duration.as_secs_f64(),
            applied_at_s: None,
            confirmed_at_s: None,
            removed_at_s: None,
            replaced: None,
            switched_at_s: None,
            new_primary: None,
            failover_time_ms: None,
            memory: Vec::new(),
        });
        if !wait_until(t0 + f.plan.at, &mut stop).await {
            return Ok(());
        }
        let applied = now_us();
        recorder
            .lock()
            .expect("recorder lock")
            .begin_phase(&format!("fault:{}", f.plan.name), applied);
        records.lock().expect("records lock")[i].applied_at_s = Some(secs(applied));
        let node_err = |err| FaultError::Node {
            fault: f.plan.name.clone(),
            err,
        };
        let mut sleepers = Vec::new();
        let mut failover = None;
        let mut pressed = Vec::new();
        match &f.plan.fault {
            Fault::Client(ClientFault::GcPause) => match &f.gc {
                Some(gc) => gc.arm(t0 + f.plan.end()),
                None => {
                    return Err(node_err(TopologyError::Unsupported(
                        "a gc_pause needs the lock workload".into(),
                    )))
                }
            },
            Fault::Net(net) => switch(&control, &f.proxies, net, true).await?,
            Fault::Node(NodeFault::Failover(mode)) => {
                let ctx = f.failover.clone().ok_or_else(|| {
                    node_err(TopologyError::Unsupported(
                        "a failover needs a sentinel or cluster topology gameday runs".into(),
                    ))
                })?;
                let old = ctx.begin(*mode, &f.plan.target).await.map_err(node_err)?;
                records.lock().expect("records lock")[i].replaced = Some(old.id.clone());
                let deadline = t0 + f.plan.end();
                let watched = old.clone();
                let watcher = tokio::spawn(async move { ctx.watch(watched, t0, deadline).await });
                failover = Some((old, *mode, watcher));
            }
            Fault::Node(NodeFault::MemoryPressure(m)) => {
                for n in &f.nodes {
                    pressed.push(memory::apply(n, m, &f.prefix).await.map_err(node_err)?);
                }
            }
            Fault::Node(node) => {
                sleepers = node_on(&f.nodes, node, f.plan.duration)
                    .await
                    .map_err(node_err)?
            }
        }
        records.lock().expect("records lock")[i].confirmed_at_s = Some(secs(now_us()));
        wait_until(t0 + f.plan.end(), &mut stop).await;
        match &f.plan.fault {
            // The paused holder wakes by itself; recovery starts once it
            // has left the resource.
            Fault::Client(ClientFault::GcPause) => {
                if let Some(gc) = &f.gc {
                    gc.end().await;
                }
            }
            Fault::Net(net) => switch(&control, &f.proxies, net, false).await?,
            Fault::Node(NodeFault::Failover(_)) => {
                let (old, mode, mut watcher) = failover.expect("set when applied");
                // Interrupted: the watcher's deadline may be far; stop it.
                let seen = tokio::select! {
                    s = &mut watcher => s.unwrap_or_default(),
                    _ = tokio::time::sleep(Duration::from_millis(10)), if *stop.borrow() => {
                        watcher.abort();
                        Observed::default()
                    }
                };
                {
                    let mut r = records.lock().expect("records lock");
                    let r = &mut r[i];
                    r.switched_at_s = seen.switched_us.map(secs);
                    r.new_primary = seen.new_primary;
                    r.failover_time_ms = seen
                        .written_us
                        .map(|w| w.saturating_sub(applied) as f64 / 1e3);
                }
                if mode == FailoverMode::KillPrimary {
                    old.start_again().await.map_err(node_err)?;
                }
            }
            Fault::Node(NodeFault::MemoryPressure(_)) => {
                let mut outcomes = Vec::new();
                for a in pressed {
                    outcomes.push(memory::remove(a).await.map_err(node_err)?);
                }
                records.lock().expect("records lock")[i].memory = outcomes;
            }
            Fault::Node(node) => node_off(&f.nodes, node, sleepers).await.map_err(node_err)?,
        }
        let removed = now_us();
        recorder
            .lock()
            .expect("recorder lock")
            .begin_phase(&format!("recovery:{}", f.plan.name), removed);
        records.lock().expect("records lock")[i].removed_at_s = Some(secs(removed));
        if let Some(l) = ledger.cloned() {
            checks.push(tokio::spawn(async move {
                tokio::time::sleep(SETTLE).await;
                l.ledger.check(&l.client, t0, l.decode).await
            }));
        }
    }
    Ok(())
}

/// Sleeps until `when`; false if `stop` turned true first.
async fn wait_until(when: Instant, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep_until(when) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}
