//! The flusher: drains the pending lists to the origin in batches, every
//! `flush_interval` (a pass a lane did not answer is tried again 100 ms
//! later); after the load, drains them one last time and takes
//! their inventory. Its Redis commands are not caller ops: what it did is
//! in the ledger (flush lag, lost writes), not in the latency figures.

use super::{Mode, Shared};
use crate::vocab::outcome::Trace;
use crate::workload::conn::RedisConn;
use crate::workload::value;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often a sleeping flusher looks whether it was told to stop.
const TICK: Duration = Duration::from_millis(20);
/// How soon a pass some lane did not answer is tried again.
const RETRY: Duration = Duration::from_millis(100);

struct Flusher {
    sh: Arc<Shared>,
    conn: RedisConn,
    rng: SmallRng,
    /// The samples RedisConn records, dropped after each command.
    scratch: Trace,
}

impl Flusher {
    fn new(sh: Arc<Shared>) -> Self {
        Flusher {
            conn: RedisConn::new(&sh.client, sh.plan.op_timeout, sh.t0),
            rng: SmallRng::seed_from_u64(sh.seed ^ 0xf1u64),
            scratch: Trace::default(),
            sh,
        }
    }

    async fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Option<T> {
        let result = self
            .conn
            .query::<T>("redis_flush", cmd, &mut self.scratch)
            .await;
        self.scratch.clear();
        match result {
            Ok(v) => Some(v),
            Err(_) => {
                self.sh.writes.flush_error(self.sh.now_us());
                None
            }
        }
    }

    /// One pass over every lane: takes batches until a lane gives less
    /// than a full one. Returns how many writes it delivered, or None if a
    /// lane did not answer.
    async fn pass(&mut self) -> Option<usize> {
        let (mut answered, mut delivered) = (true, 0);
        for lane in 0..self.sh.plan.lanes {
            loop {
                let mut pop = redis::cmd("LPOP");
                pop.arg(self.sh.list(lane)).arg(self.sh.plan.batch);
                let Some(ids) = self.query::<Option<Vec<u64>>>(&pop).await else {
                    answered = false;
                    break;
                };
                let ids = ids.unwrap_or_default();
                if !ids.is_empty() {
                    self.deliver(&ids).await;
                    delivered += ids.len();
                }
                if ids.len() < self.sh.plan.batch || self.sh.stopping() {
                    break;
                }
            }
        }
        answered.then_some(delivered)
    }

    /// One origin call writes the batch.
    async fn deliver(&mut self, ids: &[u64]) {
        self.sh.origin.serve(&mut self.rng).await;
        let now = self.sh.now_us();
        for &id in ids {
            if let Some((key, version)) = self.sh.writes.received(id, now) {
                self.sh.origin.apply(key, version, now);
            }
        }
    }

    /// Every id the lists still hold; None if a lane did not answer.
    async fn inventory(&mut self) -> Option<HashSet<u64>> {
        let mut ids = HashSet::new();
        for lane in 0..self.sh.plan.lanes {
            let mut range = redis::cmd("LRANGE");
            range.arg(self.sh.list(lane)).arg(0).arg(-1);
            ids.extend(self.query::<Vec<u64>>(&range).await?);
        }
        Some(ids)
    }
}

/// The flusher, until the workload stops it.
pub(super) async fn flush(sh: Arc<Shared>) {
    let mut f = Flusher::new(sh.clone());
    let mut next = Instant::now() + sh.plan.flush_interval;
    while !sh.stopping() {
        if Instant::now() < next {
            tokio::time::sleep(TICK.min(next - Instant::now())).await;
            continue;
        }
        if f.pass().await.is_none() {
            // A lane did not answer: tried again soon, not a whole
            // interval later.
            next = Instant::now() + RETRY.min(sh.plan.flush_interval);
            continue;
        }
        next += sh.plan.flush_interval;
        next = next.max(Instant::now());
    }
}

/// After the load: stops the flusher; when `drain`, flushes until the
/// lists are empty or every acknowledged write reached the origin (up to
/// the plan's `drain`), takes the lists' inventory and, for write-through,
/// reads back the keys whose update failed.
pub(super) async fn settle(sh: Arc<Shared>, handle: Option<JoinHandle<()>>, drain: bool) {
    sh.stop.store(true, Ordering::Relaxed);
    if let Some(h) = handle {
        let abort = h.abort_handle();
        let grace = sh.plan.op_timeout * 2 + sh.plan.origin.latency * 4 + Duration::from_secs(1);
        if tokio::time::timeout(grace, h).await.is_err() {
            abort.abort();
        }
    }
    if !drain {
        return;
    }
    let mut f = Flusher::new(sh.clone());
    if sh.plan.mode == Mode::WriteBehind {
        let deadline = Instant::now() + sh.plan.drain;
        sh.stop.store(false, Ordering::Relaxed);
        while Instant::now() < deadline {
            // Done when all is delivered, or when the lists are empty
            // (what was lost will not come back).
            match f.pass().await {
                Some(0) => break,
                Some(_) if sh.writes.all_flushed() => break,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sh.stop.store(true, Ordering::Relaxed);
        take_inventory(&mut f).await;
    }
    read_back(&mut f).await;
}

/// Tried a few times (a failover may be settling); without it, nothing
/// is called lost.
async fn take_inventory(f: &mut Flusher) {
    for attempt in 0..5 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if let Some(ids) = f.inventory().await {
            f.sh.writes.inventory(ids);
            return;
        }
    }
    eprintln!(
        "gameday: the write-behind pending lists could not be read back; no write is called lost"
    );
}

/// Write-through: each key whose update failed and was not set right
/// since, as Redis holds it now.
async fn read_back(f: &mut Flusher) {
    for (key, _) in f.sh.writes.open_keys() {
        let mut get = redis::cmd("GET");
        get.arg(f.sh.key(key));
        if let Some(v) = f.query::<Option<Vec<u8>>>(&get).await {
            let found = v.as_deref().and_then(value::decode);
            f.sh.writes.read_back(key, found, f.sh.now_us());
        }
    }
}
