//! Latency samples and their summary (median, p99 by nearest rank).

use std::time::Duration;

/// The samples of one measured series, in microseconds, sorted.
#[derive(Debug, Clone)]
pub struct Series {
    /// What was measured ("bwrap --unshare-all", "stockade run", "64 B"…).
    pub name: String,
    /// Sorted samples in microseconds.
    pub us: Vec<f64>,
}

impl Series {
    /// Sorts the samples.
    pub fn new(name: impl Into<String>, samples: &[Duration]) -> Self {
        let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(f64::total_cmp);
        Self {
            name: name.into(),
            us,
        }
    }

    /// Nearest-rank percentile (`p` in 0..=100); 0 for an empty series.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.us.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * self.us.len() as f64).ceil().max(1.0);
        // `rank` is within 1..=len by construction.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let idx = (rank as usize).min(self.us.len()) - 1;
        self.us[idx]
    }

    /// The median.
    pub fn median(&self) -> f64 {
        self.percentile(50.0)
    }

    /// The 99th percentile.
    pub fn p99(&self) -> f64 {
        self.percentile(99.0)
    }
}

/// Human form of a duration given in microseconds.
pub fn fmt_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Series::new(
            "x",
            &(1..=100).map(Duration::from_micros).collect::<Vec<_>>(),
        );
        assert_eq!(s.median(), 50.0);
        assert_eq!(s.p99(), 99.0);
        assert_eq!(s.percentile(100.0), 100.0);
        let one = Series::new("y", &[Duration::from_micros(7)]);
        assert_eq!((one.median(), one.p99()), (7.0, 7.0));
        assert_eq!(Series::new("z", &[]).median(), 0.0);
    }

    #[test]
    fn formatting_picks_a_unit() {
        assert_eq!(fmt_us(12.4), "12 µs");
        assert_eq!(fmt_us(1500.0), "1.50 ms");
        assert_eq!(fmt_us(25_000.0), "25.0 ms");
    }
}
