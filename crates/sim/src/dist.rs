//! Distributions for latencies, session lengths and sizes, sampled from a seeded generator
//! ([`servent_core::Rng`], or the simulator's fast [`servent_core::rng::FastRng`]).

#[cfg(test)]
use servent_core::Rng;
use servent_core::rng::Unit;

/// A distribution of non-negative values (seconds, milliseconds, bytes: the caller's unit).
#[derive(Clone, Debug, PartialEq)]
pub enum Dist {
    /// Always this value.
    Constant(f64),
    /// Uniform in [lo, hi).
    Uniform(f64, f64),
    /// Exponential with this mean.
    Exponential(f64),
    /// Log-normal: `exp(N(mu, sigma))`. Its median is `exp(mu)`.
    LogNormal {
        /// Mean of the underlying normal.
        mu: f64,
        /// Standard deviation of the underlying normal.
        sigma: f64,
    },
    /// Pareto with minimum `scale` and tail index `shape` (heavy-tailed session lengths).
    Pareto {
        /// Smallest value.
        scale: f64,
        /// Tail index (> 0; the mean is finite for shape > 1).
        shape: f64,
    },
}

impl Dist {
    /// A log-normal distribution with the given median and `sigma`.
    pub fn lognormal_median(median: f64, sigma: f64) -> Dist {
        Dist::LogNormal {
            mu: median.max(f64::MIN_POSITIVE).ln(),
            sigma,
        }
    }

    /// One sample (never negative, never NaN).
    pub fn sample<R: Unit>(&self, rng: &mut R) -> f64 {
        let v = match *self {
            Dist::Constant(c) => c,
            Dist::Uniform(lo, hi) => lo + (hi - lo) * rng.unit01(),
            Dist::Exponential(mean) => -mean * (1.0 - rng.unit01()).ln(),
            Dist::LogNormal { mu, sigma } => (mu + sigma * std_normal(rng)).exp(),
            Dist::Pareto { scale, shape } => scale / (1.0 - rng.unit01()).powf(1.0 / shape),
        };
        if v.is_finite() && v > 0.0 { v } else { 0.0 }
    }

    /// The distribution's median (for reports).
    pub fn median(&self) -> f64 {
        match *self {
            Dist::Constant(c) => c,
            Dist::Uniform(lo, hi) => (lo + hi) / 2.0,
            Dist::Exponential(mean) => mean * std::f64::consts::LN_2,
            Dist::LogNormal { mu, .. } => mu.exp(),
            Dist::Pareto { scale, shape } => scale * 2f64.powf(1.0 / shape),
        }
    }
}

/// A standard normal sample (Box–Muller).
fn std_normal<R: Unit>(rng: &mut R) -> f64 {
    let u1 = 1.0 - rng.unit01(); // (0, 1]
    let u2 = rng.unit01();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn median_of(d: &Dist) -> f64 {
        let mut rng = Rng::new(3);
        let mut v: Vec<f64> = (0..20_001).map(|_| d.sample(&mut rng)).collect();
        v.sort_by(f64::total_cmp);
        v[10_000]
    }

    #[test]
    fn sample_medians_match_the_formula() {
        for d in [
            Dist::Constant(5.0),
            Dist::Uniform(10.0, 20.0),
            Dist::Exponential(2.0),
            Dist::lognormal_median(50.0, 0.5),
            Dist::Pareto {
                scale: 1.0,
                shape: 1.5,
            },
        ] {
            let (got, want) = (median_of(&d), d.median());
            assert!((got - want).abs() <= want * 0.05, "{d:?}: {got} vs {want}");
        }
    }
}
