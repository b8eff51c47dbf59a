//! The open model's arrival times: a sequence of µs since t0, at a rate,
//! evenly spaced or Poisson, independent of how fast anything is served.

use super::{ArrivalProcess, Shape};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The arrival times of one run, in order.
pub struct Arrivals {
    process: ArrivalProcess,
    /// ops/s over time.
    shape: Shape,
    /// The next arrival, µs since t0 (fractional, so that 1/rate need not
    /// be a whole number of µs).
    next_us: f64,
    rng: SmallRng,
}

impl Arrivals {
    pub fn new(process: ArrivalProcess, shape: Shape, seed: u64) -> Arrivals {
        Arrivals::starting(process, shape, seed, 0)
    }

    /// Arrivals from `begin_us` on.
    pub fn starting(process: ArrivalProcess, shape: Shape, seed: u64, begin_us: u64) -> Arrivals {
        let mut a = Arrivals {
            process,
            shape,
            next_us: begin_us as f64,
            rng: SmallRng::seed_from_u64(seed ^ 0x0a11_1a15),
        };
        // A Poisson stream does not start with an arrival at exactly 0.
        if process == ArrivalProcess::Poisson {
            a.next_us += a.gap_us();
        }
        a
    }

    /// The gap to the arrival after the current one, µs, at the rate in
    /// force now.
    fn gap_us(&mut self) -> f64 {
        let mean = 1e6 / self.shape.rate_at(self.next_us);
        match self.process {
            ArrivalProcess::Constant => mean,
            // Inverse transform: −ln(U)·mean, U in (0, 1].
            ArrivalProcess::Poisson => -(1.0 - self.rng.gen::<f64>()).ln() * mean,
        }
    }
}

impl Iterator for Arrivals {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let at = self.next_us;
        self.next_us += self.gap_us();
        Some(at as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_arrivals_are_evenly_spaced() {
        let a: Vec<u64> = Arrivals::new(ArrivalProcess::Constant, Shape::constant(3000.0), 1)
            .take(4)
            .collect();
        assert_eq!(a, [0, 333, 666, 1000]);
    }

    #[test]
    fn poisson_arrivals_keep_the_rate_and_vary() {
        let rate = 5000.0;
        let a: Vec<u64> = Arrivals::new(ArrivalProcess::Poisson, Shape::constant(rate), 7)
            .take_while(|&t| t < 10_000_000)
            .collect();
        let n = a.len() as f64;
        // 50 000 expected; the count of a Poisson process has sd √50 000.
        assert!((n - 50_000.0).abs() < 5.0 * 50_000f64.sqrt(), "{n}");
        let gaps: Vec<f64> = a.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        // Exponential gaps: sd equals the mean (200 µs), within 5 %.
        assert!(
            (var.sqrt() / mean - 1.0).abs() < 0.05,
            "{mean} {}",
            var.sqrt()
        );
    }
}
