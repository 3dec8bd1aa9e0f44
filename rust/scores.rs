//! Information-theoretic clustering scores computed from a `Contingency`, with
//! scikit-learn's arithmetic and edge cases (sklearn.metrics.cluster._supervised).

use crate::contingency::Contingency;

/// Entropy (nats) of a labeling given its class counts; 1.0 for an empty labeling, as sklearn.
pub fn entropy(counts: &[u64]) -> f64 {
    let nonzero: Vec<f64> = counts.iter().filter(|&&c| c > 0).map(|&c| c as f64).collect();
    if counts.is_empty() {
        return 1.0;
    }
    if nonzero.len() <= 1 {
        return 0.0;
    }
    let total: f64 = nonzero.iter().sum();
    let log_total = total.ln();
    -nonzero.iter().map(|&p| (p / total) * (p.ln() - log_total)).sum::<f64>()
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
    mi / average.average(h_true, h_pred)
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
}
