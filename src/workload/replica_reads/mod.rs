//! replica-reads: writes to the primary, reads from the replicas ("L1
//! reads from replica, writes to primary"), the pattern that cuts read
//! latency and load until replication falls behind.
//!
//! Each virtual user owns its share of `keys` (key k is user k mod
//! users's), writes them to the primary and reads them back from the
//! replicas in turn. Beside the callers, a heartbeat writes the primary's
//! clock to one key every `heartbeat`; each replica read fetches that key
//! with the data (`MGET key heartbeat`), so the read knows how far behind
//! its copy was. With `max_staleness` and `fallback`, a read whose copy is
//! further behind than the bound (or from a replica that failed) is read
//! again from the primary.
//!
//! Oracle (a read counts in the phase it was sent in):
//! - `stale_reads`: a read returned an older version than the owner's
//!   last acknowledged write of the key (exact);
//! - `staleness_p50` / `_p99` / `_max`: how far behind the primary the
//!   served copies were (ms; the primary's own: 0), to the heartbeat's
//!   period;
//! - `beyond_bound`: served reads staler than `max_staleness`;
//! - `replica_reads`, `fallback_reads` (read again from the primary),
//!   `primary_reads` (no replica known), `writes`.
//!
//! Replicas are found in the primary's `INFO replication` (they announce
//! their proxies) on replicated and Sentinel topologies. On a Cluster they
//! are the replicas `CLUSTER NODES` lists for the master of each lane's
//! slot (`lanes`: the keys spread over 8 hash tags, each with its own
//! heartbeat), read with `READONLY`.

pub(crate) mod heartbeat;
mod lanes;
pub mod served;

use super::conn::RedisConn;
use super::value;
use super::{bool_choice, keys_of, Choice, Done, OneOrMany, Oracle, Spec, Workload, WorkloadCtx};
use crate::recorder::PhaseStats;
use crate::topology::ClientSpec;
use crate::vocab::check::{check, invalid, positive_dur, positive_int_or, Checked};
use crate::vocab::expect::Dim;
use crate::vocab::outcome::{Counter, Outcome, Trace, CALLER_ERRORS, REDIS_ERRORS};
use crate::vocab::units::Dur;
use lanes::Lane;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use served::{quantile, Served};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use toml::Spanned;

/// Writes the primary acknowledged.
pub const WRITES: Counter = Counter("writes");
/// Reads older than the owner's last acknowledged write.
pub const STALE_READS: Counter = Counter("stale_reads");
/// Reads served by a replica.
pub const REPLICA_READS: Counter = Counter("replica_reads");
/// Reads sent again to the primary: the replica was too far behind, or
/// failed.
pub const FALLBACK_READS: Counter = Counter("fallback_reads");
/// Reads sent to the primary because no replica was known.
pub const PRIMARY_READS: Counter = Counter("primary_reads");
/// Every counter this workload reports, in report order.
pub const COUNTERS: &[Counter] = &[
    CALLER_ERRORS,
    REDIS_ERRORS,
    WRITES,
    STALE_READS,
    REPLICA_READS,
    FALLBACK_READS,
    PRIMARY_READS,
];

#[derive(Debug, Clone)]
pub struct ReplicaReadsPlan {
    pub keys: u64,
    pub read_ratio: f64,
    pub value_size: usize,
    pub heartbeat: Duration,
    pub max_staleness: Option<Duration>,
    pub fallback: bool,
    pub op_timeout: Duration,
}

/// The `[workload]` keys of `kind = "replica-reads"`.
#[derive(Debug, Deserialize)]
pub struct Raw {
    keys: Option<Spanned<i64>>,
    read_ratio: Option<Spanned<f64>>,
    value_size: Option<Spanned<i64>>,
    heartbeat: Option<Spanned<Dur>>,
    max_staleness: Option<Spanned<Dur>>,
    /// One value, or a list: one variant per value.
    fallback: Option<Spanned<OneOrMany<bool>>>,
    op_timeout: Option<Spanned<Dur>>,
}

