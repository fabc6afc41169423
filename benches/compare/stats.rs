//! Latency samples and their summary (nearest-rank percentiles, in milliseconds).

use std::time::Duration;

use serde::Serialize;

/// What one latency series came to.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub calls: usize,
    pub errors: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

/// Durations of successful calls plus a count of failed ones.
#[derive(Default)]
pub struct Samples {
    ok: Vec<Duration>,
    pub errors: usize,
}

impl Samples {
    pub fn push(&mut self, took: Duration) {
        self.ok.push(took);
    }

    pub fn record<E>(&mut self, took: Duration, result: Result<(), E>) {
        match result {
            Ok(()) => self.push(took),
            Err(_) => self.errors += 1,
        }
    }

    pub fn len(&self) -> usize {
        self.ok.len()
    }

    pub fn summary(&self) -> Latency {
        let mut ms: Vec<f64> = self.ok.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let rank = |q: f64| -> f64 {
            if ms.is_empty() {
                return f64::NAN;
            }
            // Nearest rank: the smallest sample with at least q of the samples at or below it.
            let i = ((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1;
            ms[i]
        };
        Latency {
            calls: ms.len(),
            errors: self.errors,
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            mean_ms: if ms.is_empty() {
                f64::NAN
            } else {
                ms.iter().sum::<f64>() / ms.len() as f64
            },
            min_ms: ms.first().copied().unwrap_or(f64::NAN),
            max_ms: ms.last().copied().unwrap_or(f64::NAN),
        }
    }
}
