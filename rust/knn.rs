//! Exact k nearest neighbours of queries Q (m x d) in a bank B (n x d) by squared Euclidean or
//! cosine distance.
//!
//! * Tiles of `QUERY_BLOCK` queries x `block_size` bank rows are scored by one GEMM each
//!   (`gemm::gemm_abt`): for squared L2, |b|^2 - 2 q.b (the query's own |q|^2 does not change
//!   its ranking); for cosine, -q.b on unit rows. Memory per worker is one tile plus the two
//!   blocks, never m x n.
//! * The GEMM scores carry rounding error, bounded a priori by E = 2c (|q|^2 + |b|^2) (c from
//!   the precision and d, with a safety factor 2). Each query keeps the k smallest upper bounds
//!   (score + E) in a heap, whose root T only decreases, and every bank row whose lower bound
//!   (score - E) is <= T as a candidate; a vectorised test rejects most of a tile row first.
//!   A row outside the candidates has a true distance above k others', so the candidates hold
//!   the exact k nearest, ties at the k-th distance included.
//! * The candidates' distances are then recomputed exactly in f64 from the original rows
//!   (never negative), sorted by (distance, index), and the first k returned.
//! * Parallelism (rayon) is over query blocks and, when there are few of them, over ranges of
//!   bank blocks too; ranges are aligned to whole blocks, so every score, and so the result,
//!   is the same whatever the number of threads.
//! * Rows are centred on the bank mean when the data sit far from the origin (the norm trick
//!   then loses precision), and scaled by a power of two when their magnitude would overflow or
//!   underflow; both are exact or ranking-only, as the final distances are exact.

use crate::distance;
use crate::error::{CoreError, CoreResult};
use crate::float::{by_value_then_index, Real};
use crate::gemm::gemm_abt;
use crate::simd::{dispatch, LANES};
use crate::transform::{self, Transform};
use rayon::prelude::*;

/// Distance of the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Squared Euclidean distance.
    SqEuclidean,
    /// 1 - cosine similarity (a zero row has similarity 0 with everything: distance 1).
    Cosine,
}

impl Metric {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "l2" | "sqeuclidean" | "euclidean_squared" => Some(Self::SqEuclidean),
            "cosine" => Some(Self::Cosine),
            _ => None,
        }
    }
}

/// Options of `kneighbors`.
#[derive(Debug, Clone)]
pub struct KnnOptions {
    pub k: usize,
    pub metric: Metric,
    /// Query i never matches bank row `i - index_offset` (the queries are the bank, or the full
    /// query set searched against a bank shard that starts at `index_offset`).
    pub exclude_self: bool,
    /// Per query, the global bank index it must not match (negative: none). Overrides
    /// `exclude_self` (for queries that are a subset of the bank).
    pub exclude_indices: Option<Vec<i64>>,
    /// Added to every returned index (the position of this bank shard in the whole bank).
    pub index_offset: i64,
    /// Bank rows per tile (None: `DEFAULT_BANK_BLOCK`).
    pub block_size: Option<usize>,
}

impl KnnOptions {
    pub fn new(k: usize) -> Self {
        KnnOptions {
            k,
            metric: Metric::SqEuclidean,
            exclude_self: false,
            exclude_indices: None,
            index_offset: 0,
            block_size: None,
        }
    }

    /// These options with distance `metric`.
    pub fn metric(self, metric: Metric) -> Self {
        KnnOptions { metric, ..self }
    }

    /// The global bank index query `q` must not match.
    #[inline]
    fn excluded(&self, q: usize) -> Option<i64> {
        match &self.exclude_indices {
            Some(v) => (v[q] >= 0).then_some(v[q]),
            None => self.exclude_self.then_some(q as i64),
        }
    }
}

/// Queries per tile.
pub const QUERY_BLOCK: usize = 512;
/// Bank rows per tile by default.
pub const DEFAULT_BANK_BLOCK: usize = 512;

