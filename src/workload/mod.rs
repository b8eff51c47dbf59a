//! Workloads: reference implementations of Redis usage patterns, each with
//! its degradation policy and the oracle that judges it. A workload turns
//! one scheduled op into Redis commands and records what happened in a
//! `Trace`; the load engine decides when ops run.
//!
//! Each kind lives in its own file, which owns everything about it: the
//! `[workload]` keys it accepts (`Raw`) and their validation, its
//! configuration, its ops, counters and metric names (`SPEC`), the users
//! that run it and its per-phase metrics. This module holds the one enum
//! arm per kind that ties a file in.

pub mod breaker;
pub mod cache_aside;
pub mod choice;
pub mod conn;
pub mod contract;
pub mod http;
pub mod lock;
pub mod origin;
pub mod policy;
pub mod queue;
pub mod ratelimit;
pub mod replica_reads;
pub mod session;
pub mod stampede;
pub mod throughput;
pub mod two_level;
pub mod value;
pub mod write_behind;

use crate::topology::ClientSpec;
use crate::vocab::check::{fields_of, Checked};
use crate::vocab::expect::Dim;
use crate::vocab::outcome::Counter;
use cache_aside::CacheAsidePlan;
pub(crate) use choice::bool_choice;
pub use choice::{Choice, OneOrMany};
pub use contract::{all_counters, counts, Done, Oracle, Workload};
use lock::{GcPause, LockPlan};
use policy::ErrorPolicy;
use ratelimit::RateLimitPlan;
use serde::{Deserialize, Deserializer};
use session::SessionPlan;
use stampede::StampedePlan;
use std::ops::Range;
use std::sync::Arc;
use throughput::ThroughputPlan;
use tokio::time::Instant;

/// The scenario's `kind = "..."` of workload.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    CacheAside,
    Session,
    Lock,
    Stampede,
    RateLimit,
    Http,
    Throughput,
    Queue,
    WriteBehind,
    ReplicaReads,
    TwoLevel,
}

/// What a workload kind declares about itself.
pub struct Spec {
    /// Its `kind` in the scenario and the reports.
    pub name: &'static str,
    /// The scenario table it is read from: `workload`, or `target` for the
    /// team's own service.
    pub section: &'static str,
    /// Every op it records, caller ops first.
    pub ops: &'static [&'static str],
    /// The metrics an expectation may name, with their dimensions.
    pub metrics: &'static [(&'static str, Dim)],
    /// The counters it bumps (timeseries.csv's columns).
    pub counters: &'static [Counter],
    /// The `[workload]` keys it takes besides `kind`.
    pub keys: fn() -> &'static [&'static str],
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 11] = [
        WorkloadKind::CacheAside,
        WorkloadKind::Session,
        WorkloadKind::Lock,
        WorkloadKind::Stampede,
        WorkloadKind::RateLimit,
        WorkloadKind::Http,
        WorkloadKind::Throughput,
        WorkloadKind::Queue,
        WorkloadKind::WriteBehind,
        WorkloadKind::ReplicaReads,
        WorkloadKind::TwoLevel,
    ];

    pub fn spec(self) -> &'static Spec {
        match self {
            WorkloadKind::CacheAside => &cache_aside::SPEC,
            WorkloadKind::Session => &session::SPEC,
            WorkloadKind::Lock => &lock::SPEC,
            WorkloadKind::Stampede => &stampede::SPEC,
            WorkloadKind::RateLimit => &ratelimit::SPEC,
            WorkloadKind::Http => &http::SPEC,
            WorkloadKind::Throughput => &throughput::SPEC,
            WorkloadKind::Queue => &queue::SPEC,
            WorkloadKind::WriteBehind => &write_behind::SPEC,
            WorkloadKind::ReplicaReads => &replica_reads::SPEC,
            WorkloadKind::TwoLevel => &two_level::SPEC,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// Reads this kind's `[workload]` table (the scenario layer calls it
    /// with the TOML deserializer of that table, so every value keeps its
    /// position).
    pub fn raw<'de, D: Deserializer<'de>>(self, d: D) -> Result<RawWorkload, D::Error> {
        Ok(match self {
            WorkloadKind::CacheAside => RawWorkload::CacheAside(Deserialize::deserialize(d)?),
            WorkloadKind::Session => RawWorkload::Session(Deserialize::deserialize(d)?),
            WorkloadKind::Lock => RawWorkload::Lock(Deserialize::deserialize(d)?),
            WorkloadKind::Stampede => RawWorkload::Stampede(Deserialize::deserialize(d)?),
            WorkloadKind::RateLimit => RawWorkload::RateLimit(Deserialize::deserialize(d)?),
            WorkloadKind::Http => RawWorkload::Http(Deserialize::deserialize(d)?),
            WorkloadKind::Throughput => RawWorkload::Throughput(Deserialize::deserialize(d)?),
            WorkloadKind::Queue => RawWorkload::Queue(Deserialize::deserialize(d)?),
            WorkloadKind::WriteBehind => RawWorkload::WriteBehind(Deserialize::deserialize(d)?),
            WorkloadKind::ReplicaReads => RawWorkload::ReplicaReads(Deserialize::deserialize(d)?),
            WorkloadKind::TwoLevel => RawWorkload::TwoLevel(Deserialize::deserialize(d)?),
        })
    }
}

