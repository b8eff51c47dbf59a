//! Every decision of a run, kept in bounded memory: decisions arrive in
//! the order ops finish, 8 bytes each; every `CHUNK` of them is sorted by
//! time and written to its own file (a sorted run) in an owner-tagged
//! temporary directory (`gameday clean` removes one a SIGKILL left). The
//! oracle reads a phase back in time order by merging the runs, so an
//! hour at thousands of requests a second needs a few MB of memory, not
//! hundreds.

use super::judge::{Decision, Packed};
use crate::topology::process::TEMP_PREFIX;
use crate::vocab::owner;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::Mutex;

/// Decisions kept in memory before they are sorted and written out (8 MB).
const CHUNK: usize = 1 << 20;

/// A sorted run: on disk, or in memory when it could not be written.
enum Run {
    File(PathBuf),
    Memory(Vec<u64>),
}

#[derive(Default)]
struct Inner {
    /// The newest decisions, unsorted.
    buf: Vec<u64>,
    runs: Vec<Run>,
}

pub(super) struct DecisionLog {
    inner: Mutex<Inner>,
    chunk: usize,
    /// Made with the first run written; removed (with the runs) on drop.
    dir: Mutex<Option<tempfile::TempDir>>,
}

impl Default for DecisionLog {
    fn default() -> Self {
        DecisionLog::with_chunk(CHUNK)
    }
}

impl DecisionLog {
    fn with_chunk(chunk: usize) -> Self {
        DecisionLog {
            inner: Mutex::new(Inner::default()),
            chunk,
            dir: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn push(&self, d: Decision) {
        let mut inner = self.lock();
        inner.buf.push(Packed::new(d).0);
        if inner.buf.len() >= self.chunk {
            let mut run = std::mem::take(&mut inner.buf);
            run.sort_unstable();
            let run = self.write(run);
            inner.runs.push(run);
        }
    }

    /// Writes a sorted run to a file; keeps it in memory if it cannot.
    fn write(&self, run: Vec<u64>) -> Run {
        let written = (|| -> std::io::Result<PathBuf> {
            let mut dir = self.dir.lock().unwrap_or_else(|p| p.into_inner());
            if dir.is_none() {
                let prefix = owner::tagged(TEMP_PREFIX, "ratelimit-");
                *dir = Some(tempfile::Builder::new().prefix(&prefix).tempdir()?);
            }
            let d = dir.as_ref().expect("made above");
            let path = d
                .path()
                .join(format!("run-{}", d.path().read_dir()?.count()));
            let mut out = BufWriter::new(std::fs::File::create(&path)?);
            for v in &run {
                out.write_all(&v.to_le_bytes())?;
            }
            out.flush()?;
            Ok(path)
        })();
        match written {
            Ok(path) => Run::File(path),
            Err(e) => {
                log::warn!("rate-limit decisions kept in memory: {e}");
                Run::Memory(run)
            }
        }
    }

    /// Every decision whose time is in `[from_us, to_us)`, in time order.
    #[cfg(test)]
    fn in_window(&self, from_us: u64, to_us: u64) -> Vec<Decision> {
        let mut out = Vec::new();
        self.each_in_window(from_us, to_us, |d| out.push(d));
        out
    }

    /// Calls `f` on every decision in `[from_us, to_us)`, in time order,
    /// merging the runs and the newest decisions.
    pub(super) fn each_in_window(&self, from_us: u64, to_us: u64, mut f: impl FnMut(Decision)) {
        let inner = self.lock();
        let mut newest = inner.buf.clone();
        newest.sort_unstable();
        let mut sources: Vec<Box<dyn Iterator<Item = u64> + '_>> =
            vec![Box::new(newest.into_iter())];
        for run in &inner.runs {
            sources.push(match run {
                Run::Memory(v) => Box::new(v.iter().copied()),
                Run::File(path) => Box::new(read_run(path)),
            });
        }
        let mut heads = BinaryHeap::new();
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some(v) = s.next() {
                heads.push(Reverse((v, i)));
            }
        }
        while let Some(Reverse((v, i))) = heads.pop() {
            let d = Packed(v).decision();
            if d.at_us >= to_us {
                // Every source is sorted: nothing later is in the window.
                break;
            }
            if d.at_us >= from_us {
                f(d);
            }
            if let Some(next) = sources[i].next() {
                heads.push(Reverse((next, i)));
            }
        }
    }
}

/// A run file's values in order (a file that cannot be read ends early,
/// with a warning).
fn read_run(path: &std::path::Path) -> impl Iterator<Item = u64> {
    let file = std::fs::File::open(path).map_err(|e| log::warn!("{}: {e}", path.display()));
    let mut reader = file.ok().map(BufReader::new);
    std::iter::from_fn(move || {
        let mut b = [0u8; 8];
        reader.as_mut()?.read_exact(&mut b).ok()?;
        Some(u64::from_le_bytes(b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_disk_and_in_memory_read_back_in_time_order() {
        let log = DecisionLog::with_chunk(100);
        let mut want = Vec::new();
        // Out of order as ops finish: each user in order, users interleaved.
        for i in 0..1050u64 {
            let d = Decision {
                client: (i % 7) as u32,
                at_us: (i % 3) * 10_000 + i * 100,
                admitted: i % 2 == 0,
                degraded: i % 5 == 0,
            };
            log.push(d);
            want.push(d);
        }
        let dir = log
            .dir
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .path()
            .to_path_buf();
        assert_eq!(
            dir.read_dir().unwrap().count(),
            10,
            "ten sorted runs on disk"
        );
        assert!(
            owner::owner_of(TEMP_PREFIX, &dir.file_name().unwrap().to_string_lossy()).is_some()
        );
        want.sort_by_key(|d| Packed::new(*d).0);
        assert_eq!(log.in_window(0, u64::MAX), want);
        let (from, to) = (20_000, 60_000);
        let part: Vec<Decision> = want
            .iter()
            .copied()
            .filter(|d| (from..to).contains(&d.at_us))
            .collect();
        assert_eq!(log.in_window(from, to), part);
        drop(log);
        assert!(!dir.exists(), "the runs go with the log");
    }
}
