//! Scenario files (L3): read TOML (`raw`), check every value and cross-field
//! rule with the file, line and column of the culprit, and produce one
//! `RunPlan` (`plan`) made of the engine's own configurations. `gameday
//! validate` stops here; `gameday run` goes on.
//!
//! A file is read twice from the same text: once for the scenario's own
//! shape (`raw`), once more for the tables whose keys depend on their
//! `kind` (`params`): each workload and fault kind owns its keys and
//! checks them itself, and every refusal keeps its position.

mod capacity;
mod fault;
pub mod gate;
mod params;
pub mod plan;
pub mod raw;
mod topology;

use crate::load::{LoadPlan, Model, OpenPlan, Stage};
use crate::topology::plan::TopologyPlan;
use crate::vocab::check::{self, Invalid};
use crate::vocab::expect::{self, ExpectCtx};
use crate::vocab::units::{self, Dur};
use crate::workload::WorkloadCtx;
use plan::RunPlan;
use raw::{ModelName, RawLoad, RawScenario, RawStage};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// A scenario the harness refuses, with where the problem is.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct ScenarioError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Reads and validates a scenario file.
pub fn load(path: &Path) -> Result<RunPlan, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: path.display().to_string(),
        line: 0,
        col: 0,
        message: format!("cannot read the scenario: {e}"),
    })?;
    parse(path, &text)
}

/// Validates scenario `text` as if read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<RunPlan, ScenarioError> {
    let v = Validator {
        file: path.display().to_string(),
        text,
    };
    let raw: RawScenario = toml::from_str(text).map_err(|e| v.toml_err(&e))?;
    let mut plan = v.plan(raw, path.to_path_buf())?;
    plan.content_hash = content_hash(text);
    Ok(plan)
}

/// SHA-256 of the scenario as TOML data (comments, layout and key order
/// aside), without its `[gate]` table: two runs of the same hash ran the
/// same scenario, whatever their gate's settings.
fn content_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let canonical = match toml::from_str::<toml::Table>(text) {
        Ok(mut t) => {
            t.remove("gate");
            toml::to_string(&t).unwrap_or_else(|_| text.to_string())
        }
        Err(_) => text.to_string(),
    };
    plan::hex(&Sha256::digest(canonical.as_bytes()))
}

/// The open model's slots when `max_in_flight` is left out: enough for a
/// few thousand ops/s at millisecond latencies.
const DEFAULT_MAX_IN_FLIGHT: i64 = 64;
/// Its queue when `max_queue` is left out: a second of arrivals at 1000/s.
const DEFAULT_MAX_QUEUE: i64 = 1000;

struct Validator<'a> {
    file: String,
    text: &'a str,
}

type VResult<T> = Result<T, ScenarioError>;