/// The keys of a workload's raw table, for its `Spec`.
pub(crate) fn keys_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    fields_of::<T>()
}

/// A `[workload]` table as written, per kind.
pub enum RawWorkload {
    CacheAside(cache_aside::Raw),
    Session(session::Raw),
    Lock(lock::Raw),
    Stampede(stampede::Raw),
    RateLimit(ratelimit::Raw),
    Http(http::Raw),
    Throughput(throughput::Raw),
    Queue(queue::Raw),
    WriteBehind(write_behind::Raw),
    ReplicaReads(replica_reads::Raw),
    TwoLevel(two_level::Raw),
}

/// What the validation of a workload may look at besides its own table.
pub struct WorkloadCtx {
    pub users: usize,
    /// Where `users` is written.
    pub users_span: Range<usize>,
    /// The topology's kind, and the replicas clients may read from (of
    /// the primary; external: the endpoints declared replicas).
    pub topology: crate::vocab::topo::TopologyKind,
    pub replicas: usize,
    /// Where the workload's `kind` is written.
    pub kind_span: Range<usize>,
}

impl WorkloadCtx {
    /// `keys` as given (default 1000), for a workload whose keys each have
    /// one writer, its owner: at least one per user.
    pub fn owned_keys(&self, given: Option<&toml::Spanned<i64>>) -> Checked<u64> {
        let keys = crate::vocab::check::positive_int_or(given, "keys", 1000)?;
        if keys < self.users as u64 {
            return Err(crate::vocab::check::invalid(
                given.map_or(self.users_span.clone(), |s| s.span()),
                format!(
                    "{keys} keys for {} users: every user writes keys of its own (raise `keys` or lower `users`)",
                    self.users
                ),
            ));
        }
        Ok(keys)
    }
}

/// The keys user `index` of `users` owns, of `keys`: key k is user
/// k mod users's.
pub fn owned_by(index: u64, users: u64, keys: u64) -> Vec<u64> {
    (index..keys).step_by(users.max(1) as usize).collect()
}

impl RawWorkload {
    /// Validates the table: the plan, and its variants when a key lists
    /// several values (the first variant is also the plan).
    pub fn plan(self, ctx: &WorkloadCtx) -> Checked<(WorkloadPlan, Vec<(String, WorkloadPlan)>)> {
        Ok(match self {
            RawWorkload::CacheAside(r) => (WorkloadPlan::CacheAside(r.plan()?), Vec::new()),
            RawWorkload::Session(r) => (WorkloadPlan::Session(r.plan(ctx)?), Vec::new()),
            RawWorkload::Lock(r) => r.plan()?.lift(WorkloadPlan::Lock),
            RawWorkload::Stampede(r) => r.plan()?.lift(WorkloadPlan::Stampede),
            RawWorkload::RateLimit(r) => r.plan()?.lift(WorkloadPlan::RateLimit),
            RawWorkload::Http(r) => (WorkloadPlan::Http(r.plan()?), Vec::new()),
            RawWorkload::Throughput(r) => (WorkloadPlan::Throughput(r.plan()?), Vec::new()),
            RawWorkload::Queue(r) => r.plan()?.lift(WorkloadPlan::Queue),
            RawWorkload::WriteBehind(r) => r.plan(ctx)?.lift(WorkloadPlan::WriteBehind),
            RawWorkload::ReplicaReads(r) => r.plan(ctx)?.lift(WorkloadPlan::ReplicaReads),
            RawWorkload::TwoLevel(r) => r.plan(ctx)?.lift(WorkloadPlan::TwoLevel),
        })
    }
}

