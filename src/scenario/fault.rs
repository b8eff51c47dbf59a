//! `[[fault]]`: each fault's name, window and target, checked against the
//! topology and the other faults (one at a time); its parameters are its
//! kind's own business (`fault::<kind>`), read by `params`.

use super::raw::RawFaultHead;
use super::{params, VResult, Validator};
use crate::fault::{Fault, FaultCtx, FaultPlan, Target};
use crate::topology::plan::TopologyPlan;
use crate::vocab::check;
use crate::vocab::topo::TopologyKind;
use crate::vocab::units;
use crate::workload::WorkloadPlan;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

impl Validator<'_> {
    pub(super) fn faults(
        &self,
        raw: &[Spanned<RawFaultHead>],
        duration: Duration,
        topo: &TopologyPlan,
        workload: &WorkloadPlan,
    ) -> VResult<Vec<FaultPlan>> {
        params::fault_keys(self, raw)?;
        let mut targets = Vec::new();
        for f in raw {
            self.window(f.get_ref(), duration)?;
            targets.push(self.target(&f.get_ref().target, topo)?);
        }
        let ctxs: Vec<FaultCtx> = raw
            .iter()
            .zip(&targets)
            .map(|(f, target)| FaultCtx {
                name: &f.get_ref().name,
                kind: *f.get_ref().kind.get_ref(),
                target,
                target_span: f.get_ref().target.span(),
                topology: topo,
            })
            .collect();
        let faults = params::faults(self, &ctxs)?;
        let mut out: Vec<(FaultPlan, Range<usize>)> = Vec::new();
        for ((f, fault), target) in raw.iter().zip(faults).zip(targets) {
            let f = f.get_ref();
            let plan = FaultPlan {
                name: f.name.get_ref().clone(),
                kind: *f.kind.get_ref(),
                fault: fault.map_err(|e| self.at(e))?,
                target,
                at: f.at.get_ref().0,
                duration: f.for_.get_ref().0,
            };
            if let Some((other, _)) = out.iter().find(|(o, _)| o.name == plan.name) {
                return Err(self.err(
                    f.name.span(),
                    format!("a second fault is named `{}`", other.name),
                ));
            }
            self.check(
                &f.name,
                plan.fault != Fault::GcPause || workload.pausable(),
                format!(
                    "fault `{}`: a gc_pause stalls a lock holder or a queue consumer; it needs the lock or queue workload",
                    plan.name
                ),
            )?;
            out.push((plan, f.at.span()));
        }
        self.one_at_a_time(out)
    }

    /// Sorts the faults by start and refuses any two that overlap.
    fn one_at_a_time(&self, mut out: Vec<(FaultPlan, Range<usize>)>) -> VResult<Vec<FaultPlan>> {
        out.sort_by_key(|(f, _)| f.at);
        for pair in out.windows(2) {
            let (a, b) = (&pair[0].0, &pair[1].0);
            if b.at < a.end() {
                return Err(self.err(pair[1].1.clone(), format!(
                    "fault `{}` ({} to {}) overlaps fault `{}` ({} to {}): one fault at a time, so that every phase has one cause",
                    b.name, units::fmt_duration(b.at), units::fmt_duration(b.end()),
                    a.name, units::fmt_duration(a.at), units::fmt_duration(a.end()))));
            }
        }
        Ok(out.into_iter().map(|(f, _)| f).collect())
    }

    /// A fault's name and window: inside the run, longer than 0s.
    fn window(&self, f: &RawFaultHead, duration: Duration) -> VResult<()> {
        let name = check::name(
            &f.name,
            "-_",
            "a fault `name` must be non-empty and use only letters, digits, `-` and `_`",
        )
        .map_err(|e| self.at(e))?;
        let (at, len) = (f.at.get_ref().0, f.for_.get_ref().0);
        self.check(
            &f.for_,
            len > Duration::ZERO,
            "`for` must be longer than 0s",
        )?;
        self.check(
            &f.at,
            at + len <= duration,
            format!(
                "fault `{name}` runs from {} to {}, past the end of the run ({})",
                units::fmt_duration(at),
                units::fmt_duration(at + len),
                units::fmt_duration(duration)
            ),
        )
    }

    fn target(&self, t: &Spanned<String>, topo: &TopologyPlan) -> VResult<Target> {
        let text = t.get_ref().as_str();
        let target = match text {
            "primary" => Target::Primary,
            "replicas" => Target::Replicas,
            "all" => Target::All,
            "sentinels" => Target::Sentinels,
            other => match other.strip_prefix("node:") {
                Some(id) if !id.is_empty() => Target::Node(id.to_string()),
                _ => return Err(self.err(t.span(), format!("unknown target `{other}` (use primary, replicas, all, sentinels or node:<id>)"))),
            },
        };
        let fits = !matches!(
            (topo.kind, &target),
            (
                TopologyKind::Standalone,
                Target::Replicas | Target::Sentinels
            ) | (
                TopologyKind::Replicated | TopologyKind::Cluster,
                Target::Sentinels
            )
        );
        self.check(
            t,
            fits,
            format!("a {} topology has no {text}", topo.kind.as_str()),
        )?;
        Ok(target)
    }
}
