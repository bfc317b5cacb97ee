//! Sampling helpers over one seeded [`StdRng`]: weighted choices, normal,
//! Poisson and log-normal draws. Every draw goes through the generator's one
//! random stream, so a seed fixes the whole log.

use rand::Rng;
use rand::rngs::StdRng;

/// Cumulative weights for sampling an index.
#[derive(Debug, Clone)]
pub(super) struct Weighted {
    pub(super) cumulative: Vec<f64>,
}

impl Weighted {
    pub(super) fn new(weights: impl IntoIterator<Item = f64>) -> Self {
        let mut total = 0.0;
        let cumulative = weights
            .into_iter()
            .map(|w| {
                total += w.max(0.0);
                total
            })
            .collect();
        Weighted { cumulative }
    }

    /// Weights `1 / (k + 1)^s`: Zipf-like popularity.
    pub(super) fn zipf(n: usize, s: f64) -> Self {
        Weighted::new((0..n.max(1)).map(|k| 1.0 / ((k + 1) as f64).powf(s)))
    }

    pub(super) fn pick(&self, rng: &mut StdRng) -> usize {
        let total = *self.cumulative.last().unwrap_or(&0.0);
        let x = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.cumulative.len().saturating_sub(1))
    }
}

/// The items of a weighted table, and their weights.
pub(super) fn table<T: Copy>(items: &[(T, u32)]) -> (Vec<T>, Weighted) {
    (
        items.iter().map(|&(t, _)| t).collect(),
        Weighted::new(items.iter().map(|&(_, w)| f64::from(w))),
    )
}

/// A standard normal sample (Box–Muller).
pub(super) fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A Poisson sample: exact (Knuth) for small means, normal approximation above.
pub(super) fn poisson(rng: &mut StdRng, mean: f64) -> u64 {
    if mean <= 0.0 || !mean.is_finite() {
        return 0;
    }
    if mean < 30.0 {
        let limit = (-mean).exp();
        let mut k = 0;
        let mut p: f64 = rng.random();
        while p > limit {
            k += 1;
            p *= rng.random::<f64>();
        }
        return k;
    }
    (mean + mean.sqrt() * normal(rng)).round().max(0.0) as u64
}

/// Uniform in `0..n` (`n` > 0).
pub(super) fn below(rng: &mut StdRng, n: u64) -> u64 {
    rng.random_range(0..n)
}

/// Uniform in [0, 1).
pub(super) fn unit(rng: &mut StdRng) -> f64 {
    rng.random()
}

pub(super) fn chance(rng: &mut StdRng, p: f64) -> bool {
    unit(rng) < p
}

/// Skewed towards 0 in `0..n`: a few values are hot, most are rare.
pub(super) fn skewed(rng: &mut StdRng, n: u64) -> u64 {
    ((unit(rng).powi(3) * n as f64) as u64).min(n - 1)
}

pub(super) fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// Log-normal around `median` (spread about ×2.5 either side), from a cheap
/// near-normal: the sum of four uniforms.
pub(super) fn log_normal(rng: &mut StdRng, median: f64) -> f64 {
    let z = (0..4).map(|_| unit(rng)).sum::<f64>() - 2.0;
    median * (1.6 * z).exp()
}