impl Validator<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ScenarioError {
        let upto = &self.text[..span.start.min(self.text.len())];
        let line = upto.matches('\n').count() + 1;
        let col = upto.len() - upto.rfind('\n').map_or(0, |i| i + 1) + 1;
        ScenarioError {
            file: self.file.clone(),
            line,
            col,
            message: message.into(),
        }
    }

    /// A refusal from a module that owns the values, placed in the file.
    fn at(&self, invalid: Invalid) -> ScenarioError {
        self.err(invalid.span, invalid.message)
    }

    fn toml_err(&self, e: &toml::de::Error) -> ScenarioError {
        self.err(e.span().unwrap_or(0..0), e.message().trim().to_string())
    }

    fn check<T>(&self, s: &Spanned<T>, ok: bool, message: impl Into<String>) -> VResult<()> {
        check::check(s, ok, message).map_err(|e| self.at(e))
    }

    fn positive_int(&self, s: &Spanned<i64>, key: &str) -> VResult<u64> {
        check::positive_int(s, key).map_err(|e| self.at(e))
    }

    /// A finite number above 0 (`unit` for the message).
    fn above_zero(&self, s: &Spanned<f64>, key: &str, unit: &str) -> VResult<f64> {
        let v = *s.get_ref();
        self.check(
            s,
            v.is_finite() && v > 0.0,
            format!("`{key}` must be above 0{unit}, not {v}"),
        )?;
        Ok(v)
    }

    fn positive_dur(
        &self,
        d: Option<&Spanned<Dur>>,
        key: &str,
        default: Duration,
    ) -> VResult<Duration> {
        check::positive_dur(d, key, default).map_err(|e| self.at(e))
    }

    fn plan(&self, raw: RawScenario, source: PathBuf) -> VResult<RunPlan> {
        let name = check::name(
            &raw.name,
            "-_.",
            "`name` must be non-empty and use only letters, digits, `-`, `_` and `.`",
        )
        .map_err(|e| self.at(e))?;
        let duration = raw.duration.get_ref().0;
        self.check(
            &raw.duration,
            duration > Duration::ZERO,
            "`duration` must be longer than 0s",
        )?;
        let (kind, kind_span) = self.workload_kind(&raw)?;
        let topology = self.topology(raw.topology)?;
        let load = self.load(
            &raw.load,
            duration,
            raw.capacity.as_ref().map(|c| *c.get_ref().start.get_ref()),
        )?;
        let ctx = workload_ctx(&raw.load, kind_span, &load, &topology);
        let (workload, variants) = params::workload(self, kind)?
            .plan(&ctx)
            .map_err(|e| self.at(e))?;
        let faults = self.faults(&raw.faults, duration, &topology, &workload)?;
        // What a rule or a gated metric may name.
        let fault_names: Vec<String> = faults.iter().map(|f| f.name.clone()).collect();
        let variant_names: Vec<String> = variants.iter().map(|(n, _)| n.clone()).collect();
        let mut ops = workload.ops().to_vec();
        if matches!(load.model, Model::Open(_)) {
            ops.extend(crate::load::OPEN_OPS);
        }
        let stage_names: Vec<String> = load.stages.iter().map(|s| s.name.clone()).collect();
        let names = ExpectCtx {
            variants: &variant_names,
            faults: &fault_names,
            stages: &stage_names,
            ops: &ops,
            workload_metrics: workload.metrics(),
        };
        let expectations = self.expectations(&raw.expect, &raw.faults, &names)?;
        let abort_if = self.expectations(&raw.abort_if, &[], &names)?;
        let capacity = match &raw.capacity {
            Some(c) => Some(self.capacity(c, (&raw.load, &load), &names)?),
            None => None,
        };
        let gate = match &raw.gate {
            Some(g) => g.plan(&names).map_err(|e| self.at(e))?,
            None => gate::GatePlan::default(),
        };
        Ok(RunPlan {
            name,
            description: raw.description,
            source,
            duration,
            seed: raw.seed.unwrap_or(1),
            topology,
            load,
            workload,
            faults,
            expectations,
            abort_if,
            variants,
            variant: None,
            gate,
            capacity,
            content_hash: String::new(),
        })
    }

    /// What drives the load: `[workload]` or `[target]`, exactly one.
    /// The workload's kind, and where it is written.
    fn workload_kind(
        &self,
        raw: &RawScenario,
    ) -> VResult<(crate::workload::WorkloadKind, Range<usize>)> {
        match (&raw.workload, &raw.target) {
            (Some(w), None) => {
                let kind = *w.kind.get_ref();
                if kind.spec().section != "workload" {
                    return Err(self.err(
                        w.kind.span(),
                        format!("`{}` is a [target] kind: write [target] kind = \"{}\"", kind.as_str(), kind.as_str()),
                    ));
                }
                Ok((kind, w.kind.span()))
            }
            (None, Some(t)) => Ok((t.kind.get_ref().workload(), t.kind.span())),
            (Some(w), Some(_)) => Err(self.err(
                w.kind.span(),
                "a scenario has a [workload] (gameday's reference clients) or a [target] (your service), not both",
            )),
            (None, None) => Err(self.err(
                0..0,
                "a scenario needs a [workload] (gameday's reference clients) or a [target] (your service)",
            )),
        }
    }

    /// The rules of the scenario, and those TOML filed under a fault.
    fn expectations(
        &self,
        rules: &[Spanned<String>],
        raw_faults: &[Spanned<raw::RawFaultHead>],
        ctx: &ExpectCtx,
    ) -> VResult<Vec<expect::Expectation>> {
        rules
            .iter()
            .chain(raw_faults.iter().flat_map(|f| f.get_ref().expect.iter()))
            .map(|r| expect::parse(r.get_ref(), ctx).map_err(|m| self.err(r.span(), m)))
            .collect()
    }

    /// `searched`: a capacity search's first rate, which sets the rate.
    fn load(
        &self,
        raw: &Spanned<RawLoad>,
        duration: Duration,
        searched: Option<f64>,
    ) -> VResult<LoadPlan> {
        let l = raw.get_ref();
        let rate = match &l.rate {
            Some(r) => {
                let v = *r.get_ref();
                self.check(r, v.is_finite() && v > 0.0, format!("`rate` must be above 0 ops/s, not {v} (leave it out to run as fast as possible)"))?;
                Some(v)
            }
            None => None,
        };
        let ramp = match &l.ramp {
            Some(r) => {
                let d = r.get_ref().0;
                self.check(
                    r,
                    d < duration,
                    format!(
                        "`ramp` ({}) must be shorter than `duration` ({})",
                        r.get_ref(),
                        units::fmt_duration(duration)
                    ),
                )?;
                d
            }
            None => Duration::ZERO,
        };
        let stages = self.stages(&l.stages, rate, duration)?;
        let open = l
            .model
            .as_ref()
            .is_some_and(|m| *m.get_ref() == ModelName::Open);
        if open {
            return self.open_load(raw, rate.or(searched), stages);
        }
        for (key, span) in [
            ("max_in_flight", l.max_in_flight.as_ref().map(|s| s.span())),
            ("max_queue", l.max_queue.as_ref().map(|s| s.span())),
            ("arrivals", l.arrivals.as_ref().map(|s| s.span())),
        ] {
            if let Some(span) = span {
                return Err(self.err(span, format!("`{key}` belongs to the open model: add `model = \"open\"` to [load], or leave it out")));
            }
        }
        let Some(users) = &l.users else {
            return Err(self.err(raw.span(), "[load] needs `users` (the closed model's virtual users), or `model = \"open\"` with a `rate`"));
        };
        let users = self.positive_int(users, "users")?;
        self.check(
            l.users.as_ref().expect("checked above"),
            users <= 10_000,
            "`users` above 10000 is not supported",
        )?;
        Ok(LoadPlan {
            users: users as usize,
            rate: rate.or(stages.first().map(|s| s.from)),
            ramp,
            model: Model::Closed,
            stages,
        })
    }

    /// `[[load.stage]]`: contiguous steps from 0, each a rate held or a
    /// ramp from the rate before, ending within `duration`.
    fn stages(
        &self,
        raw: &[Spanned<RawStage>],
        rate: Option<f64>,
        duration: Duration,
    ) -> VResult<Vec<Stage>> {
        let mut out: Vec<Stage> = Vec::new();
        let mut start = Duration::ZERO;
        for (i, st) in raw.iter().enumerate() {
            let s = st.get_ref();
            let name = match &s.name {
                Some(n) => check::name(
                    n,
                    "-_",
                    "a stage `name` must be non-empty and use only letters, digits, `-` and `_`",
                )
                .map_err(|e| self.at(e))?,
                None => format!("{}", i + 1),
            };
            if out.iter().any(|o| o.name == name) {
                let span = s.name.as_ref().map_or(st.span(), |n| n.span());
                return Err(self.err(span, format!("a stage named `{name}` comes earlier")));
            }
            let positive = |r: &Spanned<f64>, key: &str| self.above_zero(r, key, " ops/s");
            let before = out.last().map(|o| o.to).or(rate);
            let (from, to) = match (&s.rate, &s.ramp_to) {
                (Some(r), None) => {
                    let v = positive(r, "rate")?;
                    (v, v)
                }
                (None, Some(r)) => {
                    let v = positive(r, "ramp_to")?;
                    let Some(from) = before else {
                        return Err(self.err(r.span(), "the first stage ramps from [load] `rate`, which is not set: give one, or start with a `rate` stage"));
                    };
                    (from, v)
                }
                _ => return Err(self.err(st.span(), "a stage has a `rate` (held) or a `ramp_to` (a linear ramp from the rate before), exactly one")),
            };
            let len = self.positive_dur(Some(&s.for_), "for", Duration::ZERO)?;
            let end = start + len;
            self.check(
                &s.for_,
                end <= duration,
                format!(
                    "the stages run to {}, past `duration` ({})",
                    units::fmt_duration(end),
                    units::fmt_duration(duration)
                ),
            )?;
            out.push(Stage {
                name,
                start,
                end,
                from,
                to,
            });
            start = end;
        }
        Ok(out)
    }

    /// `[load] model = "open"`: arrivals at `rate`, served by
    /// `max_in_flight` slots with a queue of `max_queue`.
    fn open_load(
        &self,
        raw: &Spanned<RawLoad>,
        rate: Option<f64>,
        stages: Vec<Stage>,
    ) -> VResult<LoadPlan> {
        let l = raw.get_ref();
        let model_span = l.model.as_ref().map_or(raw.span(), |m| m.span());
        let Some(rate) = rate.or(stages.first().map(|s| s.from)) else {
            return Err(self.err(model_span, "an open model needs a `rate` (arrivals per second) or [[load.stage]] rates: arrivals come on their own schedule"));
        };
        if let Some(u) = &l.users {
            return Err(self.err(u.span(), "the open model has no users: `max_in_flight` bounds the ops served at once (one client each)"));
        }
        if let Some(r) = &l.ramp {
            return Err(self.err(r.span(), "`ramp` starts the closed model's users one by one; the open model's arrivals start at `rate`"));
        }
        let bounded = |s: &Option<Spanned<i64>>, key: &str, range: (i64, i64), default: i64| {
            let Some(s) = s else {
                return Ok(default as usize);
            };
            let v = *s.get_ref();
            self.check(
                s,
                (range.0..=range.1).contains(&v),
                format!(
                    "`{key}` must be between {} and {}, not {v}",
                    range.0, range.1
                ),
            )?;
            Ok(v as usize)
        };
        // One client per slot: as many as `users` may be.
        let max_in_flight = bounded(
            &l.max_in_flight,
            "max_in_flight",
            (1, 10_000),
            DEFAULT_MAX_IN_FLIGHT,
        )?;
        let max_queue = bounded(&l.max_queue, "max_queue", (0, 1_000_000), DEFAULT_MAX_QUEUE)?;
        Ok(LoadPlan {
            users: max_in_flight,
            rate: Some(rate),
            ramp: Duration::ZERO,
            stages,
            model: Model::Open(OpenPlan {
                max_in_flight,
                max_queue,
                arrivals: l
                    .arrivals
                    .as_ref()
                    .map_or(crate::load::ArrivalProcess::Constant, |a| *a.get_ref()),
            }),
        })
    }
}

/// What a workload's validation may look at besides its own table.
fn workload_ctx(
    raw_load: &Spanned<RawLoad>,
    kind_span: Range<usize>,
    load: &LoadPlan,
    topology: &TopologyPlan,
) -> WorkloadCtx {
    WorkloadCtx {
        users: load.users,
        users_span: raw_load
            .get_ref()
            .users
            .as_ref()
            .map_or(raw_load.span(), |u| u.span()),
        topology: topology.kind,
        replicas: topology.readable_replicas(),
        kind_span,
    }
}
