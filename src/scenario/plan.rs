//! `RunPlan`: a scenario after validation. Defaults are filled in, units
//! resolved and every cross-field rule checked; the engine sees only this.

use super::gate::GatePlan;
use crate::fault::FaultPlan;
use crate::load::LoadPlan;
use crate::topology::plan::TopologyPlan;
use crate::vocab::expect::Expectation;
use crate::vocab::gate::GateConfig;
use crate::vocab::topo::Backend;
use crate::workload::WorkloadPlan;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RunPlan {
    pub name: String,
    pub description: String,
    pub source: PathBuf,
    pub duration: Duration,
    pub seed: u64,
    pub topology: TopologyPlan,
    pub load: LoadPlan,
    pub workload: WorkloadPlan,
    pub faults: Vec<FaultPlan>,
    pub expectations: Vec<Expectation>,
    /// `abort_if`: stop conditions, checked every second on the data so
    /// far; the first that holds ends the run (verdict `aborted`).
    pub abort_if: Vec<Expectation>,
    /// Variants run back to back against the same topology, each with its
    /// own workload settings (`fencing = [false, true]`, ...); empty for a
    /// single run of `workload`.
    pub variants: Vec<(String, WorkloadPlan)>,
    /// Set on the plan of one variant: its name.
    pub variant: Option<String>,
    /// `[gate]`: what `gameday compare` judges a run on.
    pub gate: GatePlan,
    /// `[capacity]`: the run is a search for the knee.
    pub capacity: Option<crate::load::capacity::CapacityPlan>,
    /// SHA-256 (hex) of the scenario without `[gate]`, and of the command
    /// line's changes to what runs (`--target-env`): baselines must match it.
    pub content_hash: String,
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the command line may change of a scenario.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub backend: Option<Backend>,
    pub seed: Option<u64>,
    /// A Toxiproxy API instead of the embedded one.
    pub toxiproxy_url: Option<String>,
    /// `--allow-destructive`, which must confirm the scenario's own.
    pub allow_destructive: bool,
    /// `--target-env KEY=VALUE`: set in a started target's environment,
    /// over the scenario's `env`.
    pub target_env: Vec<(String, String)>,
}

impl RunPlan {
    /// The plan as it will run, the command line's choices applied: the
    /// one place they are resolved.
    pub fn resolve(mut self, o: &Overrides) -> RunPlan {
        if let Some(b) = o.backend {
            self.topology.backend = b;
        }
        if let Some(s) = o.seed {
            self.seed = s;
        }
        if let Some(u) = &o.toxiproxy_url {
            self.topology.toxiproxy_url = Some(u.clone());
        }
        self.topology.external.allow_destructive &= o.allow_destructive;
        if let crate::workload::WorkloadPlan::Http(p) = &mut self.workload {
            if let Some(cmd) = &mut p.command {
                for (k, v) in &o.target_env {
                    cmd.env.retain(|(have, _)| have != k);
                    cmd.env.push((k.clone(), v.clone()));
                }
            }
        }
        if !o.target_env.is_empty() {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(self.content_hash.as_bytes());
            for (k, v) in &o.target_env {
                h.update(format!("\n{k}={v}").as_bytes());
            }
            self.content_hash = hex(&h.finalize());
        }
        self
    }

    /// The regression gate of this plan, defaults filled in.
    pub fn gate_config(&self) -> GateConfig {
        self.gate
            .config(&self.workload, &self.faults, self.variant.as_deref())
    }

    /// The plan of one variant: its workload, and the rules that are for
    /// every variant or for it.
    pub fn variant(&self, name: &str, workload: &WorkloadPlan) -> RunPlan {
        RunPlan {
            workload: workload.clone(),
            expectations: self
                .expectations
                .iter()
                .filter(|e| e.variant.as_deref().is_none_or(|v| v == name))
                .cloned()
                .collect(),
            variants: Vec::new(),
            variant: Some(name.to_string()),
            ..self.clone()
        }
    }
}
