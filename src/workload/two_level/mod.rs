//! two-level: an in-process L1 (bounded, with a TTL) in each application
//! instance, in front of Redis (L2) and the simulated origin, kept fresh by
//! invalidations over pub/sub.
//!
//! The load's users belong to `instances` instances (user u to instance u
//! mod instances), which each hold an L1 and a subscription to the
//! invalidation channel (on the primary, or on the replicas in turn:
//! `subscribe`). A read takes the instance's L1, else L2 (and fills the
//! L1), else the origin (and fills both). A write (each key has one
//! writer, its owner: key k is user k mod users's) goes to the origin,
//! then `SET`s L2, then `PUBLISH`es `<key>:<version>`; every instance
//! holding the key takes the new version from the message (the values are
//! versions, so the message carries the value). An instance that is not
//! subscribed misses it and goes on serving the older version: the classic
//! failure. With `flush_on_reconnect`, an instance drops its L1 when its
//! subscription is lost, reads L2 until it is back, and drops it again
//! then.
//!
//! Oracle, against the origin's versions:
//! - `stale_l1_reads`: an L1 served a version superseded for longer than
//!   `max_staleness`;
//! - `stale_l1_keys`: keys an L1 held superseded for longer than the bound
//!   (judged as each entry leaves or is replaced, and at the end), in the
//!   phase the version was superseded in; `l1_staleness_max` (ms);
//! - `missed_invalidations` and `missed_keys`: updates published that an
//!   instance's subscription never delivered (from the log of what was
//!   published and what each subscription delivered);
//! - `l1_hits`, `l2_hits`, `origin_calls`, `reconnects`, `l1_flushes`.
//!
//! On Cluster, PUBLISH reaches the subscribers of every node; the keys
//! spread over the slots.

mod l1;
mod plan;
mod subscriber;

use super::conn::RedisConn;
use super::origin::{self, Origin, ORIGIN_CALLS};
use super::{keys_of, Done, Oracle, Spec, Workload};
use crate::recorder::PhaseStats;
use crate::topology::ClientSpec;
use crate::vocab::expect::Dim;
use crate::vocab::outcome::{Counter, Outcome, Trace, CALLER_ERRORS, REDIS_ERRORS};
use l1::{HeldStale, History, L1};
pub use plan::{Raw, SubscribeTo, TwoLevelPlan};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long the first ops wait for every instance to subscribe.
const STARTUP: Duration = Duration::from_secs(5);
/// How long invalidations in flight at the end may take to arrive.
const SETTLE: Duration = Duration::from_millis(1000);

pub const L1_HITS: Counter = Counter("l1_hits");
pub const L2_HITS: Counter = Counter("l2_hits");
pub const WRITES: Counter = Counter("writes");
/// L1 reads of a version superseded for longer than the bound.
pub const STALE_L1_READS: Counter = Counter("stale_l1_reads");
/// Every counter this workload reports, in report order.
pub const COUNTERS: &[Counter] = &[
    CALLER_ERRORS,
    REDIS_ERRORS,
    WRITES,
    L1_HITS,
    L2_HITS,
    ORIGIN_CALLS,
    STALE_L1_READS,
];

/// Caller ops first, then the Redis commands and origin calls.
pub const OPS: &[&str] = &[
    "read",
    "write",
    "redis_get",
    "redis_set",
    "redis_publish",
    "origin",
];
const CALLER_OPS: &[&str] = &["read", "write"];

/// The metrics this workload reports per phase.
pub const METRICS: &[(&str, Dim)] = &[
    ("caller_errors", Dim::Count),
    ("redis_errors", Dim::Count),
    ("writes", Dim::Count),
    ("l1_hits", Dim::Count),
    ("l2_hits", Dim::Count),
    ("origin_calls", Dim::Count),
    ("stale_l1_reads", Dim::Count),
    ("stale_l1_keys", Dim::Count),
    ("l1_staleness_max", Dim::Millis),
    ("missed_invalidations", Dim::Count),
    ("missed_keys", Dim::Count),
    ("reconnects", Dim::Count),
    ("l1_flushes", Dim::Count),
];

