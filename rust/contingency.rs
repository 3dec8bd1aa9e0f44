//! Contingency table of two labelings, built once and shared by every clustering score.
//!
//! Labels are arbitrary integers (non-contiguous, negative, anywhere in the i64 range). Each
//! labeling is first mapped to dense codes 0..k in the order of its sorted distinct values, so
//! the table's rows and columns are in the order `np.unique` gives. All passes are parallel
//! (rayon):
//!
//! * encoding: one min/max pass; when the value range is small, a presence bitmap per thread and
//!   a lookup table (no per-sample codes are materialised); otherwise a parallel sort of the
//!   values and one binary search per sample;
//! * counting: dense per-thread histograms when #rows x #cols is small, per-thread hash maps
//!   (merged, then sorted) otherwise.

use crate::error::{CoreError, CoreResult};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

/// An integer label type the engine reads without a copy.
pub trait Label: Copy + Send + Sync + Into<i64> + 'static {}
impl Label for i32 {}
impl Label for i64 {}

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
    /// The distinct values of `labels_true` (row labels), ascending. Empty when built from cells.
    pub classes: Vec<i64>,
    /// The distinct values of `labels_pred` (column labels), ascending. Empty when built from cells.
    pub clusters: Vec<i64>,
}

/// Rows per parallel work item in the label passes.
const CHUNK: usize = 1 << 16;
/// Largest value range encoded with a lookup table (entries).
const LUT_MAX: i128 = 1 << 25;
/// Largest dense table (cells) counted with per-thread histograms.
const DENSE_MAX_CELLS: usize = 1 << 22;
/// Memory budget (bytes) for all per-thread dense histograms together.
const DENSE_BUDGET: usize = 1 << 28;

/// A labeling mapped to dense codes.
pub enum Encoding {
    /// `code(v) = lut[v - lo]` (small value range).
    Lut { lo: i64, lut: Vec<u32> },
    /// One code per sample.
    Codes(Vec<u32>),
}

/// Maps each label to its rank among the distinct labels. Returns the encoding and the sorted
/// distinct values.
pub fn encode<T: Label>(labels: &[T]) -> (Encoding, Vec<i64>) {
    let n = labels.len();
    if n == 0 {
        return (Encoding::Codes(Vec::new()), Vec::new());
    }
    let (lo, hi) = labels
        .par_chunks(CHUNK)
        .map(|c| {
            c.iter().fold((i64::MAX, i64::MIN), |(lo, hi), &v| {
                let v: i64 = v.into();
                (lo.min(v), hi.max(v))
            })
        })
        .reduce(|| (i64::MAX, i64::MIN), |a, b| (a.0.min(b.0), a.1.max(b.1)));
    let range = hi as i128 - lo as i128 + 1;
    if range <= LUT_MAX.min((4 * n as i128).max(1 << 16)) {
        let range = range as usize;
        let words = range.div_ceil(64);
        let n_parts = rayon::current_num_threads().clamp(1, n.div_ceil(CHUNK));
        let part = n.div_ceil(n_parts);
        let present = labels
            .par_chunks(part)
            .map(|c| {
                let mut bits = vec![0u64; words];
                for &v in c {
                    let off = (v.into() - lo) as usize;
                    bits[off >> 6] |= 1u64 << (off & 63);
                }
                bits
            })
            .reduce_with(|mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x |= y);
                a
            })
            .unwrap_or_default();
        let mut lut = vec![u32::MAX; range];
        let mut uniques = Vec::new();
        for (w, &word) in present.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let off = w * 64 + bits.trailing_zeros() as usize;
                lut[off] = uniques.len() as u32;
                uniques.push(lo + off as i64);
                bits &= bits - 1;
            }
        }
        (Encoding::Lut { lo, lut }, uniques)
    } else {
        let mut uniques: Vec<i64> = labels.par_iter().map(|&v| v.into()).collect();
        uniques.par_sort_unstable();
        uniques.dedup();
        let codes = labels
            .par_iter()
            .map(|&v| {
                uniques
                    .binary_search(&v.into())
                    .expect("value is among the uniques") as u32
            })
            .collect();
        (Encoding::Codes(codes), uniques)
    }
}

impl Encoding {
    /// Decodes the full code vector (used by tests and callers that need per-sample codes).
    pub fn codes<T: Label>(&self, labels: &[T]) -> Vec<u32> {
        match self {
            Encoding::Codes(c) => c.clone(),
            Encoding::Lut { lo, lut } => labels
                .par_iter()
                .map(|&v| lut[(v.into() - lo) as usize])
                .collect(),
        }
    }
}

