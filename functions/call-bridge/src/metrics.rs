//! Per-call measurements: latency samples inside the bridge per audio frame in each direction, and the
//! call's metrics line.

/// At most this many samples per direction per call (a 30-minute call has 90,000 frames each way).
const MAX_SAMPLES: usize = 100_000;

/// Durations in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples(Vec<u32>);

impl Samples {
    pub fn record(&mut self, elapsed: std::time::Duration) {
        if self.0.len() < MAX_SAMPLES {
            self.0
                .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `q`-quantile (0.0 to 1.0) by the nearest-rank method.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.0.is_empty() {
            return None;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).max(1);
        sorted.get(rank - 1).map(|&v| u64::from(v))
    }

    pub fn values(&self) -> &[u32] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut s = Samples::default();
        assert_eq!(s.quantile(0.5), None);
        for us in 1..=100 {
            s.record(Duration::from_micros(us));
        }
        assert_eq!(s.quantile(0.5), Some(50));
        assert_eq!(s.quantile(0.99), Some(99));
        assert_eq!(s.quantile(1.0), Some(100));
        assert_eq!(s.quantile(0.0), Some(1));
    }
}
