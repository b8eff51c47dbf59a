//! The conductor applies and removes every fault at its offset from the
//! start of load, through the proxies in front of the targeted nodes, and
//! marks the phases: `fault:<name>` from the moment gameday asks the proxy
//! to apply the fault, `recovery:<name>` from the moment the proxy server
//! shows it gone. The fault phase thus covers every instant the fault may
//! have been in force.

use crate::proxy::control::{ControlError, NetFault, ProxyControl};
use crate::recorder::Recorder;
use crate::scenario::plan::FaultPlan;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
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
}

/// One fault with the proxies it acts on.
pub struct Scheduled {
    pub plan: FaultPlan,
    pub proxies: Vec<String>,
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

/// Runs the fault timeline. Returns early, with every applied fault
/// removed, when `stop` turns true. `records` is filled as it goes, so a
/// caller sees what happened even if the conductor fails midway.
pub async fn conduct(
    faults: Vec<Scheduled>,
    control: ProxyControl,
    recorder: Arc<Mutex<Recorder>>,
    t0: Instant,
    mut stop: watch::Receiver<bool>,
    records: Arc<Mutex<Vec<FaultRecord>>>,
) -> Result<(), ControlError> {
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
        switch(&control, &f.proxies, &f.plan.fault, true).await?;
        records.lock().expect("records lock")[i].confirmed_at_s = Some(secs(now_us()));
        wait_until(t0 + f.plan.end(), &mut stop).await;
        switch(&control, &f.proxies, &f.plan.fault, false).await?;
        let removed = now_us();
        recorder
            .lock()
            .expect("recorder lock")
            .begin_phase(&format!("recovery:{}", f.plan.name), removed);
        records.lock().expect("records lock")[i].removed_at_s = Some(secs(removed));
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