impl Contingency {
    /// Builds the table of `labels_true` (rows) against `labels_pred` (columns).
    pub fn new<T: Label, U: Label>(labels_true: &[T], labels_pred: &[U]) -> CoreResult<Self> {
        if labels_true.len() != labels_pred.len() {
            return Err(CoreError::invalid(
                "labels_pred",
                format!("the same length as labels_true ({})", labels_true.len()),
                format!("length {}", labels_pred.len()),
            ));
        }
        let ((enc_r, classes), (enc_c, clusters)) =
            rayon::join(|| encode(labels_true), || encode(labels_pred));
        let (nr, nc) = (classes.len(), clusters.len());
        let n = labels_true.len();
        let mut t = match (&enc_r, &enc_c) {
            (Encoding::Lut { lo: lr, lut: ur }, Encoding::Lut { lo: lc, lut: uc }) => count(
                n,
                |i| ur[(labels_true[i].into() - lr) as usize],
                |i| uc[(labels_pred[i].into() - lc) as usize],
                nr,
                nc,
            ),
            (Encoding::Lut { lo: lr, lut: ur }, Encoding::Codes(cc)) => count(
                n,
                |i| ur[(labels_true[i].into() - lr) as usize],
                |i| cc[i],
                nr,
                nc,
            ),
            (Encoding::Codes(rc), Encoding::Lut { lo: lc, lut: uc }) => count(
                n,
                |i| rc[i],
                |i| uc[(labels_pred[i].into() - lc) as usize],
                nr,
                nc,
            ),
            (Encoding::Codes(rc), Encoding::Codes(cc)) => count(n, |i| rc[i], |i| cc[i], nr, nc),
        };
        t.classes = classes;
        t.clusters = clusters;
        Ok(t)
    }

    /// Builds the table from dense codes (`rows[i] < n_rows`, `cols[i] < n_cols`).
    pub fn from_codes(rows: &[u32], n_rows: usize, cols: &[u32], n_cols: usize) -> Self {
        assert_eq!(rows.len(), cols.len());
        count(rows.len(), |i| rows[i], |i| cols[i], n_rows, n_cols)
    }

    /// Builds a table from its non-zero cells `(row, col, count)`; cells with count 0 are
    /// dropped, repeated cells are added, and rows/columns whose sum is 0 are removed (a table
    /// built from labels has none). Used to score a table summed over shards.
    pub fn from_cells(cells: &[(u64, u64, u64)]) -> CoreResult<Self> {
        let mut cells: Vec<(u64, u64, u64)> = cells.iter().copied().filter(|c| c.2 > 0).collect();
        cells.par_sort_unstable();
        // Compact the row and column indices that carry counts.
        let mut row_ids: Vec<u64> = cells.iter().map(|c| c.0).collect();
        row_ids.dedup();
        let mut col_ids: Vec<u64> = cells.iter().map(|c| c.1).collect();
        col_ids.par_sort_unstable();
        col_ids.dedup();
        if row_ids.len() > u32::MAX as usize || col_ids.len() > u32::MAX as usize {
            return Err(CoreError::invalid(
                "table",
                "fewer than 2^32 rows and columns",
                "more",
            ));
        }
        let mut out: Vec<(u32, u32, u64)> = Vec::with_capacity(cells.len());
        for &(r, c, v) in &cells {
            let r = row_ids.binary_search(&r).unwrap() as u32;
            let c = col_ids.binary_search(&c).unwrap() as u32;
            match out.last_mut() {
                Some(last) if last.0 == r && last.1 == c => {
                    last.2 = last.2.checked_add(v).ok_or_else(|| {
                        CoreError::invalid(
                            "table",
                            "counts whose sum fits in 64 bits",
                            "an overflow",
                        )
                    })?
                }
                _ => out.push((r, c, v)),
            }
        }
        let mut t = Contingency {
            n: 0,
            row_sums: vec![0; row_ids.len()],
            col_sums: vec![0; col_ids.len()],
            cells: out,
            classes: Vec::new(),
            clusters: Vec::new(),
        };
        let mut n: u64 = 0;
        for &(r, c, v) in &t.cells {
            t.row_sums[r as usize] += v;
            t.col_sums[c as usize] += v;
            n = n.checked_add(v).ok_or_else(|| {
                CoreError::invalid("table", "counts whose sum fits in 64 bits", "an overflow")
            })?;
        }
        t.n = n;
        Ok(t)
    }

