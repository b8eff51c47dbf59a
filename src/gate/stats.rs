//! The statistics the gate decides with: robust summaries, a one-sided
//! Mann–Whitney U test, a one-sided prediction test for a single new value,
//! and E-divisive means change points for the trend.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// The `q` quantile (0..=1) of `xs`, interpolated between order statistics
/// (R's type 7). NaN for an empty slice.
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let h = (v.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

pub fn median(xs: &[f64]) -> f64 {
    quantile(xs, 0.5)
}

/// Mean and sample standard deviation (n − 1).
pub fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Coefficient of variation; `None` when the mean is 0.
pub fn cv(xs: &[f64]) -> Option<f64> {
    let (mean, sd) = mean_sd(xs);
    (mean.abs() > f64::EPSILON).then(|| sd / mean.abs())
}

fn standard_normal_sf(z: f64) -> f64 {
    let n = Normal::new(0.0, 1.0).expect("a valid normal");
    1.0 - n.cdf(z)
}

/// One-sided Mann–Whitney U: the p-value of "`a` tends to be larger than
/// `b`", by the normal approximation with a tie correction and a
/// continuity correction. 1 when either side is empty or every value ties.
pub fn mann_whitney_greater(a: &[f64], b: &[f64]) -> f64 {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    if a.is_empty() || b.is_empty() {
        return 1.0;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let (mut rank_a, mut ties) = (0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let avg = (i + j + 2) as f64 / 2.0;
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        rank_a += avg * all[i..=j].iter().filter(|e| e.1).count() as f64;
        i = j + 1;
    }
    let u = rank_a - na * (na + 1.0) / 2.0;
    let nn = na + nb;
    let var = na * nb / 12.0 * ((nn + 1.0) - ties / (nn * (nn - 1.0)));
    if var <= 0.0 {
        return 1.0;
    }
    let z = (u - na * nb / 2.0 - 0.5) / var.sqrt();
    standard_normal_sf(z)
}

/// One-sided prediction test: the p-value of "`x` is larger than a new
/// draw from the population `sample` came from" (Student's t with n − 1
/// degrees of freedom on `(x − mean) / (sd·√(1 + 1/n))`). With no spread
/// in `sample`, 0 if `x` is above it and 1 if not.
pub fn prediction_greater(x: f64, sample: &[f64]) -> f64 {
    let n = sample.len();
    if n < 2 {
        return 1.0;
    }
    let (mean, sd) = mean_sd(sample);
    if sd <= f64::EPSILON * mean.abs().max(1.0) {
        return if x > mean + 1e-9 * mean.abs().max(1.0) {
            0.0
        } else {
            1.0
        };
    }
    let t = (x - mean) / (sd * (1.0 + 1.0 / n as f64).sqrt());
    let dist = StudentsT::new(0.0, 1.0, (n - 1) as f64).expect("a valid t");
    1.0 - dist.cdf(t)
}

/// The energy statistic of splitting `xs` at `k` (E-divisive means with
/// α = 1, Matteson & James 2014): `k(n−k)/n · (2·mean|x−y| − mean|x−x'| −
/// mean|y−y'|)`.
fn energy(xs: &[f64], k: usize) -> f64 {
    let (left, right) = xs.split_at(k);
    let (m, n) = (left.len() as f64, right.len() as f64);
    let between: f64 = left
        .iter()
        .map(|a| right.iter().map(|b| (a - b).abs()).sum::<f64>())
        .sum::<f64>()
        / (m * n);
    let within = |s: &[f64]| {
        if s.len() < 2 {
            return 0.0;
        }
        let mut sum = 0.0;
        for i in 0..s.len() {
            for j in i + 1..s.len() {
                sum += (s[i] - s[j]).abs();
            }
        }
        sum / (s.len() * (s.len() - 1) / 2) as f64
    };
    m * n / (m + n) * (2.0 * between - within(left) - within(right))
}

/// The best split of `xs` (each side at least `min_size` long) and its
/// statistic.
fn best_split(xs: &[f64], min_size: usize) -> Option<(usize, f64)> {
    (min_size..=xs.len().saturating_sub(min_size))
        .map(|k| (k, energy(xs, k)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// Change points of a series by E-divisive means: the best split of a
/// segment is kept when a permutation test (`permutations` shuffles of the
/// segment, seeded) puts its statistic's p-value below `alpha`, and both
/// sides are searched again. Each point is the index of the first value of
/// a new regime, in increasing order.
pub fn change_points(xs: &[f64], alpha: f64, min_size: usize, permutations: usize) -> Vec<usize> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x9a7e);
    let mut found = Vec::new();
    let mut segments = vec![(0usize, xs.len())];
    while let Some((from, to)) = segments.pop() {
        let seg = &xs[from..to];
        if seg.len() < 2 * min_size {
            continue;
        }
        let Some((k, stat)) = best_split(seg, min_size) else {
            continue;
        };
        let mut shuffled = seg.to_vec();
        let mut as_large = 0usize;
        for _ in 0..permutations {
            shuffled.shuffle(&mut rng);
            if best_split(&shuffled, min_size).is_some_and(|(_, s)| s >= stat) {
                as_large += 1;
            }
        }
        let p = (as_large + 1) as f64 / (permutations + 1) as f64;
        if p < alpha {
            found.push(from + k);
            segments.push((from, from + k));
            segments.push((from + k, to));
        }
    }
    found.sort_unstable();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let xs = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(median(&xs), 2.5);
        assert_eq!(quantile(&xs, 0.0), 1.0);
        assert_eq!(quantile(&xs, 1.0), 4.0);
        assert_eq!(quantile(&xs, 0.25), 1.75);
    }

    #[test]
    fn mann_whitney_sees_a_shift_and_not_its_absence() {
        let b: Vec<f64> = (0..30).map(|i| 100.0 + (i % 7) as f64).collect();
        let shifted: Vec<f64> = (0..10).map(|i| 110.0 + (i % 5) as f64).collect();
        let same: Vec<f64> = (0..10).map(|i| 100.0 + (i % 7) as f64).collect();
        assert!(mann_whitney_greater(&shifted, &b) < 1e-4);
        assert!(mann_whitney_greater(&same, &b) > 0.2);
        // The other direction is no evidence.
        assert!(mann_whitney_greater(&b, &shifted) > 0.99);
        assert_eq!(mann_whitney_greater(&[1.0, 1.0], &[1.0, 1.0]), 1.0);
    }

    #[test]
    fn mann_whitney_matches_a_known_value() {
        // a = 4 5 6, b = 1 2 3: U = 9, mean 4.5, var 5.25, z = (9-4.5-0.5)/√5.25.
        let p = mann_whitney_greater(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]);
        assert!((p - 0.040_57).abs() < 1e-3, "{p}");
    }

    #[test]
    fn prediction_needs_a_value_far_outside_the_spread() {
        let base = [10.0, 11.0, 9.0, 10.5, 9.5];
        assert!(prediction_greater(10.2, &base) > 0.3);
        assert!(prediction_greater(20.0, &base) < 0.001);
        assert_eq!(prediction_greater(5.0, &[3.0, 3.0, 3.0]), 0.0);
        assert_eq!(prediction_greater(3.0, &[3.0, 3.0, 3.0]), 1.0);
    }

    #[test]
    fn a_step_is_found_where_it_is() {
        let mut xs: Vec<f64> = (0..6).map(|i| 1.0 + 0.01 * (i % 3) as f64).collect();
        xs.extend((0..6).map(|i| 3.0 + 0.01 * (i % 2) as f64));
        assert_eq!(change_points(&xs, 0.05, 3, 199), vec![6]);
        let flat: Vec<f64> = (0..12).map(|i| 1.0 + 0.01 * ((i * 7) % 5) as f64).collect();
        assert!(change_points(&flat, 0.05, 3, 199).is_empty());
    }
}
