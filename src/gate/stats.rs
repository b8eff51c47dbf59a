//! The statistics the gate decides with: robust summaries, a one-sided
//! stratified rank test (Mann–Whitney per second), a one-sided prediction test for a single new value,
//! and E-divisive means change points for the trend.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use statrs::distribution::{ContinuousCDF, StudentsT};

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

/// The standard deviation as the median absolute deviation estimates it
/// (× 1.4826, which makes it the standard deviation of normal data): one
/// baseline that ran on a busy spell moves it little, where it would
/// inflate the sample standard deviation. 0 for fewer than two values.
pub fn robust_sd(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let centre = median(xs);
    let deviations: Vec<f64> = xs.iter().map(|x| (x - centre).abs()).collect();
    1.4826 * median(&deviations)
}

/// Robust coefficient of variation (`robust_sd / median`); `None` when the
/// median is 0.
pub fn cv(xs: &[f64]) -> Option<f64> {
    let centre = median(xs);
    (centre.abs() > f64::EPSILON).then(|| robust_sd(xs) / centre.abs())
}

/// One-sided stratified rank test (Mann–Whitney within each stratum, the
/// strata combined as van Elteren does; here every stratum holds one
/// candidate value): `strata` pairs the candidate's value with the
/// baselines' values of the same stratum (the same second of the
/// timeline, so warm-up and phase shapes compare like with like). The
/// statistic is the sum of the candidate's mid-ranks; its p-value of
/// "the candidate tends to be larger" is exact under the null hypothesis
/// that each rank is uniform (ties split). 1 without strata.
pub fn stratified_rank_greater(strata: &[(f64, Vec<f64>)]) -> f64 {
    // Doubled ranks, so that mid-ranks of ties stay whole numbers.
    let mut observed = 0usize;
    // dist[s]: probability that the doubled rank sum is s.
    let mut dist = vec![1.0f64];
    for (c, base) in strata {
        if base.is_empty() {
            continue;
        }
        let below = base.iter().filter(|b| *b < c).count();
        let equal = base.iter().filter(|b| *b == c).count();
        observed += 2 * (below + 1) + equal;
        let n = base.len() + 1;
        let mut next = vec![0.0; dist.len() + 2 * n];
        for (s, p) in dist.iter().enumerate() {
            for r in 1..=n {
                next[s + 2 * r] += p / n as f64;
            }
        }
        dist = next;
    }
    if dist.len() == 1 {
        return 1.0;
    }
    dist[observed.min(dist.len())..]
        .iter()
        .sum::<f64>()
        .min(1.0)
}