/// The result: `k` distances and global indices per query, row-major (m x k), ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbors<T> {
    pub distances: Vec<T>,
    pub indices: Vec<i64>,
    pub k: usize,
}

/// Most candidates kept per query: max(2048, 16 k). A safety valve that bounds memory when
/// more rows than that are tied with the k-th distance within rounding: the rows with the
/// lowest (lower bound, index) are kept, which for exact duplicates are the lowest indices,
/// the same tie rule as without the valve.
pub fn max_candidates(k: usize) -> usize {
    (16 * k).max(2048)
}

/// c of the error bound E = 2c (|q|^2 + |b|^2) on a score |b|^2 - 2 q.b (or -q.b on unit rows)
/// computed in precision `u` over d terms: the dot product and norm accumulations (gamma_d =
/// (d + 4) u each), the rounding of the transformed rows (4 u), and the bound's own arithmetic,
/// times a safety factor 2.
fn error_c(u: f64, d: usize) -> f64 {
    let gamma = (d as f64 + 4.0) * u;
    let big = 2.0 * gamma + 8.0 * u;
    // |score error| <= big (|q||b| + |b|^2) <= big (|q|^2/2 + 3|b|^2/2) <= 2c (|q|^2 + |b|^2) for c = 0.75 big.
    2.0 * 0.75 * big + 16.0 * u
}

pub fn kneighbors<T: Real>(
    queries: &[T],
    m: usize,
    bank: &[T],
    n: usize,
    d: usize,
    opt: &KnnOptions,
) -> CoreResult<Neighbors<T>> {
    let (dist, indices) = kneighbors_exact(queries, m, bank, n, d, opt)?;
    Ok(Neighbors {
        distances: dist.into_iter().map(T::from_f64).collect(),
        indices,
        k: opt.k,
    })
}

/// `kneighbors` with the exact f64 distances (m x k each, row-major), before their rounding
/// to `T`: what a caller merging the results of several bank pieces ranks by, so that the
/// merge equals one search of the whole bank.
pub fn kneighbors_exact<T: Real>(
    queries: &[T],
    m: usize,
    bank: &[T],
    n: usize,
    d: usize,
    opt: &KnnOptions,
) -> CoreResult<(Vec<f64>, Vec<i64>)> {
    transform::check_shape(queries, m, d, "queries", 1)?;
    transform::check_shape(bank, n, d, "bank", 1)?;
    if opt.k < 1 {
        return Err(CoreError::invalid("k", "an int >= 1", format!("{}", opt.k)));
    }
    if let Some(bs) = opt.block_size {
        if bs < 1 {
            return Err(CoreError::invalid(
                "block_size",
                "an int >= 1",
                format!("{bs}"),
            ));
        }
    }
    if let Some(v) = &opt.exclude_indices {
        if v.len() != m {
            return Err(CoreError::invalid(
                "exclude_index",
                format!("one index per query ({m})"),
                format!("{}", v.len()),
            ));
        }
    }
    // Does any query's excluded index fall inside this bank (shard)?
    let (lo, hi) = (
        opt.index_offset as i128,
        opt.index_offset as i128 + n as i128,
    );
    let overlap = match &opt.exclude_indices {
        Some(v) => v.iter().any(|&g| g >= 0 && (lo..hi).contains(&(g as i128))),
        None => opt.exclude_self && lo.max(0) < hi.min(m as i128),
    };
    let n_avail = if overlap { n - 1 } else { n };
    if opt.k > n_avail {
        let what = if overlap {
            format!("n_bank - 1 = {n_avail} (a query excludes itself)")
        } else {
            format!("n_bank = {n}")
        };
        return Err(CoreError::invalid(
            "k",
            format!("an int <= {what}"),
            format!("{}", opt.k),
        ));
    }
    let tf = transform_for(queries, m, bank, n, d, opt.metric)?;
    let c = error_c(T::UNIT_ROUNDOFF, d);
    let qb = QUERY_BLOCK.min(m);
    let bb = opt.block_size.unwrap_or(DEFAULT_BANK_BLOCK).min(n);
    let n_qblocks = m.div_ceil(qb);
    let n_bblocks = n.div_ceil(bb);
    let threads = rayon::current_num_threads().max(1);
    let n_ranges = if n_qblocks >= 4 * threads {
        1
    } else {
        (4 * threads).div_ceil(n_qblocks).min(n_bblocks)
    };
    let ctx = Ctx {
        bank,
        n,
        d,
        tf: &tf,
        metric: opt.metric,
        c,
        bb,
        opt,
    };

    let k = opt.k;
    let mut distances = vec![0f64; m * k];
    let mut indices = vec![0i64; m * k];
    distances
        .par_chunks_mut(qb * k)
        .zip(indices.par_chunks_mut(qb * k))
        .enumerate()
        .for_each(|(qi, (dist_out, idx_out))| {
            let q0 = qi * qb;
            let rows = qb.min(m - q0);
            let qsrc = &queries[q0 * d..(q0 + rows) * d];
            let qmat: Vec<T>;
            let mut qnorm = vec![T::ZERO; rows];
            let qmat_ref: &[T] = match &tf {
                Some(t) => {
                    let mut buf = vec![T::ZERO; rows * d];
                    t.apply(qsrc, d, &mut buf, &mut qnorm);
                    qmat = buf;
                    &qmat
                }
                None => {
                    transform::row_norms(qsrc, d, &mut qnorm);
                    qsrc
                }
            };
            let sels: Vec<Selection<T>> = (0..n_ranges)
                .into_par_iter()
                .map(|r| {
                    let b0 = r * n_bblocks / n_ranges;
                    let b1 = (r + 1) * n_bblocks / n_ranges;
                    ctx.search(qmat_ref, &qnorm, rows, q0, b0, b1)
                })
                .collect();
            ctx.finish(&sels, qsrc, rows, dist_out, idx_out);
        });
    Ok((distances, indices))
}

