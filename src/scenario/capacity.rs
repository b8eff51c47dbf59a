//! `[capacity]`: the search's steps and its SLO rules, checked with the
//! place of every mistake.

use super::raw::{RawCapacity, RawLoad};
use super::{VResult, Validator};
use crate::load::capacity::{CapacityPlan, Growth};
use crate::load::LoadPlan;
use crate::vocab::expect::{self, ExpectCtx};
use std::time::Duration;
use toml::Spanned;

impl Validator<'_> {
    /// The search, which needs the open model and sets the rate itself.
    pub(super) fn capacity(
        &self,
        raw: &Spanned<RawCapacity>,
        load: (&Spanned<RawLoad>, &LoadPlan),
        names: &ExpectCtx,
    ) -> VResult<CapacityPlan> {
        let c = raw.get_ref();
        let (raw_load, plan) = load;
        if !matches!(plan.model, crate::load::Model::Open(_)) {
            return Err(self.err(raw.span(), "a capacity search offers rates the system may not keep up with: it needs [load] `model = \"open\"`"));
        }
        if let Some(r) = &raw_load.get_ref().rate {
            return Err(self.err(
                r.span(),
                "[capacity] sets the rate of every step: leave [load] `rate` out",
            ));
        }
        if let Some(s) = raw_load.get_ref().stages.first() {
            return Err(self.err(
                s.span(),
                "[capacity] sets the rate of every step: [[load.stage]] cannot be used with it",
            ));
        }
        let positive = |s: &Spanned<f64>, key: &str| self.above_zero(s, key, "");
        let start = positive(&c.start, "start")?;
        let max = positive(&c.max, "max")?;
        self.check(
            &c.max,
            max >= start,
            format!("`max` ({max}) must be at least `start` ({start})"),
        )?;
        let growth = match (&c.factor, &c.step) {
            (Some(f), None) => {
                let v = *f.get_ref();
                self.check(
                    f,
                    v.is_finite() && v > 1.0,
                    format!("`factor` must be above 1, not {v}"),
                )?;
                Growth::Factor(v)
            }
            (None, Some(s)) => Growth::Step(positive(s, "step")?),
            _ => {
                return Err(self.err(
                    raw.span(),
                    "[capacity] grows the rate by a `factor` or a `step` (ops/s), exactly one",
                ))
            }
        };
        let hold = self.positive_dur(Some(&c.hold), "hold", Duration::ZERO)?;
        let resolution = match &c.resolution {
            Some(r) => positive(r, "resolution")?,
            None => (start * 0.05).max(1.0),
        };
        let rules = c.slo.as_ref().map_or(&[][..], |s| &s.get_ref()[..]);
        if rules.is_empty() {
            let span = c.slo.as_ref().map_or(raw.span(), |s| s.span());
            return Err(self.err(span, "a capacity search needs SLO rules that decide whether a step held: `slo = [\"p99 < 50ms\", \"shed == 0\"]`"));
        }
        let slo = rules
            .iter()
            .map(|r| slo_rule(r.get_ref(), names).map_err(|m| self.err(r.span(), m)))
            .collect::<VResult<Vec<_>>>()?;
        Ok(CapacityPlan {
            start,
            growth,
            max,
            hold,
            resolution,
            slo,
        })
    }
}

/// A rule without a phase (`p99 < 50ms`): read as a rule on `run`, which
/// the search moves to each step's phase.
fn slo_rule(rule: &str, names: &ExpectCtx) -> Result<expect::Expectation, String> {
    let lhs = rule.split_whitespace().next().unwrap_or("");
    let head = lhs.split('.').next().unwrap_or("");
    if head.contains(':') || matches!(head, "run" | "baseline") || lhs.contains('/') {
        return Err(format!(
            "an SLO rule names no phase or variant (it is judged on every step): `{rule}`"
        ));
    }
    let mut e = expect::parse(&format!("run.{rule}"), names)?;
    e.rule = rule.to_string();
    Ok(e)
}
