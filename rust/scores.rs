//! Information-theoretic clustering scores computed from a `Contingency`, with
//! scikit-learn's arithmetic and edge cases (sklearn.metrics.cluster._supervised).

use crate::contingency::Contingency;
use rayon::prelude::*;

/// Entropy (nats) of a labeling given its class counts; 1.0 for an empty labeling, as sklearn.
pub fn entropy(counts: &[u64]) -> f64 {
    let nonzero: Vec<f64> = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| c as f64)
        .collect();
    if counts.is_empty() {
        return 1.0;
    }
    if nonzero.len() <= 1 {
        return 0.0;
    }
    let total: f64 = nonzero.iter().sum();
    let log_total = total.ln();
    -nonzero
        .iter()
        .map(|&p| (p / total) * (p.ln() - log_total))
        .sum::<f64>()
}

/// Mutual information (nats) of the two labelings of the table.
pub fn mutual_info(t: &Contingency) -> f64 {
    if t.row_sums.len() == 1 || t.col_sums.len() == 1 {
        return 0.0;
    }
    let total = t.n as f64;
    let log_total = total.ln();
    let log_row_total = (t.row_sums.iter().sum::<u64>() as f64).ln();
    let log_col_total = (t.col_sums.iter().sum::<u64>() as f64).ln();
    let mut mi = 0.0;
    for &(r, c, v) in &t.cells {
        let v = v as f64;
        let p = v / total;
        let outer = (t.row_sums[r as usize] as f64) * (t.col_sums[c as usize] as f64);
        let log_outer = -outer.ln() + log_row_total + log_col_total;
        let term = p * (v.ln() - log_total) + p * log_outer;
        // sklearn zeroes terms below machine epsilon before summing.
        if term.abs() >= f64::EPSILON {
            mi += term;
        }
    }
    mi.max(0.0)
}

/// How the two entropies are averaged to normalise mutual information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AverageMethod {
    Arithmetic,
    Geometric,
    Min,
    Max,
}

impl AverageMethod {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "arithmetic" => Some(Self::Arithmetic),
            "geometric" => Some(Self::Geometric),
            "min" => Some(Self::Min),
            "max" => Some(Self::Max),
            _ => None,
        }
    }

    pub fn average(self, u: f64, v: f64) -> f64 {
        match self {
            Self::Arithmetic => (u + v) / 2.0,
            Self::Geometric => (u * v).sqrt(),
            Self::Min => u.min(v),
            Self::Max => u.max(v),
        }
    }
}

/// Normalised mutual information, as `sklearn.metrics.normalized_mutual_info_score`.
pub fn normalized_mutual_info(t: &Contingency, average: AverageMethod) -> f64 {
    let (k_true, k_pred) = (t.row_sums.len(), t.col_sums.len());
    // Both labelings unsplit (or both empty): identical, by sklearn's convention.
    if (k_true == 1 && k_pred == 1) || (k_true == 0 && k_pred == 0) {
        return 1.0;
    }
    let mi = mutual_info(t);
    if mi == 0.0 {
        return 0.0;
    }
    let h_true = entropy(&t.row_sums);
    let h_pred = entropy(&t.col_sums);
    nmi_from_parts(mi, h_true, h_pred, average)
}

/// MI / average(H(Y), H(C)), kept in [0, 1]: MI <= min(H(Y), H(C)) holds exactly, but the
/// three are summed separately and a ratio that should be exactly 1 (one labeling refines the
/// other) can round above it (e.g. 1 + 6e-14 with the `min` average).
fn nmi_from_parts(mi: f64, h_true: f64, h_pred: f64, average: AverageMethod) -> f64 {
    (mi / average.average(h_true, h_pred)).min(1.0)
}

