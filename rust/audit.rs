//! Per-example epsilon of the NeurIPS 2023 unlearning challenge (Triantafillou et al., 2024),
//! the hot loop of `unlearnkit.metrics.per_example_epsilon`.
//!
//! For one forget example, `u` holds its logit-scaled confidence under the K_u unlearned models
//! and `r` under the K_r retrained models. The score sweeps two families of decision rules
//! (`../shared/papers/evaluation.md`, section 1):
//!
//! * thresholds: "positive" = phi >= t, the positive pool being the one with the larger median,
//!   t over `ceil(100 (hi - lo))` evenly spaced values from lo to hi;
//! * bands: "positive" = l <= phi <= h, the positive pool being the peakier one (range w),
//!   h over `ceil(100 (hi_p - lo_p - w + 4))` values from `lo_p + w - 2` to `hi_p + 2` and, for
//!   each h, l over 400 values from `h - w - 2` to `h - w + 2`.
//!
//! Numerical invariants:
//! * every grid value is computed exactly as `numpy.linspace` computes it (`i * step + start`,
//!   the last value `stop`), and every count is an exact comparison with the data, so the rules
//!   and their (FPR, FNR) are those of a brute-force loop over the same grids;
//! * a rule's epsilon depends only on its two error counts, so it is read from a table built
//!   once per call ((K_pos + 1) x (K_neg + 1) entries) instead of two logarithms per rule;
//! * the counts walk pointers over the sorted pools (amortised O(1) per rule, robust to a grid
//!   that is not monotone); within one upper edge h the band's counts change only where a low l
//!   passes a data value, so the lows in between (same counts, same epsilon) are skipped: one
//!   example costs O(K log K + T_t + H (K + 1)) for T_t thresholds and H upper edges.
//!
//! Rule epsilon: FPR = FNR = 0 gives +inf; exactly one of them 0 discards the rule; otherwise
//! `max(0, ln(1 - delta - FPR) - ln FNR, ln(1 - delta - FNR) - ln FPR)`, a term whose first
//! logarithm is of a negative number (FPR or FNR = 1) being left out, and a rule with both terms
//! left out (FPR = FNR = 1: a perfect, inverted separation) giving +inf (the spec leaves these
//! cases open; this is our reading). The example's epsilon is the maximum over rules (0 if none), clipped to [0, 50];
//! `min(range u, range r) / max(range u, range r) < 0.01` gives 50 without a sweep.

use rayon::prelude::*;

use crate::error::CoreError;

/// The epsilon given to a spiky example and the clip of every epsilon.
pub const EPS_MAX: f64 = 50.0;
/// The number of lower edges per upper edge of the band family.
pub const BAND_LOWS: usize = 400;

/// Value `i` of `numpy.linspace(start, stop, num)` (endpoint included), bit for bit.
#[inline]
pub fn linspace_at(start: f64, stop: f64, num: usize, i: usize) -> f64 {
    if num > 1 && i == num - 1 {
        return stop;
    }
    if num <= 1 {
        return (i as f64) * (stop - start) + start;
    }
    let div = (num - 1) as f64;
    let delta = stop - start;
    let step = delta / div;
    if step == 0.0 {
        (i as f64) / div * delta + start
    } else {
        (i as f64) * step + start
    }
}

/// `numpy.linspace(start, stop, num)` with its step computed once: `at(i) == linspace_at(...)`.
#[derive(Clone, Copy)]
struct Grid {
    start: f64,
    stop: f64,
    num: usize,
    div: f64,
    delta: f64,
    step: f64,
}

impl Grid {
    #[inline]
    fn new(start: f64, stop: f64, num: usize) -> Self {
        let div = num.saturating_sub(1) as f64;
        let delta = stop - start;
        Grid {
            start,
            stop,
            num,
            div,
            delta,
            step: delta / div,
        }
    }

    /// The first index `i >= from` with `at(i) > v` (`num` if none), for an increasing grid.
    #[inline]
    fn first_above(&self, v: f64, from: usize) -> usize {
        if from >= self.num {
            return self.num;
        }
        let mut i = from;
        if self.num > 1 && self.step > 0.0 {
            let guess = ((v - self.start) / self.step).floor() + 1.0;
            if guess > from as f64 {
                i = if guess >= self.num as f64 {
                    self.num
                } else {
                    guess as usize
                };
            }
        }
        while i > from && self.at(i - 1) > v {
            i -= 1;
        }
        while i < self.num && self.at(i) <= v {
            i += 1;
        }
        i
    }