/// What the scenario layer and the reports know of this workload.
pub const SPEC: Spec = Spec {
    name: "two-level",
    section: "workload",
    ops: OPS,
    metrics: METRICS,
    counters: COUNTERS,
    keys: keys_of::<Raw>,
};

/// One application instance: its L1 and the state of its subscription.
pub(crate) struct Instance {
    l1: Mutex<L1>,
    subscribed: AtomicBool,
    /// Subscribed at least once.
    ever: AtomicBool,
    reconnects: Mutex<Vec<u64>>,
    flushes: Mutex<Vec<u64>>,
    /// Every invalidation its subscription delivered: (key, version).
    received: Mutex<HashSet<(u64, u64)>>,
}

impl Instance {
    fn l1(&self) -> std::sync::MutexGuard<'_, L1> {
        self.l1.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An invalidation message arrived.
    fn update(&self, sh: &Shared, key: u64, version: u64) {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((key, version));
        let now = sh.now_us();
        let mut out = Vec::new();
        self.l1().update(key, version, now, &sh.history(), &mut out);
        sh.held_stale(out);
    }

    fn flush(&self, sh: &Shared) {
        let now = sh.now_us();
        let mut out = Vec::new();
        self.l1().clear(now, &sh.history(), &mut out);
        self.flushes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(now);
        sh.held_stale(out);
    }
}

/// What the callers and the subscribers share.
pub(crate) struct Shared {
    plan: TwoLevelPlan,
    client: ClientSpec,
    prefix: String,
    channel: String,
    t0: Instant,
    origin: Origin,
    history: Mutex<History>,
    instances: Vec<Instance>,
    /// Keys held superseded past the bound.
    stale: Mutex<Vec<HeldStale>>,
    /// Every invalidation published: (when, key, version).
    published: Mutex<Vec<(u64, u64, u64)>>,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bound_us(&self) -> u64 {
        self.plan.max_staleness.as_micros() as u64
    }

    fn held_stale(&self, out: Vec<HeldStale>) {
        let bound = self.bound_us();
        let past: Vec<HeldStale> = out.into_iter().filter(|s| s.for_us > bound).collect();
        if !past.is_empty() {
            self.stale
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(past);
        }
    }

    fn key(&self, key: u64) -> String {
        format!("{}tl:k{key}", self.prefix)
    }
}

fn version_of(value: &str) -> Option<u64> {
    value.parse().ok()
}

pub struct TwoLevel {
    sh: Arc<Shared>,
    users: u64,
    seed: u64,
    subscribers: Mutex<Option<Vec<tokio::task::JoinHandle<()>>>>,
    /// Every instance subscribed (or the startup wait ran out).
    ready: AtomicBool,
}

pub struct User {
    conn: RedisConn,
    instance: usize,
    rng: SmallRng,
    owned: Vec<u64>,
}

impl TwoLevel {
    pub fn new(plan: TwoLevelPlan, s: &super::Setup) -> Self {
        let ttl_us = plan.l1_ttl.as_micros() as u64;
        let instances = (0..plan.instances)
            .map(|_| Instance {
                l1: Mutex::new(L1::new(plan.l1_size, ttl_us)),
                subscribed: AtomicBool::new(false),
                ever: AtomicBool::new(false),
                reconnects: Mutex::new(Vec::new()),
                flushes: Mutex::new(Vec::new()),
                received: Mutex::new(HashSet::new()),
            })
            .collect();
        TwoLevel {
            sh: Arc::new(Shared {
                origin: Origin::new(plan.origin.clone(), plan.keys),
                channel: format!("{}tl:invalidate", s.prefix),
                plan,
                client: s.client.clone(),
                prefix: s.prefix.clone(),
                t0: s.t0,
                history: Mutex::new(History::default()),
                instances,
                stale: Mutex::new(Vec::new()),
                published: Mutex::new(Vec::new()),
            }),
            users: s.users.max(1) as u64,
            seed: s.seed,
            subscribers: Mutex::new(None),
            ready: AtomicBool::new(false),
        }
    }

