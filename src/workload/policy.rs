//! `on_redis_error`: what a workload does when Redis fails. The table is
//! shared by the workloads that take it; each one accepts only the policies
//! that make sense for it (cache-aside: fallback or fail, with an optional
//! breaker; session: fail; rate-limit: fail_open or fail_closed).

use crate::vocab::outcome::Counter;
use crate::vocab::units::Dur;
use serde::Deserialize;
use toml::Spanned;

/// Reads served from the origin because Redis failed or the breaker was
/// open (the `fallback` policy's counter).
pub const FALLBACKS: Counter = Counter("fallbacks");

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPolicy {
    /// Serve the caller from the origin when Redis fails.
    Fallback,
    /// Hand the Redis error to the caller.
    Fail,
    /// rate-limit: admit, marked degraded.
    FailOpen,
    /// rate-limit: deny.
    FailClosed,
}

/// `on_redis_error = { policy = ..., breaker_failures = ..., breaker_cooldown = ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOnError {
    pub policy: ErrorPolicy,
    pub breaker_failures: Option<Spanned<i64>>,
    pub breaker_cooldown: Option<Spanned<Dur>>,
}