/// A validated workload.
#[derive(Debug, Clone)]
pub enum WorkloadPlan {
    CacheAside(CacheAsidePlan),
    Session(SessionPlan),
    Lock(LockPlan),
    Stampede(StampedePlan),
    RateLimit(RateLimitPlan),
    Http(http::HttpPlan),
    Throughput(ThroughputPlan),
    Queue(queue::QueuePlan),
    WriteBehind(write_behind::WriteBehindPlan),
    ReplicaReads(replica_reads::ReplicaReadsPlan),
    TwoLevel(two_level::TwoLevelPlan),
}

impl WorkloadPlan {
    pub fn kind(&self) -> WorkloadKind {
        match self {
            WorkloadPlan::CacheAside(_) => WorkloadKind::CacheAside,
            WorkloadPlan::Session(_) => WorkloadKind::Session,
            WorkloadPlan::Lock(_) => WorkloadKind::Lock,
            WorkloadPlan::Stampede(_) => WorkloadKind::Stampede,
            WorkloadPlan::RateLimit(_) => WorkloadKind::RateLimit,
            WorkloadPlan::Http(_) => WorkloadKind::Http,
            WorkloadPlan::Throughput(_) => WorkloadKind::Throughput,
            WorkloadPlan::Queue(_) => WorkloadKind::Queue,
            WorkloadPlan::WriteBehind(_) => WorkloadKind::WriteBehind,
            WorkloadPlan::ReplicaReads(_) => WorkloadKind::ReplicaReads,
            WorkloadPlan::TwoLevel(_) => WorkloadKind::TwoLevel,
        }
    }

