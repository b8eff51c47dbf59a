//! The ledger of served reads: when each was read and how far behind the
//! primary the copy it was served from was (0 for the primary's own).

use std::sync::Mutex;

/// One served read.
#[derive(Debug, Clone, Copy)]
struct Read {
    at_us: u64,
    /// How far behind the primary the copy was, µs.
    behind_us: u64,
}

/// The figures of one phase's window (a read counts in the phase it was
/// sent in).
#[derive(Debug, Default, PartialEq)]
pub struct Figures {
    pub served: u64,
    /// Staler than the declared bound.
    pub beyond_bound: u64,
    /// Staleness of the served reads, µs, sorted.
    pub behind_us: Vec<u64>,
}

#[derive(Default)]
pub struct Served(Mutex<Vec<Read>>);

impl Served {
    pub fn read(&self, at_us: u64, behind_us: u64) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Read { at_us, behind_us });
    }

    /// The window's figures; `bound` is the declared `max_staleness`.
    pub fn figures(&self, window: (u64, u64), bound: Option<u64>) -> Figures {
        let reads = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut behind_us: Vec<u64> = reads
            .iter()
            .filter(|r| (window.0..window.1).contains(&r.at_us))
            .map(|r| r.behind_us)
            .collect();
        behind_us.sort_unstable();
        Figures {
            served: behind_us.len() as u64,
            beyond_bound: bound.map_or(0, |b| behind_us.iter().filter(|&&s| s > b).count() as u64),
            behind_us,
        }
    }
}

/// The `q` quantile of sorted `v` (nearest rank), if any.
pub fn quantile(v: &[u64], q: f64) -> Option<u64> {
    (!v.is_empty()).then(|| v[((v.len() - 1) as f64 * q).round() as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_holds_the_reads_it_sent() {
        let s = Served::default();
        for (at, behind) in [(5, 0), (10, 500), (20, 700), (30, 90)] {
            s.read(at, behind);
        }
        let f = s.figures((10, 30), Some(600));
        assert_eq!((f.served, f.beyond_bound), (2, 1));
        assert_eq!(f.behind_us, vec![500, 700]);
        assert_eq!(s.figures((0, 100), None).beyond_bound, 0);
        assert_eq!(quantile(&[1, 2, 3], 0.5), Some(2));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