/// Adjusted mutual information, as `sklearn.metrics.adjusted_mutual_info_score`.
pub fn adjusted_mutual_info(t: &Contingency, average: AverageMethod) -> f64 {
    let (k_true, k_pred) = t.shape();
    if (k_true == 1 && k_pred == 1) || (k_true == 0 && k_pred == 0) {
        return 1.0;
    }
    if k_true == 1 || k_pred == 1 {
        return 0.0;
    }
    let mi = mutual_info(t);
    let emi = expected_mutual_info(t);
    ami_from_parts(mi, emi, entropy(&t.row_sums), entropy(&t.col_sums), average)
}

fn ami_from_parts(mi: f64, emi: f64, h_true: f64, h_pred: f64, average: AverageMethod) -> f64 {
    let eps = f64::EPSILON;
    let normalizer = average.average(h_true, h_pred);
    // 0/0: the expectation equals both the normalizer and the MI (one labeling is all
    // singletons and the average selects the other's entropy). scikit-learn clamps both to
    // +-eps, so its value is the sign pattern of rounding noise; its stated intent (and ours)
    // is 1.0, the value of eps / eps.
    let noise = 1e-12 * normalizer.abs().max(f64::MIN_POSITIVE);
    if (normalizer - emi).abs() <= noise && (mi - emi).abs() <= noise {
        return 1.0;
    }
    let mut denominator = normalizer - emi;
    denominator = if denominator < 0.0 {
        denominator.min(-eps)
    } else {
        denominator.max(eps)
    };
    let mut numerator = mi - emi;
    numerator = if numerator < 0.0 {
        numerator.min(-eps)
    } else {
        numerator.max(eps)
    };
    numerator / denominator
}

