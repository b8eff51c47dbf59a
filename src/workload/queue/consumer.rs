//! The consumers: each reads the group's new entries, processes and
//! acknowledges them one by one, and reclaims what another consumer has
//! held past `claim_after`. Their Redis commands are not caller ops: what
//! they did is in the ledger, not in the latency figures.

use super::jobs::{parse_id, Commit, EntryId, Event};
use super::{checksum, Shared};
use crate::vocab::outcome::Trace;
use crate::workload::conn::RedisConn;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamRangeReply, StreamReadReply};
use redis::Value;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The consumer group every consumer joins.
pub const GROUP: &str = "workers";
/// How long one XREADGROUP waits for new entries.
const BLOCK: Duration = Duration::from_millis(100);
/// How long a consumer waits after a failed command before the next.
const ERROR_PAUSE: Duration = Duration::from_millis(50);

struct Consumer {
    sh: Arc<Shared>,
    index: usize,
    name: String,
    conn: RedisConn,
    /// The samples RedisConn records, dropped after each command.
    scratch: Trace,
}

/// One consumer, until the workload stops it.
pub(super) async fn consume(sh: Arc<Shared>, index: usize) {
    let conn = RedisConn::new(&sh.client, sh.plan.op_timeout + BLOCK, sh.t0);
    let mut c = Consumer {
        sh: sh.clone(),
        index,
        name: format!("c{index}"),
        conn,
        scratch: Trace::default(),
    };
    c.join_group().await;
    let claim_every = (sh.plan.claim_after / 2).max(Duration::from_millis(50));
    let mut next_claim = Instant::now() + claim_every;
    while !sh.stopping() {
        let mut entries = Vec::new();
        if Instant::now() >= next_claim {
            next_claim = Instant::now() + claim_every;
            entries = c.claim().await;
        }
        if entries.is_empty() {
            entries = c.read().await;
        }
        for e in &entries {
            if sh.stopping() {
                break;
            }
            c.handle(e).await;
        }
    }
}

impl Consumer {
    /// Runs one command; a failure is a consumer error, and a pause.
    async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Option<T> {
        let result = self
            .conn
            .query::<T>("redis_consumer", cmd, &mut self.scratch)
            .await;
        self.scratch.clear();
        match result {
            Ok(v) => Some(v),
            Err(_) => {
                self.sh.jobs.event(self.sh.now_us(), Event::ConsumerError);
                tokio::time::sleep(ERROR_PAUSE).await;
                None
            }
        }
    }

    /// Creates the group (and the stream) if missing, from the stream's
    /// start: after a restart that lost it, nothing new is skipped.
    async fn join_group(&mut self) {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(&self.sh.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM");
        // BUSYGROUP (it exists) is the usual answer; anything else shows
        // in the next read.
        let _ = self
            .conn
            .query::<Value>("redis_consumer", &cmd, &mut self.scratch)
            .await;
        self.scratch.clear();
    }

    /// New entries for this consumer; none after BLOCK.
    async fn read(&mut self) -> Vec<StreamId> {
        let started = self.sh.now_us();
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&self.name)
            .arg("COUNT")
            .arg(self.sh.plan.batch)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.sh.stream)
            .arg(">");
        match self.query::<Option<StreamReadReply>>(&cmd).await {
            Some(reply) => {
                let ids: Vec<StreamId> = reply
                    .into_iter()
                    .flat_map(|r| r.keys)
                    .flat_map(|k| k.ids)
                    .collect();
                if ids.is_empty() {
                    self.sh.quiet_since[self.index].store(started, Ordering::Relaxed);
                }
                ids
            }
            None => {
                // NOGROUP after a restart or a failover that lost the group.
                self.join_group().await;
                Vec::new()
            }
        }
    }

    /// Entries another consumer has held for longer than `claim_after`.
    async fn claim(&mut self) -> Vec<StreamId> {
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(&self.sh.stream)
            .arg(GROUP)
            .arg(&self.name)
            .arg(self.sh.plan.claim_after.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(self.sh.plan.batch);
        let claimed = self
            .query::<StreamAutoClaimReply>(&cmd)
            .await
            .map(|r| r.claimed)
            .unwrap_or_default();
        if !claimed.is_empty() {
            let n = claimed.len() as u32;
            self.sh.jobs.event(self.sh.now_us(), Event::Reclaimed(n));
        }
        claimed
    }

    /// Processes one entry: checks it, works on it, commits, acknowledges.
    /// A failed commit leaves it pending, for a reclaim.
    async fn handle(&mut self, entry: &StreamId) {
        let job = match decode(&entry.map) {
            Ok(job) => job,
            Err(job) => {
                self.sh.jobs.event(self.sh.now_us(), Event::Corrupt);
                if let Some(job) = job {
                    self.sh.jobs.corrupt(job);
                }
                self.ack(&entry.id).await;
                return;
            }
        };
        let stalled = self.stall().await;
        self.pause(self.sh.plan.process_time).await;
        let commit = self.commit(job).await;
        if let Some(commit) = commit {
            self.sh.jobs.committed(job, self.sh.now_us(), commit);
            self.ack(&entry.id).await;
        }
        if stalled {
            self.sh.gc.done();
        }
    }

    /// A `gc_pause` fault's stall, if it is armed: this consumer stops
    /// until the fault ends (or the run stops).
    async fn stall(&self) -> bool {
        let Some(until) = self.sh.gc.take() else {
            return false;
        };
        while Instant::now() < until && !self.sh.stopping() {
            tokio::time::sleep_until(until.min(Instant::now() + BLOCK)).await;
        }
        true
    }

    /// Sleeps `d`, cut short when the run stops.
    async fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.sh.stopping() {
            tokio::time::sleep_until(until.min(Instant::now() + BLOCK)).await;
        }
    }

    /// The job's effect: with the idempotency record, only if its marker
    /// is new. `None` when Redis failed.
    async fn commit(&mut self, job: u64) -> Option<Commit> {
        if !self.sh.plan.idempotency {
            return Some(Commit::Applied);
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{}{job}", self.sh.markers))
            .arg(&self.name)
            .arg("NX")
            .arg("EX")
            .arg(24 * 3600);
        let set = self.query::<Option<String>>(&cmd).await?;
        Some(match set {
            Some(_) => Commit::Applied,
            None => Commit::Caught,
        })
    }

    async fn ack(&mut self, id: &str) {
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&self.sh.stream).arg(GROUP).arg(id);
        let _ = self.query::<u64>(&cmd).await;
    }
}

