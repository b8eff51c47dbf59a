//! write-behind (and write-through beside it): a cache that takes the
//! writes, in front of the simulated origin (the system of record).
//!
//! Each virtual user owns its share of `keys` (key k belongs to user
//! k mod users), writes them and reads them back (`read_ratio`):
//! - `write-behind`: a write is one MULTI: `SET` the key's new version and
//!   `RPUSH` the write's id to a pending list; the caller is answered when
//!   Redis is. A flusher beside the callers wakes every `flush_interval`,
//!   takes up to `batch` ids at a time (`LPOP <list> <batch>`: once taken,
//!   they are its to deliver) and writes each batch to the origin (one
//!   origin call per batch). After the load it drains the lists (up to
//!   `drain`), then they are read back once.
//! - `write-through`: a write goes to the origin first (one origin call),
//!   then `SET`s the key; a failed SET is not the caller's error (the
//!   origin has the write), but Redis keeps the older version.
//! - a read `GET`s the key; on a miss it reads the origin and fills the
//!   key (`SET NX`). A Redis error is the caller's error.
//!
//! Keys and pending lists are spread over `lanes` hash tags (key k in lane
//! k mod lanes, with its list), so a write's MULTI is one Cluster slot and
//! the lanes spread over the shards.
//!
//! Oracle, exact, from the ledger of writes (a write counts in the phase it
//! was sent in):
//! - `unflushed_lost`: acknowledged to the caller, never received by the
//!   origin, and not in a pending list at the end (a restart without
//!   persistence before the flush);
//! - `unflushed`: still pending at the end (the drain ran out);
//! - `flushed`, `flush_lag_p50` / `_p99` / `_max` (acknowledgement to
//!   origin), `flush_errors` (the flusher's failed commands);
//! - `stale_reads`: a read returned an older version than the owner's last
//!   acknowledged write of that key (what a lost write looks like to a
//!   reader, or a write-through's failed update);
//! - write-through: `cache_update_failures`, and `divergent_keys` /
//!   `divergence_max`: keys whose Redis copy was seen older than the
//!   origin's (by a read, or by the read-back at the end), and for how long
//!   from the failed update until a later update set it right (or the
//!   end: `divergent_at_end`).

mod flusher;
pub mod writes;

use super::conn::RedisConn;
use super::origin::{self, Origin, OriginPlan, RawOrigin, ORIGIN_CALLS};
use super::value;
use super::{keys_of, Choice, Done, Oracle, Spec, Workload, WorkloadCtx};
use crate::recorder::PhaseStats;
use crate::topology::ClientSpec;
use crate::vocab::check::{
    check, fraction_or, positive_dur, positive_int_or, variant_list, Checked,
};
use crate::vocab::expect::Dim;
use crate::vocab::outcome::{Counter, Outcome, Trace, CALLER_ERRORS, REDIS_ERRORS};
use crate::vocab::units::Dur;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use toml::Spanned;
use writes::{Figures, Writes};

/// Writes Redis (write-behind) or the origin (write-through) acknowledged.
pub const WRITES: Counter = Counter("writes");
/// Reads older than the owner's last acknowledged write.
pub const STALE_READS: Counter = Counter("stale_reads");
/// Write-through: the origin committed, the SET failed.
pub const CACHE_UPDATE_FAILURES: Counter = Counter("cache_update_failures");
/// Every counter this workload reports, in report order.
pub const COUNTERS: &[Counter] = &[
    CALLER_ERRORS,
    REDIS_ERRORS,
    WRITES,
    STALE_READS,
    CACHE_UPDATE_FAILURES,
    ORIGIN_CALLS,
];

/// Where a write goes first.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    WriteBehind,
    WriteThrough,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::WriteBehind => "write-behind",
            Mode::WriteThrough => "write-through",
        }
    }
}

#[derive(Debug, Clone)]
pub struct WriteBehindPlan {
    pub mode: Mode,
    pub keys: u64,
    pub read_ratio: f64,
    pub flush_interval: Duration,
    pub batch: usize,
    pub lanes: u64,
    pub value_size: usize,
    pub drain: Duration,
    pub op_timeout: Duration,
    pub origin: OriginPlan,
}

