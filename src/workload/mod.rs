//! Workloads: reference implementations of Redis usage patterns, each with
//! its degradation policy and the counters its oracle needs. A workload
//! turns one scheduled op into Redis commands and records what happened in
//! a `Trace`; the load engine decides when ops run.

pub mod breaker;
pub mod cache_aside;
pub mod conn;
pub mod origin;
pub mod value;

use crate::expect::Dim;
use crate::recorder::Trace;
use crate::scenario::plan::WorkloadPlan;
use std::future::Future;

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
}

/// Every op a workload records, caller ops first.
pub fn ops(plan: &WorkloadPlan) -> &'static [&'static str] {
    match plan {
        WorkloadPlan::CacheAside(_) => cache_aside::OPS,
    }
}

/// The workload metrics an expectation may name, with their dimensions.
pub fn metrics(plan: &WorkloadPlan) -> &'static [(&'static str, Dim)] {
    match plan {
        WorkloadPlan::CacheAside(_) => cache_aside::METRICS,
    }
}
