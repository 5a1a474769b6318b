//! Latency samples of one round: p50 and p99 (the definition is shared
//! with `dlock bench`, in [`conformance::stats`]).

use conformance::stats::{micros, percentile};
use std::time::Duration;

/// The sorted latencies of one round.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    sorted: Vec<Duration>,
}

impl Latencies {
    /// Sorts `samples`.
    pub fn new(mut samples: Vec<Duration>) -> Latencies {
        samples.sort_unstable();
        Latencies { sorted: samples }
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The `p`-th percentile in microseconds (NaN without samples).
    pub fn micros(&self, p: f64) -> f64 {
        percentile(&self.sorted, p).map_or(f64::NAN, micros)
    }

    /// The median in microseconds.
    pub fn p50(&self) -> f64 {
        self.micros(0.50)
    }

    /// The 99th percentile in microseconds.
    pub fn p99(&self) -> f64 {
        self.micros(0.99)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_micros() {
        let l = Latencies::new((1..=100).rev().map(Duration::from_micros).collect());
        assert_eq!(l.p50(), 50.0);
        assert_eq!(l.p99(), 99.0);
        assert_eq!(l.len(), 100);
        assert!(Latencies::new(vec![]).p50().is_nan());
    }
}