impl Raw {
    /// Validates the keys; `fallback = [false, true]` gives the variants
    /// `fallback-off` and `fallback-on`.
    pub fn plan(self, ctx: &WorkloadCtx) -> Checked<Choice<ReplicaReadsPlan>> {
        self.check_replicas(ctx)?;
        let keys = ctx.owned_keys(self.keys.as_ref())?;
        let value_size = positive_int_or(self.value_size.as_ref(), "value_size", 128)?;
        if let Some(v) = &self.value_size {
            check(v, value_size <= 1 << 20, "`value_size` must be at most 1mb")?;
        }
        if let (Some(f), None) = (&self.fallback, &self.max_staleness) {
            return Err(invalid(
                f.span(),
                "`fallback` needs `max_staleness`: the bound past which a read goes to the primary",
            ));
        }
        let base = ReplicaReadsPlan {
            keys,
            read_ratio: crate::vocab::check::fraction_or(
                self.read_ratio.as_ref(),
                "read_ratio",
                0.8,
            )?,
            value_size: value_size as usize,
            heartbeat: positive_dur(
                self.heartbeat.as_ref(),
                "heartbeat",
                Duration::from_millis(10),
            )?,
            max_staleness: match &self.max_staleness {
                Some(m) => Some(positive_dur(Some(m), "max_staleness", Duration::ZERO)?),
                None => None,
            },
            fallback: self.max_staleness.is_some(),
            op_timeout: positive_dur(
                self.op_timeout.as_ref(),
                "op_timeout",
                Duration::from_millis(500),
            )?,
        };
        bool_choice(self.fallback.as_ref(), "fallback", base, |p, on| {
            p.fallback = on
        })
    }

    /// Replica reads need replicas: not on a standalone node.
    fn check_replicas(&self, ctx: &WorkloadCtx) -> Checked<()> {
        let at = self
            .max_staleness
            .as_ref()
            .map_or(ctx.kind_span.clone(), |m| m.span());
        if ctx.replicas == 0 {
            return Err(invalid(
                at,
                format!(
                    "{} has no replicas to read from: use a replicated or sentinel topology with `replicas` of 1 or more, or a cluster with `replicas_per_master` of 1 or more",
                    match self.max_staleness {
                        Some(_) => "`max_staleness` bounds replica reads, but this topology",
                        None => "this topology",
                    }
                ),
            ));
        }
        Ok(())
    }
}

/// Caller ops first, then the Redis commands.
pub const OPS: &[&str] = &[
    "write",
    "read",
    "redis_set",
    "redis_replica_mget",
    "redis_primary_get",
];
const CALLER_OPS: &[&str] = &["write", "read"];

/// The metrics this workload reports per phase.
pub const METRICS: &[(&str, Dim)] = &[
    ("caller_errors", Dim::Count),
    ("redis_errors", Dim::Count),
    ("writes", Dim::Count),
    ("stale_reads", Dim::Count),
    ("replica_reads", Dim::Count),
    ("fallback_reads", Dim::Count),
    ("primary_reads", Dim::Count),
    ("beyond_bound", Dim::Count),
    ("staleness_p50", Dim::Millis),
    ("staleness_p99", Dim::Millis),
    ("staleness_max", Dim::Millis),
];

/// What the scenario layer and the reports know of this workload.
pub const SPEC: Spec = Spec {
    name: "replica-reads",
    section: "workload",
    ops: OPS,
    metrics: METRICS,
    counters: COUNTERS,
    keys: keys_of::<Raw>,
};

/// What the callers and the heartbeat share.
pub(crate) struct Shared {
    plan: ReplicaReadsPlan,
    client: ClientSpec,
    lanes: Vec<Lane>,
    t0: Instant,
    served: Served,
    stop: AtomicBool,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The lane of `key`: its hash tag and heartbeat.
    fn lane(&self, key: u64) -> &Lane {
        &self.lanes[key as usize % self.lanes.len()]
    }

    fn key(&self, key: u64) -> String {
        self.lane(key).key(key)
    }

    fn cluster(&self) -> bool {
        self.lanes[0].slot.is_some()
    }
}

