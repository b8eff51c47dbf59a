//! Oracles: each workload's definition of correct behaviour, turned into
//! per-phase metrics from what the recorder counted.
//!
//! session (see `workload::session`): `caller_errors`, `redis_errors`,
//! `ryw_violations`, `wrong_user`; `lost_writes` comes from the ledger.
//!
//! cache-aside:
//! - `caller_errors`: ops whose error reached the caller (0 under `fallback`
//!   while the origin is healthy).
//! - `stale_reads`: hits that returned a version the origin had superseded
//!   more than the maximum TTL (ttl × (1 + ttl_jitter)) before the read.
//! - `hit_ratio` = hits / (hits + misses), over reads that reached Redis.
//! - `origin_rate` = origin calls per second of the phase;
//!   `origin_amplification` = origin_rate / baseline's origin_rate.
//! - `time_to_recover_ms` (recovery phases): from the moment the proxy
//!   server showed the fault removed to the end of the first successful
//!   Redis command that started after it.

use crate::recorder::{Counter, PhaseStats};
use crate::scenario::plan::WorkloadPlan;
use std::collections::BTreeMap;

/// Seconds a phase lasted.
pub fn phase_secs(p: &PhaseStats) -> f64 {
    (p.end_us.unwrap_or(p.start_us).saturating_sub(p.start_us)) as f64 / 1e6
}

/// The workload metrics of one phase. Metrics that cannot be computed (no
/// reads, no baseline origin calls, never recovered) are left out.
pub fn phase_metrics(
    workload: &WorkloadPlan,
    phase: &PhaseStats,
    baseline_origin_rate: Option<f64>,
) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    match workload {
        WorkloadPlan::CacheAside(_) => cache_aside(phase, baseline_origin_rate, &mut m),
        WorkloadPlan::RateLimit(_) => {
            for c in [Counter::CallerError, Counter::RedisError] {
                m.insert(c.name().to_string(), phase.counter(c) as f64);
            }
        }
        WorkloadPlan::Stampede(_) => {
            for c in [
                Counter::CallerError,
                Counter::RedisError,
                Counter::Recompute,
                Counter::ExpiryEvent,
                Counter::StaleServed,
                Counter::Fallback,
            ] {
                m.insert(c.name().to_string(), phase.counter(c) as f64);
            }
            let events = phase.counter(Counter::ExpiryEvent);
            if events > 0 {
                m.insert(
                    "recomputes_per_event".into(),
                    phase.counter(Counter::Recompute) as f64 / events as f64,
                );
            }
            let reads = phase.ops.get("read").map_or(0, |o| o.count);
            if reads > 0 {
                let redis: u64 = phase
                    .ops
                    .iter()
                    .filter(|(op, _)| crate::recorder::is_redis_op(op))
                    .map(|(_, o)| o.count)
                    .sum();
                m.insert("redis_ops_per_read".into(), redis as f64 / reads as f64);
            }
        }
        WorkloadPlan::Lock(_) => {
            for c in [
                Counter::CallerError,
                Counter::RedisError,
                Counter::LockOverlap,
                Counter::StaleWriteAccepted,
                Counter::StaleWriteRejected,
                Counter::AcquireFailure,
            ] {
                m.insert(c.name().to_string(), phase.counter(c) as f64);
            }
        }
        WorkloadPlan::Session(_) => {
            for c in [
                Counter::CallerError,
                Counter::RedisError,
                Counter::RywViolation,
                Counter::WrongUser,
            ] {
                m.insert(c.name().to_string(), phase.counter(c) as f64);
            }
        }
    }
    m
}

fn cache_aside(p: &PhaseStats, baseline_origin_rate: Option<f64>, m: &mut BTreeMap<String, f64>) {
    // Its own counters only: the other workloads' are always 0 here.
    for c in [
        Counter::Hit,
        Counter::Miss,
        Counter::Fallback,
        Counter::CallerError,
        Counter::RedisError,
        Counter::OriginCall,
        Counter::StaleRead,
        Counter::BreakerOpen,
        Counter::BreakerSkip,
    ] {
        m.insert(c.name().to_string(), p.counter(c) as f64);
    }
    let (hits, misses) = (
        p.counter(Counter::Hit) as f64,
        p.counter(Counter::Miss) as f64,
    );
    if hits + misses > 0.0 {
        m.insert("hit_ratio".into(), hits / (hits + misses));
    }
    let secs = phase_secs(p);
    if secs > 0.0 {
        let rate = p.counter(Counter::OriginCall) as f64 / secs;
        m.insert("origin_rate".into(), rate);
        if let Some(base) = baseline_origin_rate.filter(|b| *b > 0.0) {
            m.insert("origin_amplification".into(), rate / base);
        }
    }
    if p.name.starts_with("recovery:") {
        if let Some(ok) = p.first_redis_ok_us {
            m.insert(
                "time_to_recover_ms".into(),
                ok.saturating_sub(p.start_us) as f64 / 1e3,
            );
        }
    }
}
