//! `RunPlan`: a scenario after validation. Defaults are filled in, units
//! resolved and every cross-field rule checked; the engine sees only this.

use super::raw::{
    Backend, Distribution, ErrorPolicy, MaxmemoryPolicy, Persistence, TopologyKind, WritePolicy,
};
use crate::expect::Expectation;
use crate::proxy::control::NetFault;
use crate::topology::Role;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RunPlan {
    pub name: String,
    pub description: String,
    pub source: PathBuf,
    pub duration: Duration,
    pub seed: u64,
    pub topology: TopologyPlan,
    pub load: LoadPlan,
    pub workload: WorkloadPlan,
    pub faults: Vec<FaultPlan>,
    pub expectations: Vec<Expectation>,
    /// Variants run back to back against the same topology, each with its
    /// own workload settings (`fencing = [false, true]`, ...); empty for a
    /// single run of `workload`.
    pub variants: Vec<(String, WorkloadPlan)>,
    /// Set on the plan of one variant: its name.
    pub variant: Option<String>,
}

impl RunPlan {
    /// The plan of one variant: its workload, and the rules that are for
    /// every variant or for it.
    pub fn variant(&self, name: &str, workload: &WorkloadPlan) -> RunPlan {
        RunPlan {
            workload: workload.clone(),
            expectations: self
                .expectations
                .iter()
                .filter(|e| e.variant.as_deref().is_none_or(|v| v == name))
                .cloned()
                .collect(),
            variants: Vec::new(),
            variant: Some(name.to_string()),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone)]
pub struct TopologyPlan {
    pub kind: TopologyKind,
    pub backend: Backend,
    pub image: Option<String>,
    pub maxmemory: Option<u64>,
    pub maxmemory_policy: Option<MaxmemoryPolicy>,
    pub persistence: Persistence,
    /// replicated / sentinel: replicas of the primary.
    pub replicas: usize,
    /// sentinel: down-after-milliseconds.
    pub down_after: Duration,
    /// sentinel: failover-timeout.
    pub failover_timeout: Duration,
    /// cluster: masters.
    pub masters: usize,
    /// cluster: replicas of each master.
    pub replicas_per_master: usize,
    /// cluster: cluster-node-timeout.
    pub cluster_node_timeout: Duration,
    /// sentinel: the name the sentinels monitor the primary by.
    pub master_name: String,
    /// The Toxiproxy API to use instead of the embedded one.
    pub toxiproxy_url: Option<String>,
    /// external: what the scenario says about the topology it attaches to.
    pub external: ExternalPlan,
}

/// An existing topology, described by its endpoints.
#[derive(Debug, Clone, Default)]
pub struct ExternalPlan {
    pub endpoints: Vec<ExternalEndpoint>,
    /// The scenario allows destructive faults (the CLI must agree).
    pub allow_destructive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalEndpoint {
    pub node: String,
    pub role: Role,
    /// Where clients connect: a loopback address.
    pub addr: SocketAddr,
    /// The Toxiproxy proxy that `addr` is, when one is there already.
    pub proxy: Option<String>,
}

impl TopologyPlan {
    /// One local redis-server, no memory limit, no persistence.
    pub fn standalone() -> Self {
        TopologyPlan {
            kind: TopologyKind::Standalone,
            backend: Backend::Process,
            image: None,
            maxmemory: None,
            maxmemory_policy: None,
            persistence: Persistence::None,
            replicas: 2,
            down_after: Duration::from_secs(2),
            failover_timeout: Duration::from_secs(10),
            masters: 3,
            replicas_per_master: 1,
            cluster_node_timeout: Duration::from_secs(2),
            master_name: crate::topology::SENTINEL_MASTER.to_string(),
            toxiproxy_url: None,
            external: ExternalPlan::default(),
        }
    }

    /// The same settings for another topology kind.
    pub fn of_kind(kind: TopologyKind) -> Self {
        TopologyPlan {
            kind,
            ..Self::standalone()
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadPlan {
    pub users: usize,
    /// Target ops/s over all users; `None` = as fast as possible.
    pub rate: Option<f64>,
    pub ramp: Duration,
}

#[derive(Debug, Clone)]
pub enum WorkloadPlan {
    CacheAside(CacheAsidePlan),
    Session(SessionPlan),
    Lock(LockPlan),
    Stampede(StampedePlan),
    RateLimit(RateLimitPlan),
}

impl WorkloadPlan {
    pub fn kind_name(&self) -> &'static str {
        match self {
            WorkloadPlan::CacheAside(_) => "cache-aside",
            WorkloadPlan::Session(_) => "session",
            WorkloadPlan::Lock(_) => "lock",
            WorkloadPlan::Stampede(_) => "stampede",
            WorkloadPlan::RateLimit(_) => "rate-limit",
        }
    }
}

/// A rate limiter's algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitAlgorithm {
    FixedWindow,
    SlidingLog,
    SlidingCounter,
    TokenBucket,
    Gcra,
}

impl RateLimitAlgorithm {
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    }
}

/// What a rate limiter decides when Redis fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisDownPolicy {
    /// Admit, and mark the decision degraded.
    FailOpen,
    /// Deny.
    FailClosed,
}

/// rate-limit: `clients` identities, `limit` requests per `window` each.
#[derive(Debug, Clone)]
pub struct RateLimitPlan {
    pub algorithm: RateLimitAlgorithm,
    pub limit: u64,
    pub window: Duration,
    pub clients: u64,
    /// Zipf exponent of the clients' shares of the requests (0 = even).
    pub skew: f64,
    pub on_error: RedisDownPolicy,
    pub op_timeout: Duration,
}

/// How the stampede workload keeps a hot key's recomputations down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StampedeStrategy {
    None,
    Lock,
    Xfetch,
    TtlJitter,
    #[serde(rename = "singleflight")]
    SingleFlight,
    StaleWhileRevalidate,
}