    /// Starts the subscribers with the first op (on the load's runtime)
    /// and waits, up to STARTUP, for every one to be subscribed.
    async fn start_subscribers(&self) {
        if self.ready.load(Ordering::Acquire) {
            return;
        }
        {
            let mut slot = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(
                    (0..self.sh.plan.instances)
                        .map(|i| tokio::spawn(subscriber::subscribe(self.sh.clone(), i)))
                        .collect(),
                );
            }
        }
        // Every op waits, not only the first: a write published before an
        // instance subscribed would be missed at the start.
        let until = Instant::now() + STARTUP;
        while Instant::now() < until
            && !self
                .sh
                .instances
                .iter()
                .all(|i| i.ever.load(Ordering::Acquire))
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.ready.store(true, Ordering::Release);
    }

    async fn read(&self, user: &mut User, key: u64, trace: &mut Trace) -> Outcome {
        let sh = &self.sh;
        let inst = &sh.instances[user.instance];
        let use_l1 = !sh.plan.flush_on_reconnect || inst.subscribed.load(Ordering::Acquire);
        if use_l1 {
            let now = sh.now_us();
            let mut out = Vec::new();
            let held = inst.l1().get(key, now, &sh.history(), &mut out);
            sh.held_stale(out);
            if let Some(version) = held {
                trace.counters.push(L1_HITS);
                let behind = sh
                    .history()
                    .superseded_at(key, version)
                    .map(|t| now.saturating_sub(t));
                if behind.is_some_and(|b| b > sh.bound_us()) {
                    trace.counters.push(STALE_L1_READS);
                }
                return Outcome::Ok;
            }
        }
        let mut get = redis::cmd("GET");
        get.arg(sh.key(key));
        let version = match user
            .conn
            .query::<Option<String>>("redis_get", &get, trace)
            .await
        {
            Ok(Some(v)) => {
                trace.counters.push(L2_HITS);
                version_of(&v).unwrap_or(0)
            }
            Ok(None) => {
                let start = sh.now_us();
                let v = sh.origin.read(key, &mut user.rng).await;
                origin::file_call(trace, start, sh.now_us());
                let mut set = redis::cmd("SET");
                set.arg(sh.key(key)).arg(v).arg("NX");
                if user
                    .conn
                    .query::<Option<String>>("redis_set", &set, trace)
                    .await
                    .is_err()
                {
                    trace.counters.push(REDIS_ERRORS);
                }
                v
            }
            Err(class) => {
                trace.counters.push(REDIS_ERRORS);
                trace.counters.push(CALLER_ERRORS);
                return Outcome::Err(class);
            }
        };
        if !sh.plan.flush_on_reconnect || inst.subscribed.load(Ordering::Acquire) {
            let mut out = Vec::new();
            inst.l1()
                .put(key, version, sh.now_us(), &sh.history(), &mut out);
            sh.held_stale(out);
        }
        Outcome::Ok
    }

    async fn write(&self, user: &mut User, key: u64, trace: &mut Trace) -> Outcome {
        let sh = &self.sh;
        let start = sh.now_us();
        let version = sh.origin.write(key, start, &mut user.rng).await;
        let committed = sh.now_us();
        sh.history().written(key, version, committed);
        origin::file_call(trace, start, committed);
        let mut set = redis::cmd("SET");
        set.arg(sh.key(key)).arg(version);
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&sh.channel).arg(format!("{key}:{version}"));
        let sent = match user.conn.query::<()>("redis_set", &set, trace).await {
            Ok(()) => {
                user.conn
                    .query::<u64>("redis_publish", &publish, trace)
                    .await
            }
            Err(class) => Err(class),
        };
        match sent {
            Ok(_) => {
                trace.counters.push(WRITES);
                let mut published = sh.published.lock().unwrap_or_else(|p| p.into_inner());
                published.push((committed, key, version));
                Outcome::Ok
            }
            Err(class) => {
                trace.counters.push(REDIS_ERRORS);
                trace.counters.push(CALLER_ERRORS);
                Outcome::Err(class)
            }
        }
    }

    /// The invalidations published in a phase that an instance's
    /// subscription never delivered, and their distinct keys.
    fn missed(&self, within: &dyn Fn(u64) -> bool) -> (u64, usize) {
        let published = self.sh.published.lock().unwrap_or_else(|p| p.into_inner());
        let (mut missed, mut keys) = (0, HashSet::new());
        for inst in &self.sh.instances {
            let got = inst.received.lock().unwrap_or_else(|p| p.into_inner());
            for &(_, key, version) in published.iter().filter(|p| within(p.0)) {
                if !got.contains(&(key, version)) {
                    missed += 1;
                    keys.insert(key);
                }
            }
        }
        (missed, keys.len())
    }

    /// After the load: lets invalidations in flight arrive, stops the
    /// subscribers and, unless interrupted, judges every L1 as it stands.
    async fn stop(&self, drain: bool) {
        if drain {
            tokio::time::sleep(SETTLE).await;
        }
        let handles = self
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        for h in handles.into_iter().flatten() {
            h.abort();
        }
        if drain {
            self.audit();
        }
    }

    /// The end: every L1 judged as it stands.
    fn audit(&self) {
        for inst in &self.sh.instances {
            let now = self.sh.now_us();
            let mut out = Vec::new();
            inst.l1().clear(now, &self.sh.history(), &mut out);
            self.sh.held_stale(out);
        }
    }
}