/// The `[workload]` keys of `kind = "write-behind"`.
#[derive(Debug, Deserialize)]
pub struct Raw {
    mode: Option<Mode>,
    /// Several modes: one variant each.
    modes: Option<Spanned<Vec<Mode>>>,
    keys: Option<Spanned<i64>>,
    read_ratio: Option<Spanned<f64>>,
    flush_interval: Option<Spanned<Dur>>,
    batch: Option<Spanned<i64>>,
    lanes: Option<Spanned<i64>>,
    value_size: Option<Spanned<i64>>,
    drain: Option<Spanned<Dur>>,
    op_timeout: Option<Spanned<Dur>>,
    origin: Option<RawOrigin>,
}

/// The most lanes (hash tags) one run spreads its keys over.
pub const MAX_LANES: u64 = 1024;

impl Raw {
    /// Validates the keys; `modes = [...]` gives one variant per mode.
    pub fn plan(self, ctx: &WorkloadCtx) -> Checked<Choice<WriteBehindPlan>> {
        if let Some(list) = &self.modes {
            variant_list(list, self.mode.is_some(), "mode", "modes", Mode::as_str)?;
        }
        let keys = ctx.owned_keys(self.keys.as_ref())?;
        let lanes = positive_int_or(self.lanes.as_ref(), "lanes", 8)?;
        if let Some(l) = &self.lanes {
            check(
                l,
                lanes <= MAX_LANES,
                format!("`lanes` must be at most {MAX_LANES}"),
            )?;
        }
        let value_size = positive_int_or(self.value_size.as_ref(), "value_size", 128)?;
        if let Some(v) = &self.value_size {
            check(v, value_size <= 1 << 20, "`value_size` must be at most 1mb")?;
        }
        let base = WriteBehindPlan {
            mode: self.mode.unwrap_or(Mode::WriteBehind),
            keys,
            read_ratio: fraction_or(self.read_ratio.as_ref(), "read_ratio", 0.5)?,
            flush_interval: positive_dur(
                self.flush_interval.as_ref(),
                "flush_interval",
                Duration::from_secs(1),
            )?,
            batch: positive_int_or(self.batch.as_ref(), "batch", 100)?.min(10_000) as usize,
            lanes,
            value_size: value_size as usize,
            drain: self
                .drain
                .as_ref()
                .map_or(Duration::from_secs(10), |d| d.get_ref().0),
            op_timeout: positive_dur(
                self.op_timeout.as_ref(),
                "op_timeout",
                Duration::from_secs(1),
            )?,
            origin: OriginPlan::from_raw(self.origin.as_ref(), Duration::from_millis(5))?,
        };
        Ok(match self.modes {
            None => Choice::One(base),
            Some(list) => Choice::Compare(
                list.get_ref()
                    .iter()
                    .map(|&mode| {
                        (
                            mode.as_str().to_string(),
                            WriteBehindPlan {
                                mode,
                                ..base.clone()
                            },
                        )
                    })
                    .collect(),
            ),
        })
    }
}

/// Caller ops first, then the Redis commands and origin calls.
pub const OPS: &[&str] = &[
    "write",
    "read",
    "redis_write",
    "redis_get",
    "redis_fill",
    "origin",
];
const CALLER_OPS: &[&str] = &["write", "read"];

/// The metrics this workload reports per phase.
pub const METRICS: &[(&str, Dim)] = &[
    ("caller_errors", Dim::Count),
    ("redis_errors", Dim::Count),
    ("writes", Dim::Count),
    ("origin_calls", Dim::Count),
    ("flushed", Dim::Count),
    ("unflushed_lost", Dim::Count),
    ("unflushed", Dim::Count),
    ("flush_errors", Dim::Count),
    ("flush_lag_p50", Dim::Millis),
    ("flush_lag_p99", Dim::Millis),
    ("flush_lag_max", Dim::Millis),
    ("stale_reads", Dim::Count),
    ("cache_update_failures", Dim::Count),
    ("divergent_keys", Dim::Count),
    ("divergent_at_end", Dim::Count),
    ("divergence_max", Dim::Millis),
];

