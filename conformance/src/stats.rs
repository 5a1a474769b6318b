//! Percentiles and medians, shared by every benchmark in the workspace
//! (`dlock bench` and the `dlock-bench` harness), so that a "p99" means
//! the same thing in every table.

use std::time::Duration;

/// The `p`-th percentile (0 < p <= 1) of `sorted` (ascending), by nearest
/// rank: the smallest sample with at least `p` of the samples at or below
/// it. `None` when there are no samples.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median, lowest and highest of `values` (in any order, NaN sorted
/// last): how a figure measured over several rounds is reported. `None`
/// when there are no values.
pub fn median_and_range(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = percentile(&sorted, 0.5)?;
    Some((median, sorted[0], sorted[sorted.len() - 1]))
}

/// `d` in microseconds.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_pick_ranks() {
        let sorted: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&sorted, 0.5), Some(ms(50)));
        assert_eq!(percentile(&sorted, 0.99), Some(ms(99)));
        assert_eq!(percentile(&[ms(7)], 0.99), Some(ms(7)));
        assert_eq!(percentile::<Duration>(&[], 0.5), None);
    }

    #[test]
    fn median_and_range_of_rounds() {
        assert_eq!(
            median_and_range(&[3.0, 1.0, 2.0, 9.0, 4.0]),
            Some((3.0, 1.0, 9.0))
        );
        assert_eq!(median_and_range(&[]), None);
    }
}