    #[inline]
    fn at(&self, i: usize) -> f64 {
        if self.num <= 1 {
            (i as f64) * self.delta + self.start
        } else if i == self.num - 1 {
            self.stop
        } else if self.step == 0.0 {
            (i as f64) / self.div * self.delta + self.start
        } else {
            (i as f64) * self.step + self.start
        }
    }
}

/// The epsilon of one rule from its FPR and FNR; `None` when the rule is discarded.
pub fn rule_epsilon(fpr: f64, fnr: f64, delta: f64) -> Option<f64> {
    if fpr == 0.0 && fnr == 0.0 {
        return Some(f64::INFINITY);
    }
    if fpr == 0.0 || fnr == 0.0 {
        return None;
    }
    let e1 = (1.0 - delta - fpr).ln() - fnr.ln();
    let e2 = (1.0 - delta - fnr).ln() - fpr.ln();
    let e = match (e1.is_nan(), e2.is_nan()) {
        (true, true) => f64::INFINITY,
        (true, false) => e2,
        (false, true) => e1,
        (false, false) => e1.max(e2),
    };
    Some(e.max(0.0))
}

/// Rule epsilons indexed by (false negatives, false positives) of a (k_pos, k_neg) pair of
/// pools; discarded rules hold -inf, so a maximum over rules ignores them.
struct Table {
    k_neg: usize,
    vals: Vec<f64>,
}

impl Table {
    fn new(k_pos: usize, k_neg: usize, delta: f64) -> Self {
        let mut vals = Vec::with_capacity((k_pos + 1) * (k_neg + 1));
        for fn_ in 0..=k_pos {
            for fp in 0..=k_neg {
                let fpr = fp as f64 / k_neg as f64;
                let fnr = fn_ as f64 / k_pos as f64;
                vals.push(rule_epsilon(fpr, fnr, delta).unwrap_or(f64::NEG_INFINITY));
            }
        }
        Table { k_neg, vals }
    }

    #[inline]
    fn get(&self, false_neg: usize, false_pos: usize) -> f64 {
        self.vals[false_neg * (self.k_neg + 1) + false_pos]
    }
}

/// Number of values of the sorted `x` that are `< t` (`strict`) or `<= t`, walking from `pos`.
#[inline]
fn walk(x: &[f64], mut pos: usize, t: f64, strict: bool) -> usize {
    if strict {
        while pos > 0 && x[pos - 1] >= t {
            pos -= 1;
        }
        while pos < x.len() && x[pos] < t {
            pos += 1;
        }
    } else {
        while pos > 0 && x[pos - 1] > t {
            pos -= 1;
        }
        while pos < x.len() && x[pos] <= t {
            pos += 1;
        }
    }
    pos
}

fn median(sorted: &[f64]) -> f64 {
    let k = sorted.len();
    if k % 2 == 1 {
        sorted[k / 2]
    } else {
        (sorted[k / 2 - 1] + sorted[k / 2]) / 2.0
    }
}

struct Tables {
    /// unlearned positive, retrained negative
    u_pos: Table,
    /// retrained positive, unlearned negative
    r_pos: Table,
}

/// Threshold family: "positive" = phi >= t.
fn sweep_thresholds(
    pos: &[f64],
    neg: &[f64],
    lo: f64,
    hi: f64,
    table: &Table,
    mut best: f64,
) -> f64 {
    let n_t = (100.0 * (hi - lo)).ceil();
    if !n_t.is_finite() || n_t < 1.0 {
        return best;
    }
    let n_t = n_t as usize;
    let (mut ip, mut ineg) = (0usize, 0usize);
    let grid = Grid::new(lo, hi, n_t);
    for i in 0..n_t {
        let t = grid.at(i);
        ip = walk(pos, ip, t, true); // positives called negative: phi < t
        ineg = walk(neg, ineg, t, true);
        let e = table.get(ip, neg.len() - ineg);
        if e > best {
            best = e;
            if best == f64::INFINITY {
                return best;
            }
        }
    }
    best
}