pub struct ReplicaReads {
    sh: Arc<Shared>,
    users: u64,
    seed: u64,
    /// The heartbeats and the discovery, once started.
    beside: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

pub struct User {
    primary: RedisConn,
    replicas: HashMap<SocketAddr, RedisConn>,
    turn: usize,
    rng: SmallRng,
    owned: Vec<u64>,
    /// Key → the version of the user's last acknowledged write.
    last: HashMap<u64, u64>,
    /// Key → the last version the user wrote.
    next: HashMap<u64, u64>,
}

/// What a replica's copy said.
enum ReplicaRead {
    /// The value's version (0: none), and how far behind the copy was (µs;
    /// None: no heartbeat there yet).
    Got(u64, Option<u64>),
    Failed(crate::vocab::outcome::ErrorClass),
}

impl ReplicaReads {
    pub fn new(plan: ReplicaReadsPlan, s: &super::Setup) -> Self {
        ReplicaReads {
            sh: Arc::new(Shared {
                lanes: lanes::lanes(&s.prefix, matches!(s.client, ClientSpec::Cluster { .. })),
                plan,
                client: s.client.clone(),
                t0: s.t0,
                served: Served::default(),
                stop: AtomicBool::new(false),
            }),
            users: s.users.max(1) as u64,
            seed: s.seed,
            beside: Mutex::new(Vec::new()),
        }
    }

    /// Starts the heartbeats and the discovery with the first op (on the
    /// load's runtime).
    fn start_heartbeat(&self) {
        let mut beside = self.beside.lock().unwrap_or_else(|p| p.into_inner());
        if beside.is_empty() {
            beside.push(tokio::spawn(heartbeat::discover(self.sh.clone())));
            for lane in 0..self.sh.lanes.len() {
                beside.push(tokio::spawn(heartbeat::beat(self.sh.clone(), lane)));
            }
        }
    }

    async fn write(&self, user: &mut User, key: u64, trace: &mut Trace) -> Outcome {
        let sh = &self.sh;
        let version = user.next.get(&key).copied().unwrap_or(0) + 1;
        user.next.insert(key, version);
        let mut set = redis::cmd("SET");
        set.arg(sh.key(key))
            .arg(value::encode(version, sh.plan.value_size));
        match user.primary.query::<()>("redis_set", &set, trace).await {
            Ok(()) => {
                user.last.insert(key, version);
                trace.counters.push(WRITES);
                Outcome::Ok
            }
            Err(class) => {
                trace.counters.push(REDIS_ERRORS);
                trace.counters.push(CALLER_ERRORS);
                Outcome::Err(class)
            }
        }
    }

    /// The key and the heartbeat from the next replica in turn.
    async fn ask_replica(
        &self,
        user: &mut User,
        addr: SocketAddr,
        key: u64,
        trace: &mut Trace,
    ) -> ReplicaRead {
        let sh = &self.sh;
        let conn = user.replicas.entry(addr).or_insert_with(|| {
            RedisConn::new(&ClientSpec::Direct(addr), sh.plan.op_timeout, sh.t0)
        });
        let mut mget = redis::pipe();
        if sh.cluster() {
            // A Cluster replica serves reads only on a READONLY
            // connection; sent with each read, it holds after a reconnect.
            mget.cmd("READONLY").ignore();
        }
        mget.cmd("MGET")
            .arg(sh.key(key))
            .arg(&sh.lane(key).heartbeat_key);
        let sent_us = sh.now_us();
        match conn
            .query_pipe::<((Option<Vec<u8>>, Option<u64>),)>("redis_replica_mget", &mget, trace)
            .await
            .map(|(got,)| got)
        {
            Ok((value, beat)) => ReplicaRead::Got(
                value.as_deref().and_then(value::decode).unwrap_or(0),
                beat.map(|b| sent_us.saturating_sub(b)),
            ),
            Err(class) => ReplicaRead::Failed(class),
        }
    }