fn field<'a>(map: &'a HashMap<String, Value>, name: &str) -> Option<&'a [u8]> {
    match map.get(name)? {
        Value::BulkString(b) => Some(b),
        _ => None,
    }
}

fn job_of(map: &HashMap<String, Value>) -> Option<u64> {
    std::str::from_utf8(field(map, "job")?).ok()?.parse().ok()
}

/// A job's id if its checksum holds; otherwise the id it claims, if any.
pub fn decode(map: &HashMap<String, Value>) -> Result<u64, Option<u64>> {
    let job = job_of(map).ok_or(None)?;
    let sum = field(map, "sum")
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| u64::from_str_radix(s, 16).ok());
    match (sum, field(map, "body")) {
        (Some(sum), Some(body)) if checksum(job, body) == sum => Ok(job),
        _ => Err(Some(job)),
    }
}

/// After the load: lets the consumers drain the stream (when `drain`, up
/// to the plan's `drain`), stops them, and takes the ledger's inventory of
/// the stream.
pub(super) async fn settle(sh: Arc<Shared>, handles: Vec<JoinHandle<()>>, drain: bool) {
    let mut probe = RedisConn::new(&sh.client, sh.plan.op_timeout, sh.t0);
    if drain && !handles.is_empty() {
        let since = sh.now_us();
        let deadline = Instant::now() + sh.plan.drain;
        while !sh.jobs.all_done() && Instant::now() < deadline {
            let quiet = sh
                .quiet_since
                .iter()
                .all(|q| q.load(Ordering::Relaxed) >= since);
            if quiet && pending(&sh, &mut probe).await == Some(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    sh.stop.store(true, Ordering::Relaxed);
    let grace = sh.plan.op_timeout + BLOCK + Duration::from_secs(1);
    for h in handles {
        let abort = h.abort_handle();
        if tokio::time::timeout(grace, h).await.is_err() {
            abort.abort();
        }
    }
    if drain {
        inventory(&sh, &mut probe).await;
    }
}

/// The group's pending entries (delivered, not acknowledged).
async fn pending(sh: &Shared, probe: &mut RedisConn) -> Option<u64> {
    let mut cmd = redis::cmd("XPENDING");
    cmd.arg(&sh.stream).arg(GROUP);
    let mut scratch = Trace::default();
    let summary = probe
        .query::<Vec<Value>>("redis_consumer", &cmd, &mut scratch)
        .await;
    match summary.ok()?.first()? {
        Value::Int(n) => Some(*n as u64),
        _ => None,
    }
}

/// Reads the whole stream back: which jobs it still holds, and its oldest
/// entry. Tried a few times (a failover may be settling); without it,
/// nothing is called lost.
async fn inventory(sh: &Shared, probe: &mut RedisConn) {
    for attempt in 0..5 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if let Some((jobs, first)) = read_stream(sh, probe).await {
            sh.jobs.inventory(&jobs, first, sh.now_us());
            return;
        }
    }
    eprintln!(
        "gameday: the queue's stream {} could not be read back; no job is called lost",
        sh.stream
    );
}

async fn read_stream(sh: &Shared, probe: &mut RedisConn) -> Option<(Vec<u64>, Option<EntryId>)> {
    let (mut jobs, mut first, mut from) = (Vec::new(), None, "-".to_string());
    let mut scratch = Trace::default();
    loop {
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(&sh.stream)
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(1000);
        let page = probe
            .query::<StreamRangeReply>("redis_consumer", &cmd, &mut scratch)
            .await
            .ok()?;
        scratch.clear();
        let Some(last) = page.ids.last() else {
            return Some((jobs, first));
        };
        from = format!("({}", last.id);
        if first.is_none() {
            first = page.ids.first().and_then(|e| parse_id(&e.id));
        }
        jobs.extend(page.ids.iter().filter_map(|e| job_of(&e.map)));
    }
}
