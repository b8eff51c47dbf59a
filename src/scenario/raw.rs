//! The scenario file exactly as written: serde types that mirror scenario
//! format v1 key for key. Unknown keys are refused here (`deny_unknown_fields`);
//! values that need cross-checking keep their position (`Spanned`) so that
//! `validate` can point at them.

use super::units::{Bytes, Dur};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    pub duration: Spanned<Dur>,
    pub seed: Option<u64>,
    pub topology: RawTopology,
    pub load: RawLoad,
    pub workload: RawWorkload,
    #[serde(default, rename = "fault")]
    pub faults: Vec<Spanned<RawFault>>,
    #[serde(default)]
    pub expect: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TopologyKind {
    Standalone,
    Replicated,
    Sentinel,
    Cluster,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Process,
    Docker,
    External,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Persistence {
    #[default]
    None,
    Aof,
    Rdb,
}

#[derive(Debug, Deserialize, serde::Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MaxmemoryPolicy {
    Noeviction,
    AllkeysLru,
    AllkeysLfu,
    AllkeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTopology {
    pub kind: TopologyKind,
    pub backend: Option<Backend>,
    pub image: Option<String>,
    pub maxmemory: Option<Bytes>,
    pub maxmemory_policy: Option<MaxmemoryPolicy>,
    pub persistence: Option<Persistence>,
    /// replicated and sentinel: replicas of the primary.
    pub replicas: Option<Spanned<i64>>,
    /// sentinel: how long a node must be silent before it is deemed down.
    pub down_after: Option<Spanned<Dur>>,
    /// sentinel: Sentinel's failover-timeout.
    pub failover_timeout: Option<Spanned<Dur>>,
    /// cluster: masters, each owning an equal share of the slots.
    pub masters: Option<Spanned<i64>>,
    /// cluster: replicas of each master.
    pub replicas_per_master: Option<Spanned<i64>>,
    /// cluster: cluster-node-timeout.
    pub cluster_node_timeout: Option<Spanned<Dur>>,
    /// sentinel: the name the sentinels monitor the primary by.
    pub master_name: Option<Spanned<String>>,
    /// The Toxiproxy API in front of the nodes (the CLI's `--toxiproxy-url`
    /// wins).
    pub toxiproxy_url: Option<Spanned<String>>,
    /// external: node, memory and failover faults are allowed too (the
    /// command line must confirm with `--allow-destructive`).
    pub allow_destructive: Option<Spanned<bool>>,
    /// external: the endpoints of a topology gameday did not start.
    #[serde(default, rename = "endpoint")]
    pub endpoints: Vec<Spanned<RawEndpoint>>,
}

/// One `[[topology.endpoint]]` of an external topology.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    /// The id fault targets use (`node:<id>`).
    pub node: Spanned<String>,
    pub role: crate::topology::Role,
    /// Where clients connect (loopback only).
    pub addr: Spanned<String>,
    /// The Toxiproxy proxy that `addr` is, if one is in front already.
    pub proxy: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLoad {
    pub users: Spanned<i64>,
    pub rate: Option<Spanned<f64>>,
    pub ramp: Option<Spanned<Dur>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKindName {
    CacheAside,
    Session,
    Lock,
    Stampede,
    RateLimit,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    #[default]
    Uniform,
    Zipf,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum WritePolicy {
    /// Update the origin, then delete the cached key.
    #[default]
    Invalidate,
    /// Update the origin, then write the new value into the cache.
    Set,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkload {
    pub kind: WorkloadKindName,
    pub keys: Option<Spanned<i64>>,
    /// session: how many sessions, spread over the users.
    pub sessions: Option<Spanned<i64>>,
    /// lock: how many locks the users contend for.
    pub locks: Option<Spanned<i64>>,
    /// lock: the lock's TTL (PX).
    pub lock_ttl: Option<Spanned<Dur>>,
    /// lock: time spent holding the lock.
    pub critical_section: Option<Spanned<Dur>>,
    /// lock: fencing tokens (INCR) checked by the protected resource; a
    /// list runs one variant per value.
    pub fencing: Option<Spanned<OneOrMany<bool>>>,
    /// lock: how long a user waits for a held lock.
    pub acquire_timeout: Option<Spanned<Dur>>,
    /// lock: poll interval while waiting.
    pub retry: Option<Spanned<Dur>>,
    /// stampede: how many hot keys.
    pub hot_keys: Option<Spanned<i64>>,
    /// stampede: one strategy...
    pub strategy: Option<crate::scenario::plan::StampedeStrategy>,
    /// stampede: ...or several, compared side by side.
    pub strategies: Option<Spanned<Vec<crate::scenario::plan::StampedeStrategy>>>,
    /// stampede, xfetch: eagerness of early recomputation.
    pub beta: Option<Spanned<f64>>,
    /// stampede, stale_while_revalidate: how long a key outlives freshness.
    pub stale_for: Option<Spanned<Dur>>,
    /// rate-limit: one algorithm...
    pub algorithm: Option<crate::scenario::plan::RateLimitAlgorithm>,
    /// rate-limit: ...or several, compared side by side.
    pub algorithms: Option<Spanned<Vec<crate::scenario::plan::RateLimitAlgorithm>>>,
    /// rate-limit: requests allowed per window and client.
    pub limit: Option<Spanned<i64>>,
    /// rate-limit: the window.
    pub window: Option<Spanned<Dur>>,
    /// rate-limit: how many clients (limited identities).
    pub clients: Option<Spanned<i64>>,
    /// rate-limit: zipf exponent of the clients' request shares.
    pub skew: Option<Spanned<f64>>,
    #[serde(default)]
    pub distribution: Distribution,
    pub zipf_exponent: Option<Spanned<f64>>,
    pub value_size: Option<Spanned<i64>>,
    pub read_ratio: Option<Spanned<f64>>,
    pub ttl: Option<Spanned<Dur>>,
    pub ttl_jitter: Option<Spanned<f64>>,
    pub op_timeout: Option<Spanned<Dur>>,
    #[serde(default)]
    pub write_policy: WritePolicy,
    pub origin: Option<RawOrigin>,
    pub on_redis_error: Option<RawOnError>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOrigin {
    pub latency: Option<Dur>,
    pub jitter: Option<Spanned<f64>>,
    pub concurrency: Option<Spanned<i64>>,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOnError {
    pub policy: ErrorPolicy,
    pub breaker_failures: Option<Spanned<i64>>,
    pub breaker_cooldown: Option<Spanned<Dur>>,
}

#[derive(Debug, Deserialize, serde::Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKindName {
    Down,
    Latency,
    Bandwidth,
    Timeout,
    SlowClose,
    ResetPeer,
    Slicer,
    LimitData,
    Partition,
    Failover,
    MemoryPressure,
    GcPause,
    Kill,
    Restart,
    Pause,
    ClientPause,
    DebugSleep,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FailoverModeName {
    Manual,
    KillPrimary,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StreamName {
    Upstream,
    #[default]
    Downstream,
    Both,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFault {
    pub name: Spanned<String>,
    pub kind: FaultKindName,
    #[serde(default = "default_target")]
    pub target: Spanned<String>,
    pub at: Spanned<Dur>,
    #[serde(rename = "for")]
    pub for_: Spanned<Dur>,
    pub stream: Option<StreamName>,
    pub toxicity: Option<Spanned<f64>>,
    pub latency: Option<Dur>,
    pub jitter: Option<Dur>,
    /// bandwidth, in KB/s as Toxiproxy counts it.
    pub rate: Option<Spanned<i64>>,
    pub timeout: Option<Dur>,
    pub delay: Option<Dur>,
    pub average_size: Option<Spanned<i64>>,
    pub size_variation: Option<Spanned<i64>>,
    pub bytes: Option<Spanned<i64>>,
    /// failover: `manual` or `kill_primary`.
    pub mode: Option<Spanned<FailoverModeName>>,
    /// memory_pressure: `maxmemory` for the fault's length.
    pub maxmemory: Option<Bytes>,
    /// memory_pressure: bytes of ballast keys to write.
    pub ballast: Option<Bytes>,
    /// memory_pressure: `maxmemory-policy` for the fault's length.
    pub policy: Option<MaxmemoryPolicy>,
    /// Rules written after a `[[fault]]` header land here (TOML puts them in
    /// that table); they join the scenario's expectations.
    #[serde(default)]
    pub expect: Vec<Spanned<String>>,
}

fn default_target() -> Spanned<String> {
    Spanned::new(0..0, "primary".to_string())
}

/// A value, or a list of values to compare as variants.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}
