//! Exact k nearest neighbours of queries Q (m x d) in a bank B (n x d) by squared Euclidean or
//! cosine distance.
//!
//! * Tiles of `QUERY_BLOCK` queries x `block_size` bank rows are scored by one GEMM each
//!   (`linalg::gemm_abt`): for squared L2, |b|^2 - 2 q.b (the query's own |q|^2 does not change
//!   its ranking); for cosine, -q.b on unit rows. Memory per worker is one tile plus the two
//!   blocks, never m x n.
//! * Each query keeps a bounded max-heap of its best `k + margin` candidates by
//!   (approximate score, index); a vectorised threshold test rejects most of a tile row before
//!   any heap work.
//! * The candidates' distances are then recomputed exactly in f64 from the original rows
//!   (never negative), sorted by (distance, index), and the first k returned.
//! * Parallelism (rayon) is over query blocks and, when there are few of them, over ranges of
//!   bank blocks too; ranges are aligned to whole blocks, so every score, and so the result,
//!   is the same whatever the number of threads.
//! * Rows are centred on the bank mean when the data sit far from the origin (the norm trick
//!   then loses precision), and scaled by a power of two when their magnitude would overflow or
//!   underflow; both are exact or ranking-only, as the final distances are exact.

use crate::error::{CoreError, CoreResult};
use crate::linalg::{self, dispatch, gemm_abt, Real, Transform};
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

/// Extra candidates kept beyond k, so that rounding in the GEMM scores cannot push a true
/// neighbour out before the exact recomputation.
fn margin(k: usize) -> usize {
    k.clamp(2, 8)
}

