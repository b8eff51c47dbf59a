//! queue: a job queue on a Redis Stream with a consumer group, the pattern
//! teams keep on its own instance because it must not lose work.
//!
//! The load engine's users are the producers: each op `XADD`s one job
//! carrying its id and a checksum (`enqueue`, trimmed with `MAXLEN ~` when
//! `maxlen` is set). `consumers` consumers run beside them for the whole
//! run: `XREADGROUP` a `batch`, "process" each job for `process_time`,
//! commit it (with `idempotency`, `SET <marker> NX` first: a marker that
//! exists turns the delivery away), then `XACK`. Every `claim_after / 2`
//! each consumer `XAUTOCLAIM`s the entries another has held for longer
//! than `claim_after`, as a dead consumer's would be. After the load the
//! consumers drain the stream (up to `drain`), then the stream's content is
//! read back once.
//!
//! Oracle, exact, from the producers' ledger of acknowledged XADDs (a job
//! counts in the phase its XADD was sent in; what consumers ran into, in
//! the phase it happened in):
//! - `lost_jobs`: acknowledged, never processed, and no longer in the
//!   stream, unless a declared `maxlen` trimmed it (`trimmed`: older than
//!   the stream's oldest entry at the end; trimming it unprocessed is
//!   still loss, reported apart);
//! - `backlog`: acknowledged, not processed, still in the stream;
//! - `duplicates`: deliveries of a job already processed that reached the
//!   commit step, split into `duplicates_caught` (the idempotency record
//!   turned them away) and `duplicates_uncaught` (the effect ran again);
//! - `max_lag_jobs` / `max_lag_age`: the most jobs waiting at once, and
//!   the longest any waited; `job_latency_p50` / `_p99`: acknowledgement
//!   to processing;
//! - `reclaimed`, `consumer_errors`, `corrupt_jobs` (a checksum failed).
//!
//! A `gc_pause` fault stalls the next consumer to take a job for the
//! fault's length; longer than `claim_after`, another consumer reclaims
//! the job and it is processed twice.
//!
//! The stream is one key, so on Cluster it lives in one slot (one shard).

mod consumer;
pub mod jobs;

use super::conn::RedisConn;
use super::lock::GcPause;
use super::{keys_of, Choice, Done, OneOrMany, Oracle, Spec, Workload};
use crate::recorder::PhaseStats;
use crate::topology::ClientSpec;
use crate::vocab::check::{check, positive_dur, positive_int_or, Checked};
use crate::vocab::expect::Dim;
use crate::vocab::outcome::{Counter, Outcome, Trace, CALLER_ERRORS, REDIS_ERRORS};
use crate::vocab::units::Dur;
use jobs::{Figures, Jobs};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use toml::Spanned;

/// Jobs whose XADD was acknowledged.
pub const ENQUEUED: Counter = Counter("enqueued");
/// Every counter this workload reports, in report order.
pub const COUNTERS: &[Counter] = &[CALLER_ERRORS, REDIS_ERRORS, ENQUEUED];

#[derive(Debug, Clone)]
pub struct QueuePlan {
    pub consumers: usize,
    pub process_time: Duration,
    pub claim_after: Duration,
    pub batch: usize,
    pub maxlen: Option<u64>,
    pub idempotency: bool,
    pub payload_size: usize,
    pub drain: Duration,
    pub op_timeout: Duration,
}

/// The `[workload]` keys of `kind = "queue"`.
#[derive(Debug, Deserialize)]
pub struct Raw {
    consumers: Option<Spanned<i64>>,
    process_time: Option<Spanned<Dur>>,
    claim_after: Option<Spanned<Dur>>,
    batch: Option<Spanned<i64>>,
    maxlen: Option<Spanned<i64>>,
    /// One value, or a list: one variant per value.
    idempotency: Option<Spanned<OneOrMany<bool>>>,
    payload_size: Option<Spanned<i64>>,
    drain: Option<Spanned<Dur>>,
    op_timeout: Option<Spanned<Dur>>,
}

/// The most consumers one run starts.
pub const MAX_CONSUMERS: u64 = 256;

