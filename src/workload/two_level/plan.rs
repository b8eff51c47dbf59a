//! two-level's `[workload]` keys and their validation.

use crate::vocab::check::{check, positive_dur, positive_int_or, Checked};
use crate::vocab::topo::TopologyKind;
use crate::vocab::units::Dur;
use crate::workload::origin::{OriginPlan, RawOrigin};
use crate::workload::{bool_choice, Choice, OneOrMany, WorkloadCtx};
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// Where the instances subscribe.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SubscribeTo {
    Primary,
    Replicas,
}

#[derive(Debug, Clone)]
pub struct TwoLevelPlan {
    pub keys: u64,
    pub instances: usize,
    pub read_ratio: f64,
    pub l1_size: usize,
    pub l1_ttl: Duration,
    pub max_staleness: Duration,
    pub flush_on_reconnect: bool,
    pub subscribe: SubscribeTo,
    pub op_timeout: Duration,
    pub origin: OriginPlan,
}

/// The `[workload]` keys of `kind = "two-level"`.
#[derive(Debug, Deserialize)]
pub struct Raw {
    keys: Option<Spanned<i64>>,
    instances: Option<Spanned<i64>>,
    read_ratio: Option<Spanned<f64>>,
    l1_size: Option<Spanned<i64>>,
    l1_ttl: Option<Spanned<Dur>>,
    max_staleness: Option<Spanned<Dur>>,
    /// One value, or a list: one variant per value.
    flush_on_reconnect: Option<Spanned<OneOrMany<bool>>>,
    subscribe: Option<Spanned<SubscribeTo>>,
    op_timeout: Option<Spanned<Dur>>,
    origin: Option<RawOrigin>,
}

impl Raw {
    /// Validates the keys; `flush_on_reconnect = [false, true]` gives the
    /// variants `flush_on_reconnect-off` and `-on`.
    pub fn plan(self, ctx: &WorkloadCtx) -> Checked<Choice<TwoLevelPlan>> {
        let keys = ctx.owned_keys(self.keys.as_ref())?;
        let instances = positive_int_or(self.instances.as_ref(), "instances", 4)?;
        if let Some(i) = &self.instances {
            check(
                i,
                instances <= ctx.users as u64,
                format!(
                    "`instances` must be at most `users` ({}): each instance needs a user",
                    ctx.users
                ),
            )?;
        }
        let subscribe = self
            .subscribe
            .as_ref()
            .map_or(SubscribeTo::Primary, |s| *s.get_ref());
        if let Some(s) = &self.subscribe {
            check(
                s,
                subscribe == SubscribeTo::Primary
                    || (ctx.replicas > 0 && ctx.topology != TopologyKind::Cluster),
                "`subscribe = \"replicas\"` needs replicas: use a replicated or sentinel topology",
            )?;
        }
        let base = TwoLevelPlan {
            keys,
            instances: instances as usize,
            read_ratio: crate::vocab::check::fraction_or(
                self.read_ratio.as_ref(),
                "read_ratio",
                0.9,
            )?,
            l1_size: positive_int_or(self.l1_size.as_ref(), "l1_size", 10_000)?.min(10_000_000)
                as usize,
            l1_ttl: positive_dur(self.l1_ttl.as_ref(), "l1_ttl", Duration::from_secs(30))?,
            max_staleness: positive_dur(
                self.max_staleness.as_ref(),
                "max_staleness",
                Duration::from_millis(100),
            )?,
            flush_on_reconnect: false,
            subscribe,
            op_timeout: positive_dur(
                self.op_timeout.as_ref(),
                "op_timeout",
                Duration::from_millis(500),
            )?,
            origin: OriginPlan::from_raw(self.origin.as_ref(), Duration::from_millis(5))?,
        };
        bool_choice(
            self.flush_on_reconnect.as_ref(),
            "flush_on_reconnect",
            base,
            |p, on| p.flush_on_reconnect = on,
        )
    }
}
