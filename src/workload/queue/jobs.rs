//! The producers' ledger: every job, from its XADD's acknowledgement to
//! each time a consumer processed it, and what the stream still held at
//! the end. The oracle's figures are read from it, per phase, by the time
//! the job was acknowledged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A stream entry id, `<ms>-<seq>`, in Redis's order.
pub type EntryId = (u64, u64);

/// Reads `<ms>-<seq>`.
pub fn parse_id(id: &str) -> Option<EntryId> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// One job as the ledger saw it.
#[derive(Debug, Default, Clone)]
struct Job {
    /// The producer's XADD, once acknowledged.
    acked: Option<Acked>,
    /// When a consumer first applied its effect.
    done_us: Option<u64>,
    /// How many times a consumer applied its effect, and how many
    /// deliveries the idempotency record turned away.
    effects: u32,
    caught: u32,
    /// A delivery whose fields did not match its checksum.
    corrupt: bool,
    /// Still in the stream when the run ended.
    in_stream: bool,
}

/// An acknowledged XADD.
#[derive(Debug, Clone, Copy)]
struct Acked {
    /// When it was meant to start (µs since t0): the phase it counts in,
    /// as the recorder files the op.
    sent_us: u64,
    /// When its reply came.
    at_us: u64,
    /// The entry id it returned.
    id: EntryId,
}

/// What consumers ran into, besides jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Entries taken over from another consumer by XAUTOCLAIM.
    Reclaimed(u32),
    /// A consumer's Redis command failed.
    ConsumerError,
    /// An entry that is not a job of this run, or whose checksum fails.
    Corrupt,
    /// A job delivered again after it was processed: `caught` when the
    /// idempotency record turned it away, else its effect ran again.
    Duplicate { caught: bool },
}

#[derive(Default)]
struct Inner {
    jobs: Vec<Job>,
    events: Vec<(u64, Event)>,
    /// Set by the final inventory: the stream's oldest entry then (none
    /// when empty), and when the inventory was taken.
    end: Option<(Option<EntryId>, u64)>,
}

/// The ledger, shared by producers and consumers.
#[derive(Default)]
pub struct Jobs {
    /// The next job id: ids are dense, from 0.
    next: AtomicU64,
    inner: Mutex<Inner>,
}

/// How a delivery ended at the commit step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// The job's effect was applied.
    Applied,
    /// The idempotency record showed it applied already: skipped.
    Caught,
}

/// One phase's figures (see the workload's module docs).
#[derive(Debug, Default, PartialEq)]
pub struct Figures {
    pub enqueued: u64,
    pub processed: u64,
    pub lost_jobs: u64,
    pub trimmed: u64,
    pub backlog: u64,
    pub duplicates: u64,
    pub duplicates_caught: u64,
    pub duplicates_uncaught: u64,
    pub reclaimed: u64,
    pub consumer_errors: u64,
    pub corrupt_jobs: u64,
    pub max_lag_jobs: u64,
    pub max_lag_age_us: u64,
    /// Acknowledgement to first effect, µs, sorted.
    pub latencies_us: Vec<u64>,
}

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new job's id.
    pub fn reserve(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Job `job`'s entry, if the id was given out (an entry written
    /// behind the harness may name any number).
    fn job<'a>(&self, inner: &'a mut Inner, job: u64) -> Option<&'a mut Job> {
        if job >= self.next.load(Ordering::Relaxed) {
            return None;
        }
        let i = job as usize;
        if inner.jobs.len() <= i {
            inner.jobs.resize(i + 1, Job::default());
        }
        Some(&mut inner.jobs[i])
    }

    /// The producer's XADD of `job`, meant to start at `sent_us`, was
    /// acknowledged at `at_us` as entry `id`.
    pub fn acked(&self, job: u64, sent_us: u64, at_us: u64, id: EntryId) {
        if let Some(j) = self.job(&mut self.lock(), job) {
            j.acked = Some(Acked { sent_us, at_us, id });
        }
    }

    /// A consumer reached the commit step of `job` at `at_us`.
    pub fn committed(&self, job: u64, at_us: u64, commit: Commit) {
        let mut inner = self.lock();
        let Some(j) = self.job(&mut inner, job) else {
            return;
        };
        let again = j.effects + j.caught > 0;
        match commit {
            Commit::Applied => {
                j.effects += 1;
                j.done_us.get_or_insert(at_us);
            }
            Commit::Caught => j.caught += 1,
        }
        if again {
            let caught = commit == Commit::Caught;
            inner.events.push((at_us, Event::Duplicate { caught }));
        }
    }

    /// A delivery of `job` failed its checksum.
    pub fn corrupt(&self, job: u64) {
        if let Some(j) = self.job(&mut self.lock(), job) {
            j.corrupt = true;
        }
    }

    pub fn event(&self, at_us: u64, e: Event) {
        self.lock().events.push((at_us, e));
    }

    /// Whether every acknowledged job has been processed (or found
    /// corrupt): nothing is left to drain.
    pub fn all_done(&self) -> bool {
        self.lock()
            .jobs
            .iter()
            .all(|j| j.acked.is_none() || j.done_us.is_some() || j.corrupt)
    }

    /// The final inventory: the jobs still in the stream and its oldest
    /// entry, taken at `at_us`.
    pub fn inventory(&self, in_stream: &[u64], first: Option<EntryId>, at_us: u64) {
        let mut inner = self.lock();
        for &job in in_stream {
            if let Some(j) = inner.jobs.get_mut(job as usize) {
                j.in_stream = true;
            }
        }
        inner.end = Some((first, at_us));
    }

    /// The figures of the jobs acknowledged in `[from, to)` µs, with
    /// `trimming` when the scenario declared a MAXLEN; `now_us` ends the
    /// run's window if the inventory has not been taken yet.
    pub fn figures(&self, (from, to): (u64, u64), trimming: bool, now_us: u64) -> Figures {
        let inner = self.lock();
        let end = inner.end.map_or(now_us, |(_, at)| at);
        let to = to.min(end);
        let mut f = Figures::default();
        for j in &inner.jobs {
            let Some(a) = j.acked else {
                continue;
            };
            if a.sent_us < from || a.sent_us >= to {
                continue;
            }
            f.enqueued += 1;
            tally(&mut f, j, a, inner.end, trimming);
        }
        for &(at, e) in &inner.events {
            if at < from || at >= to {
                continue;
            }
            match e {
                Event::Reclaimed(n) => f.reclaimed += u64::from(n),
                Event::ConsumerError => f.consumer_errors += 1,
                Event::Corrupt => f.corrupt_jobs += 1,
                Event::Duplicate { caught } => {
                    f.duplicates += 1;
                    if caught {
                        f.duplicates_caught += 1;
                    } else {
                        f.duplicates_uncaught += 1;
                    }
                }
            }
        }
        (f.max_lag_jobs, f.max_lag_age_us) = lag(&inner.jobs, (from, to), end);
        f.latencies_us.sort_unstable();
        f
    }
}