/// Band family: "positive" = l <= phi <= h, the positive pool being the peakier one.
fn sweep_bands(peaky: &[f64], other: &[f64], table: &Table, mut best: f64) -> f64 {
    let (lo_p, hi_p) = (peaky[0], peaky[peaky.len() - 1]);
    let w = hi_p - lo_p;
    let n_h = (100.0 * (hi_p - lo_p - w + 4.0)).ceil();
    if !n_h.is_finite() || n_h < 1.0 {
        return best;
    }
    let n_h = n_h as usize;
    let (h_start, h_stop) = (lo_p + w - 2.0, hi_p + 2.0);
    let kp = peaky.len();
    let (mut hp, mut ho) = (0usize, 0usize); // counts <= h
    let (mut lp0, mut lo0) = (0usize, 0usize); // counts < l at the first l of the previous h
    let h_grid = Grid::new(h_start, h_stop, n_h);
    for k in 0..n_h {
        let h = h_grid.at(k);
        hp = walk(peaky, hp, h, false);
        ho = walk(other, ho, h, false);
        let l_grid = Grid::new(h - w - 2.0, h - w + 2.0, BAND_LOWS);
        let (mut lp, mut lo) = (lp0, lo0);
        let mut j = 0usize;
        while j < BAND_LOWS {
            let l = l_grid.at(j);
            lp = walk(peaky, lp, l, true);
            lo = walk(other, lo, l, true);
            if j == 0 {
                lp0 = lp;
                lo0 = lo;
            }
            let inside_p = hp.saturating_sub(lp);
            let inside_o = ho.saturating_sub(lo);
            let e = table.get(kp - inside_p, inside_o);
            if e > best {
                best = e;
                if best == f64::INFINITY {
                    return best;
                }
            }
            // The counts below l change only when l passes the next value >= l: skip the lows
            // up to it, whose rule has the same counts (same epsilon).
            let next = peaky
                .get(lp)
                .copied()
                .unwrap_or(f64::INFINITY)
                .min(other.get(lo).copied().unwrap_or(f64::INFINITY));
            if next == f64::INFINITY {
                break;
            }
            j = l_grid.first_above(next, j + 1);
        }
    }
    best
}

fn range(sorted: &[f64]) -> f64 {
    sorted[sorted.len() - 1] - sorted[0]
}

/// Epsilon of one example; `u` and `r` are sorted in place.
fn example_epsilon(u: &mut [f64], r: &mut [f64], tables: &Tables) -> f64 {
    u.sort_unstable_by(f64::total_cmp);
    r.sort_unstable_by(f64::total_cmp);
    let (wu, wr) = (range(u), range(r));
    // 0 / 0 is NaN and NaN < 0.01 is false: two spikes go on to the sweep, as in the challenge.
    if wu.min(wr) / wu.max(wr) < 0.01 {
        return EPS_MAX;
    }
    let lo = u[0].min(r[0]);
    let hi = u[u.len() - 1].max(r[r.len() - 1]);
    let mut best = 0.0f64;
    // ties go to the unlearned pool, for the median and for the range
    best = if median(u) >= median(r) {
        sweep_thresholds(u, r, lo, hi, &tables.u_pos, best)
    } else {
        sweep_thresholds(r, u, lo, hi, &tables.r_pos, best)
    };
    if best < f64::INFINITY {
        best = if wu <= wr {
            sweep_bands(u, r, &tables.u_pos, best)
        } else {
            sweep_bands(r, u, &tables.r_pos, best)
        };
    }
    best.clamp(0.0, EPS_MAX)
}