pub fn kneighbors<T: Real>(
    queries: &[T],
    m: usize,
    bank: &[T],
    n: usize,
    d: usize,
    opt: &KnnOptions,
) -> CoreResult<Neighbors<T>> {
    linalg::check_shape(queries, m, d, "queries", 1)?;
    linalg::check_shape(bank, n, d, "bank", 1)?;
    if opt.k < 1 {
        return Err(CoreError::invalid("k", "an int >= 1", format!("{}", opt.k)));
    }
    if let Some(bs) = opt.block_size {
        if bs < 1 {
            return Err(CoreError::invalid("block_size", "an int >= 1", format!("{bs}")));
        }
    }
    if let Some(v) = &opt.exclude_indices {
        if v.len() != m {
            return Err(CoreError::invalid("exclude_index", format!("one index per query ({m})"), format!("{}", v.len())));
        }
    }
    // Does any query's excluded index fall inside this bank (shard)?
    let (lo, hi) = (opt.index_offset as i128, opt.index_offset as i128 + n as i128);
    let overlap = match &opt.exclude_indices {
        Some(v) => v.iter().any(|&g| g >= 0 && (lo..hi).contains(&(g as i128))),
        None => opt.exclude_self && lo.max(0) < hi.min(m as i128),
    };
    let n_avail = if overlap { n - 1 } else { n };
    if opt.k > n_avail {
        let what = if overlap { format!("n_bank - 1 = {n_avail} (a query excludes itself)") } else { format!("n_bank = {n}") };
        return Err(CoreError::invalid("k", format!("an int <= {what}"), format!("{}", opt.k)));
    }
    let tf = transform_for(queries, m, bank, n, d, opt.metric)?;
    let kc = (opt.k + margin(opt.k)).min(n_avail);
    let qb = QUERY_BLOCK.min(m);
    let bb = opt.block_size.unwrap_or(DEFAULT_BANK_BLOCK).min(n);
    let n_qblocks = m.div_ceil(qb);
    let n_bblocks = n.div_ceil(bb);
    let threads = rayon::current_num_threads().max(1);
    let n_ranges = if n_qblocks >= 4 * threads { 1 } else { (4 * threads).div_ceil(n_qblocks).min(n_bblocks) };
    let ctx = Ctx { bank, n, d, tf: &tf, metric: opt.metric, kc, bb, opt };

    let k = opt.k;
    let mut distances = vec![T::ZERO; m * k];
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
            let qmat_ref: &[T] = match &tf {
                Some(t) => {
                    let mut buf = vec![T::ZERO; rows * d];
                    let mut norms = vec![T::ZERO; rows];
                    t.apply(qsrc, d, &mut buf, &mut norms);
                    qmat = buf;
                    &qmat
                }
                None => qsrc,
            };
            let heaps: Vec<Heaps<T>> = (0..n_ranges)
                .into_par_iter()
                .map(|r| {
                    let b0 = r * n_bblocks / n_ranges;
                    let b1 = (r + 1) * n_bblocks / n_ranges;
                    ctx.search(qmat_ref, rows, q0, b0, b1)
                })
                .collect();
            ctx.finish(&heaps, qsrc, rows, dist_out, idx_out);
        });
    Ok(Neighbors { distances, indices, k })
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
            let bdev = linalg::max_deviation(bank, d, None, "bank")?;
            let qdev = linalg::max_deviation(queries, d, None, "queries")?;
            let scale = T::from_f64(linalg::pow2_scale(bdev.max(qdev)));
            Ok(Some(Transform { center: None, scale, unit: true }))
        }
        Metric::SqEuclidean => {
            let stats = linalg::column_stats(bank, n, d, "bank")?;
            let total_var = stats.mean_var * d as f64;
            let offset2: f64 = stats.mean.iter().map(|v| v * v).sum();
            if offset2 > total_var {
                let qdev = linalg::max_deviation(queries, d, Some(&stats.mean), "queries")?;
                let scale = T::from_f64(linalg::pow2_scale(stats.max_dev.max(qdev)));
                let center = Some(stats.mean.iter().map(|&v| T::from_f64(v)).collect());
                return Ok(Some(Transform { center, scale, unit: false }));
            }
            let qmax = linalg::max_deviation(queries, d, None, "queries")?;
            let bmax = stats.max_dev + stats.mean.iter().fold(0f64, |a, v| a.max(v.abs()));
            let top = qmax.max(bmax);
            // Inside this range the squared norms and products cannot overflow or go subnormal.
            let safe = if T::NAME == "float32" { (2f64.powi(-30), 2f64.powi(30)) } else { (2f64.powi(-250), 2f64.powi(250)) };
            if top == 0.0 || (top >= safe.0 && top <= safe.1) {
                Ok(None)
            } else {
                Ok(Some(Transform { center: None, scale: T::from_f64(linalg::pow2_scale(top)), unit: false }))
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
    kc: usize,
    bb: usize,
    opt: &'a KnnOptions,
}

/// One bounded max-heap per query of a block, ordered by (score, index), stored flat.
struct Heaps<T> {
    vals: Vec<T>,
    idx: Vec<u64>,
    len: Vec<usize>,
    cap: usize,
}

#[inline(always)]
fn greater<T: Real>(va: T, ia: u64, vb: T, ib: u64) -> bool {
    va > vb || (va == vb && ia > ib)
}

/// Pushes (v, i) into the max-heap `vals/idx` of current length `len` and capacity `cap`;
/// when full, (v, i) must be below the root and replaces it.
#[inline(always)]
fn heap_push<T: Real>(vals: &mut [T], idx: &mut [u64], len: &mut usize, cap: usize, v: T, i: u64) {
    if *len < cap {
        // Sift up.
        let mut pos = *len;
        *len += 1;
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if greater(vals[parent], idx[parent], v, i) {
                break;
            }
            vals[pos] = vals[parent];
            idx[pos] = idx[parent];
            pos = parent;
        }
        vals[pos] = v;
        idx[pos] = i;
    } else {
        // Replace the root and sift down.
        let mut pos = 0;
        loop {
            let l = 2 * pos + 1;
            if l >= cap {
                break;
            }
            let r = l + 1;
            let c = if r < cap && greater(vals[r], idx[r], vals[l], idx[l]) { r } else { l };
            if !greater(vals[c], idx[c], v, i) {
                break;
            }
            vals[pos] = vals[c];
            idx[pos] = idx[c];
            pos = c;
        }
        vals[pos] = v;
        idx[pos] = i;
    }
}

/// Scans `rows` tile rows: score_j = bnorm[j] - alpha * tile[j]; pushes every score below the
/// heap's threshold. `base` is the bank index of column 0.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn scan_impl<T: Real>(
    tile: &[T],
    ldt: usize,
    rows: usize,
    cols: usize,
    bnorm: &[T],
    alpha: T,
    base: u64,
    heaps: &mut Heaps<T>,
) {
    let cap = heaps.cap;
    let bnorm = &bnorm[..cols];
    for r in 0..rows {
        let row = &tile[r * ldt..r * ldt + cols];
        let vals = &mut heaps.vals[r * cap..(r + 1) * cap];
        let idx = &mut heaps.idx[r * cap..(r + 1) * cap];
        let len = &mut heaps.len[r];
        let mut thr = if *len < cap { T::INFINITY } else { vals[0] };
        let mut rc = row.chunks_exact(linalg::LANES);
        let mut nc = bnorm.chunks_exact(linalg::LANES);
        let mut j = 0usize;
        for (x, b) in (&mut rc).zip(&mut nc) {
            let mut hit = 0u32;
            for t in 0..linalg::LANES {
                let s = b[t] - alpha * x[t];
                hit |= (s < thr) as u32;
            }
            if hit != 0 {
                for t in 0..linalg::LANES {
                    let s = b[t] - alpha * x[t];
                    if s < thr {
                        heap_push(vals, idx, len, cap, s, base + (j + t) as u64);
                        thr = if *len < cap { T::INFINITY } else { vals[0] };
                    }
                }
            }
            j += linalg::LANES;
        }
        for (t, (&x, &b)) in rc.remainder().iter().zip(nc.remainder()).enumerate() {
            let s = b - alpha * x;
            if s < thr {
                heap_push(vals, idx, len, cap, s, base + (j + t) as u64);
                thr = if *len < cap { T::INFINITY } else { vals[0] };
            }
        }
    }
}