    async fn read(&self, user: &mut User, key: u64, trace: &mut Trace) -> Outcome {
        let sh = &self.sh;
        let replicas = sh.lane(key).replicas();
        let sent_us = sh.now_us();
        let mut served = None;
        if !replicas.is_empty() {
            let addr = replicas[user.turn % replicas.len()];
            user.turn = user.turn.wrapping_add(1);
            match self.ask_replica(user, addr, key, trace).await {
                ReplicaRead::Got(version, behind) => {
                    let bound = sh.plan.max_staleness.map(|m| m.as_micros() as u64);
                    let too_far = match (bound, behind) {
                        (Some(b), Some(behind)) => behind > b,
                        (Some(_), None) => true,
                        (None, _) => false,
                    };
                    if !(too_far && sh.plan.fallback) {
                        served = Some((version, behind.unwrap_or(sent_us)));
                    }
                }
                ReplicaRead::Failed(class) => {
                    trace.counters.push(REDIS_ERRORS);
                    if !sh.plan.fallback {
                        trace.counters.push(CALLER_ERRORS);
                        return Outcome::Err(class);
                    }
                }
            }
        }
        if let Some((version, behind)) = served {
            trace.counters.push(REPLICA_READS);
            return self.served(user, key, version, behind, sent_us, trace);
        }
        trace.counters.push(if replicas.is_empty() {
            PRIMARY_READS
        } else {
            FALLBACK_READS
        });
        let mut get = redis::cmd("GET");
        get.arg(sh.key(key));
        match user
            .primary
            .query::<Option<Vec<u8>>>("redis_primary_get", &get, trace)
            .await
        {
            Ok(v) => {
                let version = v.as_deref().and_then(value::decode).unwrap_or(0);
                self.served(user, key, version, 0, sent_us, trace)
            }
            Err(class) => {
                trace.counters.push(REDIS_ERRORS);
                trace.counters.push(CALLER_ERRORS);
                Outcome::Err(class)
            }
        }
    }

    /// A read served `version`, from a copy `behind_us` behind.
    fn served(
        &self,
        user: &User,
        key: u64,
        version: u64,
        behind_us: u64,
        sent_us: u64,
        trace: &mut Trace,
    ) -> Outcome {
        self.sh.served.read(sent_us, behind_us);
        if user.last.get(&key).is_some_and(|&last| version < last) {
            trace.counters.push(STALE_READS);
        }
        Outcome::Ok
    }
}

impl Drop for ReplicaReads {
    fn drop(&mut self) {
        self.sh.stop.store(true, Ordering::Relaxed);
        let beside = self.beside.get_mut().unwrap_or_else(|p| p.into_inner());
        for h in beside.drain(..) {
            h.abort();
        }
    }
}

impl Workload for ReplicaReads {
    type User = User;

    fn new_user(&self, index: usize) -> User {
        let index = index as u64 % self.users;
        User {
            primary: RedisConn::new(&self.sh.client, self.sh.plan.op_timeout, self.sh.t0),
            replicas: HashMap::new(),
            turn: index as usize,
            rng: SmallRng::seed_from_u64(
                self.seed
                    .wrapping_mul(0xd134_2543_de82_ef95)
                    .wrapping_add(index),
            ),
            owned: super::owned_by(index, self.users, self.sh.plan.keys),
            last: HashMap::new(),
            next: HashMap::new(),
        }
    }

    async fn op(&self, user: &mut User, _intended_us: u64, trace: &mut Trace) -> Done {
        self.start_heartbeat();
        let key = user.owned[user.rng.gen_range(0..user.owned.len())];
        if user.last.contains_key(&key) && user.rng.gen_bool(self.sh.plan.read_ratio) {
            Done::new("read", self.read(user, key, trace).await)
        } else {
            Done::new("write", self.write(user, key, trace).await)
        }
    }
}

impl Oracle for ReplicaReads {
    fn caller_ops(&self) -> &'static [&'static str] {
        CALLER_OPS
    }

    fn phase_metrics(&self, phase: &PhaseStats, _baseline: &PhaseStats) -> BTreeMap<String, f64> {
        let mut m = super::counts(phase, COUNTERS);
        let bound = self.sh.plan.max_staleness.map(|b| b.as_micros() as u64);
        let f = self.sh.served.figures(phase.window_us(), bound);
        m.insert("beyond_bound".into(), f.beyond_bound as f64);
        for (name, q) in [
            ("staleness_p50_ms", 0.5),
            ("staleness_p99_ms", 0.99),
            ("staleness_max_ms", 1.0),
        ] {
            if let Some(v) = quantile(&f.behind_us, q) {
                m.insert(name.into(), v as f64 / 1e3);
            }
        }
        m
    }
}