/// Per-example epsilons of `n` examples.
///
/// `unlearned` is (n, k_u) and `retrained` (n, k_r), row-major: row i holds example i's
/// statistic under every model of the pool. Values must be finite; `delta` in [0, 1).
pub fn challenge_epsilons(
    unlearned: &[f64],
    retrained: &[f64],
    n: usize,
    k_u: usize,
    k_r: usize,
    delta: f64,
) -> Result<Vec<f64>, CoreError> {
    if k_u < 1 || k_r < 1 {
        return Err(CoreError::invalid(
            "unlearned",
            "at least one model in each pool",
            format!("k_u = {k_u}, k_r = {k_r}"),
        ));
    }
    if unlearned.len() != n * k_u {
        return Err(CoreError::invalid(
            "unlearned",
            format!("{} values ({n} x {k_u})", n * k_u),
            format!("{}", unlearned.len()),
        ));
    }
    if retrained.len() != n * k_r {
        return Err(CoreError::invalid(
            "retrained",
            format!("{} values ({n} x {k_r})", n * k_r),
            format!("{}", retrained.len()),
        ));
    }
    if !(0.0..1.0).contains(&delta) {
        return Err(CoreError::invalid(
            "delta",
            "a number in [0, 1)",
            format!("{delta}"),
        ));
    }
    if let Some(i) = unlearned.iter().position(|v| !v.is_finite()) {
        return Err(CoreError::invalid(
            "unlearned",
            "finite values",
            format!("NaN or Inf at example {}", i / k_u),
        ));
    }
    if let Some(i) = retrained.iter().position(|v| !v.is_finite()) {
        return Err(CoreError::invalid(
            "retrained",
            "finite values",
            format!("NaN or Inf at example {}", i / k_r),
        ));
    }
    let tables = Tables {
        u_pos: Table::new(k_u, k_r, delta),
        r_pos: Table::new(k_r, k_u, delta),
    };
    let mut out = vec![0.0f64; n];
    out.par_iter_mut().enumerate().for_each_init(
        || (vec![0.0f64; k_u], vec![0.0f64; k_r]),
        |(bu, br), (i, o)| {
            bu.copy_from_slice(&unlearned[i * k_u..(i + 1) * k_u]);
            br.copy_from_slice(&retrained[i * k_r..(i + 1) * k_r]);
            *o = example_epsilon(bu, br, &tables);
        },
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The spec, literally: every rule's counts by comparing every value with the rule.
    fn brute(u: &[f64], r: &[f64], delta: f64) -> f64 {
        let rng = |x: &[f64]| {
            x.iter().cloned().fold(f64::MIN, f64::max) - x.iter().cloned().fold(f64::MAX, f64::min)
        };
        let (wu, wr) = (rng(u), rng(r));
        if wu.min(wr) / wu.max(wr) < 0.01 {
            return EPS_MAX;
        }
        let mut su = u.to_vec();
        let mut sr = r.to_vec();
        su.sort_by(f64::total_cmp);
        sr.sort_by(f64::total_cmp);
        let lo = su[0].min(sr[0]);
        let hi = su[su.len() - 1].max(sr[sr.len() - 1]);
        let mut best = 0.0f64;
        let mut take = |fpr: f64, fnr: f64| {
            if let Some(e) = rule_epsilon(fpr, fnr, delta) {
                best = best.max(e);
            }
        };
        let (pos, neg) = if median(&su) >= median(&sr) {
            (u, r)
        } else {
            (r, u)
        };
        let n_t = (100.0 * (hi - lo)).ceil() as usize;
        for i in 0..n_t {
            let t = linspace_at(lo, hi, n_t, i);
            let fnr = pos.iter().filter(|&&v| v < t).count() as f64 / pos.len() as f64;
            let fpr = neg.iter().filter(|&&v| v >= t).count() as f64 / neg.len() as f64;
            take(fpr, fnr);
        }
        let (p, o) = if wu <= wr { (&su, &sr) } else { (&sr, &su) };
        let (lo_p, hi_p) = (p[0], p[p.len() - 1]);
        let w = hi_p - lo_p;
        let n_h = (100.0 * (hi_p - lo_p - w + 4.0)).ceil() as usize;
        for k in 0..n_h {
            let h = linspace_at(lo_p + w - 2.0, hi_p + 2.0, n_h, k);
            for j in 0..BAND_LOWS {
                let l = linspace_at(h - w - 2.0, h - w + 2.0, BAND_LOWS, j);
                let outside_p = p.iter().filter(|&&v| !(l <= v && v <= h)).count() as f64;
                let inside_o = o.iter().filter(|&&v| l <= v && v <= h).count() as f64;
                let (fnr, fpr) = (outside_p / p.len() as f64, inside_o / o.len() as f64);
                take(fpr, fnr);
            }
        }
        best.clamp(0.0, EPS_MAX)
    }

    #[test]
    fn linspace_matches_numpy_endpoints() {
        assert_eq!(linspace_at(0.0, 1.0, 5, 0), 0.0);
        assert_eq!(linspace_at(0.0, 1.0, 5, 2), 0.5);
        assert_eq!(linspace_at(0.0, 1.0, 5, 4), 1.0);
        assert_eq!(linspace_at(3.0, 7.0, 1, 0), 3.0);
        assert_eq!(linspace_at(2.0, 2.0, 3, 1), 2.0);
    }

    #[test]
    fn grid_equals_linspace_at() {
        for &(a, b, n) in &[
            (0.0, 1.0, 5),
            (-3.7, 2.2, 400),
            (1.0, 1.0, 3),
            (2.0, 5.0, 1),
            (0.1, 0.3, 2),
        ] {
            let g = Grid::new(a, b, n);
            for i in 0..n {
                assert_eq!(g.at(i).to_bits(), linspace_at(a, b, n, i).to_bits());
            }
        }
    }

    #[test]
    fn rule_epsilon_cases() {
        assert_eq!(rule_epsilon(0.0, 0.0, 1e-5), Some(f64::INFINITY));
        assert_eq!(rule_epsilon(0.0, 0.5, 1e-5), None);
        assert_eq!(rule_epsilon(0.5, 0.0, 1e-5), None);
        // FPR = FNR = 0.5: both terms ln((0.5 - delta) / 0.5) < 0 -> 0
        assert_eq!(rule_epsilon(0.5, 0.5, 1e-5), Some(0.0));
        let e = rule_epsilon(0.25, 0.5, 0.0).unwrap();
        assert!((e - (0.75f64 / 0.5).ln().max((0.5f64 / 0.25).ln())).abs() < 1e-15);
        assert_eq!(rule_epsilon(1.0, 1.0, 1e-5), Some(f64::INFINITY));
    }

    #[test]
    fn spike_and_separation() {
        // one pool a spike: 50 without a sweep
        let e = challenge_epsilons(&[1.0, 1.0, 1.0], &[0.0, 1.0, 2.0], 1, 3, 3, 1e-5).unwrap();
        assert_eq!(e, vec![50.0]);
        // disjoint pools: a threshold separates them, eps = inf -> 50
        let e = challenge_epsilons(&[5.0, 6.0, 7.0], &[0.0, 1.0, 2.0], 1, 3, 3, 1e-5).unwrap();
        assert_eq!(e, vec![50.0]);
        // two identical spikes: the ratio is 0/0, no rule distinguishes them
        let e = challenge_epsilons(&[1.0, 1.0], &[1.0, 1.0], 1, 2, 2, 1e-5).unwrap();
        assert_eq!(e, vec![0.0]);
    }

    #[test]
    fn matches_brute_force_on_random_pools() {
        let mut rng = Rng::new(7);
        for case in 0..12 {
            let (ku, kr) = [(4, 4), (5, 3), (8, 8), (3, 6)][case % 4];
            let shift = (case % 3) as f64 * 0.4;
            let scale = 0.5 + (case % 5) as f64 * 0.3;
            let u: Vec<f64> = (0..ku).map(|_| shift + scale * rng.uniform()).collect();
            let r: Vec<f64> = (0..kr).map(|_| rng.uniform()).collect();
            let fast = challenge_epsilons(&u, &r, 1, ku, kr, 1e-5).unwrap()[0];
            let slow = brute(&u, &r, 1e-5);
            assert_eq!(fast, slow, "case {case}: {u:?} vs {r:?}");
        }
    }

    #[test]
    fn matches_brute_force_with_values_on_the_grids() {
        // values on a 0.01 lattice and repeated values: data sit on (or next to) grid points
        let mut rng = Rng::new(11);
        for case in 0..8 {
            let (ku, kr) = [(4, 4), (6, 5)][case % 2];
            let u: Vec<f64> = (0..ku)
                .map(|_| (rng.uniform() * 300.0).round() / 100.0)
                .collect();
            let r: Vec<f64> = (0..kr)
                .map(|_| (rng.uniform() * 200.0).round() / 100.0 + 0.5)
                .collect();
            let fast = challenge_epsilons(&u, &r, 1, ku, kr, 1e-5).unwrap()[0];
            assert_eq!(fast, brute(&u, &r, 1e-5), "case {case}: {u:?} vs {r:?}");
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert!(challenge_epsilons(&[1.0, f64::NAN], &[0.0, 1.0], 1, 2, 2, 1e-5).is_err());
        assert!(challenge_epsilons(&[1.0], &[0.0, 1.0], 1, 2, 2, 1e-5).is_err());
        assert!(challenge_epsilons(&[1.0, 2.0], &[0.0, 1.0], 1, 2, 2, 1.0).is_err());
    }
}
