//! A small seeded generator and the samplers the simulation needs (uniform, normal,
//! Poisson, lognormal).
//!
//! Written here rather than taken from `rand`: the simulation needs a handful of samplers
//! and bit-for-bit reproducible streams from a seed, and a new dependency would change
//! the workspace's lockfile for that alone.

use crate::stats::ln_gamma;

/// xoshiro256** (Blackman and Vigna), seeded through SplitMix64 so that nearby seeds give
/// unrelated streams. Deterministic across platforms.
#[derive(Clone, Debug)]
pub struct Random {
    state: [u64; 4],
}

impl Random {
    pub fn seed_from_u64(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self {
            state: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1), 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1): safe to take the logarithm of.
    fn uniform_open(&mut self) -> f64 {
        loop {
            let u = self.uniform();
            if u > 0.0 {
                return u;
            }
        }
    }

    /// Standard normal (Box–Muller; one of the pair is discarded to keep the stream
    /// stateless between calls).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform_open();
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// A lognormal multiplier with mean 1 and coefficient of variation `cv` (1 when cv is 0).
    pub fn lognormal_multiplier(&mut self, cv: f64) -> f64 {
        if cv <= 0.0 {
            return 1.0;
        }
        let sigma2 = (1.0 + cv * cv).ln();
        (sigma2.sqrt() * self.normal() - 0.5 * sigma2).exp()
    }

    /// Poisson with the given mean (>= 0): inversion for small means, PTRS (Hörmann's
    /// transformed rejection, as in NumPy) for means of 10 and more.
    pub fn poisson(&mut self, mean: f64) -> f64 {
        if mean <= 0.0 || !mean.is_finite() {
            return 0.0;
        }
        if mean < 10.0 {
            let mut k = 0.0;
            let mut probability = (-mean).exp();
            let mut cumulative = probability;
            let u = self.uniform();
            while u > cumulative && probability > 0.0 {
                k += 1.0;
                probability *= mean / k;
                cumulative += probability;
            }
            return k;
        }
        let log_mean = mean.ln();
        let b = 0.931 + 2.53 * mean.sqrt();
        let a = -0.059 + 0.02483 * b;
        let inverse_alpha = 1.1239 + 1.1328 / (b - 3.4);
        let v_r = 0.9277 - 3.6224 / (b - 2.0);
        loop {
            let u = self.uniform() - 0.5;
            let v = self.uniform_open();
            let us = 0.5 - u.abs();
            let k = ((2.0 * a / us + b) * u + mean + 0.43).floor();
            if us >= 0.07 && v <= v_r {
                return k;
            }
            if k < 0.0 || (us < 0.013 && v > us) {
                continue;
            }
            if v.ln() + inverse_alpha.ln() - (a / (us * us) + b).ln()
                <= -mean + k * log_mean - ln_gamma(k + 1.0)
            {
                return k;
            }
        }
    }
}

/// The standard normal distribution function Φ (about 1e-13 relative in the tails).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// The complementary error function: erf's Maclaurin series below 2, the continued
/// fraction (Lentz) from 2 on, where the series would lose the tail to cancellation.
fn erfc(x: f64) -> f64 {
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 2.0 {
        // erf by its Maclaurin series (converges fast for |x| < 2).
        let mut term = x;
        let mut sum = x;
        let x2 = x * x;
        for n in 1..200 {
            let n = n as f64;
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() <= 1e-17 * sum.abs() {
                break;
            }
        }
        return 1.0 - 2.0 / std::f64::consts::PI.sqrt() * sum;
    }
    // Continued fraction (Lentz) for erfc, x >= 2.
    let tiny = 1e-300;
    let mut f = x;
    let mut c = x;
    let mut d = 0.0;
    for i in 1..300 {
        let a = i as f64 / 2.0;
        d = x + a * d;
        d = if d.abs() < tiny { tiny } else { d };
        c = x + a / c;
        c = if c.abs() < tiny { tiny } else { c };
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x * x).exp() / f / std::f64::consts::PI.sqrt()
}

/// Φ⁻¹(p) for p in (0, 1): Acklam's rational approximation refined by one Halley step.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let low = 0.02425;
    let x = if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let error = normal_cdf(x) - p;
    let u = error * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_has_the_right_mean_and_variance() {
        for mean in [0.3, 4.0, 12.0, 150.0] {
            let mut random = Random::seed_from_u64(7);
            let n = 40_000;
            let draws: Vec<f64> = (0..n).map(|_| random.poisson(mean)).collect();
            let average = draws.iter().sum::<f64>() / n as f64;
            let variance = draws.iter().map(|d| (d - average).powi(2)).sum::<f64>() / n as f64;
            let tolerance = 5.0 * (mean / n as f64).sqrt();
            assert!((average - mean).abs() < tolerance, "{mean}: {average}");
            assert!((variance / mean - 1.0).abs() < 0.05, "{mean}: {variance}");
        }
    }

    #[test]
    fn normal_functions_agree() {
        for (x, phi) in [
            (0.0, 0.5),
            (1.0, 0.841_344_746_068_542_9),
            (-2.326_347_874_040_841, 0.01),
        ] {
            assert!((normal_cdf(x) - phi).abs() < 1e-12, "{x}");
            assert!((normal_quantile(phi) - x).abs() < 1e-9, "{phi}");
        }
        assert!((normal_cdf(5.0) - (1.0 - 2.866_515_718_791_939e-7)).abs() < 1e-15);
    }
}