    /// Number of rows (classes) and columns (clusters).
    pub fn shape(&self) -> (usize, usize) {
        (self.row_sums.len(), self.col_sums.len())
    }
}

/// Counts (row, col) pairs given by two code accessors into a sparse table.
fn count<FR, FC>(n: usize, row: FR, col: FC, n_rows: usize, n_cols: usize) -> Contingency
where
    FR: Fn(usize) -> u32 + Sync,
    FC: Fn(usize) -> u32 + Sync,
{
    let dense = n_rows.saturating_mul(n_cols);
    let threads = rayon::current_num_threads().max(1);
    let cells: Vec<(u32, u32, u64)> = if n == 0 {
        Vec::new()
    } else if dense <= DENSE_MAX_CELLS && dense <= (2 * n).max(1 << 12) {
        // Dense per-part histograms (u32 counts: a part never holds 2^32 samples).
        let n_tables = threads
            .min((DENSE_BUDGET / (4 * dense).max(1)).max(1))
            .min(n.div_ceil(CHUNK))
            .max(1);
        let part = n.div_ceil(n_tables).min(u32::MAX as usize);
        let n_parts = n.div_ceil(part);
        let tables: Vec<Vec<u32>> = (0..n_parts)
            .into_par_iter()
            .map(|p| {
                let mut t = vec![0u32; dense];
                for i in p * part..((p + 1) * part).min(n) {
                    t[row(i) as usize * n_cols + col(i) as usize] += 1;
                }
                t
            })
            .collect();
        let mut total = vec![0u64; dense];
        total
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(ci, out)| {
                let (base, len) = (ci * CHUNK, out.len());
                for t in &tables {
                    for (o, &v) in out.iter_mut().zip(&t[base..base + len]) {
                        *o += v as u64;
                    }
                }
            });
        drop(tables);
        let nc = n_cols.max(1);
        total
            .par_chunks(CHUNK)
            .enumerate()
            .flat_map_iter(|(ci, chunk)| {
                chunk
                    .iter()
                    .enumerate()
                    .filter(|(_, &v)| v > 0)
                    .map(move |(j, &v)| {
                        let idx = ci * CHUNK + j;
                        ((idx / nc) as u32, (idx % nc) as u32, v)
                    })
            })
            .collect()
    } else {
        // Hashed per-part tables keyed by (row << 32 | col), merged then sorted.
        let part = n.div_ceil(threads).max(CHUNK);
        let n_parts = n.div_ceil(part);
        let maps: Vec<FxHashMap<u64, u64>> = (0..n_parts)
            .into_par_iter()
            .map(|p| {
                let mut m: FxHashMap<u64, u64> = FxHashMap::default();
                for i in p * part..((p + 1) * part).min(n) {
                    *m.entry(((row(i) as u64) << 32) | col(i) as u64)
                        .or_insert(0) += 1;
                }
                m
            })
            .collect();
        let mut maps = maps.into_iter();
        let mut merged = maps.next().unwrap_or_default();
        for m in maps {
            for (key, v) in m {
                *merged.entry(key).or_insert(0) += v;
            }
        }
        let mut cells: Vec<(u32, u32, u64)> = merged
            .into_iter()
            .map(|(key, v)| ((key >> 32) as u32, key as u32, v))
            .collect();
        cells.par_sort_unstable();
        cells
    };
    let mut row_sums = vec![0u64; n_rows];
    let mut col_sums = vec![0u64; n_cols];
    for &(r, c, v) in &cells {
        row_sums[r as usize] += v;
        col_sums[c as usize] += v;
    }
    Contingency {
        n: n as u64,
        row_sums,
        col_sums,
        cells,
        classes: Vec::new(),
        clusters: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// A straightforward reference: BTreeMap of (true, pred) pairs.
    type Reference = (Vec<i64>, Vec<i64>, Vec<(u32, u32, u64)>);

    fn reference(a: &[i64], b: &[i64]) -> Reference {
        let mut ua: Vec<i64> = a.to_vec();
        ua.sort();
        ua.dedup();
        let mut ub: Vec<i64> = b.to_vec();
        ub.sort();
        ub.dedup();
        let mut m = std::collections::BTreeMap::new();
        for (x, y) in a.iter().zip(b) {
            let r = ua.binary_search(x).unwrap() as u32;
            let c = ub.binary_search(y).unwrap() as u32;
            *m.entry((r, c)).or_insert(0u64) += 1;
        }
        (ua, ub, m.into_iter().map(|((r, c), v)| (r, c, v)).collect())
    }

    #[test]
    fn table_of_non_contiguous_labels() {
        let t = Contingency::new(&[5i64, 5, -2, 9], &[1i64, 1, 1, 0]).unwrap();
        assert_eq!(t.n, 4);
        assert_eq!(t.row_sums, vec![1, 2, 1]); // -2, 5, 9
        assert_eq!(t.col_sums, vec![1, 3]); // 0, 1
        assert_eq!(t.cells, vec![(0, 1, 1), (1, 1, 2), (2, 0, 1)]);
        assert_eq!(t.classes, vec![-2, 5, 9]);
        assert_eq!(t.clusters, vec![0, 1]);
    }

    #[test]
    fn length_mismatch_names_the_argument() {
        let err = Contingency::new(&[1i64, 2], &[1i64]).unwrap_err();
        assert!(err.to_string().starts_with("labels_pred"));
    }

    #[test]
    fn sparse_labels_use_the_sorted_lookup() {
        let labels = [1_000_000_000_000i64, -7, 1_000_000_000_000];
        let (enc, uniq) = encode(&labels);
        assert!(matches!(enc, Encoding::Codes(_)));
        assert_eq!(
            (enc.codes(&labels), uniq),
            (vec![1, 0, 1], vec![-7, 1_000_000_000_000])
        );
    }

    #[test]
    fn extreme_values_do_not_overflow_the_range() {
        let a = [i64::MIN, i64::MAX, 0, i64::MIN];
        let b = [i64::MAX, i64::MAX, i64::MIN, 3];
        let t = Contingency::new(&a, &b).unwrap();
        let (ua, ub, cells) = reference(&a, &b);
        assert_eq!((t.classes, t.clusters, t.cells), (ua, ub, cells));
    }

    #[test]
    fn all_paths_agree_with_the_reference() {
        let mut rng = Rng::new(42);
        // (n, true value range, pred value range): small ranges take the LUT and dense paths,
        // large ones the sorted and hashed paths.
        for &(n, ra, rb) in &[
            (1usize, 1u64, 1u64),
            (1000, 7, 5),
            (200_000, 1000, 1000),
            (200_000, 50_000, 40_000),
            (300_000, 1 << 40, 13),
            (100_000, 1 << 62, 1 << 62),
        ] {
            let a: Vec<i64> = (0..n)
                .map(|_| (rng.next_u64() % ra) as i64 - (ra / 2) as i64)
                .collect();
            let b: Vec<i64> = (0..n).map(|_| (rng.next_u64() % rb) as i64).collect();
            let t = Contingency::new(&a, &b).unwrap();
            let (ua, ub, cells) = reference(&a, &b);
            assert_eq!(t.classes, ua);
            assert_eq!(t.clusters, ub);
            assert_eq!(t.cells, cells, "n={n} ra={ra} rb={rb}");
            assert_eq!(t.row_sums.iter().sum::<u64>(), n as u64);
            assert_eq!(t.col_sums.iter().sum::<u64>(), n as u64);
        }
    }

    #[test]
    fn i32_and_i64_inputs_give_the_same_table() {
        let a32: Vec<i32> = (0..5000).map(|i| (i * 7919 % 13) - 6).collect();
        let b32: Vec<i32> = (0..5000).map(|i| i * 104729 % 17).collect();
        let a64: Vec<i64> = a32.iter().map(|&v| v as i64).collect();
        assert_eq!(
            Contingency::new(&a32, &b32).unwrap(),
            Contingency::new(&a64, &b32).unwrap()
        );
    }

    #[test]
    fn from_cells_merges_and_compacts() {
        let t = Contingency::from_cells(&[(5, 2, 3), (0, 0, 1), (5, 2, 1), (3, 9, 0), (0, 2, 2)])
            .unwrap();
        assert_eq!(t.cells, vec![(0, 0, 1), (0, 1, 2), (1, 1, 4)]);
        assert_eq!(
            (t.n, t.row_sums.clone(), t.col_sums.clone()),
            (7, vec![3, 4], vec![1, 6])
        );
    }

    #[test]
    fn empty_input() {
        let t = Contingency::new::<i64, i64>(&[], &[]).unwrap();
        assert_eq!((t.n, t.shape(), t.cells.len()), (0, (0, 0), 0));
    }
}