/// Chooses the row transform (None: the GEMM reads the original rows) and runs the finite
/// checks.
fn transform_for<T: Real>(
    queries: &[T],
    m: usize,
    bank: &[T],
    n: usize,
    d: usize,
    metric: Metric,
) -> CoreResult<Option<Transform<T>>> {
    let _ = m;
    match metric {
        Metric::Cosine => {
            let bdev = transform::max_deviation(bank, d, None, "bank")?;
            let qdev = transform::max_deviation(queries, d, None, "queries")?;
            let scale = T::from_f64(transform::pow2_scale(bdev.max(qdev)));
            Ok(Some(Transform {
                center: None,
                scale,
                unit: true,
            }))
        }
        Metric::SqEuclidean => {
            let stats = transform::column_stats(bank, n, d, "bank")?;
            let total_var = stats.mean_var * d as f64;
            let offset2: f64 = stats.mean.iter().map(|v| v * v).sum();
            if offset2 > total_var {
                let qdev = transform::max_deviation(queries, d, Some(&stats.mean), "queries")?;
                let scale = T::from_f64(transform::pow2_scale(stats.max_dev.max(qdev)));
                let center = Some(stats.mean.iter().map(|&v| T::from_f64(v)).collect());
                return Ok(Some(Transform {
                    center,
                    scale,
                    unit: false,
                }));
            }
            let qmax = transform::max_deviation(queries, d, None, "queries")?;
            let bmax = stats.max_dev + stats.mean.iter().fold(0f64, |a, v| a.max(v.abs()));
            let top = qmax.max(bmax);
            // Inside this range the squared norms and products cannot overflow or go subnormal.
            if transform::in_safe_range::<T>(top) {
                Ok(None)
            } else {
                Ok(Some(Transform {
                    center: None,
                    scale: T::from_f64(transform::pow2_scale(top)),
                    unit: false,
                }))
            }
        }
    }
}