/// What the scenario layer and the reports know of this workload.
pub const SPEC: Spec = Spec {
    name: "write-behind",
    section: "workload",
    ops: OPS,
    metrics: METRICS,
    counters: COUNTERS,
    keys: keys_of::<Raw>,
};

/// What the callers and the flusher share.
pub(crate) struct Shared {
    plan: WriteBehindPlan,
    client: ClientSpec,
    prefix: String,
    t0: Instant,
    seed: u64,
    writes: Writes,
    origin: Origin,
    stop: AtomicBool,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn key(&self, key: u64) -> String {
        format!("{}{{wb{}}}:k{key}", self.prefix, key % self.plan.lanes)
    }

    fn list(&self, lane: u64) -> String {
        format!("{}{{wb{lane}}}:pending", self.prefix)
    }
}

pub struct WriteBehind {
    sh: Arc<Shared>,
    users: u64,
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

pub struct User {
    conn: RedisConn,
    rng: SmallRng,
    owned: Vec<u64>,
    /// Key → the version of the user's last acknowledged write.
    last: HashMap<u64, u64>,
    /// Key → the last version the user wrote (acknowledged or not).
    next: HashMap<u64, u64>,
}

impl WriteBehind {
    pub fn new(plan: WriteBehindPlan, s: &super::Setup) -> Self {
        let origin = Origin::new(plan.origin.clone(), plan.keys);
        WriteBehind {
            sh: Arc::new(Shared {
                plan,
                client: s.client.clone(),
                prefix: s.prefix.clone(),
                t0: s.t0,
                seed: s.seed,
                writes: Writes::default(),
                origin,
                stop: AtomicBool::new(false),
            }),
            users: s.users.max(1) as u64,
            flusher: Mutex::new(None),
        }
    }

    /// Starts the flusher with the first op (on the load's runtime).
    fn start_flusher(&self) {
        if self.sh.plan.mode != Mode::WriteBehind {
            return;
        }
        let mut slot = self.flusher.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(tokio::spawn(flusher::flush(self.sh.clone())));
        }
    }

