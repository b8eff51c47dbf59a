//! Scenario files: read TOML (`raw`), check every value and cross-field rule
//! with the file, line and column of the culprit, and produce one `RunPlan`
//! (`plan`). `gameday validate` stops here; `gameday run` goes on.

pub mod plan;
pub mod raw;
pub mod units;

use crate::expect::{self, ExpectCtx};
use crate::proxy::control::NetFault;
use crate::proxy::toxic::{Stream, ToxicKind};
use crate::workload;
use plan::*;
use raw::*;
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
    let raw: RawScenario = toml::from_str(text)
        .map_err(|e| v.err(e.span().unwrap_or(0..0), e.message().trim().to_string()))?;
    v.plan(raw, path.to_path_buf())
}

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

    fn check<T>(&self, s: &Spanned<T>, ok: bool, message: impl Into<String>) -> VResult<()> {
        if ok {
            Ok(())
        } else {
            Err(self.err(s.span(), message))
        }
    }

    fn positive_int(&self, s: &Spanned<i64>, key: &str) -> VResult<u64> {
        self.check(
            s,
            *s.get_ref() >= 1,
            format!("`{key}` must be at least 1, not {}", s.get_ref()),
        )?;
        Ok(*s.get_ref() as u64)
    }

    fn fraction(&self, s: &Spanned<f64>, key: &str) -> VResult<f64> {
        let v = *s.get_ref();
        self.check(
            s,
            (0.0..=1.0).contains(&v),
            format!("`{key}` must be between 0 and 1, not {v}"),
        )?;
        Ok(v)
    }

    fn plan(&self, raw: RawScenario, source: PathBuf) -> VResult<RunPlan> {
        let name = raw.name.get_ref().clone();
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        self.check(
            &raw.name,
            name_ok,
            "`name` must be non-empty and use only letters, digits, `-`, `_` and `.`",
        )?;
        let duration = raw.duration.get_ref().0;
        self.check(
            &raw.duration,
            duration > Duration::ZERO,
            "`duration` must be longer than 0s",
        )?;
        let topology = self.topology(raw.topology)?;
        let load = self.load(&raw.load, duration)?;
        let sessions_span = raw.workload.sessions.as_ref().map(|s| s.span());
        let (workload, variants) = self.workload(raw.workload)?;
        if let WorkloadPlan::Session(sp) = &workload {
            if sp.sessions < load.users as u64 {
                return Err(self.err(
                    sessions_span.unwrap_or_else(|| self.key_span("users")),
                    format!(
                        "{} sessions for {} users: every user needs a session of its own (raise `sessions` or lower `users`)",
                        sp.sessions, load.users
                    ),
                ));
            }
        }
        let faults = self.faults(&raw.faults, duration, &topology)?;
        for (f, raw) in faults.iter().zip(&raw.faults) {
            self.check(
                &raw.get_ref().name,
                !matches!(f.fault, Fault::Client(_)) || matches!(workload, WorkloadPlan::Lock(_)),
                format!(
                    "fault `{}`: a gc_pause stalls a lock holder; it needs the lock workload",
                    f.name
                ),
            )?;
        }
        let fault_names: Vec<String> = faults.iter().map(|f| f.name.clone()).collect();
        let variant_names: Vec<String> = variants.iter().map(|(n, _)| n.clone()).collect();
        let ctx = ExpectCtx {
            variants: &variant_names,
            faults: &fault_names,
            ops: workload::ops(&workload),
            workload_metrics: workload::metrics(&workload),
        };
        let expectations = raw
            .expect
            .iter()
            .chain(raw.faults.iter().flat_map(|f| f.get_ref().expect.iter()))
            .map(|r| expect::parse(r.get_ref(), &ctx).map_err(|m| self.err(r.span(), m)))
            .collect::<VResult<Vec<_>>>()?;
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
            variants,
            variant: None,
        })
    }

    fn topology(&self, t: RawTopology) -> VResult<TopologyPlan> {
        let kind = t.kind;
        let name = topology_name(kind);
        let only =
            |present: bool, key: &str, kinds: &[TopologyKind], span: Range<usize>| -> VResult<()> {
                if present && !kinds.contains(&kind) {
                    let allowed: Vec<&str> = kinds.iter().map(|k| topology_name(*k)).collect();
                    return Err(self.err(
                        span,
                        format!(
                            "`{key}` applies to {} topologies, not {name}",
                            allowed.join(" and ")
                        ),
                    ));
                }
                Ok(())
            };
        let span_i = |s: &Option<Spanned<i64>>| s.as_ref().map(|s| s.span()).unwrap_or(0..0);
        let span_d = |s: &Option<Spanned<units::Dur>>| s.as_ref().map(|s| s.span()).unwrap_or(0..0);
        use TopologyKind::*;
        only(
            t.replicas.is_some(),
            "replicas",
            &[Replicated, Sentinel],
            span_i(&t.replicas),
        )?;
        only(
            t.down_after.is_some(),
            "down_after",
            &[Sentinel],
            span_d(&t.down_after),
        )?;
        only(
            t.failover_timeout.is_some(),
            "failover_timeout",
            &[Sentinel],
            span_d(&t.failover_timeout),
        )?;
        only(
            t.masters.is_some(),
            "masters",
            &[Cluster],
            span_i(&t.masters),
        )?;
        only(
            t.replicas_per_master.is_some(),
            "replicas_per_master",
            &[Cluster],
            span_i(&t.replicas_per_master),
        )?;
        only(
            t.cluster_node_timeout.is_some(),
            "cluster_node_timeout",
            &[Cluster],
            span_d(&t.cluster_node_timeout),
        )?;
        let backend = t.backend.unwrap_or(Backend::Process);
        let master_name = match &t.master_name {
            Some(m) => {
                only(true, "master_name", &[Sentinel], m.span())?;
                let ok =
                    !m.get_ref().is_empty() && m.get_ref().chars().all(|c| c.is_ascii_graphic());
                self.check(m, ok, "`master_name` must be non-empty, without spaces")?;
                m.get_ref().clone()
            }
            None => crate::topology::SENTINEL_MASTER.to_string(),
        };
        if let Some(url) = &t.toxiproxy_url {
            crate::proxy::control::check_url(url.get_ref())
                .map_err(|e| self.err(url.span(), format!("`toxiproxy_url`: {e}")))?;
        }
        let external = self.external(&t, backend)?;
        let defaults = TopologyPlan::of_kind(kind);
        let count = |s: &Option<Spanned<i64>>,
                     key: &str,
                     min: i64,
                     max: i64,
                     default: usize|
         -> VResult<usize> {
            match s {
                Some(v) => {
                    let n = *v.get_ref();
                    self.check(
                        v,
                        (min..=max).contains(&n),
                        format!("`{key}` must be between {min} and {max}, not {n}"),
                    )?;
                    Ok(n as usize)
                }
                None => Ok(default),
            }
        };
        Ok(TopologyPlan {
            kind,
            backend,
            image: t.image,
            maxmemory: t.maxmemory.map(|b| b.0),
            maxmemory_policy: t.maxmemory_policy,
            persistence: t.persistence.unwrap_or_default(),
            replicas: count(&t.replicas, "replicas", 1, 5, defaults.replicas)?,
            down_after: self.positive_dur(
                t.down_after.as_ref(),
                "down_after",
                defaults.down_after,
            )?,
            failover_timeout: self.positive_dur(
                t.failover_timeout.as_ref(),
                "failover_timeout",
                defaults.failover_timeout,
            )?,
            masters: count(&t.masters, "masters", 3, 9, defaults.masters)?,
            replicas_per_master: count(
                &t.replicas_per_master,
                "replicas_per_master",
                0,
                3,
                defaults.replicas_per_master,
            )?,
            cluster_node_timeout: self.positive_dur(
                t.cluster_node_timeout.as_ref(),
                "cluster_node_timeout",
                defaults.cluster_node_timeout,
            )?,
            master_name,
            toxiproxy_url: t.toxiproxy_url.map(|u| u.into_inner()),
            external,
        })
    }

    /// Where `key = ` first starts a line, for keys kept without a span.
    fn key_span(&self, key: &str) -> Range<usize> {
        let mut at = 0;
        for line in self.text.split_inclusive('\n') {
            let rest = line.trim_start();
            if rest
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
            {
                let start = at + (line.len() - rest.len());
                return start..start + key.len();
            }
            at += line.len();
        }
        0..0
    }

    /// The `[[topology.endpoint]]` list and `allow_destructive`: required
    /// and checked for the external backend, refused for the others (whose
    /// nodes gameday starts itself).
    fn external(&self, t: &RawTopology, backend: Backend) -> VResult<ExternalPlan> {
        use crate::topology::Role;
        use TopologyKind::*;
        if backend != Backend::External {
            if let Some(e) = t.endpoints.first() {
                return Err(self.err(
                    e.span(),
                    "`[[topology.endpoint]]` describes an existing topology: it needs backend = \"external\"",
                ));
            }
            if let Some(a) = &t.allow_destructive {
                return Err(self.err(
                    a.span(),
                    "`allow_destructive` applies to the external backend only",
                ));
            }
            return Ok(ExternalPlan::default());
        }
        // What gameday would start has no meaning for an existing topology.
        let started_here = [
            ("image", t.image.is_some()),
            ("maxmemory", t.maxmemory.is_some()),
            ("maxmemory_policy", t.maxmemory_policy.is_some()),
            ("persistence", t.persistence.is_some()),
            ("replicas", t.replicas.is_some()),
            ("down_after", t.down_after.is_some()),
            ("failover_timeout", t.failover_timeout.is_some()),
            ("masters", t.masters.is_some()),
            ("replicas_per_master", t.replicas_per_master.is_some()),
            ("cluster_node_timeout", t.cluster_node_timeout.is_some()),
        ];
        if let Some((key, _)) = started_here.iter().find(|(_, present)| *present) {
            return Err(self.err(
                self.key_span(key),
                format!("`{key}` configures nodes gameday starts; an external topology is described by its `[[topology.endpoint]]` entries only"),
            ));
        }
        if t.endpoints.is_empty() {
            return Err(self.err(
                self.key_span("backend"),
                "the external backend needs the topology's endpoints: add `[[topology.endpoint]]` entries with node, role and addr",
            ));
        }
        let name = topology_name(t.kind);
        let mut endpoints: Vec<ExternalEndpoint> = Vec::new();
        for e in &t.endpoints {
            let raw = e.get_ref();
            let node = raw.node.get_ref();
            let node_ok = !node.is_empty()
                && node
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            self.check(
                &raw.node,
                node_ok,
                "`node` must be non-empty and use only letters, digits, `-`, `_` and `.`",
            )?;
            self.check(
                &raw.node,
                !endpoints.iter().any(|x| &x.node == node),
                format!("two endpoints are named `{node}`"),
            )?;
            let addr = crate::proxy::server::loopback_addr(raw.addr.get_ref(), "`addr`")
                .map_err(|err| self.err(raw.addr.span(), err.message))?;
            self.check(
                &raw.addr,
                addr.port() != 0 && !endpoints.iter().any(|x| x.addr == addr),
                format!("`addr` {addr} is port 0 or listed twice"),
            )?;
            if let Some(p) = &raw.proxy {
                self.check(
                    p,
                    !p.get_ref().is_empty()
                        && !endpoints
                            .iter()
                            .any(|x| x.proxy.as_ref() == Some(p.get_ref())),
                    format!("`proxy` `{}` is empty or named twice", p.get_ref()),
                )?;
            }
            let fits = matches!(
                (t.kind, raw.role),
                (Standalone, Role::Primary)
                    | (Replicated | Cluster, Role::Primary | Role::Replica)
                    | (Sentinel, _)
            );
            self.check(
                e,
                fits,
                format!("a {name} topology has no {:?} nodes", raw.role).to_lowercase(),
            )?;
            endpoints.push(ExternalEndpoint {
                node: node.clone(),
                role: raw.role,
                addr,
                proxy: raw.proxy.as_ref().map(|p| p.get_ref().clone()),
            });
        }
        let count = |role: Role| endpoints.iter().filter(|e| e.role == role).count();
        let first = t.endpoints[0].span();
        let need = |ok: bool, what: &str| -> VResult<()> {
            if ok {
                Ok(())
            } else {
                Err(self.err(first.clone(), format!("a {name} topology needs {what}")))
            }
        };
        match t.kind {
            Standalone | Replicated => {
                need(count(Role::Primary) == 1, "exactly one primary endpoint")?
            }
            Sentinel => {
                need(
                    count(Role::Primary) == 1,
                    "exactly one primary endpoint (the current primary)",
                )?;
                need(count(Role::Sentinel) >= 1, "at least one sentinel endpoint")?;
            }
            Cluster => need(count(Role::Primary) >= 1, "at least one primary endpoint")?,
        }
        let proxied = endpoints.iter().filter(|e| e.proxy.is_some()).count();
        need(
            proxied == 0 || proxied == endpoints.len(),
            "a `proxy` on every endpoint or on none",
        )?;
        // Sentinels and cluster nodes hand out node addresses: gameday's own
        // proxies would be bypassed after the first answer.
        need(
            proxied == endpoints.len() || matches!(t.kind, Standalone | Replicated),
            "a Toxiproxy in front of every node, announced by the nodes, with each endpoint naming its `proxy` (see docker-compose.yml); gameday's own proxies would be bypassed once the servers hand out node addresses",
        )?;
        Ok(ExternalPlan {
            endpoints,
            allow_destructive: t.allow_destructive.as_ref().is_some_and(|a| *a.get_ref()),
        })
    }

    fn load(&self, l: &RawLoad, duration: Duration) -> VResult<LoadPlan> {
        let users = self.positive_int(&l.users, "users")?;
        self.check(
            &l.users,
            users <= 10_000,
            "`users` above 10000 is not supported",
        )?;
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
        Ok(LoadPlan {
            users: users as usize,
            rate,
            ramp,
        })
    }

    /// The workload, and its variants when a key lists several values.
    fn workload(&self, w: RawWorkload) -> VResult<(WorkloadPlan, Vec<(String, WorkloadPlan)>)> {
        if w.kind != WorkloadKindName::RateLimit {
            let rate_limit_only = [
                ("algorithm", w.algorithm.is_some()),
                ("algorithms", w.algorithms.is_some()),
                ("limit", w.limit.is_some()),
                ("window", w.window.is_some()),
                ("clients", w.clients.is_some()),
                ("skew", w.skew.is_some()),
            ];
            if let Some((key, _)) = rate_limit_only.iter().find(|(_, p)| *p) {
                return Err(self.err(
                    self.key_span(key),
                    format!("`{key}` applies to the rate-limit workload"),
                ));
            }
        }
        if w.kind != WorkloadKindName::Stampede {
            let stampede_only = [
                ("hot_keys", w.hot_keys.is_some()),
                ("strategy", w.strategy.is_some()),
                ("strategies", w.strategies.is_some()),
                ("beta", w.beta.is_some()),
                ("stale_for", w.stale_for.is_some()),
            ];
            if let Some((key, _)) = stampede_only.iter().find(|(_, p)| *p) {
                return Err(self.err(
                    self.key_span(key),
                    format!("`{key}` applies to the stampede workload"),
                ));
            }
        }
        if w.kind == WorkloadKindName::Lock {
            if let Some(f) = w.fencing.clone() {
                if let OneOrMany::Many(values) = f.get_ref() {
                    let mut seen = Vec::new();
                    for v in values {
                        self.check(&f, !seen.contains(v), "`fencing` lists a value twice")?;
                        seen.push(*v);
                    }
                    self.check(&f, !values.is_empty(), "`fencing` lists no value")?;
                    let base = self.lock(w)?;
                    let variants = values
                        .iter()
                        .map(|&on| {
                            let name = if on { "fencing-on" } else { "fencing-off" };
                            (
                                name.to_string(),
                                WorkloadPlan::Lock(LockPlan {
                                    fencing: on,
                                    ..base.clone()
                                }),
                            )
                        })
                        .collect::<Vec<_>>();
                    return Ok((variants[0].1.clone(), variants));
                }
            }
        }
        if w.kind == WorkloadKindName::RateLimit {
            if let Some(list) = w.algorithms.clone() {
                self.variant_list(
                    &list,
                    w.algorithm.is_some(),
                    "algorithm",
                    "algorithms",
                    |a| a.name(),
                )?;
                let base = self.rate_limit(w)?;
                return Ok(variants_of(
                    &list,
                    |a| a.name(),
                    |algorithm| {
                        WorkloadPlan::RateLimit(RateLimitPlan {
                            algorithm,
                            ..base.clone()
                        })
                    },
                ));
            }
        }
        if w.kind == WorkloadKindName::Stampede {
            if let Some(list) = w.strategies.clone() {
                self.variant_list(&list, w.strategy.is_some(), "strategy", "strategies", |s| {
                    s.name()
                })?;
                let base = self.stampede(w)?;
                return Ok(variants_of(
                    &list,
                    |s| s.name(),
                    |strategy| {
                        WorkloadPlan::Stampede(StampedePlan {
                            strategy,
                            ..base.clone()
                        })
                    },
                ));
            }
        }
        self.single_workload(w).map(|p| (p, Vec::new()))
    }

    /// rate-limit: algorithm/algorithms, limit, window, clients, skew,
    /// op_timeout, on_redis_error (fail_open | fail_closed).
    fn rate_limit(&self, w: RawWorkload) -> VResult<RateLimitPlan> {
        let foreign = [
            ("keys", w.keys.is_some()),
            ("sessions", w.sessions.is_some()),
            ("read_ratio", w.read_ratio.is_some()),
            ("value_size", w.value_size.is_some()),
            ("ttl", w.ttl.is_some()),
            ("ttl_jitter", w.ttl_jitter.is_some()),
            ("zipf_exponent", w.zipf_exponent.is_some()),
            ("origin", w.origin.is_some()),
            ("locks", w.locks.is_some()),
            ("lock_ttl", w.lock_ttl.is_some()),
            ("critical_section", w.critical_section.is_some()),
            ("fencing", w.fencing.is_some()),
            ("acquire_timeout", w.acquire_timeout.is_some()),
            ("retry", w.retry.is_some()),
            ("distribution", !self.key_span("distribution").is_empty()),
            ("write_policy", !self.key_span("write_policy").is_empty()),
        ];
        if let Some((key, _)) = foreign.iter().find(|(_, p)| *p) {
            return Err(self.err(
                self.key_span(key),
                format!("`{key}` does not apply to the rate-limit workload (it takes algorithm or algorithms, limit, window, clients, skew, op_timeout, on_redis_error)"),
            ));
        }
        let on_error = match &w.on_redis_error {
            None => RedisDownPolicy::FailOpen,
            Some(e) => match e.policy {
                ErrorPolicy::FailOpen if e.breaker_failures.is_none() => RedisDownPolicy::FailOpen,
                ErrorPolicy::FailClosed if e.breaker_failures.is_none() => RedisDownPolicy::FailClosed,
                _ => {
                    return Err(self.err(
                        self.key_span("on_redis_error"),
                        "a rate limiter's policy is `fail_open` (admit, marked degraded) or `fail_closed` (deny), with no breaker",
                    ))
                }
            },
        };
        let skew = match &w.skew {
            Some(k) => {
                self.check(
                    k,
                    *k.get_ref() >= 0.0 && k.get_ref().is_finite(),
                    "`skew` must be 0 (even) or above",
                )?;
                *k.get_ref()
            }
            None => 1.0,
        };
        let limit = w
            .limit
            .as_ref()
            .map(|l| self.positive_int(l, "limit"))
            .transpose()?
            .unwrap_or(100);
        let window = self.positive_dur(w.window.as_ref(), "window", Duration::from_secs(1))?;
        if let Some(wd) = &w.window {
            self.check(
                wd,
                window >= Duration::from_millis(10) && window.as_micros() as u64 >= limit,
                "`window` must be at least 10ms and at least 1 µs per allowed request",
            )?;
        }
        Ok(RateLimitPlan {
            algorithm: w.algorithm.unwrap_or(RateLimitAlgorithm::FixedWindow),
            limit,
            window,
            clients: w
                .clients
                .as_ref()
                .map(|c| self.positive_int(c, "clients"))
                .transpose()?
                .unwrap_or(10),
            skew,
            on_error,
            op_timeout: self.positive_dur(
                w.op_timeout.as_ref(),
                "op_timeout",
                Duration::from_millis(50),
            )?,
        })
    }

    /// stampede: hot_keys, ttl, strategy/strategies, beta, ttl_jitter,
    /// lock_ttl, retry, stale_for, value_size, op_timeout, origin.
    fn stampede(&self, w: RawWorkload) -> VResult<StampedePlan> {
        let foreign = [
            ("keys", w.keys.is_some()),
            ("sessions", w.sessions.is_some()),
            ("read_ratio", w.read_ratio.is_some()),
            ("zipf_exponent", w.zipf_exponent.is_some()),
            ("locks", w.locks.is_some()),
            ("critical_section", w.critical_section.is_some()),
            ("fencing", w.fencing.is_some()),
            ("acquire_timeout", w.acquire_timeout.is_some()),
            ("on_redis_error", w.on_redis_error.is_some()),
            ("distribution", !self.key_span("distribution").is_empty()),
            ("write_policy", !self.key_span("write_policy").is_empty()),
        ];
        if let Some((key, _)) = foreign.iter().find(|(_, p)| *p) {
            return Err(self.err(
                self.key_span(key),
                format!("`{key}` does not apply to the stampede workload (it takes hot_keys, ttl, strategy or strategies, beta, ttl_jitter, lock_ttl, retry, stale_for, value_size, op_timeout, origin)"),
            ));
        }
        let origin = match &w.origin {
            Some(o) => OriginPlan {
                latency: o.latency.map(|d| d.0).unwrap_or(Duration::from_millis(100)),
                jitter: o
                    .jitter
                    .as_ref()
                    .map(|j| self.fraction(j, "origin.jitter"))
                    .transpose()?
                    .unwrap_or(0.1),
                concurrency: o
                    .concurrency
                    .as_ref()
                    .map(|c| self.positive_int(c, "origin.concurrency"))
                    .transpose()?
                    .unwrap_or(64) as usize,
            },
            None => OriginPlan {
                latency: Duration::from_millis(100),
                jitter: 0.1,
                concurrency: 64,
            },
        };
        let beta = match &w.beta {
            Some(b) => {
                self.check(
                    b,
                    *b.get_ref() > 0.0 && b.get_ref().is_finite(),
                    "`beta` must be above 0",
                )?;
                *b.get_ref()
            }
            None => 1.0,
        };
        let ttl_jitter = match &w.ttl_jitter {
            Some(j) => {
                let v = self.fraction(j, "ttl_jitter")?;
                self.check(j, v < 1.0, "`ttl_jitter` must be below 1")?;
                v
            }
            None => 0.2,
        };
        let value_size = match &w.value_size {
            Some(v) => {
                let n = self.positive_int(v, "value_size")?;
                self.check(
                    v,
                    (64..=1 << 20).contains(&n),
                    "`value_size` must be between 64 bytes and 1mb",
                )?;
                n as usize
            }
            None => 256,
        };
        let plan = StampedePlan {
            hot_keys: w
                .hot_keys
                .as_ref()
                .map(|k| self.positive_int(k, "hot_keys"))
                .transpose()?
                .unwrap_or(1),
            ttl: self.positive_dur(w.ttl.as_ref(), "ttl", Duration::from_secs(2))?,
            strategy: w.strategy.unwrap_or(StampedeStrategy::None),
            beta,
            ttl_jitter,
            lock_ttl: self.positive_dur(w.lock_ttl.as_ref(), "lock_ttl", Duration::from_secs(1))?,
            retry: self.positive_dur(w.retry.as_ref(), "retry", Duration::from_millis(10))?,
            stale_for: self.positive_dur(
                w.stale_for.as_ref(),
                "stale_for",
                Duration::from_secs(10),
            )?,
            value_size,
            op_timeout: self.positive_dur(
                w.op_timeout.as_ref(),
                "op_timeout",
                Duration::from_secs(1),
            )?,
            origin,
        };
        if let Some(l) = &w.lock_ttl {
            self.check(
                l,
                plan.lock_ttl > plan.origin.latency,
                "`lock_ttl` must be longer than the origin's latency, or the lock expires before the recomputation ends",
            )?;
        }
        Ok(plan)
    }

    /// A list of values to compare (`many`): not given with its single
    /// form (`one`), not empty, no value twice.
    fn variant_list<T: Copy + PartialEq>(
        &self,
        list: &Spanned<Vec<T>>,
        single_given: bool,
        one: &str,
        many: &str,
        name: impl Fn(T) -> String,
    ) -> VResult<()> {
        if single_given {
            return Err(self.err(
                list.span(),
                format!("give `{one}` (one) or `{many}` (several to compare), not both"),
            ));
        }
        self.check(
            list,
            !list.get_ref().is_empty(),
            format!("`{many}` lists none"),
        )?;
        let mut seen = Vec::new();
        for &v in list.get_ref() {
            self.check(
                list,
                !seen.contains(&v),
                format!("`{many}` lists `{}` twice", name(v)),
            )?;
            seen.push(v);
        }
        Ok(())
    }

    fn single_workload(&self, w: RawWorkload) -> VResult<WorkloadPlan> {
        match w.kind {
            WorkloadKindName::CacheAside | WorkloadKindName::Session
                if w.locks.is_some()
                    || w.lock_ttl.is_some()
                    || w.critical_section.is_some()
                    || w.fencing.is_some()
                    || w.acquire_timeout.is_some()
                    || w.retry.is_some() =>
            {
                let key = [
                    "locks",
                    "lock_ttl",
                    "critical_section",
                    "fencing",
                    "acquire_timeout",
                    "retry",
                ]
                .into_iter()
                .find(|k| !self.key_span(k).is_empty())
                .unwrap_or("locks");
                Err(self.err(
                    self.key_span(key),
                    format!("`{key}` applies to the lock workload"),
                ))
            }
            WorkloadKindName::CacheAside => {
                if let Some(s) = &w.sessions {
                    return Err(self.err(s.span(), "`sessions` applies to the session workload"));
                }
                self.cache_aside(w).map(WorkloadPlan::CacheAside)
            }
            WorkloadKindName::Session => self.session(w).map(WorkloadPlan::Session),
            WorkloadKindName::Lock => self.lock(w).map(WorkloadPlan::Lock),
            WorkloadKindName::Stampede => self.stampede(w).map(WorkloadPlan::Stampede),
            WorkloadKindName::RateLimit => self.rate_limit(w).map(WorkloadPlan::RateLimit),
        }
    }

    /// lock: locks, lock_ttl, critical_section, fencing, acquire_timeout,
    /// retry, op_timeout.
    fn lock(&self, w: RawWorkload) -> VResult<LockPlan> {
        let foreign = [
            ("keys", w.keys.is_some()),
            ("sessions", w.sessions.is_some()),
            ("value_size", w.value_size.is_some()),
            ("read_ratio", w.read_ratio.is_some()),
            ("ttl", w.ttl.is_some()),
            ("ttl_jitter", w.ttl_jitter.is_some()),
            ("zipf_exponent", w.zipf_exponent.is_some()),
            ("origin", w.origin.is_some()),
            ("on_redis_error", w.on_redis_error.is_some()),
            ("distribution", !self.key_span("distribution").is_empty()),
            ("write_policy", !self.key_span("write_policy").is_empty()),
        ];
        if let Some((key, _)) = foreign.iter().find(|(_, p)| *p) {
            return Err(self.err(
                self.key_span(key),
                format!("`{key}` does not apply to the lock workload (it takes locks, lock_ttl, critical_section, fencing, acquire_timeout, retry, op_timeout)"),
            ));
        }
        let plan = LockPlan {
            locks: w
                .locks
                .as_ref()
                .map(|k| self.positive_int(k, "locks"))
                .transpose()?
                .unwrap_or(1),
            lock_ttl: self.positive_dur(
                w.lock_ttl.as_ref(),
                "lock_ttl",
                Duration::from_millis(500),
            )?,
            critical_section: self.positive_dur(
                w.critical_section.as_ref(),
                "critical_section",
                Duration::from_millis(10),
            )?,
            fencing: matches!(
                w.fencing.as_ref().map(|f| f.get_ref()),
                Some(OneOrMany::One(true))
            ),
            acquire_timeout: self.positive_dur(
                w.acquire_timeout.as_ref(),
                "acquire_timeout",
                Duration::from_secs(2),
            )?,
            retry: self.positive_dur(w.retry.as_ref(), "retry", Duration::from_millis(10))?,
            op_timeout: self.positive_dur(
                w.op_timeout.as_ref(),
                "op_timeout",
                Duration::from_millis(100),
            )?,
        };
        if let Some(c) = &w.critical_section {
            self.check(
                c,
                plan.critical_section < plan.lock_ttl,
                "`critical_section` must be shorter than `lock_ttl`, or every holder outlives its lock",
            )?;
        }
        Ok(plan)
    }

    /// session: sessions, ttl, read_ratio, value_size, op_timeout; Redis
    /// errors reach the caller (`fail`), never a wrong or stale session.
    fn session(&self, w: RawWorkload) -> VResult<SessionPlan> {
        let cache_only = [
            ("keys", w.keys.is_some()),
            ("zipf_exponent", w.zipf_exponent.is_some()),
            ("ttl_jitter", w.ttl_jitter.is_some()),
            ("origin", w.origin.is_some()),
            ("distribution", !self.key_span("distribution").is_empty()),
            ("write_policy", !self.key_span("write_policy").is_empty()),
        ];
        if let Some((key, _)) = cache_only.iter().find(|(_, p)| *p) {
            let span = match *key {
                "keys" => w.keys.as_ref().map(|k| k.span()).unwrap_or(0..0),
                other => self.key_span(other),
            };
            return Err(self.err(
                span,
                format!("`{key}` applies to the cache-aside workload, not session (session takes sessions, ttl, read_ratio, value_size, op_timeout, on_redis_error)"),
            ));
        }
        if let Some(e) = &w.on_redis_error {
            let ok = e.policy == ErrorPolicy::Fail
                && e.breaker_failures.is_none()
                && e.breaker_cooldown.is_none();
            if !ok {
                return Err(self.err(
                    self.key_span("on_redis_error"),
                    "the session workload's only policy is `fail`: a caller gets an error, never a guessed session (no fallback, no breaker)",
                ));
            }
        }
        let sessions = w
            .sessions
            .as_ref()
            .map(|k| self.positive_int(k, "sessions"))
            .transpose()?
            .unwrap_or(1000);
        let value_size = match &w.value_size {
            Some(v) => {
                let n = self.positive_int(v, "value_size")?;
                self.check(
                    v,
                    (crate::workload::session::MIN_VALUE as u64..=1 << 20).contains(&n),
                    format!(
                        "`value_size` must be between {} bytes (the session header) and 1mb",
                        crate::workload::session::MIN_VALUE
                    ),
                )?;
                n as usize
            }
            None => 256,
        };
        Ok(SessionPlan {
            sessions,
            ttl: self.positive_dur(w.ttl.as_ref(), "ttl", Duration::from_secs(1800))?,
            read_ratio: w
                .read_ratio
                .as_ref()
                .map(|r| self.fraction(r, "read_ratio"))
                .transpose()?
                .unwrap_or(0.9),
            value_size,
            op_timeout: self.positive_dur(
                w.op_timeout.as_ref(),
                "op_timeout",
                Duration::from_millis(200),
            )?,
        })
    }

    fn cache_aside(&self, w: RawWorkload) -> VResult<CacheAsidePlan> {
        let keys = w
            .keys
            .as_ref()
            .map(|k| self.positive_int(k, "keys"))
            .transpose()?
            .unwrap_or(10_000);
        let zipf_exponent = match &w.zipf_exponent {
            Some(z) => {
                self.check(
                    z,
                    w.distribution == Distribution::Zipf,
                    "`zipf_exponent` applies only with distribution = \"zipf\"",
                )?;
                self.check(
                    z,
                    *z.get_ref() > 0.0 && z.get_ref().is_finite(),
                    "`zipf_exponent` must be above 0",
                )?;
                *z.get_ref()
            }
            None => 0.99,
        };
        let value_size = match &w.value_size {
            Some(v) => {
                let n = self.positive_int(v, "value_size")?;
                self.check(
                    v,
                    (crate::workload::value::HEADER_LEN as u64..=64 << 20).contains(&n),
                    format!(
                        "`value_size` must be between {} bytes (the version header) and 64mb",
                        crate::workload::value::HEADER_LEN
                    ),
                )?;
                n as usize
            }
            None => 512,
        };
        let read_ratio = w
            .read_ratio
            .as_ref()
            .map(|r| self.fraction(r, "read_ratio"))
            .transpose()?
            .unwrap_or(0.95);
        let ttl = self.positive_dur(w.ttl.as_ref(), "ttl", Duration::from_secs(30))?;
        let ttl_jitter = match &w.ttl_jitter {
            Some(j) => {
                let v = self.fraction(j, "ttl_jitter")?;
                self.check(
                    j,
                    v < 1.0,
                    "`ttl_jitter` must be below 1 (a TTL cannot shrink to zero)",
                )?;
                v
            }
            None => 0.1,
        };
        let op_timeout = self.positive_dur(
            w.op_timeout.as_ref(),
            "op_timeout",
            Duration::from_millis(50),
        )?;
        let origin = match w.origin {
            Some(o) => OriginPlan {
                latency: o.latency.map(|d| d.0).unwrap_or(Duration::from_millis(5)),
                jitter: o
                    .jitter
                    .as_ref()
                    .map(|j| self.fraction(j, "origin.jitter"))
                    .transpose()?
                    .unwrap_or(0.1),
                concurrency: o
                    .concurrency
                    .as_ref()
                    .map(|c| self.positive_int(c, "origin.concurrency"))
                    .transpose()?
                    .unwrap_or(64) as usize,
            },
            None => OriginPlan {
                latency: Duration::from_millis(5),
                jitter: 0.1,
                concurrency: 64,
            },
        };
        if let Some(e) = &w.on_redis_error {
            if matches!(e.policy, ErrorPolicy::FailOpen | ErrorPolicy::FailClosed) {
                return Err(self.err(
                    self.key_span("on_redis_error"),
                    "cache-aside's policies are `fallback` and `fail` (fail_open and fail_closed are the rate limiter's)",
                ));
            }
        }
        let on_error = match w.on_redis_error {
            Some(e) => ErrorPlan {
                policy: e.policy,
                breaker_failures: e
                    .breaker_failures
                    .as_ref()
                    .map(|b| self.positive_int(b, "breaker_failures"))
                    .transpose()?
                    .map(|n| n.min(u32::MAX as u64) as u32),
                breaker_cooldown: self.positive_dur(
                    e.breaker_cooldown.as_ref(),
                    "breaker_cooldown",
                    Duration::from_secs(1),
                )?,
            },
            None => ErrorPlan {
                policy: ErrorPolicy::Fallback,
                breaker_failures: None,
                breaker_cooldown: Duration::from_secs(1),
            },
        };
        Ok(CacheAsidePlan {
            keys,
            distribution: w.distribution,
            zipf_exponent,
            value_size,
            read_ratio,
            ttl,
            ttl_jitter,
            op_timeout,
            write_policy: w.write_policy,
            origin,
            on_error,
        })
    }

    fn positive_dur(
        &self,
        d: Option<&Spanned<units::Dur>>,
        key: &str,
        default: Duration,
    ) -> VResult<Duration> {
        match d {
            Some(s) => {
                self.check(
                    s,
                    s.get_ref().0 > Duration::ZERO,
                    format!("`{key}` must be longer than 0s"),
                )?;
                Ok(s.get_ref().0)
            }
            None => Ok(default),
        }
    }

    fn faults(
        &self,
        raw: &[Spanned<RawFault>],
        duration: Duration,
        topo: &TopologyPlan,
    ) -> VResult<Vec<FaultPlan>> {
        let mut out: Vec<(FaultPlan, Range<usize>)> = Vec::new();
        for f in raw {
            let plan = self.fault(f.get_ref(), duration, topo)?;
            if let Some((other, _)) = out.iter().find(|(o, _)| o.name == plan.name) {
                return Err(self.err(
                    f.get_ref().name.span(),
                    format!("a second fault is named `{}`", other.name),
                ));
            }
            out.push((plan, f.get_ref().at.span()));
        }
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

    fn fault(&self, f: &RawFault, duration: Duration, topo: &TopologyPlan) -> VResult<FaultPlan> {
        let name = f.name.get_ref();
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
        self.check(
            &f.name,
            name_ok,
            "a fault `name` must be non-empty and use only letters, digits, `-` and `_`",
        )?;
        let at = f.at.get_ref().0;
        let len = f.for_.get_ref().0;
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
        )?;
        let target = self.target(&f.target, topo)?;
        let fault = match f.kind {
            FaultKindName::Kill => self.node_fault(f, NodeFault::Kill)?,
            FaultKindName::Restart => self.node_fault(f, NodeFault::Restart)?,
            FaultKindName::Pause => self.node_fault(f, NodeFault::Pause)?,
            FaultKindName::ClientPause => self.node_fault(f, NodeFault::ClientPause)?,
            FaultKindName::DebugSleep => self.node_fault(f, NodeFault::DebugSleep)?,
            FaultKindName::Failover => self.failover(f, &target, topo)?,
            FaultKindName::MemoryPressure => self.memory_pressure(f)?,
            FaultKindName::GcPause => {
                self.node_fault(f, NodeFault::Pause)?;
                Fault::Client(ClientFault::GcPause)
            }
            _ => Fault::Net(self.net_fault(f)?),
        };
        let kind_name = kind_str(f.kind);
        Ok(FaultPlan {
            name: name.clone(),
            kind_name,
            fault,
            target,
            at,
            duration: len,
        })
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
            format!("a {} topology has no {text}", topology_name(topo.kind)),
        )?;
        Ok(target)
    }

    /// `failover`: sentinel or cluster, a `mode`, the primary (or, in a
    /// cluster, a master named by id) as target.
    fn failover(&self, f: &RawFault, target: &Target, topo: &TopologyPlan) -> VResult<Fault> {
        let Some(mode) = &f.mode else {
            return Err(self.err(
                f.name.span(),
                format!(
                    "fault `{}` of kind `failover` needs `mode` (\"manual\" or \"kill_primary\")",
                    f.name.get_ref()
                ),
            ));
        };
        self.check(
            &f.name,
            matches!(topo.kind, TopologyKind::Sentinel | TopologyKind::Cluster),
            format!(
                "fault `{}`: a failover needs a sentinel or cluster topology, not {}",
                f.name.get_ref(),
                topology_name(topo.kind)
            ),
        )?;
        let target_ok = match target {
            Target::Primary => true,
            Target::Node(_) => topo.kind == TopologyKind::Cluster,
            _ => false,
        };
        self.check(
            &f.target,
            target_ok,
            "a failover replaces the primary: target `primary` (or, in a cluster, `node:<id>` of a master)",
        )?;
        self.node_fault(
            f,
            NodeFault::Failover(match mode.get_ref() {
                FailoverModeName::Manual => FailoverMode::Manual,
                FailoverModeName::KillPrimary => FailoverMode::KillPrimary,
            }),
        )
    }

    /// `memory_pressure`: `maxmemory` and/or `ballast`, optionally `policy`.
    fn memory_pressure(&self, f: &RawFault) -> VResult<Fault> {
        self.check(
            &f.name,
            f.maxmemory.is_some() || f.ballast.is_some(),
            format!(
                "fault `{}` of kind `memory_pressure` needs `maxmemory` (a lower limit for the fault) and/or `ballast` (bytes of keys to write)",
                f.name.get_ref()
            ),
        )?;
        for (key, b) in [("maxmemory", f.maxmemory), ("ballast", f.ballast)] {
            self.check(
                &f.name,
                b.is_none_or(|b| b.0 >= 1024 * 1024),
                format!("fault `{}`: `{key}` must be at least 1mb", f.name.get_ref()),
            )?;
        }
        self.node_fault(
            f,
            NodeFault::MemoryPressure(MemoryPressure {
                maxmemory: f.maxmemory.map(|b| b.0),
                ballast: f.ballast.map(|b| b.0),
                policy: f.policy.map(policy_name),
            }),
        )
    }

    /// Node faults take no proxy parameters: only target, at and for.
    fn node_fault(&self, f: &RawFault, fault: NodeFault) -> VResult<Fault> {
        let memory = matches!(fault, NodeFault::MemoryPressure(_));
        let misplaced = [
            ("maxmemory", f.maxmemory.is_some()),
            ("ballast", f.ballast.is_some()),
            ("policy", f.policy.is_some()),
        ];
        if let Some((key, _)) = misplaced.iter().find(|(_, p)| *p && !memory) {
            return Err(self.err(
                f.name.span(),
                format!(
                    "fault `{}`: `{key}` applies to kind `memory_pressure` only",
                    f.name.get_ref()
                ),
            ));
        }
        if let (Some(m), false) = (&f.mode, matches!(fault, NodeFault::Failover(_))) {
            return Err(self.err(
                m.span(),
                format!(
                    "fault `{}`: `mode` applies to kind `failover` only",
                    f.name.get_ref()
                ),
            ));
        }
        let given = [
            ("latency", f.latency.is_some()),
            ("jitter", f.jitter.is_some()),
            ("rate", f.rate.is_some()),
            ("timeout", f.timeout.is_some()),
            ("delay", f.delay.is_some()),
            ("average_size", f.average_size.is_some()),
            ("size_variation", f.size_variation.is_some()),
            ("bytes", f.bytes.is_some()),
            ("stream", f.stream.is_some()),
            ("toxicity", f.toxicity.is_some()),
        ];
        if let Some((key, _)) = given.iter().find(|(_, present)| *present) {
            return Err(self.err(
                f.name.span(),
                format!(
                    "fault `{}`: `{key}` does not apply to kind `{}`, which acts on the node itself (it takes target, at and for)",
                    f.name.get_ref(),
                    kind_str(f.kind)
                ),
            ));
        }
        Ok(Fault::Node(fault))
    }

    fn net_fault(&self, f: &RawFault) -> VResult<NetFault> {
        let ms = |d: Option<units::Dur>| d.map(|d| d.0.as_millis() as u64);
        let need = |present: bool, key: &str| -> VResult<()> {
            self.check(
                &f.name,
                present,
                format!(
                    "fault `{}` of kind `{}` needs `{key}`",
                    f.name.get_ref(),
                    kind_str(f.kind)
                ),
            )
        };
        let allowed: &[&str] = match f.kind {
            FaultKindName::Down => &[],
            FaultKindName::Latency => &["latency", "jitter"],
            FaultKindName::Bandwidth => &["rate"],
            FaultKindName::Timeout | FaultKindName::ResetPeer => &["timeout"],
            FaultKindName::SlowClose => &["delay"],
            FaultKindName::Slicer => &["average_size", "size_variation", "delay"],
            FaultKindName::LimitData => &["bytes"],
            FaultKindName::Partition => &[],
            _ => unreachable!("node faults are validated by node_fault"),
        };
        let given = [
            ("latency", f.latency.is_some()),
            ("jitter", f.jitter.is_some()),
            ("rate", f.rate.is_some()),
            ("timeout", f.timeout.is_some()),
            ("delay", f.delay.is_some()),
            ("average_size", f.average_size.is_some()),
            ("size_variation", f.size_variation.is_some()),
            ("bytes", f.bytes.is_some()),
            ("mode", f.mode.is_some()),
            ("maxmemory", f.maxmemory.is_some()),
            ("ballast", f.ballast.is_some()),
            ("policy", f.policy.is_some()),
        ];
        for (key, present) in given {
            self.check(
                &f.name,
                !present || allowed.contains(&key),
                format!(
                    "fault `{}`: `{key}` does not apply to kind `{}` (it takes: {})",
                    f.name.get_ref(),
                    kind_str(f.kind),
                    if allowed.is_empty() {
                        "no parameters".into()
                    } else {
                        allowed.join(", ")
                    }
                ),
            )?;
        }
        let kind = match f.kind {
            FaultKindName::Down => {
                self.check(
                    &f.name,
                    f.stream.is_none() && f.toxicity.is_none(),
                    format!(
                        "fault `{}`: a `down` fault takes no `stream` or `toxicity`",
                        f.name.get_ref()
                    ),
                )?;
                return Ok(NetFault::Down);
            }
            FaultKindName::Partition => {
                self.check(
                    &f.name,
                    f.stream.is_none() && f.toxicity.is_none(),
                    format!(
                        "fault `{}`: a `partition` cuts both directions of every peer connection; it takes no `stream` or `toxicity`",
                        f.name.get_ref()
                    ),
                )?;
                return Ok(NetFault::Toxic {
                    kind: ToxicKind::Partition {
                        source: u32::from(crate::topology::PEER_SOURCE),
                    },
                    streams: vec![Stream::Upstream, Stream::Downstream],
                    toxicity: 1.0,
                });
            }
            FaultKindName::Latency => {
                need(f.latency.is_some(), "latency")?;
                ToxicKind::Latency {
                    latency: ms(f.latency).unwrap_or(0),
                    jitter: ms(f.jitter).unwrap_or(0),
                }
            }
            FaultKindName::Bandwidth => {
                need(f.rate.is_some(), "rate")?;
                let rate = self.positive_int(f.rate.as_ref().expect("checked"), "rate")?;
                ToxicKind::Bandwidth { rate }
            }
            FaultKindName::Timeout => ToxicKind::Timeout {
                timeout: ms(f.timeout).unwrap_or(0),
            },
            FaultKindName::ResetPeer => ToxicKind::ResetPeer {
                timeout: ms(f.timeout).unwrap_or(0),
            },
            FaultKindName::SlowClose => {
                need(f.delay.is_some(), "delay")?;
                ToxicKind::SlowClose {
                    delay: ms(f.delay).unwrap_or(0),
                }
            }
            FaultKindName::Slicer => {
                need(f.average_size.is_some(), "average_size")?;
                let average_size =
                    self.positive_int(f.average_size.as_ref().expect("checked"), "average_size")?;
                let size_variation = match &f.size_variation {
                    Some(v) => {
                        self.check(
                            v,
                            (0..average_size as i64).contains(v.get_ref()),
                            "`size_variation` must be at least 0 and below `average_size`",
                        )?;
                        *v.get_ref() as u64
                    }
                    None => 0,
                };
                ToxicKind::Slicer {
                    average_size,
                    size_variation,
                    delay: f.delay.map(|d| d.0.as_micros() as u64).unwrap_or(0),
                }
            }
            FaultKindName::LimitData => {
                need(f.bytes.is_some(), "bytes")?;
                ToxicKind::LimitData {
                    bytes: self.positive_int(f.bytes.as_ref().expect("checked"), "bytes")?,
                }
            }
            _ => unreachable!("node faults are validated by node_fault"),
        };
        let streams = match f.stream.unwrap_or_default() {
            StreamName::Upstream => vec![Stream::Upstream],
            StreamName::Downstream => vec![Stream::Downstream],
            StreamName::Both => vec![Stream::Upstream, Stream::Downstream],
        };
        let toxicity = match &f.toxicity {
            Some(t) => self.fraction(t, "toxicity")? as f32,
            None => 1.0,
        };
        Ok(NetFault::Toxic {
            kind,
            streams,
            toxicity,
        })
    }
}

fn kind_str(kind: FaultKindName) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

pub fn topology_name(kind: TopologyKind) -> &'static str {
    match kind {
        TopologyKind::Standalone => "standalone",
        TopologyKind::Replicated => "replicated",
        TopologyKind::Sentinel => "sentinel",
        TopologyKind::Cluster => "cluster",
    }
}

/// A policy as Redis spells it (`allkeys-lru`).
fn policy_name(p: MaxmemoryPolicy) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// One variant per value of a checked, non-empty list; the first is the
/// plan's own workload.
fn variants_of<T: Copy>(
    list: &Spanned<Vec<T>>,
    name: impl Fn(T) -> String,
    make: impl Fn(T) -> WorkloadPlan,
) -> (WorkloadPlan, Vec<(String, WorkloadPlan)>) {
    let variants: Vec<(String, WorkloadPlan)> =
        list.get_ref().iter().map(|&v| (name(v), make(v))).collect();
    (variants[0].1.clone(), variants)
}