struct Ctx<'a, T: Real> {
    bank: &'a [T],
    n: usize,
    d: usize,
    tf: &'a Option<Transform<T>>,
    metric: Metric,
    /// Error-bound constant (see `error_c`).
    c: f64,
    bb: usize,
    opt: &'a KnnOptions,
}

/// Per query of a block: a max-heap of the k smallest upper bounds, and the candidates
/// (lower bound, bank index) whose lower bound was <= the heap's root when seen.
struct Selection<T> {
    k: usize,
    heap: Vec<T>,
    len: Vec<usize>,
    cands: Vec<Vec<(T, u64)>>,
    prune_at: Vec<usize>,
}

impl<T: Real> Selection<T> {
    fn new(rows: usize, k: usize) -> Self {
        Selection {
            k,
            heap: vec![T::ZERO; rows * k],
            len: vec![0; rows],
            cands: (0..rows).map(|_| Vec::new()).collect(),
            prune_at: vec![prune_floor(k); rows],
        }
    }

    /// The k-th smallest upper bound seen by query r (+inf until k were seen).
    #[inline(always)]
    fn root(&self, r: usize) -> T {
        if self.len[r] < self.k {
            T::INFINITY
        } else {
            self.heap[r * self.k]
        }
    }

    /// Adds an upper bound to query r's heap (it is below the root, or the heap is not full).
    #[inline(always)]
    fn push_upper(&mut self, r: usize, v: T) {
        let k = self.k;
        let h = &mut self.heap[r * k..(r + 1) * k];
        let len = &mut self.len[r];
        if *len < k {
            let mut pos = *len;
            *len += 1;
            while pos > 0 {
                let parent = (pos - 1) / 2;
                if h[parent] >= v {
                    break;
                }
                h[pos] = h[parent];
                pos = parent;
            }
            h[pos] = v;
        } else {
            let mut pos = 0;
            loop {
                let l = 2 * pos + 1;
                if l >= k {
                    break;
                }
                let c = if l + 1 < k && h[l + 1] > h[l] {
                    l + 1
                } else {
                    l
                };
                if h[c] <= v {
                    break;
                }
                h[pos] = h[c];
                pos = c;
            }
            h[pos] = v;
        }
    }

    /// Drops the candidates of query r that the current root rules out; caps the list.
    fn prune(&mut self, r: usize) {
        let root = self.root(r);
        let list = &mut self.cands[r];
        list.retain(|c| c.0 <= root);
        let cap = max_candidates(self.k);
        if list.len() > cap {
            list.select_nth_unstable_by(cap - 1, by_value_then_index);
            list.truncate(cap);
        }
        self.prune_at[r] = (2 * list.len()).max(prune_floor(self.k));
    }
}

fn prune_floor(k: usize) -> usize {
    4 * k + 256
}

/// Scans `rows` tile rows. For bank column j: lower = bl[j] - alpha tile[j] - eq[r] and
/// upper = bu[j] - alpha tile[j] + eq[r] (see `Ctx::search`). A NaN tile entry (an excluded
/// self-match) passes no test.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn scan_impl<T: Real>(
    tile: &[T],
    ldt: usize,
    rows: usize,
    cols: usize,
    bl: &[T],
    bu: &[T],
    eq: &[T],
    alpha: T,
    base: u64,
    sel: &mut Selection<T>,
) {
    let (bl, bu) = (&bl[..cols], &bu[..cols]);
    for r in 0..rows {
        let row = &tile[r * ldt..r * ldt + cols];
        let e = eq[r];
        let mut root = sel.root(r);
        // lower <= root  <=>  bl - alpha x <= root + e
        let mut t_low = root + e;
        let mut rc = row.chunks_exact(LANES);
        let mut lc = bl.chunks_exact(LANES);
        let mut j = 0usize;
        let visit = |sel: &mut Selection<T>, jj: usize, x: T, root: &mut T, t_low: &mut T| {
            let lower = bl[jj] - alpha * x - e;
            let upper = bu[jj] - alpha * x + e;
            sel.cands[r].push((lower, base + jj as u64));
            if upper < *root {
                sel.push_upper(r, upper);
                *root = sel.root(r);
                *t_low = *root + e;
            }
            if sel.cands[r].len() >= sel.prune_at[r] {
                sel.prune(r);
            }
        };
        for (x, l) in (&mut rc).zip(&mut lc) {
            let mut hit = 0u32;
            for t in 0..LANES {
                hit |= (l[t] - alpha * x[t] <= t_low) as u32;
            }
            if hit != 0 {
                for t in 0..LANES {
                    if l[t] - alpha * x[t] <= t_low {
                        visit(sel, j + t, x[t], &mut root, &mut t_low);
                    }
                }
            }
            j += LANES;
        }
        for (t, (&x, &l)) in rc.remainder().iter().zip(lc.remainder()).enumerate() {
            if l - alpha * x <= t_low {
                visit(sel, j + t, x, &mut root, &mut t_low);
            }
        }
    }
}