dispatch! {
    #[allow(clippy::too_many_arguments)]
    fn scan<T: Real>(tile: &[T], ldt: usize, rows: usize, cols: usize, bnorm: &[T], alpha: T, base: u64, heaps: &mut Heaps<T>) => scan_impl
}

impl<T: Real> Ctx<'_, T> {
    /// Candidates of `rows` queries (already transformed) among bank blocks b0..b1.
    fn search(&self, qmat: &[T], rows: usize, q0: usize, b0: usize, b1: usize) -> Heaps<T> {
        let (d, bb, cap) = (self.d, self.bb, self.kc);
        let mut heaps = Heaps { vals: vec![T::ZERO; rows * cap], idx: vec![0; rows * cap], len: vec![0; rows], cap };
        let mut tile = vec![T::ZERO; rows * bb];
        let mut bnorm = vec![T::ZERO; bb];
        let mut bbuf = if self.tf.is_some() { vec![T::ZERO; bb * d] } else { Vec::new() };
        let alpha = match self.metric {
            Metric::SqEuclidean => T::ONE + T::ONE,
            Metric::Cosine => T::ONE,
        };
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
                    linalg::row_norms(src, d, &mut bnorm[..cols]);
                    src
                }
            };
            if self.metric == Metric::Cosine {
                bnorm[..cols].iter_mut().for_each(|v| *v = T::ZERO);
            }
            gemm_abt(rows, cols, d, qmat, bmat, &mut tile, bb);
            if self.opt.exclude_self || self.opt.exclude_indices.is_some() {
                // Query q0 + r must not match global bank index g, i.e. column g - offset - s0.
                for r in 0..rows {
                    if let Some(g) = self.opt.excluded(q0 + r) {
                        let col = g as i128 - self.opt.index_offset as i128 - s0 as i128;
                        if col >= 0 && (col as usize) < cols {
                            tile[r * bb + col as usize] = -T::INFINITY;
                        }
                    }
                }
            }
            scan(&tile, bb, rows, cols, &bnorm, alpha, s0 as u64, &mut heaps);
        }
        heaps
    }

    /// Merges the heaps of all ranges, recomputes the candidates' distances exactly and writes
    /// the k best of each query, ascending by (distance, index).
    fn finish(&self, heaps: &[Heaps<T>], qsrc: &[T], rows: usize, dist_out: &mut [T], idx_out: &mut [i64]) {
        let (d, k, cap) = (self.d, self.opt.k, self.kc);
        let mut cand: Vec<(T, u64)> = Vec::with_capacity(cap * heaps.len());
        let mut exact: Vec<(f64, u64)> = Vec::with_capacity(cap);
        for r in 0..rows {
            cand.clear();
            for h in heaps {
                let len = h.len[r];
                cand.extend(h.vals[r * cap..r * cap + len].iter().copied().zip(h.idx[r * cap..r * cap + len].iter().copied()));
            }
            if heaps.len() > 1 {
                cand.sort_unstable_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
                cand.truncate(cap);
            }
            let q = &qsrc[r * d..(r + 1) * d];
            exact.clear();
            for &(_, j) in &cand {
                let b = &self.bank[j as usize * d..(j as usize + 1) * d];
                let dist = match self.metric {
                    Metric::SqEuclidean => linalg::sq_dist_f64(q, b),
                    Metric::Cosine => linalg::cosine_dist_f64(q, b),
                };
                exact.push((dist, j));
            }
            exact.sort_unstable_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
            for (t, &(dist, j)) in exact.iter().take(k).enumerate() {
                dist_out[r * k + t] = T::from_f64(dist);
                idx_out[r * k + t] = j as i64 + self.opt.index_offset;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    fn random(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n * d).map(|_| (lcg(&mut s) * 2.0 - 1.0) as f32).collect()
    }

    /// Brute force: all exact distances, sorted by (distance, index).
    fn brute(q: &[f32], m: usize, b: &[f32], n: usize, d: usize, opt: &KnnOptions) -> Neighbors<f32> {
        let mut dist = Vec::new();
        let mut idx = Vec::new();
        for i in 0..m {
            let qi = &q[i * d..(i + 1) * d];
            let mut all: Vec<(f64, usize)> = (0..n)
                .filter(|&j| opt.excluded(i) != Some(j as i64 + opt.index_offset))
                .map(|j| {
                    let bj = &b[j * d..(j + 1) * d];
                    let v = match opt.metric {
                        Metric::SqEuclidean => linalg::sq_dist_f64(qi, bj),
                        Metric::Cosine => linalg::cosine_dist_f64(qi, bj),
                    };
                    (v, j)
                })
                .collect();
            all.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
            for &(v, j) in all.iter().take(opt.k) {
                dist.push(v as f32);
                idx.push(j as i64 + opt.index_offset);
            }
        }
        Neighbors { distances: dist, indices: idx, k: opt.k }
    }

    #[test]
    fn matches_brute_force_l2_and_cosine() {
        let (m, n, d) = (70, 1300, 9);
        let q = random(m, d, 1);
        let b = random(n, d, 2);
        for metric in [Metric::SqEuclidean, Metric::Cosine] {
            for k in [1, 5, 17] {
                for block in [None, Some(7), Some(100)] {
                    let opt = KnnOptions { k, metric, block_size: block, ..KnnOptions::new(k) };
                    let got = kneighbors(&q, m, &b, n, d, &opt).unwrap();
                    assert_eq!(got, brute(&q, m, &b, n, d, &opt), "{metric:?} k={k} block={block:?}");
                }
            }
        }
    }

    #[test]
    fn exclude_self_and_offset() {
        let (n, d) = (400, 5);
        let b = random(n, d, 3);
        let opt = KnnOptions { exclude_self: true, ..KnnOptions::new(4) };
        let got = kneighbors(&b, n, &b, n, d, &opt).unwrap();
        assert_eq!(got, brute(&b, n, &b, n, d, &opt));
        assert!((0..n).all(|i| got.indices[i * 4..(i + 1) * 4].iter().all(|&j| j != i as i64)));
        // A shard [100, 250) of the bank, with the whole bank as queries.
        let shard = &b[100 * d..250 * d];
        let opt = KnnOptions { exclude_self: true, index_offset: 100, ..KnnOptions::new(3) };
        let got = kneighbors(&b, n, shard, 150, d, &opt).unwrap();
        let want = brute(&b, n, shard, 150, d, &opt);
        assert_eq!(got, want);
        // A subset of the bank as queries, each excluding its own row.
        let rows = [5usize, 17, 399, 0];
        let q: Vec<f32> = rows.iter().flat_map(|&r| b[r * d..(r + 1) * d].iter().copied()).collect();
        let opt = KnnOptions { exclude_indices: Some(rows.iter().map(|&r| r as i64).collect()), ..KnnOptions::new(6) };
        let got = kneighbors(&q, 4, &b, n, d, &opt).unwrap();
        assert_eq!(got, brute(&q, 4, &b, n, d, &opt));
        assert!((0..4).all(|i| got.indices[i * 6..(i + 1) * 6].iter().all(|&j| j != rows[i] as i64)));
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
    fn far_from_origin_and_extreme_scales() {
        let (m, n, d) = (20, 300, 4);
        for (offset, scale) in [(1e6f32, 1.0f32), (0.0, 1e15), (0.0, 1e-15), (0.0, 1e30), (3e4, 1e-3)] {
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
                assert!((g - w).abs() <= 1e-5 * w.abs().max(f32::MIN_POSITIVE), "{offset} {scale}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn f64_input() {
        let (m, n, d) = (30, 500, 6);
        let q: Vec<f64> = random(m, d, 8).iter().map(|&v| v as f64).collect();
        let b: Vec<f64> = random(n, d, 9).iter().map(|&v| v as f64).collect();
        let got = kneighbors(&q, m, &b, n, d, &KnnOptions::new(2)).unwrap();
        for i in 0..m {
            let mut all: Vec<(f64, usize)> = (0..n).map(|j| (linalg::sq_dist_f64(&q[i * d..(i + 1) * d], &b[j * d..(j + 1) * d]), j)).collect();
            all.sort_by(|a, b| a.partial_cmp(b).unwrap());
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
        let opt = KnnOptions { exclude_self: true, ..KnnOptions::new(10) };
        assert!(e(kneighbors(&b, 10, &b, 10, 2, &opt)).contains("excludes itself"));
        let opt = KnnOptions { exclude_indices: Some(vec![0; 3]), ..KnnOptions::new(1) };
        assert!(e(kneighbors(&b, 10, &b, 10, 2, &opt)).starts_with("exclude_index:"));
        assert!(e(kneighbors(&b, 0, &b, 10, 2, &KnnOptions::new(1))).starts_with("queries:"));
        let mut bad = b.clone();
        bad[7] = f32::NAN;
        assert!(e(kneighbors(&b, 10, &bad, 10, 2, &KnnOptions::new(1))).starts_with("bank:"));
        let opt = KnnOptions { block_size: Some(0), ..KnnOptions::new(1) };
        assert!(e(kneighbors(&b, 10, &b, 10, 2, &opt)).starts_with("block_size:"));
    }
}