    /// The ops a rule may name: its kind's, or a target's requests.
    pub fn ops(&self) -> &'static [&'static str] {
        match self {
            WorkloadPlan::Http(p) => p.ops,
            WorkloadPlan::CacheAside(_)
            | WorkloadPlan::Session(_)
            | WorkloadPlan::Lock(_)
            | WorkloadPlan::Stampede(_)
            | WorkloadPlan::RateLimit(_)
            | WorkloadPlan::Throughput(_)
            | WorkloadPlan::Queue(_)
            | WorkloadPlan::WriteBehind(_)
            | WorkloadPlan::ReplicaReads(_)
            | WorkloadPlan::TwoLevel(_) => self.kind().spec().ops,
        }
    }

    /// The workload metrics a rule may name (`name.*` is a family).
    pub fn metrics(&self) -> &'static [(&'static str, Dim)] {
        match self {
            WorkloadPlan::Http(p) => p.metrics,
            WorkloadPlan::CacheAside(_)
            | WorkloadPlan::Session(_)
            | WorkloadPlan::Lock(_)
            | WorkloadPlan::Stampede(_)
            | WorkloadPlan::RateLimit(_)
            | WorkloadPlan::Throughput(_)
            | WorkloadPlan::Queue(_)
            | WorkloadPlan::WriteBehind(_)
            | WorkloadPlan::ReplicaReads(_)
            | WorkloadPlan::TwoLevel(_) => self.kind().spec().metrics,
        }
    }

    /// The metrics this configuration keeps at zero in a healthy run (the
    /// regression gate's invariants): each kind's correctness oracle, and a
    /// fallback's promise that callers see no error.
    pub fn invariants(&self) -> Vec<&'static str> {
        match self {
            WorkloadPlan::CacheAside(p) => {
                let mut v = vec!["stale_reads"];
                if p.on_error.policy == ErrorPolicy::Fallback {
                    v.push("caller_errors");
                }
                v
            }
            WorkloadPlan::Session(_) => vec!["ryw_violations", "wrong_user", "lost_writes"],
            WorkloadPlan::Lock(_) => vec!["overlaps", "stale_writes_accepted"],
            WorkloadPlan::RateLimit(_) => vec!["excess_admitted"],
            WorkloadPlan::Throughput(_) => vec!["wrong_values"],
            WorkloadPlan::Queue(_) => vec![
                "lost_jobs",
                "trimmed",
                "duplicates_uncaught",
                "corrupt_jobs",
            ],
            WorkloadPlan::WriteBehind(_) => vec!["unflushed_lost", "stale_reads", "divergent_keys"],
            WorkloadPlan::TwoLevel(_) => vec!["stale_l1_reads", "stale_l1_keys"],
            WorkloadPlan::ReplicaReads(p) => match p.max_staleness {
                Some(_) if p.fallback => vec!["beyond_bound"],
                _ => Vec::new(),
            },
            WorkloadPlan::Stampede(_) | WorkloadPlan::Http(_) => Vec::new(),
        }
    }

    /// Whether a `gc_pause` fault has something to stall: a lock holder or
    /// a queue consumer.
    pub fn pausable(&self) -> bool {
        match self {
            WorkloadPlan::Lock(_) | WorkloadPlan::Queue(_) => true,
            WorkloadPlan::CacheAside(_)
            | WorkloadPlan::Session(_)
            | WorkloadPlan::Stampede(_)
            | WorkloadPlan::RateLimit(_)
            | WorkloadPlan::Http(_)
            | WorkloadPlan::Throughput(_)
            | WorkloadPlan::WriteBehind(_)
            | WorkloadPlan::ReplicaReads(_)
            | WorkloadPlan::TwoLevel(_) => false,
        }
    }

    /// Whether the run starts a service of the team's (`command`).
    pub fn starts_a_service(&self) -> bool {
        match self {
            WorkloadPlan::Http(p) => p.command.is_some(),
            WorkloadPlan::CacheAside(_)
            | WorkloadPlan::Session(_)
            | WorkloadPlan::Lock(_)
            | WorkloadPlan::Stampede(_)
            | WorkloadPlan::RateLimit(_)
            | WorkloadPlan::Throughput(_)
            | WorkloadPlan::Queue(_)
            | WorkloadPlan::WriteBehind(_)
            | WorkloadPlan::ReplicaReads(_)
            | WorkloadPlan::TwoLevel(_) => false,
        }
    }

    /// What must hold before anything starts (a target's command exists).
    pub fn preflight(&self) -> Result<(), WorkloadError> {
        match self {
            WorkloadPlan::Http(p) => Ok(p.preflight()?),
            WorkloadPlan::CacheAside(_)
            | WorkloadPlan::Session(_)
            | WorkloadPlan::Lock(_)
            | WorkloadPlan::Stampede(_)
            | WorkloadPlan::RateLimit(_)
            | WorkloadPlan::Throughput(_)
            | WorkloadPlan::Queue(_)
            | WorkloadPlan::WriteBehind(_)
            | WorkloadPlan::ReplicaReads(_)
            | WorkloadPlan::TwoLevel(_) => Ok(()),
        }
    }

    /// Before the load's clock starts: a target's service is started (its
    /// output to `dir/app.log`) and found healthy. What it returns stops it.
    pub async fn start(
        &self,
        client: &ClientSpec,
        dir: &std::path::Path,
        shutdown: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<Running, WorkloadError> {
        Ok(Running(match self {
            WorkloadPlan::Http(p) => p.start(client, dir, shutdown).await?,
            WorkloadPlan::CacheAside(_)
            | WorkloadPlan::Session(_)
            | WorkloadPlan::Lock(_)
            | WorkloadPlan::Stampede(_)
            | WorkloadPlan::RateLimit(_)
            | WorkloadPlan::Throughput(_)
            | WorkloadPlan::Queue(_)
            | WorkloadPlan::WriteBehind(_)
            | WorkloadPlan::ReplicaReads(_)
            | WorkloadPlan::TwoLevel(_) => None,
        }))
    }
}

/// A started target service, if any: `stop` ends it gracefully; dropping
/// it kills it.
pub struct Running(Option<http::service::Service>);

impl Running {
    pub async fn stop(self) {
        if let Some(s) = self.0 {
            s.stop().await;
        }
    }
}

/// A workload that could not start or run its service.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error(transparent)]
    Service(#[from] http::service::ServiceError),
}

impl WorkloadError {
    /// 2 when the scenario must change (a command that does not exist), 3
    /// when the service failed, 130 when interrupted.
    pub fn exit_code(&self) -> u8 {
        use http::service::ServiceError as S;
        match self {
            WorkloadError::Service(S::NotFound { .. }) => 2,
            WorkloadError::Service(S::Interrupted) => 130,
            WorkloadError::Service(_) => 3,
        }
    }
}