dispatch! {
    #[allow(clippy::too_many_arguments)]
    fn scan<T: Real>(tile: &[T], ldt: usize, rows: usize, cols: usize, bl: &[T], bu: &[T], eq: &[T], alpha: T, base: u64, sel: &mut Selection<T>) => scan_impl
}

impl<T: Real> Ctx<'_, T> {
    /// Selection of `rows` queries (already transformed; squared norms `qnorm`) over bank
    /// blocks b0..b1.
    fn search(
        &self,
        qmat: &[T],
        qnorm: &[T],
        rows: usize,
        q0: usize,
        b0: usize,
        b1: usize,
    ) -> Selection<T> {
        let (d, bb) = (self.d, self.bb);
        let mut sel = Selection::new(rows, self.opt.k);
        let mut tile = vec![T::ZERO; rows * bb];
        let mut bnorm = vec![T::ZERO; bb];
        let mut bl = vec![T::ZERO; bb];
        let mut bu = vec![T::ZERO; bb];
        let mut bbuf = if self.tf.is_some() {
            vec![T::ZERO; bb * d]
        } else {
            Vec::new()
        };
        let (alpha, base_on) = match self.metric {
            Metric::SqEuclidean => (T::ONE + T::ONE, 1.0),
            Metric::Cosine => (T::ONE, 0.0),
        };
        let two_c = 2.0 * self.c;
        let eq: Vec<T> = qnorm
            .iter()
            .map(|&v| T::from_f64(two_c * v.to_f64()))
            .collect();
        for blk in b0..b1 {
            let s0 = blk * bb;
            let cols = bb.min(self.n - s0);
            let src = &self.bank[s0 * d..(s0 + cols) * d];
            let bmat: &[T] = match self.tf {
                Some(t) => {
                    t.apply(src, d, &mut bbuf[..cols * d], &mut bnorm[..cols]);
                    &bbuf[..cols * d]
                }
                None => {
                    transform::row_norms(src, d, &mut bnorm[..cols]);
                    src
                }
            };
            // Score base (|b|^2 for L2, 0 for cosine) minus / plus the bound's bank part.
            for ((l, u), &nb) in bl.iter_mut().zip(bu.iter_mut()).zip(&bnorm[..cols]) {
                let nb = nb.to_f64();
                *l = T::from_f64(base_on * nb - two_c * nb);
                *u = T::from_f64(base_on * nb + two_c * nb);
            }
            gemm_abt(rows, cols, d, qmat, bmat, &mut tile, bb);
            if self.opt.exclude_self || self.opt.exclude_indices.is_some() {
                // Query q0 + r must not match global bank index g, i.e. column g - offset - s0.
                for r in 0..rows {
                    if let Some(g) = self.opt.excluded(q0 + r) {
                        let col = g as i128 - self.opt.index_offset as i128 - s0 as i128;
                        if col >= 0 && (col as usize) < cols {
                            tile[r * bb + col as usize] = T::from_f64(f64::NAN);
                        }
                    }
                }
            }
            scan(
                &tile, bb, rows, cols, &bl, &bu, &eq, alpha, s0 as u64, &mut sel,
            );
        }
        sel
    }

    /// Merges the selections of all ranges (the k-th smallest upper bound over all of them
    /// decides), recomputes the candidates' distances exactly and writes the k best of each
    /// query, ascending by (distance, index).
    fn finish(
        &self,
        sels: &[Selection<T>],
        qsrc: &[T],
        rows: usize,
        dist_out: &mut [f64],
        idx_out: &mut [i64],
    ) {
        let (d, k) = (self.d, self.opt.k);
        let mut uppers: Vec<T> = Vec::new();
        let mut exact: Vec<(f64, u64)> = Vec::new();
        for r in 0..rows {
            uppers.clear();
            for s in sels {
                uppers.extend_from_slice(&s.heap[r * k..r * k + s.len[r]]);
            }
            let root = if uppers.len() >= k {
                uppers.select_nth_unstable_by(k - 1, T::total_cmp);
                uppers[k - 1]
            } else {
                T::INFINITY
            };
            let q = &qsrc[r * d..(r + 1) * d];
            exact.clear();
            for s in sels {
                for &(lower, j) in &s.cands[r] {
                    if lower <= root {
                        let b = &self.bank[j as usize * d..(j as usize + 1) * d];
                        let dist = match self.metric {
                            Metric::SqEuclidean => distance::sq_dist_f64(q, b),
                            Metric::Cosine => distance::cosine_dist_f64(q, b),
                        };
                        exact.push((dist, j));
                    }
                }
            }
            let take = k.min(exact.len());
            if exact.len() > take {
                exact.select_nth_unstable_by(take - 1, by_value_then_index);
                exact.truncate(take);
            }
            exact.sort_unstable_by(by_value_then_index);
            for (t, &(dist, j)) in exact.iter().enumerate() {
                dist_out[r * k + t] = dist;
                idx_out[r * k + t] = j as i64 + self.opt.index_offset;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// (n x d) uniform values in [-1, 1).
    fn random(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n * d)
            .map(|_| (rng.uniform() * 2.0 - 1.0) as f32)
            .collect()
    }

    /// Brute force: all exact distances, sorted by (distance, index).
    fn brute(
        q: &[f32],
        m: usize,
        b: &[f32],
        n: usize,
        d: usize,
        opt: &KnnOptions,
    ) -> Neighbors<f32> {
        let mut dist = Vec::new();
        let mut idx = Vec::new();
        for i in 0..m {
            let qi = &q[i * d..(i + 1) * d];
            let mut all: Vec<(f64, usize)> = (0..n)
                .filter(|&j| opt.excluded(i) != Some(j as i64 + opt.index_offset))
                .map(|j| {
                    let bj = &b[j * d..(j + 1) * d];
                    let v = match opt.metric {
                        Metric::SqEuclidean => distance::sq_dist_f64(qi, bj),
                        Metric::Cosine => distance::cosine_dist_f64(qi, bj),
                    };
                    (v, j)
                })
                .collect();
            all.sort_by(by_value_then_index);
            for &(v, j) in all.iter().take(opt.k) {
                dist.push(v as f32);
                idx.push(j as i64 + opt.index_offset);
            }
        }
        Neighbors {
            distances: dist,
            indices: idx,
            k: opt.k,
        }
    }

    #[test]
    fn matches_brute_force_l2_and_cosine() {
        let (m, n, d) = (70, 1300, 9);
        let q = random(m, d, 1);
        let b = random(n, d, 2);
        for metric in [Metric::SqEuclidean, Metric::Cosine] {
            for k in [1, 5, 17] {
                for block in [None, Some(7), Some(100)] {
                    let opt = KnnOptions {
                        k,
                        metric,
                        block_size: block,
                        ..KnnOptions::new(k)
                    };
                    let got = kneighbors(&q, m, &b, n, d, &opt).unwrap();
                    assert_eq!(
                        got,
                        brute(&q, m, &b, n, d, &opt),
                        "{metric:?} k={k} block={block:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn exclude_self_and_offset() {
        let (n, d) = (400, 5);
        let b = random(n, d, 3);
        let opt = KnnOptions {
            exclude_self: true,
            ..KnnOptions::new(4)
        };
        let got = kneighbors(&b, n, &b, n, d, &opt).unwrap();
        assert_eq!(got, brute(&b, n, &b, n, d, &opt));
        assert!((0..n).all(|i| got.indices[i * 4..(i + 1) * 4]
            .iter()
            .all(|&j| j != i as i64)));
        // A shard [100, 250) of the bank, with the whole bank as queries.
        let shard = &b[100 * d..250 * d];
        let opt = KnnOptions {
            exclude_self: true,
            index_offset: 100,
            ..KnnOptions::new(3)
        };
        let got = kneighbors(&b, n, shard, 150, d, &opt).unwrap();
        let want = brute(&b, n, shard, 150, d, &opt);
        assert_eq!(got, want);
        // A subset of the bank as queries, each excluding its own row.
        let rows = [5usize, 17, 399, 0];
        let q: Vec<f32> = rows
            .iter()
            .flat_map(|&r| b[r * d..(r + 1) * d].iter().copied())
            .collect();
        let opt = KnnOptions {
            exclude_indices: Some(rows.iter().map(|&r| r as i64).collect()),
            ..KnnOptions::new(6)
        };
        let got = kneighbors(&q, 4, &b, n, d, &opt).unwrap();
        assert_eq!(got, brute(&q, 4, &b, n, d, &opt));
        assert!((0..4).all(|i| got.indices[i * 6..(i + 1) * 6]
            .iter()
            .all(|&j| j != rows[i] as i64)));
    }

    #[test]
    fn duplicates_tie_to_the_lowest_index_and_distances_are_never_negative() {
        let d = 3;
        let mut b = vec![0.1f32, 0.2, 0.3];
        for _ in 0..50 {
            b.extend_from_slice(&[0.1, 0.2, 0.3]);
        }
        let n = b.len() / d;
        let got = kneighbors(&b[..d], 1, &b, n, d, &KnnOptions::new(5)).unwrap();
        assert_eq!(got.indices, vec![0, 1, 2, 3, 4]);
        assert!(got.distances.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn more_exact_ties_than_the_candidate_cap() {
        // 5000 identical rows (more than max_candidates(3) = 2048) and a few farther ones.
        let d = 4;
        let mut b = vec![0.5f32; 5000 * d];
        b.extend(std::iter::repeat_n(3.0f32, 10 * d));
        let q = vec![0.25f32; 2 * d];
        let got = kneighbors(&q, 2, &b, 5010, d, &KnnOptions::new(3)).unwrap();
        assert_eq!(got.indices, vec![0, 1, 2, 0, 1, 2]);
        let opt = KnnOptions {
            block_size: Some(7),
            exclude_indices: Some(vec![1, -1]),
            ..KnnOptions::new(3)
        };
        let got = kneighbors(&q, 2, &b, 5010, d, &opt).unwrap();
        assert_eq!(got.indices, vec![0, 2, 3, 0, 1, 2]);
    }

    #[test]
    fn far_from_origin_and_extreme_scales() {
        let (m, n, d) = (20, 300, 4);
        for (offset, scale) in [
            (1e6f32, 1.0f32),
            (0.0, 1e15),
            (0.0, 1e-15),
            (0.0, 1e30),
            (3e4, 1e-3),
        ] {
            let q: Vec<f32> = random(m, d, 5).iter().map(|v| v * scale + offset).collect();
            let b: Vec<f32> = random(n, d, 6).iter().map(|v| v * scale + offset).collect();
            let opt = KnnOptions::new(3);
            let got = kneighbors(&q, m, &b, n, d, &opt).unwrap();
            let want = brute(&q, m, &b, n, d, &opt);
            // Same neighbours up to ties in f32 rounding of the inputs: compare distances (for
            // scale 1e30 they overflow f32 in the output, so compare the indices' exact distances).
            assert!(got.indices.iter().all(|&j| (0..n as i64).contains(&j)));
            if scale > 1e20 {
                assert_eq!(got.indices, want.indices);
                continue;
            }
            for (g, w) in got.distances.iter().zip(&want.distances) {
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs().max(f32::MIN_POSITIVE),
                    "{offset} {scale}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn cosine_with_rows_of_very_different_magnitudes() {
        // f32: one bank row near f32::MAX next to queries of magnitude 1 (the common power-of-
        // two scale of the old transform flushed the queries to subnormals: no candidates).
        let (m, n, d) = (6, 40, 3);
        let q = random(m, d, 12);
        let mut b = random(n, d, 13);
        b[0] = 3.0e38;
        b[3 * 7] = -2.5e38;
        let opt = KnnOptions {
            metric: Metric::Cosine,
            ..KnnOptions::new(3)
        };
        let got = kneighbors(&q, m, &b, n, d, &opt).unwrap();
        assert_eq!(got, brute(&q, m, &b, n, d, &opt));
        let q = [0.3457f32, 0.822, 0.3303];
        let b = [3.0e38f32, -0.13210486, 0.64042264];
        let got = kneighbors(&q, 1, &b, 1, 3, &KnnOptions::new(1).metric(Metric::Cosine)).unwrap();
        assert_eq!(
            got.distances[0] as f64,
            distance::cosine_dist_f64(&q, &b) as f32 as f64
        );
        assert!(got.distances[0] > 0.6);
    }

    #[test]
    fn f64_input() {
        let (m, n, d) = (30, 500, 6);
        let q: Vec<f64> = random(m, d, 8).iter().map(|&v| v as f64).collect();
        let b: Vec<f64> = random(n, d, 9).iter().map(|&v| v as f64).collect();
        let got = kneighbors(&q, m, &b, n, d, &KnnOptions::new(2)).unwrap();
        for i in 0..m {
            let mut all: Vec<(f64, usize)> = (0..n)
                .map(|j| {
                    (
                        distance::sq_dist_f64(&q[i * d..(i + 1) * d], &b[j * d..(j + 1) * d]),
                        j,
                    )
                })
                .collect();
            all.sort_by(by_value_then_index);
            assert_eq!(got.indices[i * 2], all[0].1 as i64);
            assert_eq!(got.distances[i * 2 + 1], all[1].0);
        }
    }

    #[test]
    fn bad_arguments_name_themselves() {
        let b = random(10, 2, 1);
        let e = |r: CoreResult<Neighbors<f32>>| r.unwrap_err().to_string();
        assert!(e(kneighbors(&b, 10, &b, 10, 2, &KnnOptions::new(11))).starts_with("k:"));
        assert!(e(kneighbors(&b, 10, &b, 10, 2, &KnnOptions::new(0))).starts_with("k:"));
        let opt = KnnOptions {
            exclude_self: true,
            ..KnnOptions::new(10)
        };
        assert!(e(kneighbors(&b, 10, &b, 10, 2, &opt)).contains("excludes itself"));
        let opt = KnnOptions {
            exclude_indices: Some(vec![0; 3]),
            ..KnnOptions::new(1)
        };
        assert!(e(kneighbors(&b, 10, &b, 10, 2, &opt)).starts_with("exclude_index:"));
        assert!(e(kneighbors(&b, 0, &b, 10, 2, &KnnOptions::new(1))).starts_with("queries:"));
        let mut bad = b.clone();
        bad[7] = f32::NAN;
        assert!(e(kneighbors(&b, 10, &bad, 10, 2, &KnnOptions::new(1))).starts_with("bank:"));
        let opt = KnnOptions {
            block_size: Some(0),
            ..KnnOptions::new(1)
        };
        assert!(e(kneighbors(&b, 10, &b, 10, 2, &opt)).starts_with("block_size:"));
    }
}
