//! Contingency table of two labelings, built once and shared by every clustering score.
//!
//! Labels are arbitrary integers (non-contiguous, negative allowed). They are first mapped to
//! dense codes 0..k by sorting the distinct values, so the table's rows and columns are in the
//! same order as `np.unique` would give.

use crate::error::{CoreError, CoreResult};
use std::collections::HashMap;

/// A sparse contingency table: only non-zero cells are stored, with both marginals.
#[derive(Debug, Clone, PartialEq)]
pub struct Contingency {
    /// Number of samples.
    pub n: u64,
    /// Row sums (one per distinct value of `labels_true`, ascending by value).
    pub row_sums: Vec<u64>,
    /// Column sums (one per distinct value of `labels_pred`, ascending by value).
    pub col_sums: Vec<u64>,
    /// Non-zero cells as (row, column, count), sorted by (row, column).
    pub cells: Vec<(u32, u32, u64)>,
}

/// Maps each label to its rank among the distinct labels. Returns (codes, number of distinct).
pub fn encode<T: Copy + Into<i64>>(labels: &[T]) -> (Vec<u32>, usize) {
    let mut uniq: Vec<i64> = labels.iter().map(|&v| v.into()).collect();
    uniq.sort_unstable();
    uniq.dedup();
    let k = uniq.len();
    // A dense lookup when the value range is small avoids a binary search per sample.
    let codes = if k > 0 && (uniq[k - 1] - uniq[0]) < 4 * (k as i64) + 1024 {
        let lo = uniq[0];
        let mut lut = vec![u32::MAX; (uniq[k - 1] - lo + 1) as usize];
        for (c, &v) in uniq.iter().enumerate() {
            lut[(v - lo) as usize] = c as u32;
        }
        labels.iter().map(|&v| lut[(v.into() - lo) as usize]).collect()
    } else {
        labels.iter().map(|&v| uniq.binary_search(&v.into()).unwrap() as u32).collect()
    };
    (codes, k)
}

impl Contingency {
    /// Builds the table of `labels_true` (rows) against `labels_pred` (columns).
    pub fn new<T: Copy + Into<i64>, U: Copy + Into<i64>>(
        labels_true: &[T],
        labels_pred: &[U],
    ) -> CoreResult<Self> {
        if labels_true.len() != labels_pred.len() {
            return Err(CoreError::invalid(
                "labels_pred",
                format!("the same length as labels_true ({})", labels_true.len()),
                format!("length {}", labels_pred.len()),
            ));
        }
        let (rows, n_rows) = encode(labels_true);
        let (cols, n_cols) = encode(labels_pred);
        Ok(Self::from_codes(&rows, n_rows, &cols, n_cols))
    }

    /// Builds the table from dense codes (`rows[i] < n_rows`, `cols[i] < n_cols`).
    pub fn from_codes(rows: &[u32], n_rows: usize, cols: &[u32], n_cols: usize) -> Self {
        let mut row_sums = vec![0u64; n_rows];
        let mut col_sums = vec![0u64; n_cols];
        for &r in rows {
            row_sums[r as usize] += 1;
        }
        for &c in cols {
            col_sums[c as usize] += 1;
        }
        let mut cells = Vec::new();
        let dense_size = n_rows.saturating_mul(n_cols);
        if dense_size <= (1 << 24) {
            let mut table = vec![0u64; dense_size];
            for (&r, &c) in rows.iter().zip(cols) {
                table[r as usize * n_cols + c as usize] += 1;
            }
            for (idx, &v) in table.iter().enumerate() {
                if v > 0 {
                    cells.push(((idx / n_cols) as u32, (idx % n_cols) as u32, v));
                }
            }
        } else {
            let mut map: HashMap<(u32, u32), u64> = HashMap::new();
            for (&r, &c) in rows.iter().zip(cols) {
                *map.entry((r, c)).or_insert(0) += 1;
            }
            cells = map.into_iter().map(|((r, c), v)| (r, c, v)).collect();
            cells.sort_unstable();
        }
        Contingency { n: rows.len() as u64, row_sums, col_sums, cells }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_non_contiguous_labels() {
        let t = Contingency::new(&[5i64, 5, -2, 9], &[1i64, 1, 1, 0]).unwrap();
        assert_eq!(t.n, 4);
        assert_eq!(t.row_sums, vec![1, 2, 1]); // -2, 5, 9
        assert_eq!(t.col_sums, vec![1, 3]); // 0, 1
        assert_eq!(t.cells, vec![(0, 1, 1), (1, 1, 2), (2, 0, 1)]);
    }

    #[test]
    fn length_mismatch_names_the_argument() {
        let err = Contingency::new(&[1i64, 2], &[1i64]).unwrap_err();
        assert!(err.to_string().starts_with("labels_pred"));
    }

    #[test]
    fn sparse_labels_use_the_sorted_lookup() {
        let (codes, k) = encode(&[1_000_000_000i64, -7, 1_000_000_000]);
        assert_eq!((codes, k), (vec![1, 0, 1], 2));
    }
}