/// One-sided prediction test: the p-value of "`x` is larger than a new
/// draw from the population `sample` came from" (Student's t with n − 1
/// degrees of freedom on `(x − median) / (sd·√(1 + 1/n))`, with the robust
/// centre and spread so that one outlying baseline neither hides a change
/// nor invents one, the spread taken as at least `noise_floor` of the
/// median). With no spread at all (a median of 0 and equal values), 0 if
/// `x` is above it and 1 if not.
pub fn prediction_greater(x: f64, sample: &[f64], noise_floor: f64) -> f64 {
    let n = sample.len();
    if n < 2 {
        return 1.0;
    }
    let centre = median(sample);
    let sd = robust_sd(sample).max(noise_floor * centre.abs());
    if sd <= f64::EPSILON * centre.abs().max(1.0) {
        return if x > centre + 1e-9 * centre.abs().max(1.0) {
            0.0
        } else {
            1.0
        };
    }
    let t = (x - centre) / (sd * (1.0 + 1.0 / n as f64).sqrt());
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
    fn the_stratified_rank_test_sees_a_shift_and_not_its_absence() {
        // Five seconds that fall over the run (warm-up), five baselines.
        let base = |t: usize| {
            (0..5)
                .map(|r| 100.0 - 10.0 * t as f64 + r as f64)
                .collect::<Vec<_>>()
        };
        let shifted: Vec<(f64, Vec<f64>)> =
            (0..5).map(|t| (108.0 - 10.0 * t as f64, base(t))).collect();
        let same: Vec<(f64, Vec<f64>)> =
            (0..5).map(|t| (102.0 - 10.0 * t as f64, base(t))).collect();
        // Above every baseline in every second: (1/6)^5.
        let p = stratified_rank_greater(&shifted);
        assert!((p - 1.0 / 7776.0).abs() < 1e-9, "{p}");
        assert!(stratified_rank_greater(&same) > 0.2);
        let lower: Vec<(f64, Vec<f64>)> = (0..5).map(|t| (0.0, base(t))).collect();
        assert!((stratified_rank_greater(&lower) - 1.0).abs() < 1e-9);
        assert_eq!(stratified_rank_greater(&[]), 1.0);
    }

    #[test]
    fn the_stratified_rank_test_matches_a_hand_count() {
        // Two strata of one baseline each: ranks 1..2 each; sum 4 (both
        // above) has p 1/4, sum >= 3 has p 3/4.
        let both = [(2.0, vec![1.0]), (2.0, vec![1.0])];
        assert!((stratified_rank_greater(&both) - 0.25).abs() < 1e-12);
        let one = [(2.0, vec![1.0]), (0.0, vec![1.0])];
        assert!((stratified_rank_greater(&one) - 0.75).abs() < 1e-12);
        // A tie is half a rank: sum 3.5 of 4.
        let tie = [(2.0, vec![1.0]), (1.0, vec![1.0])];
        assert!((stratified_rank_greater(&tie) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn prediction_needs_a_value_far_outside_the_spread() {
        let base = [10.0, 11.0, 9.0, 10.5, 9.5];
        assert!(prediction_greater(10.2, &base, 0.0) > 0.3);
        assert!(prediction_greater(20.0, &base, 0.0) < 0.001);
        // Five equal baselines do not make a change within the noise
        // floor significant.
        let flat = [100.0; 5];
        assert!(prediction_greater(105.0, &flat, 0.05) > 0.1);
        assert!(prediction_greater(130.0, &flat, 0.05) < 0.01);
        assert!(prediction_greater(130.0, &flat, 0.10) > 0.01);
        assert!(prediction_greater(5.0, &[3.0, 3.0, 3.0], 0.05) < 0.01);
        // One baseline from a busy spell does not hide a doubling (CI: its
        // sample standard deviation had put p at 0.0135).
        let spell = [2381.0, 2397.0, 3525.0, 2239.0, 2187.0];
        assert!(prediction_greater(4619.0, &spell, 0.10) < 0.001);
        assert!(prediction_greater(2600.0, &spell, 0.10) > 0.2);
        assert!(prediction_greater(3.0, &[3.0, 3.0, 3.0], 0.05) >= 0.5);
        assert_eq!(prediction_greater(1.0, &[0.0, 0.0, 0.0], 0.1), 0.0);
        assert_eq!(prediction_greater(0.0, &[0.0, 0.0, 0.0], 0.1), 1.0);
    }

    #[test]
    fn the_spread_is_robust_to_one_outlier() {
        let spell = [2381.0, 2397.0, 3525.0, 2239.0, 2187.0];
        // Deviations from 2381: 0, 16, 1144, 142, 194; their median 142.
        assert!((robust_sd(&spell) - 1.4826 * 142.0).abs() < 1e-9);
        let rcv = cv(&spell).unwrap();
        assert!((rcv - 1.4826 * 142.0 / 2381.0).abs() < 1e-12, "{rcv}");
        // The sample standard deviation is 550, a CV of 22 %.
        let mean = spell.iter().sum::<f64>() / 5.0;
        let var = spell.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4.0;
        assert!(var.sqrt() / mean > 0.2);
        assert_eq!(robust_sd(&[5.0]), 0.0);
        assert_eq!(cv(&[0.0, 0.0]), None);
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