/// Expected mutual information (nats) of two random labelings with the table's marginals
/// (the hypergeometric model of Vinh, Epps & Bailey 2010), the quantity sklearn's
/// `expected_mutual_information` computes.
///
/// Rows (and columns) with equal sums contribute identical terms, so the sum runs over distinct
/// (row sum, column sum) pairs weighted by their multiplicities. For each pair the
/// hypergeometric probabilities are generated by their ratio recurrence outward from the mode
/// and normalised by their total, which avoids log-gamma cancellation (sklearn's terms lose
/// about N log N * 1e-16 in absolute log accuracy), and the walk stops once the remaining
/// tail mass is below 1e-22 of the mode's (a geometric bound: the pmf is log-concave).
pub fn expected_mutual_info(t: &Contingency) -> f64 {
    let (r, c) = t.shape();
    if r <= 1 || c <= 1 {
        return 0.0;
    }
    let group = |sums: &[u64]| -> Vec<(u64, f64)> {
        let mut s: Vec<u64> = sums.iter().copied().filter(|&v| v > 0).collect();
        s.sort_unstable();
        let mut out: Vec<(u64, f64)> = Vec::new();
        for v in s {
            match out.last_mut() {
                Some(last) if last.0 == v => last.1 += 1.0,
                _ => out.push((v, 1.0)),
            }
        }
        out
    };
    let rows = group(&t.row_sums);
    let cols = group(&t.col_sums);
    let n = t.n;
    let nf = n as f64;
    let ln_n = nf.ln();
    // ln x for the x the walks visit most (they stay near the modes a b / N).
    let top = rows
        .last()
        .map_or(0, |r| r.0)
        .min(cols.last().map_or(0, |c| c.0))
        .min(1 << 20) as usize;
    let ln_table: Vec<f64> = (0..=top).map(|x| (x as f64).ln()).collect();
    rows.par_iter()
        .map(|&(a, ca)| {
            let mut acc = 0.0;
            for &(b, cb) in &cols {
                acc += cb * emi_pair(a, b, n, nf, ln_n, &ln_table);
            }
            ca * acc
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum()
}

/// sum over nij of (nij/N) ln(N nij / (a b)) P(nij), P hypergeometric(N, a, b).
fn emi_pair(a: u64, b: u64, n: u64, nf: f64, ln_n: f64, ln_table: &[f64]) -> f64 {
    let lo = (a + b).saturating_sub(n); // smallest possible nij
    let hi = a.min(b);
    let (af, bf) = (a as f64, b as f64);
    let mode = (((a as u128 + 1) * (b as u128 + 1)) / (n as u128 + 2)) as u64;
    let mode = mode.clamp(lo, hi);
    let ln_ab = af.ln() + bf.ln();
    let weight = |x: u64| -> f64 {
        if x == 0 {
            0.0
        } else {
            let xf = x as f64;
            let ln_x = match ln_table.get(x as usize) {
                Some(&v) => v,
                None => xf.ln(),
            };
            xf / nf * (ln_n + ln_x - ln_ab)
        }
    };
    // c = N - a - b (may be negative: use i128 arithmetic for the shift).
    let c = n as i128 - a as i128 - b as i128;
    const TAIL: f64 = 1e-22;
    let mut total_p = 1.0;
    let mut sum = weight(mode);
    // Upward: p(x+1)/p(x) = (a-x)(b-x) / ((x+1)(c+x+1)).
    let mut p = 1.0;
    let mut x = mode;
    while x < hi {
        let ratio =
            ((a - x) as f64 * (b - x) as f64) / ((x + 1) as f64 * (c + x as i128 + 1) as f64);
        p *= ratio;
        x += 1;
        total_p += p;
        sum += p * weight(x);
        if ratio < 1.0 && p / (1.0 - ratio) < TAIL {
            break;
        }
    }
    // Downward: p(x-1)/p(x) = x (c+x) / ((a-x+1)(b-x+1)).
    let mut p = 1.0;
    let mut x = mode;
    while x > lo {
        let ratio = (x as f64 * (c + x as i128) as f64) / ((a - x + 1) as f64 * (b - x + 1) as f64);
        p *= ratio;
        x -= 1;
        total_p += p;
        sum += p * weight(x);
        if ratio < 1.0 && p / (1.0 - ratio) < TAIL {
            break;
        }
    }
    sum / total_p
}

/// Pair-counting confusion matrix over ordered pairs of distinct samples, as
/// `sklearn.metrics.cluster.pair_confusion_matrix`: `[[tn, fp], [fn, tp]]` where "positive"
/// means "same predicted cluster" and "true" means "same class".
pub fn pair_confusion(t: &Contingency) -> [[i128; 2]; 2] {
    let n = t.n as i128;
    let sum_squares: i128 = t
        .cells
        .iter()
        .map(|&(_, _, v)| (v as i128) * (v as i128))
        .sum();
    let sum_rows: i128 = t.row_sums.iter().map(|&v| (v as i128) * (v as i128)).sum();
    let sum_cols: i128 = t.col_sums.iter().map(|&v| (v as i128) * (v as i128)).sum();
    let tp = sum_squares - n;
    let fp = sum_cols - sum_squares;
    let fn_ = sum_rows - sum_squares;
    let tn = n * n - fp - fn_ - sum_squares;
    [[tn, fp], [fn_, tp]]
}

/// Adjusted Rand index, as `sklearn.metrics.adjusted_rand_score`.
pub fn adjusted_rand(t: &Contingency) -> f64 {
    let [[tn, fp], [fn_, tp]] = pair_confusion(t);
    if fn_ == 0 && fp == 0 {
        return 1.0;
    }
    // Exact integer numerator and denominator (each below 2^126 for n < 2^31.5 samples), one
    // rounding each when converted.
    let num = 2 * (tp * tn - fn_ * fp);
    let den = (tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn);
    ratio_i128(num, den)
}

/// num / den for big integers, rounding each to f64 once.
fn ratio_i128(num: i128, den: i128) -> f64 {
    num as f64 / den as f64
}

/// Pair-counting precision, recall and F1 ("clustering F1"): a pair of samples is a positive
/// prediction when both are in the same cluster and a true positive when they also share their
/// class. Undefined ratios (no pairs in the denominator) are 1.0, as `zero_division=1.0` in
/// scikit-learn's precision/recall/F1.
pub fn pair_scores(t: &Contingency) -> (f64, f64, f64) {
    let [[_, fp], [fn_, tp]] = pair_confusion(t);
    let div = |a: i128, b: i128| if b == 0 { 1.0 } else { ratio_i128(a, b) };
    (
        div(tp, tp + fp),
        div(tp, tp + fn_),
        div(2 * tp, 2 * tp + fp + fn_),
    )
}

/// Homogeneity, completeness and V-measure (beta = 1), as
/// `sklearn.metrics.homogeneity_completeness_v_measure`.
pub fn homogeneity_completeness_v(t: &Contingency) -> (f64, f64, f64) {
    if t.n == 0 {
        return (1.0, 1.0, 1.0);
    }
    let h_true = entropy(&t.row_sums);
    let h_pred = entropy(&t.col_sums);
    let mi = mutual_info(t);
    hcv_from_parts(mi, h_true, h_pred)
}

/// Homogeneity MI / H(Y) and completeness MI / H(C) are kept in [0, 1] (MI <= H exactly; the
/// separately rounded sums can put the ratio an ulp or so above 1), and so is V, their harmonic mean.
fn hcv_from_parts(mi: f64, h_true: f64, h_pred: f64) -> (f64, f64, f64) {
    let h = if h_true != 0.0 {
        (mi / h_true).min(1.0)
    } else {
        1.0
    };
    let c = if h_pred != 0.0 {
        (mi / h_pred).min(1.0)
    } else {
        1.0
    };
    let v = if h + c == 0.0 {
        0.0
    } else {
        2.0 * h * c / (h + c)
    };
    (h, c, v)
}

/// Every score of one table, computed from its entropies and MI once.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusteringScores {
    pub mutual_info: f64,
    pub expected_mutual_info: f64,
    pub entropy_true: f64,
    pub entropy_pred: f64,
    /// NMI with averages arithmetic, geometric, min, max.
    pub nmi: [f64; 4],
    /// AMI with averages arithmetic, geometric, min, max.
    pub ami: [f64; 4],
    pub ari: f64,
    pub homogeneity: f64,
    pub completeness: f64,
    pub v_measure: f64,
    pub pair_precision: f64,
    pub pair_recall: f64,
    pub pair_f1: f64,
}

pub const AVERAGES: [AverageMethod; 4] = [
    AverageMethod::Arithmetic,
    AverageMethod::Geometric,
    AverageMethod::Min,
    AverageMethod::Max,
];

/// All scores of `t` with scikit-learn's semantics and edge cases.
pub fn all_scores(t: &Contingency) -> ClusteringScores {
    all_scores_with(t, true)
}

/// As `all_scores`; without `with_ami` the expected mutual information (the costliest part
/// for large tables) is skipped and the AMI entries are NaN.
pub fn all_scores_with(t: &Contingency, with_ami: bool) -> ClusteringScores {
    let (k_true, k_pred) = t.shape();
    let h_true = entropy(&t.row_sums);
    let h_pred = entropy(&t.col_sums);
    let mi = mutual_info(t);
    let unsplit_both = (k_true == 1 && k_pred == 1) || (k_true == 0 && k_pred == 0);
    let emi = if unsplit_both || k_true == 1 || k_pred == 1 {
        0.0
    } else if with_ami {
        expected_mutual_info(t)
    } else {
        f64::NAN
    };
    let nmi = AVERAGES.map(|avg| {
        if unsplit_both {
            1.0
        } else if mi == 0.0 {
            0.0
        } else {
            nmi_from_parts(mi, h_true, h_pred, avg)
        }
    });
    let ami = AVERAGES.map(|avg| {
        if unsplit_both {
            1.0
        } else if k_true == 1 || k_pred == 1 {
            0.0
        } else if !with_ami {
            f64::NAN
        } else {
            ami_from_parts(mi, emi, h_true, h_pred, avg)
        }
    });
    let (homogeneity, completeness, v_measure) = if t.n == 0 {
        (1.0, 1.0, 1.0)
    } else {
        hcv_from_parts(mi, h_true, h_pred)
    };
    let (pair_precision, pair_recall, pair_f1) = pair_scores(t);
    ClusteringScores {
        mutual_info: mi,
        expected_mutual_info: emi,
        entropy_true: h_true,
        entropy_pred: h_pred,
        nmi,
        ami,
        ari: adjusted_rand(t),
        homogeneity,
        completeness,
        v_measure,
        pair_precision,
        pair_recall,
        pair_f1,
    }
}

/// The parts of the table that the Hungarian matching (Python side, scipy) still has to solve.
///
/// A maximum-weight assignment on a table decomposes over the connected components of its
/// bipartite graph of non-zero cells (zero cells add nothing). Components with a single row or
/// a single column are solved here (their best cell); the others are returned for
/// `linear_sum_assignment`. Two weightings are solved: counts (matched accuracy) and per-pair
/// F1 = 2 n_ij / (a_i + b_j) (matched macro F1).
#[derive(Debug, Clone, PartialEq)]
pub struct MatchingParts {
    /// Sum of the best counts of the trivial components.
    pub trivial_count: u64,
    /// Sum of the best F1 values of the trivial components.
    pub trivial_f1: f64,
    /// Cells of the non-trivial components, grouped by component (component id, row, col, count),
    /// ordered by component id then (row, col).
    pub cells: Vec<(u32, u32, u32, u64)>,
}

pub fn matching_parts(t: &Contingency) -> MatchingParts {
    let (nr, nc) = t.shape();
    // Union-find over rows 0..nr and columns nr..nr+nc.
    let mut parent: Vec<u32> = (0..(nr + nc) as u32).collect();
    fn find(p: &mut [u32], mut x: u32) -> u32 {
        while p[x as usize] != x {
            p[x as usize] = p[p[x as usize] as usize];
            x = p[x as usize];
        }
        x
    }
    for &(r, c, _) in &t.cells {
        let a = find(&mut parent, r);
        let b = find(&mut parent, nr as u32 + c);
        if a != b {
            parent[a.max(b) as usize] = a.min(b);
        }
    }
    let roots: Vec<u32> = (0..(nr + nc) as u32)
        .map(|x| find(&mut parent, x))
        .collect();
    // Count rows and columns per component.
    let mut n_rows_of = vec![0u32; nr + nc];
    let mut n_cols_of = vec![0u32; nr + nc];
    for r in 0..nr {
        n_rows_of[roots[r] as usize] += 1;
    }
    for c in 0..nc {
        n_cols_of[roots[nr + c] as usize] += 1;
    }
    let f1 = |r: u32, c: u32, v: u64| {
        2.0 * v as f64 / (t.row_sums[r as usize] + t.col_sums[c as usize]) as f64
    };
    let mut best_count = vec![0u64; nr + nc];
    let mut best_f1 = vec![0f64; nr + nc];
    let mut comp_id = vec![u32::MAX; nr + nc];
    let mut n_comps = 0u32;
    let mut cells = Vec::new();
    for &(r, c, v) in &t.cells {
        let root = roots[r as usize] as usize;
        if n_rows_of[root] == 1 || n_cols_of[root] == 1 {
            best_count[root] = best_count[root].max(v);
            best_f1[root] = best_f1[root].max(f1(r, c, v));
        } else {
            if comp_id[root] == u32::MAX {
                comp_id[root] = n_comps;
                n_comps += 1;
            }
            cells.push((comp_id[root], r, c, v));
        }
    }
    cells.sort_unstable();
    MatchingParts {
        trivial_count: best_count.iter().sum(),
        trivial_f1: best_f1.iter().sum(),
        cells,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nmi(a: &[i64], b: &[i64]) -> f64 {
        normalized_mutual_info(&Contingency::new(a, b).unwrap(), AverageMethod::Arithmetic)
    }

    #[test]
    fn identical_labelings_score_one() {
        assert!((nmi(&[0, 0, 1, 1, 2], &[7, 7, 3, 3, 9]) - 1.0).abs() < 1e-15);
    }

    #[test]
    fn independent_labelings_score_zero() {
        assert_eq!(nmi(&[0, 0, 1, 1], &[0, 1, 0, 1]), 0.0);
    }

    #[test]
    fn single_cluster_edge_cases() {
        assert_eq!(nmi(&[1, 1, 1], &[4, 4, 4]), 1.0);
        assert_eq!(nmi(&[0, 1, 2], &[4, 4, 4]), 0.0);
        assert_eq!(nmi(&[], &[]), 1.0);
    }

    #[test]
    fn matches_a_hand_computed_value() {
        // labels_true = [0,0,1,1], labels_pred = [0,0,0,1]:
        // MI = 0.5 ln 4/3 + 0.25 ln 2/3 + 0.25 ln 2 ; H_true = ln 2 ; H_pred = -(.75 ln .75 + .25 ln .25)
        let mi = 0.5 * (4.0f64 / 3.0).ln() + 0.25 * (2.0f64 / 3.0).ln() + 0.25 * 2f64.ln();
        let h_pred = -(0.75 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        let expected = mi / ((2f64.ln() + h_pred) / 2.0);
        assert!((nmi(&[0, 0, 1, 1], &[0, 0, 0, 1]) - expected).abs() < 1e-14);
    }

    fn table(a: &[i64], b: &[i64]) -> Contingency {
        Contingency::new(a, b).unwrap()
    }

    /// EMI by sklearn's direct formula with log-factorials (small n only).
    fn emi_direct(t: &Contingency) -> f64 {
        let lf = |x: u64| -> f64 { (1..=x).map(|i| (i as f64).ln()).sum() };
        let n = t.n;
        let nf = n as f64;
        let mut emi = 0.0;
        for &a in &t.row_sums {
            for &b in &t.col_sums {
                let lo = (a + b).saturating_sub(n).max(1);
                for x in lo..=a.min(b) {
                    let lnp = lf(a) + lf(b) + lf(n - a) + lf(n - b)
                        - lf(n)
                        - lf(x)
                        - lf(a - x)
                        - lf(b - x)
                        - lf(n - a - b + x);
                    emi += x as f64 / nf * (nf * x as f64 / (a as f64 * b as f64)).ln() * lnp.exp();
                }
            }
        }
        emi
    }

    #[test]
    fn expected_mutual_info_matches_the_direct_sum() {
        let cases: Vec<(Vec<i64>, Vec<i64>)> = vec![
            (vec![0, 0, 1, 1, 2, 2, 2], vec![0, 1, 1, 2, 2, 0, 0]),
            (
                (0..60).map(|i| i % 3).collect(),
                (0..60).map(|i| (i * 7) % 5).collect(),
            ),
            (
                (0..200).map(|i| (i * i) % 11).collect(),
                (0..200).map(|i| (i / 3) % 4).collect(),
            ),
            ((0..50).collect(), (0..50).map(|i| i % 2).collect()),
        ];
        for (a, b) in cases {
            let t = table(&a, &b);
            let (fast, direct) = (expected_mutual_info(&t), emi_direct(&t));
            assert!(
                (fast - direct).abs() < 1e-12 * direct.abs().max(1.0),
                "{fast} vs {direct}"
            );
        }
    }

    #[test]
    fn ari_and_pair_scores_by_hand() {
        // true [0,0,1,1], pred [0,0,0,1]: unordered pairs: same-class {01, 23}; same-cluster {01, 02, 12}.
        // tp = 1 (01), fp = 2, fn = 1, tn = 2 (unordered).
        let t = table(&[0, 0, 1, 1], &[0, 0, 0, 1]);
        assert_eq!(pair_confusion(&t), [[4, 4], [2, 2]]);
        let (p, r, f) = pair_scores(&t);
        assert!(
            (p - 1.0 / 3.0).abs() < 1e-15 && (r - 0.5).abs() < 1e-15 && (f - 0.4).abs() < 1e-15
        );
        // ARI = 2 (tp tn - fn fp) / ((tp+fn)(fn+tn) + (tp+fp)(fp+tn)) on ordered counts.
        let expected = 2.0 * (2.0 * 4.0 - 2.0 * 4.0) / ((4.0) * (6.0) + (6.0) * (8.0));
        assert!((adjusted_rand(&t) - expected).abs() < 1e-15);
        assert_eq!(adjusted_rand(&table(&[1, 1, 2], &[5, 5, 0])), 1.0);
    }

    #[test]
    fn edge_cases_follow_sklearn() {
        let empty = table(&[], &[]);
        let s = all_scores(&empty);
        assert_eq!(
            (s.nmi, s.ami, s.ari, s.homogeneity, s.pair_f1),
            ([1.0; 4], [1.0; 4], 1.0, 1.0, 1.0)
        );
        let one_cluster = table(&[0, 1, 2], &[4, 4, 4]);
        let s = all_scores(&one_cluster);
        assert_eq!(
            (s.nmi[0], s.ami[0], s.homogeneity, s.completeness),
            (0.0, 0.0, 0.0, 1.0)
        );
        let singletons = table(&[0, 1, 2, 3], &[0, 1, 2, 3]);
        let s = all_scores(&singletons);
        assert!((s.nmi[0] - 1.0).abs() < 1e-15 && s.ari == 1.0 && s.pair_f1 == 1.0);
    }

    #[test]
    fn ami_of_an_all_singleton_labeling_is_defined() {
        // labels_true all distinct: E[MI] = MI = H(pred) exactly, so with the `min` average AMI is 0/0.
        let t = table(&[0, 1, 2, 3, 4, 5], &[0, 0, 0, 0, 0, 1]);
        assert!((expected_mutual_info(&t) - mutual_info(&t)).abs() < 1e-15);
        assert_eq!(adjusted_mutual_info(&t, AverageMethod::Min), 1.0);
        let a = adjusted_mutual_info(&t, AverageMethod::Arithmetic);
        assert!(a.abs() < 1e-12, "{a}");
    }

    #[test]
    fn bounded_scores_stay_in_the_unit_interval() {
        // labels_true all distinct refines labels_pred: MI = H(pred) exactly, so NMI (min),
        // completeness are exactly 1 in theory; the separately rounded sums gave 1 + 6e-14.
        let mut rng = crate::rng::Rng::new(0);
        for n in [1000usize, 10_000, 30_000] {
            let a: Vec<i64> = (0..n as i64).collect();
            let b: Vec<i64> = (0..n).map(|_| rng.below(10) as i64).collect();
            for (x, y) in [(&a, &b), (&b, &a)] {
                let t = table(x, y);
                let s = all_scores(&t);
                let bounded = [s.homogeneity, s.completeness, s.v_measure]
                    .into_iter()
                    .chain(s.nmi);
                for v in bounded {
                    assert!((0.0..=1.0).contains(&v), "n={n}: {v}");
                }
                assert!((s.nmi[2] - 1.0).abs() < 1e-12);
                for avg in AVERAGES {
                    let v = normalized_mutual_info(&t, avg);
                    assert!((0.0..=1.0).contains(&v) && v == s.nmi[avg as usize], "{v}");
                }
                let (h, c, v) = homogeneity_completeness_v(&t);
                assert_eq!((h, c, v), (s.homogeneity, s.completeness, s.v_measure));
            }
        }
    }

    #[test]
    fn matching_parts_solve_trivial_components() {
        // rows {0,1} x cols {0,1} connected; row 2 alone with cols 2,3.
        let t = Contingency::from_cells(&[(0, 0, 5), (0, 1, 1), (1, 1, 4), (2, 2, 3), (2, 3, 6)])
            .unwrap();
        let m = matching_parts(&t);
        assert_eq!(m.trivial_count, 6);
        // F1 of (row 2, col 3) = 2*6/(9+6) = 0.8, of (row 2, col 2) = 2*3/(9+3) = 0.5.
        assert!((m.trivial_f1 - 0.8).abs() < 1e-15);
        assert_eq!(m.cells, vec![(0, 0, 0, 5), (0, 0, 1, 1), (0, 1, 1, 4)]);
    }
}
