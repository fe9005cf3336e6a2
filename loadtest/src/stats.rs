//! Latency percentiles.

use std::time::Duration;

/// Percentiles of a set of samples, in milliseconds.
#[derive(Debug, Default)]
pub struct Summary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// Sorts `samples` and summarises them.
    pub fn of(samples: &mut [Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let at = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
        let total: Duration = samples.iter().sum();
        Self {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: ms(samples[samples.len() - 1]),
            mean: ms(total) / samples.len() as f64,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let r = |v: f64| (v * 1000.0).round() / 1000.0;
        serde_json::json!({
            "p50": r(self.p50), "p90": r(self.p90), "p99": r(self.p99),
            "p999": r(self.p999), "max": r(self.max), "mean": r(self.mean),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let mut s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let summary = Summary::of(&mut s);
        assert_eq!((summary.p50, summary.p99, summary.max), (51.0, 99.0, 100.0));
    }
}