/// What every workload is built from, besides its plan.
pub struct Setup {
    pub client: ClientSpec,
    /// The run's key prefix (`gameday:<run id>:`).
    pub prefix: String,
    pub t0: Instant,
    pub seed: u64,
    pub users: usize,
    /// Where a `gc_pause` fault reaches the lock's holders or the queue's
    /// consumers.
    pub gc: Arc<GcPause>,
}

impl AnyWorkload {
    pub fn new(plan: &WorkloadPlan, s: Setup) -> AnyWorkload {
        let (client, prefix, t0, seed) = (s.client.clone(), s.prefix.clone(), s.t0, s.seed);
        match plan {
            WorkloadPlan::CacheAside(p) => AnyWorkload::CacheAside(Arc::new(
                cache_aside::CacheAside::new(p.clone(), client, prefix, t0, seed),
            )),
            WorkloadPlan::Session(p) => AnyWorkload::Session(Arc::new(session::Session::new(
                p.clone(),
                client,
                prefix,
                s.users,
                t0,
                seed,
            ))),
            WorkloadPlan::Lock(p) => AnyWorkload::Lock(Arc::new(lock::Lock::new(
                p.clone(),
                client,
                prefix,
                t0,
                seed,
                s.gc,
            ))),
            WorkloadPlan::Stampede(p) => AnyWorkload::Stampede(Arc::new(stampede::Stampede::new(
                p.clone(),
                client,
                prefix,
                t0,
                seed,
            ))),
            WorkloadPlan::RateLimit(p) => AnyWorkload::RateLimit(Arc::new(
                ratelimit::RateLimit::new(p.clone(), client, prefix, t0, seed),
            )),
            WorkloadPlan::Http(p) => AnyWorkload::Http(Arc::new(http::Http::new(p.clone(), &s))),
            WorkloadPlan::Throughput(p) => AnyWorkload::Throughput(Arc::new(
                throughput::Throughput::new(p.clone(), client, prefix, t0, seed),
            )),
            WorkloadPlan::Queue(p) => {
                AnyWorkload::Queue(Arc::new(queue::Queue::new(p.clone(), &s)))
            }
            WorkloadPlan::WriteBehind(p) => {
                AnyWorkload::WriteBehind(Arc::new(write_behind::WriteBehind::new(p.clone(), &s)))
            }
            WorkloadPlan::ReplicaReads(p) => {
                AnyWorkload::ReplicaReads(Arc::new(replica_reads::ReplicaReads::new(p.clone(), &s)))
            }
            WorkloadPlan::TwoLevel(p) => {
                AnyWorkload::TwoLevel(Arc::new(two_level::TwoLevel::new(p.clone(), &s)))
            }
        }
    }
}

/// Deletes KEYS[1] only if it still holds ARGV[1] (the owner's token): the
/// release of a lock that may have expired and been taken by someone else.
pub(crate) const RELEASE_IF_OWNER: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Any workload. The load engine is generic over `Workload`; this enum is
/// matched once to drive it (`load::drive_any`) and once to read its
/// oracle (`oracle`).
pub enum AnyWorkload {
    CacheAside(Arc<cache_aside::CacheAside>),
    Session(Arc<session::Session>),
    Lock(Arc<lock::Lock>),
    Stampede(Arc<stampede::Stampede>),
    RateLimit(Arc<ratelimit::RateLimit>),
    Http(Arc<http::Http>),
    Throughput(Arc<throughput::Throughput>),
    Queue(Arc<queue::Queue>),
    WriteBehind(Arc<write_behind::WriteBehind>),
    ReplicaReads(Arc<replica_reads::ReplicaReads>),
    TwoLevel(Arc<two_level::TwoLevel>),
}

impl AnyWorkload {
    pub fn oracle(&self) -> &dyn Oracle {
        match self {
            AnyWorkload::CacheAside(w) => &**w,
            AnyWorkload::Session(w) => &**w,
            AnyWorkload::Lock(w) => &**w,
            AnyWorkload::Stampede(w) => &**w,
            AnyWorkload::RateLimit(w) => &**w,
            AnyWorkload::Http(w) => &**w,
            AnyWorkload::Throughput(w) => &**w,
            AnyWorkload::Queue(w) => &**w,
            AnyWorkload::WriteBehind(w) => &**w,
            AnyWorkload::ReplicaReads(w) => &**w,
            AnyWorkload::TwoLevel(w) => &**w,
        }
    }
}