impl StampedeStrategy {
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    }
}

/// stampede: hot keys with a short TTL in front of a slow origin.
#[derive(Debug, Clone)]
pub struct StampedePlan {
    pub hot_keys: u64,
    pub ttl: Duration,
    pub strategy: StampedeStrategy,
    /// xfetch: how eagerly to recompute early (1.0 = as the paper).
    pub beta: f64,
    /// ttl_jitter: TTL × (1 ± this).
    pub ttl_jitter: f64,
    /// lock, stale_while_revalidate: the recompute lock's TTL.
    pub lock_ttl: Duration,
    /// lock: poll interval of the waiters.
    pub retry: Duration,
    /// stale_while_revalidate: how long a key outlives its freshness.
    pub stale_for: Duration,
    pub value_size: usize,
    pub op_timeout: Duration,
    pub origin: OriginPlan,
}

/// lock: users contend for `locks` Redis locks around a protected resource.
#[derive(Debug, Clone)]
pub struct LockPlan {
    pub locks: u64,
    pub lock_ttl: Duration,
    pub critical_section: Duration,
    pub fencing: bool,
    /// How long a user polls for a held lock before giving up.
    pub acquire_timeout: Duration,
    /// Poll interval while waiting (± 50 % jitter).
    pub retry: Duration,
    pub op_timeout: Duration,
}

/// session: each user owns its share of `sessions`, logs in (writes a
/// session with a TTL) and reads its sessions back.
#[derive(Debug, Clone)]
pub struct SessionPlan {
    pub sessions: u64,
    pub ttl: Duration,
    pub read_ratio: f64,
    pub value_size: usize,
    pub op_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct CacheAsidePlan {
    pub keys: u64,
    pub distribution: Distribution,
    pub zipf_exponent: f64,
    pub value_size: usize,
    pub read_ratio: f64,
    pub ttl: Duration,
    pub ttl_jitter: f64,
    pub op_timeout: Duration,
    pub write_policy: WritePolicy,
    pub origin: OriginPlan,
    pub on_error: ErrorPlan,
}

#[derive(Debug, Clone)]
pub struct OriginPlan {
    /// Mean service time of one origin call.
    pub latency: Duration,
    /// Relative spread of the service time (0.1 = ±10 %, uniform).
    pub jitter: f64,
    /// Calls served at once; more wait.
    pub concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct ErrorPlan {
    pub policy: ErrorPolicy,
    /// Consecutive failures that open the breaker; `None` = no breaker.
    pub breaker_failures: Option<u32>,
    pub breaker_cooldown: Duration,
}

/// Which nodes a fault hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Primary,
    Replicas,
    All,
    Sentinels,
    Node(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Primary => f.write_str("primary"),
            Target::Replicas => f.write_str("replicas"),
            Target::All => f.write_str("all"),
            Target::Sentinels => f.write_str("sentinels"),
            Target::Node(id) => write!(f, "node:{id}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub name: String,
    /// The scenario's `kind` string, for reports.
    pub kind_name: String,
    pub fault: Fault,
    pub target: Target,
    pub at: Duration,
    pub duration: Duration,
}

impl FaultPlan {
    pub fn end(&self) -> Duration {
        self.at + self.duration
    }

    /// Whether the fault acts on the nodes themselves (and so needs
    /// `allow_destructive` on an external topology). Network faults only
    /// touch the traffic through a proxy: none of them is.
    pub fn destructive(&self) -> bool {
        matches!(self.fault, Fault::Node(_))
    }
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Through the proxies in front of the targets.
    Net(NetFault),
    /// To the target nodes themselves.
    Node(NodeFault),
    /// To the application (the workload's users).
    Client(ClientFault),
}

/// A fault that acts on a node rather than on its traffic. Each lasts the
/// fault's `for`, and ends as described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeFault {
    /// SIGKILL (container stop without grace); started again, same port and
    /// data directory, at the end.
    Kill,
    /// SIGTERM, a clean shutdown (RDB written / AOF flushed as configured);
    /// started again at the end.
    Restart,
    /// SIGSTOP (docker pause): alive but silent; SIGCONT at the end.
    Pause,
    /// `CLIENT PAUSE <for> ALL`; `CLIENT UNPAUSE` at the end.
    ClientPause,
    /// `DEBUG SLEEP <for>`: the server blocks, then wakes by itself.
    DebugSleep,
    /// The primary is replaced (see `failover`).
    Failover(FailoverMode),
    /// Memory gets scarce (see `memory`).
    MemoryPressure(MemoryPressure),
}

/// A fault in the application rather than in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFault {
    /// The next lock holder stalls in its critical section for the fault's
    /// length (a stop-the-world GC pause).
    GcPause,
}

/// `memory_pressure`: what changes on each target node for the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPressure {
    /// `maxmemory` during the fault, in bytes.
    pub maxmemory: Option<u64>,
    /// Bytes of ballast keys written at the start.
    pub ballast: Option<u64>,
    /// `maxmemory-policy` during the fault, as Redis spells it.
    pub policy: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverMode {
    /// `SENTINEL FAILOVER`, or `CLUSTER FAILOVER` on a replica.
    Manual,
    /// SIGKILL the primary; started again when the fault ends.
    KillPrimary,
}