impl Raw {
    /// Validates the keys; `idempotency = [false, true]` gives the
    /// variants `idempotency-off` and `idempotency-on`.
    pub fn plan(self) -> Checked<Choice<QueuePlan>> {
        let consumers = positive_int_or(self.consumers.as_ref(), "consumers", 2)?;
        if let Some(c) = &self.consumers {
            check(
                c,
                consumers <= MAX_CONSUMERS,
                format!("`consumers` must be at most {MAX_CONSUMERS}"),
            )?;
        }
        let payload_size = positive_int_or(self.payload_size.as_ref(), "payload_size", 128)?;
        if let Some(p) = &self.payload_size {
            check(
                p,
                payload_size <= 1 << 20,
                "`payload_size` must be at most 1mb",
            )?;
        }
        let base = QueuePlan {
            consumers: consumers as usize,
            process_time: self
                .process_time
                .as_ref()
                .map_or(Duration::from_millis(5), |d| d.get_ref().0),
            claim_after: positive_dur(
                self.claim_after.as_ref(),
                "claim_after",
                Duration::from_secs(1),
            )?,
            batch: positive_int_or(self.batch.as_ref(), "batch", 10)?.min(10_000) as usize,
            maxlen: match &self.maxlen {
                Some(m) => Some(crate::vocab::check::positive_int(m, "maxlen")?),
                None => None,
            },
            idempotency: false,
            payload_size: payload_size as usize,
            drain: self
                .drain
                .as_ref()
                .map_or(Duration::from_secs(10), |d| d.get_ref().0),
            op_timeout: positive_dur(
                self.op_timeout.as_ref(),
                "op_timeout",
                Duration::from_secs(1),
            )?,
        };
        self.check_claim(&base)?;
        super::bool_choice(self.idempotency.as_ref(), "idempotency", base, |p, on| {
            p.idempotency = on
        })
    }

    /// A batch is processed one job after the other, so its last job is
    /// acknowledged `batch × process_time` after delivery: `claim_after`
    /// must be longer, or healthy consumers' jobs are reclaimed.
    fn check_claim(&self, p: &QueuePlan) -> Checked<()> {
        let busy = p.process_time * p.batch as u32;
        let Some(at) = self.claim_after.as_ref().or(self.process_time.as_ref()) else {
            return Ok(());
        };
        check(
            at,
            p.claim_after > busy,
            format!(
                "`claim_after` ({:?}) must be longer than a batch's processing time \
                 (`batch` {} × `process_time` {:?} = {:?}): shorter, it reclaims jobs \
                 healthy consumers are still working on",
                p.claim_after, p.batch, p.process_time, busy
            ),
        )
    }
}

/// Caller ops first, then the Redis commands.
pub const OPS: &[&str] = &["enqueue", "redis_xadd"];
const CALLER_OPS: &[&str] = &["enqueue"];

/// The metrics this workload reports per phase.
pub const METRICS: &[(&str, Dim)] = &[
    ("caller_errors", Dim::Count),
    ("redis_errors", Dim::Count),
    ("enqueued", Dim::Count),
    ("processed", Dim::Count),
    ("lost_jobs", Dim::Count),
    ("trimmed", Dim::Count),
    ("backlog", Dim::Count),
    ("duplicates", Dim::Count),
    ("duplicates_caught", Dim::Count),
    ("duplicates_uncaught", Dim::Count),
    ("reclaimed", Dim::Count),
    ("consumer_errors", Dim::Count),
    ("corrupt_jobs", Dim::Count),
    ("max_lag_jobs", Dim::Count),
    ("max_lag_age", Dim::Millis),
    ("job_latency_p50", Dim::Millis),
    ("job_latency_p99", Dim::Millis),
];

/// What the scenario layer and the reports know of this workload.
pub const SPEC: Spec = Spec {
    name: "queue",
    section: "workload",
    ops: OPS,
    metrics: METRICS,
    counters: COUNTERS,
    keys: keys_of::<Raw>,
};

/// What producers and consumers share.
pub(crate) struct Shared {
    plan: QueuePlan,
    client: ClientSpec,
    /// The stream, and the prefix of the idempotency markers (one hash
    /// tag: one Cluster slot).
    stream: String,
    markers: String,
    t0: Instant,
    seed: u64,
    jobs: Jobs,
    gc: Arc<GcPause>,
    stop: AtomicBool,
    /// Per consumer: when its latest read that found nothing started (µs).
    quiet_since: Vec<AtomicU64>,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The fields of job `job`: its id, its checksum and its body.
    fn body(&self, job: u64) -> Vec<u8> {
        let mut b = format!("{:016x}", job ^ self.seed).into_bytes();
        b.resize(self.plan.payload_size, b'#');
        b
    }
}

