//! Workloads: reference implementations of Redis usage patterns, each with
//! its degradation policy and the counters its oracle needs. A workload
//! turns one scheduled op into Redis commands and records what happened in
//! a `Trace`; the load engine decides when ops run.

pub mod breaker;
pub mod cache_aside;
pub mod conn;
pub mod lock;
pub mod origin;
pub mod ratelimit;
pub mod session;
pub mod stampede;
pub mod value;

use crate::expect::Dim;
use crate::ledger::Tracked;
use crate::recorder::Trace;
use crate::scenario::plan::WorkloadPlan;
use std::collections::BTreeMap;
use std::future::Future;

/// Deletes KEYS[1] only if it still holds ARGV[1] (the owner's token): the
/// release of a lock that may have expired and been taken by someone else.
pub(crate) const RELEASE_IF_OWNER: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// What the load engine needs of a workload.
pub trait Workload: Send + Sync + 'static {
    /// Per-virtual-user state (connection, RNG).
    type User: Send + 'static;

    fn new_user(&self, index: usize) -> Self::User;

    /// Runs one op intended to start at `intended_us` (µs since t0): the
    /// caller-visible sample first, then the Redis commands it issued.
    fn op<'a>(
        &'a self,
        user: &'a mut Self::User,
        intended_us: u64,
        trace: &'a mut Trace,
    ) -> impl Future<Output = ()> + Send + 'a;

    /// The names of the caller-visible ops (the rest are Redis commands).
    fn caller_ops(&self) -> &'static [&'static str];

    /// The acknowledged-write ledger, for workloads whose writes must last,
    /// with the function that reads a version out of a stored value.
    fn ledger(&self) -> Option<Tracked> {
        None
    }

    /// Workload metrics that need more than the recorder's counts, for the
    /// ops whose intended start lies in `[from_us, to_us)`.
    fn phase_metrics(&self, _from_us: u64, _to_us: u64) -> BTreeMap<String, f64> {
        BTreeMap::new()
    }
}

/// Any workload, for the run to drive one type.
pub enum AnyWorkload {
    CacheAside(cache_aside::CacheAside),
    Session(session::Session),
    Lock(lock::Lock),
    Stampede(stampede::Stampede),
    RateLimit(ratelimit::RateLimit),
}

pub enum AnyUser {
    CacheAside(cache_aside::User),
    Session(session::User),
    Lock(lock::User),
    Stampede(stampede::User),
    RateLimit(ratelimit::User),
}

impl Workload for AnyWorkload {
    type User = AnyUser;

    fn new_user(&self, index: usize) -> AnyUser {
        match self {
            AnyWorkload::CacheAside(w) => AnyUser::CacheAside(w.new_user(index)),
            AnyWorkload::Session(w) => AnyUser::Session(w.new_user(index)),
            AnyWorkload::Lock(w) => AnyUser::Lock(w.new_user(index)),
            AnyWorkload::Stampede(w) => AnyUser::Stampede(w.new_user(index)),
            AnyWorkload::RateLimit(w) => AnyUser::RateLimit(w.new_user(index)),
        }
    }

    async fn op(&self, user: &mut AnyUser, intended_us: u64, trace: &mut Trace) {
        match (self, user) {
            (AnyWorkload::CacheAside(w), AnyUser::CacheAside(u)) => {
                w.op(u, intended_us, trace).await
            }
            (AnyWorkload::Session(w), AnyUser::Session(u)) => w.op(u, intended_us, trace).await,
            (AnyWorkload::Lock(w), AnyUser::Lock(u)) => w.op(u, intended_us, trace).await,
            (AnyWorkload::Stampede(w), AnyUser::Stampede(u)) => w.op(u, intended_us, trace).await,
            (AnyWorkload::RateLimit(w), AnyUser::RateLimit(u)) => w.op(u, intended_us, trace).await,
            _ => unreachable!("users are made by the same workload"),
        }
    }

    fn caller_ops(&self) -> &'static [&'static str] {
        match self {
            AnyWorkload::CacheAside(w) => w.caller_ops(),
            AnyWorkload::Session(w) => w.caller_ops(),
            AnyWorkload::Lock(w) => w.caller_ops(),
            AnyWorkload::Stampede(w) => w.caller_ops(),
            AnyWorkload::RateLimit(w) => w.caller_ops(),
        }
    }

    fn ledger(&self) -> Option<Tracked> {
        match self {
            AnyWorkload::CacheAside(w) => w.ledger(),
            AnyWorkload::Session(w) => w.ledger(),
            AnyWorkload::Lock(w) => w.ledger(),
            AnyWorkload::Stampede(w) => w.ledger(),
            AnyWorkload::RateLimit(w) => w.ledger(),
        }
    }

    fn phase_metrics(&self, from_us: u64, to_us: u64) -> BTreeMap<String, f64> {
        match self {
            AnyWorkload::RateLimit(w) => w.phase_metrics(from_us, to_us),
            _ => BTreeMap::new(),
        }
    }
}

/// Every op a workload records, caller ops first.
pub fn ops(plan: &WorkloadPlan) -> &'static [&'static str] {
    match plan {
        WorkloadPlan::CacheAside(_) => cache_aside::OPS,
        WorkloadPlan::Session(_) => session::OPS,
        WorkloadPlan::Lock(_) => lock::OPS,
        WorkloadPlan::Stampede(_) => stampede::OPS,
        WorkloadPlan::RateLimit(_) => ratelimit::OPS,
    }
}

/// The workload metrics an expectation may name, with their dimensions.
pub fn metrics(plan: &WorkloadPlan) -> &'static [(&'static str, Dim)] {
    match plan {
        WorkloadPlan::CacheAside(_) => cache_aside::METRICS,
        WorkloadPlan::Session(_) => session::METRICS,
        WorkloadPlan::Lock(_) => lock::METRICS,
        WorkloadPlan::Stampede(_) => stampede::METRICS,
        WorkloadPlan::RateLimit(_) => ratelimit::METRICS,
    }
}