    async fn write(&self, user: &mut User, key: u64, trace: &mut Trace) -> Outcome {
        let sh = &self.sh;
        let version = user.next.get(&key).copied().unwrap_or(1) + 1;
        user.next.insert(key, version);
        let id = sh.writes.reserve(key, version, sh.now_us());
        if sh.plan.mode == Mode::WriteThrough {
            return self.write_through(user, key, version, id, trace).await;
        }
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set(sh.key(key), value::encode(version, sh.plan.value_size))
            .ignore()
            .rpush(sh.list(key % sh.plan.lanes), id)
            .ignore();
        match user
            .conn
            .query_pipe::<()>("redis_write", &pipe, trace)
            .await
        {
            Ok(()) => {
                sh.writes.acked(id, sh.now_us());
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

    /// The origin first; then the cache, whose failure the caller does not
    /// see.
    async fn write_through(
        &self,
        user: &mut User,
        key: u64,
        version: u64,
        id: u64,
        trace: &mut Trace,
    ) -> Outcome {
        let sh = &self.sh;
        let start_us = sh.now_us();
        sh.origin.serve(&mut user.rng).await;
        sh.origin.apply(key, version, sh.now_us());
        sh.writes.received(id, sh.now_us());
        origin::file_call(trace, start_us, sh.now_us());
        let committed_us = sh.now_us();
        sh.writes.acked(id, committed_us);
        user.last.insert(key, version);
        trace.counters.push(WRITES);
        let mut set = redis::cmd("SET");
        set.arg(sh.key(key))
            .arg(value::encode(version, sh.plan.value_size));
        match user.conn.query::<()>("redis_write", &set, trace).await {
            Ok(()) => sh.writes.updated(key, version, sh.now_us()),
            Err(_) => {
                trace.counters.push(REDIS_ERRORS);
                trace.counters.push(CACHE_UPDATE_FAILURES);
                sh.writes.update_failed(key, version, committed_us);
            }
        }
        Outcome::Ok
    }

    async fn read(&self, user: &mut User, key: u64, trace: &mut Trace) -> Outcome {
        let sh = &self.sh;
        let mut get = redis::cmd("GET");
        get.arg(sh.key(key));
        let version = match user
            .conn
            .query::<Option<Vec<u8>>>("redis_get", &get, trace)
            .await
        {
            Ok(Some(v)) => value::decode(&v),
            Ok(None) => Some(self.fill(user, key, trace).await),
            Err(class) => {
                trace.counters.push(REDIS_ERRORS);
                trace.counters.push(CALLER_ERRORS);
                return Outcome::Err(class);
            }
        };
        let version = version.unwrap_or(0);
        sh.writes.read(key, version, sh.now_us());
        if user.last.get(&key).is_some_and(|&last| version < last) {
            trace.counters.push(STALE_READS);
        }
        Outcome::Ok
    }

    /// A miss: the origin's version, put back unless a write got there
    /// first.
    async fn fill(&self, user: &mut User, key: u64, trace: &mut Trace) -> u64 {
        let sh = &self.sh;
        let start_us = sh.now_us();
        let version = sh.origin.read(key, &mut user.rng).await;
        origin::file_call(trace, start_us, sh.now_us());
        let mut set = redis::cmd("SET");
        set.arg(sh.key(key))
            .arg(value::encode(version, sh.plan.value_size))
            .arg("NX");
        if user
            .conn
            .query::<Option<String>>("redis_fill", &set, trace)
            .await
            .is_err()
        {
            trace.counters.push(REDIS_ERRORS);
        }
        version
    }
}

impl Drop for WriteBehind {
    fn drop(&mut self) {
        self.sh.stop.store(true, Ordering::Relaxed);
        let slot = self.flusher.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = slot.take() {
            h.abort();
        }
    }
}

impl Workload for WriteBehind {
    type User = User;

    fn new_user(&self, index: usize) -> User {
        let index = index as u64 % self.users;
        User {
            conn: RedisConn::new(&self.sh.client, self.sh.plan.op_timeout, self.sh.t0),
            rng: SmallRng::seed_from_u64(
                self.sh
                    .seed
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .wrapping_add(index),
            ),
            owned: super::owned_by(index, self.users, self.sh.plan.keys),
            last: HashMap::new(),
            next: HashMap::new(),
        }
    }

    async fn op(&self, user: &mut User, _intended_us: u64, trace: &mut Trace) -> Done {
        self.start_flusher();
        let key = user.owned[user.rng.gen_range(0..user.owned.len())];
        if user.last.contains_key(&key) && user.rng.gen_bool(self.sh.plan.read_ratio) {
            Done::new("read", self.read(user, key, trace).await)
        } else {
            Done::new("write", self.write(user, key, trace).await)
        }
    }
}

impl Oracle for WriteBehind {
    fn caller_ops(&self) -> &'static [&'static str] {
        CALLER_OPS
    }

    fn settle(&self, drain: bool) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let handle = self
            .flusher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        Box::pin(flusher::settle(self.sh.clone(), handle, drain))
    }

    fn phase_metrics(&self, phase: &PhaseStats, _baseline: &PhaseStats) -> BTreeMap<String, f64> {
        let mut m = super::counts(phase, COUNTERS);
        figures_into(&self.sh.writes.figures(phase.window_us()), &mut m);
        m
    }
}

/// The ledger's figures as metrics (times in ms).
fn figures_into(f: &Figures, m: &mut BTreeMap<String, f64>) {
    let counts = [
        ("flushed", f.flushed),
        ("unflushed_lost", f.unflushed_lost),
        ("unflushed", f.unflushed),
        ("flush_errors", f.flush_errors),
        ("divergent_keys", f.divergent_keys),
        ("divergent_at_end", f.divergent_at_end),
    ];
    for (k, v) in counts {
        m.insert(k.into(), v as f64);
    }
    m.insert("divergence_max_ms".into(), f.divergence_max_us as f64 / 1e3);
    let l = &f.lags_us;
    if let Some(&max) = l.last() {
        let at = |q: f64| l[((l.len() - 1) as f64 * q).round() as usize] as f64 / 1e3;
        m.insert("flush_lag_p50_ms".into(), at(0.5));
        m.insert("flush_lag_p99_ms".into(), at(0.99));
        m.insert("flush_lag_max_ms".into(), max as f64 / 1e3);
    }
}