impl Drop for TwoLevel {
    fn drop(&mut self) {
        let slot = self
            .subscribers
            .get_mut()
            .unwrap_or_else(|p| p.into_inner());
        for h in slot.take().into_iter().flatten() {
            h.abort();
        }
    }
}

impl Workload for TwoLevel {
    type User = User;

    fn new_user(&self, index: usize) -> User {
        let index = index as u64 % self.users;
        User {
            conn: RedisConn::new(&self.sh.client, self.sh.plan.op_timeout, self.sh.t0),
            instance: index as usize % self.sh.plan.instances,
            rng: SmallRng::seed_from_u64(
                self.seed
                    .wrapping_mul(0x94d0_49bb_1331_11eb)
                    .wrapping_add(index),
            ),
            owned: super::owned_by(index, self.users, self.sh.plan.keys),
        }
    }

    async fn op(&self, user: &mut User, _intended_us: u64, trace: &mut Trace) -> Done {
        self.start_subscribers().await;
        if user.rng.gen_bool(self.sh.plan.read_ratio) {
            let key = user.rng.gen_range(0..self.sh.plan.keys);
            Done::new("read", self.read(user, key, trace).await)
        } else {
            let key = user.owned[user.rng.gen_range(0..user.owned.len())];
            Done::new("write", self.write(user, key, trace).await)
        }
    }
}

impl Oracle for TwoLevel {
    fn caller_ops(&self) -> &'static [&'static str] {
        CALLER_OPS
    }

    fn settle(&self, drain: bool) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.stop(drain))
    }

    fn phase_metrics(&self, phase: &PhaseStats, _baseline: &PhaseStats) -> BTreeMap<String, f64> {
        let mut m = super::counts(phase, COUNTERS);
        let (from, to) = phase.window_us();
        let within = |t: u64| (from..to).contains(&t);
        let stale = self.sh.stale.lock().unwrap_or_else(|p| p.into_inner());
        let keys: HashSet<u64> = stale
            .iter()
            .filter(|s| within(s.since_us))
            .map(|s| s.key)
            .collect();
        let max = stale
            .iter()
            .filter(|s| within(s.since_us))
            .map(|s| s.for_us)
            .max()
            .unwrap_or(0);
        m.insert("stale_l1_keys".into(), keys.len() as f64);
        m.insert("l1_staleness_max_ms".into(), max as f64 / 1e3);
        let (missed, missed_keys) = self.missed(&within);
        m.insert("missed_invalidations".into(), missed as f64);
        m.insert("missed_keys".into(), missed_keys as f64);
        let count = |times: &Mutex<Vec<u64>>| {
            let times = times.lock().unwrap_or_else(|p| p.into_inner());
            times.iter().filter(|&&t| within(t)).count()
        };
        let reconnects: usize = self.sh.instances.iter().map(|i| count(&i.reconnects)).sum();
        let flushes: usize = self.sh.instances.iter().map(|i| count(&i.flushes)).sum();
        m.insert("reconnects".into(), reconnects as f64);
        m.insert("l1_flushes".into(), flushes as f64);
        m
    }
}
