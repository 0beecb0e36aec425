//! Latency summaries. Percentiles are nearest-rank over every sample taken (no histogram
//! buckets), so a p99 of 200 samples is the 198th smallest.

use std::time::Duration;

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub n: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
    pub max_us: f64,
}

fn us(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn summarize(mut samples: Vec<Duration>) -> Summary {
    if samples.is_empty() {
        return Summary::default();
    }
    samples.sort_unstable();
    let total: Duration = samples.iter().sum();
    Summary {
        n: samples.len(),
        p50_us: us(percentile(&samples, 50.0)),
        p99_us: us(percentile(&samples, 99.0)),
        mean_us: us(total) / samples.len() as f64,
        max_us: us(*samples.last().unwrap_or(&Duration::ZERO)),
    }
}

impl Summary {
    pub fn json(&self) -> Value {
        json!({
            "samples": self.n,
            "p50_us": round1(self.p50_us),
            "p99_us": round1(self.p99_us),
            "mean_us": round1(self.mean_us),
            "max_us": round1(self.max_us),
        })
    }
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Milliseconds with two decimals, for tables.
pub fn ms(us: f64) -> String {
    format!("{:.2}", us / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let samples: Vec<Duration> = (1..=200).map(Duration::from_micros).collect();
        let s = summarize(samples);
        assert_eq!(s.p50_us, 100.0);
        assert_eq!(s.p99_us, 198.0);
        assert_eq!(s.max_us, 200.0);
    }
}