/// FNV-1a over the job's id and body: what a consumer checks.
pub fn checksum(job: u64, body: &[u8]) -> u64 {
    job.to_le_bytes()
        .iter()
        .chain(body)
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

pub struct Queue {
    sh: Arc<Shared>,
    consumers: Mutex<Option<Vec<tokio::task::JoinHandle<()>>>>,
}

pub struct User {
    conn: RedisConn,
}

impl Queue {
    pub fn new(plan: QueuePlan, s: &super::Setup) -> Self {
        let tag = format!("{}{{queue}}", s.prefix);
        let quiet_since = (0..plan.consumers).map(|_| AtomicU64::new(0)).collect();
        Queue {
            sh: Arc::new(Shared {
                plan,
                client: s.client.clone(),
                stream: format!("{tag}:jobs"),
                markers: format!("{tag}:done:"),
                t0: s.t0,
                seed: s.seed,
                jobs: Jobs::default(),
                gc: s.gc.clone(),
                stop: AtomicBool::new(false),
                quiet_since,
            }),
            consumers: Mutex::new(None),
        }
    }

    /// Starts the consumers with the first job (on the load's runtime).
    fn start_consumers(&self) {
        let mut slot = self.consumers.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(
                (0..self.sh.plan.consumers)
                    .map(|i| tokio::spawn(consumer::consume(self.sh.clone(), i)))
                    .collect(),
            );
        }
    }

    fn xadd(&self, job: u64) -> redis::Cmd {
        let body = self.sh.body(job);
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.sh.stream);
        if let Some(n) = self.sh.plan.maxlen {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg("*")
            .arg("job")
            .arg(job)
            .arg("sum")
            .arg(format!("{:016x}", checksum(job, &body)))
            .arg("body")
            .arg(body);
        cmd
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.sh.stop.store(true, Ordering::Relaxed);
        let slot = self.consumers.get_mut().unwrap_or_else(|p| p.into_inner());
        for h in slot.take().into_iter().flatten() {
            h.abort();
        }
    }
}

impl Workload for Queue {
    type User = User;

    fn new_user(&self, _index: usize) -> User {
        User {
            conn: RedisConn::new(&self.sh.client, self.sh.plan.op_timeout, self.sh.t0),
        }
    }

    async fn op(&self, user: &mut User, intended_us: u64, trace: &mut Trace) -> Done {
        self.start_consumers();
        let job = self.sh.jobs.reserve();
        let reply = user
            .conn
            .query::<String>("redis_xadd", &self.xadd(job), trace)
            .await;
        let outcome = match reply {
            Ok(id) => {
                if let Some(id) = jobs::parse_id(&id) {
                    self.sh.jobs.acked(job, intended_us, self.sh.now_us(), id);
                }
                trace.counters.push(ENQUEUED);
                Outcome::Ok
            }
            Err(class) => {
                trace.counters.push(REDIS_ERRORS);
                trace.counters.push(CALLER_ERRORS);
                Outcome::Err(class)
            }
        };
        Done::new("enqueue", outcome)
    }
}

impl Oracle for Queue {
    fn caller_ops(&self) -> &'static [&'static str] {
        CALLER_OPS
    }

    fn settle(&self, drain: bool) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let handles = self
            .consumers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        Box::pin(consumer::settle(self.sh.clone(), handles, drain))
    }

    fn phase_metrics(&self, phase: &PhaseStats, _baseline: &PhaseStats) -> BTreeMap<String, f64> {
        let mut m = super::counts(phase, &[CALLER_ERRORS, REDIS_ERRORS]);
        let f = self.sh.jobs.figures(
            phase.window_us(),
            self.sh.plan.maxlen.is_some(),
            self.sh.now_us(),
        );
        figures_into(&f, &mut m);
        m
    }
}

/// The ledger's figures as metrics (times in ms).
fn figures_into(f: &Figures, m: &mut BTreeMap<String, f64>) {
    let counts = [
        ("enqueued", f.enqueued),
        ("processed", f.processed),
        ("lost_jobs", f.lost_jobs),
        ("trimmed", f.trimmed),
        ("backlog", f.backlog),
        ("duplicates", f.duplicates),
        ("duplicates_caught", f.duplicates_caught),
        ("duplicates_uncaught", f.duplicates_uncaught),
        ("reclaimed", f.reclaimed),
        ("consumer_errors", f.consumer_errors),
        ("corrupt_jobs", f.corrupt_jobs),
        ("max_lag_jobs", f.max_lag_jobs),
    ];
    for (k, v) in counts {
        m.insert(k.into(), v as f64);
    }
    m.insert("max_lag_age_ms".into(), f.max_lag_age_us as f64 / 1e3);
    let at = |q: f64| {
        let l = &f.latencies_us;
        l[((l.len() - 1) as f64 * q).round() as usize] as f64 / 1e3
    };
    if !f.latencies_us.is_empty() {
        m.insert("job_latency_p50_ms".into(), at(0.5));
        m.insert("job_latency_p99_ms".into(), at(0.99));
    }
}