/// Files one acknowledged job: processed, or why not.
fn tally(f: &mut Figures, j: &Job, a: Acked, end: Option<(Option<EntryId>, u64)>, trim: bool) {
    if let Some(done) = j.done_us {
        f.processed += 1;
        f.latencies_us.push(done.saturating_sub(a.at_us));
    } else if j.corrupt {
        // Counted by its event.
    } else if let Some((first, _)) = end {
        if j.in_stream {
            f.backlog += 1;
        } else if trim && first.is_some_and(|first| a.id < first) {
            f.trimmed += 1;
        } else {
            f.lost_jobs += 1;
        }
    } else {
        f.backlog += 1;
    }
}

/// The most jobs acknowledged and not yet processed at any instant of
/// the window (whatever phase sent them), and the longest any of them had
/// waited by then.
fn lag(jobs: &[Job], (from, to): (u64, u64), end: u64) -> (u64, u64) {
    // +1 when a job is acknowledged, -1 when it is first processed.
    let mut steps: BTreeMap<u64, i64> = BTreeMap::new();
    let mut age = 0u64;
    for j in jobs {
        let Some(a) = j.acked else { continue };
        let done = j.done_us.unwrap_or(u64::MAX);
        if a.at_us >= to || done <= from {
            continue;
        }
        *steps.entry(a.at_us).or_default() += 1;
        if done != u64::MAX {
            *steps.entry(done).or_default() -= 1;
        }
        age = age.max(done.min(to).min(end).saturating_sub(a.at_us));
    }
    let (mut open, mut most) = (0i64, 0i64);
    for (&at, &step) in &steps {
        open += step;
        if at >= from {
            most = most.max(open);
        }
    }
    // Waiting since before the window: counted at its start.
    let before: i64 = steps.range(..from).map(|(_, s)| s).sum();
    (most.max(before).max(0) as u64, age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_processed_backlogged_trimmed_or_lost() {
        let jobs = Jobs::default();
        for job in 0..5 {
            assert_eq!(jobs.reserve(), job);
            jobs.acked(job, 10 + job, 10 + job, (100 + job, 0));
        }
        jobs.committed(0, 50, Commit::Applied);
        jobs.committed(0, 60, Commit::Caught);
        jobs.committed(0, 70, Commit::Applied);
        // 1 is trimmed (older than the stream's oldest), 2 and 4 are lost
        // (missing, but not older), 3 is still in.
        jobs.inventory(&[3], Some((102, 0)), 1000);
        let f = jobs.figures((0, u64::MAX), true, 0);
        assert_eq!(
            (f.processed, f.trimmed, f.lost_jobs, f.backlog),
            (1, 1, 2, 1)
        );
        assert_eq!(
            (f.duplicates, f.duplicates_caught, f.duplicates_uncaught),
            (2, 1, 1)
        );
        assert_eq!(f.latencies_us, vec![40]);
        // Without a declared MAXLEN, a missing job is lost.
        assert_eq!(jobs.figures((0, u64::MAX), false, 0).lost_jobs, 3);
    }

    #[test]
    fn lag_counts_jobs_waiting_at_once() {
        let jobs = Jobs::default();
        for job in 0..3 {
            assert_eq!(jobs.reserve(), job);
        }
        jobs.acked(0, 0, 0, (1, 0));
        jobs.acked(1, 10, 10, (2, 0));
        jobs.acked(2, 20, 20, (3, 0));
        jobs.committed(0, 15, Commit::Applied);
        jobs.committed(1, 30, Commit::Applied);
        jobs.committed(2, 40, Commit::Applied);
        let f = jobs.figures((0, 100), false, 100);
        // 0 and 1 wait together in [10, 15), 1 and 2 in [20, 30).
        assert_eq!((f.max_lag_jobs, f.max_lag_age_us), (2, 20));
    }
}
