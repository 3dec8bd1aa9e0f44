//! One streamed chunk of a feature bank evaluated in one sweep: what `unlearnkit eval` computes
//! on every row, on both cores, reading the rows in the dtype they were stored in.
//!
//! * The chunk arrives as stored (`Raw`: float16 / bfloat16 bits, float32, float64) and is
//!   upcast one slab (`SLAB_BYTES`) at a time into a reused buffer: a float16 bank is never
//!   copied whole as float32.
//! * Per slab, tiles of `TILE_ROWS` rows are processed in parallel (rayon): the finite check,
//!   the float64 moments (count, mean, centred co-moment by one f64 GEMM per tile, tiles merged
//!   in order with the pairwise update of Chan, Golub & LeVeque), the linear probe's class,
//!   the nearest centroid (exact f64 distances, ties to the lower index: what `kneighbors`
//!   with k = 1 returns), and the dimensional-alignment terms (f64). Tile partials are reduced
//!   in tile order, so every number is the same whatever the number of threads.
//! * The k-NN queries (all of them, whatever attack group they belong to) are searched in the
//!   slab by one call of the blocked-GEMM search (`knn::kneighbors_exact`, the engine's peak
//!   kernel, itself parallel over query blocks and bank ranges); slab results are merged by
//!   (exact f64 distance, index), so a chunk's result equals one search of the whole chunk.
//!
//! The probe: `StandardScaler` then a linear model, as scikit-learn predicts it
//! (s = (x - mean) / scale in the feature precision, then s W^T + b, by the engine's GEMM). A
//! row whose top two logits are closer than twice the bound on the rounding of two float sums
//! of d terms (ours and scikit-learn's, each within (d + 2) u |s| |w_c| whatever the order of
//! summation, u of the feature precision, with a safety factor 2) is reported as ambiguous
//! (-1), for the caller to ask scikit-learn itself, so the classes equal scikit-learn's.

use crate::distance::sq_dist_f64;
use crate::error::{CoreError, CoreResult};
use crate::float::{by_value_then_index, Raw, Real};
use crate::gemm::{gemm_abt, gemm_ata};
use crate::knn::{self, KnnOptions};
use crate::simd::dispatch;
use rayon::prelude::*;

/// Rows per work item of the row metrics (fixed, so sums do not depend on the thread count).
pub const TILE_ROWS: usize = 1024;
/// Bytes of the upcast buffer (one slab of rows in the compute precision).
pub const SLAB_BYTES: usize = 16 << 20;
/// Index of a missing k-NN candidate (a chunk with fewer usable rows than k); sorts last.
pub const MASKED: i64 = i64::MAX;

/// A fitted `StandardScaler` + linear classifier: `coef` is (c x d) row-major; c = 1 is a
/// binary model (class 1 where the score is > 0).
#[derive(Debug, Clone)]
pub struct Probe<T> {
    pub mean: Vec<T>,
    pub scale: Vec<T>,
    pub coef: Vec<T>,
    pub intercept: Vec<T>,
}

/// Dimensional alignment: `proj_t` (p x d) holds the kept eigenvectors as rows, or (with
/// `complement`) the other ones; `mean` is removed from every row first (None: no centring).
#[derive(Debug, Clone)]
pub struct Alignment {
    pub proj_t: Vec<f64>,
    pub p: usize,
    pub complement: bool,
    pub mean: Option<Vec<f64>>,
}

/// The k-NN part of a chunk job: `m` queries (m x d), the global index each must not match
/// (`exclude`, negative: none), and the chunk's global position `offset`.
#[derive(Debug, Clone)]
pub struct KnnJob<'a, T> {
    pub queries: &'a [T],
    pub m: usize,
    pub k: usize,
    pub exclude: Option<&'a [i64]>,
    pub offset: i64,
    pub block_size: Option<usize>,
}

/// What to compute on a chunk.
#[derive(Debug, Clone, Default)]
pub struct ChunkJob<'a, T> {
    pub validate: bool,
    pub moments: bool,
    pub probe: Option<&'a Probe<T>>,
    /// (kc x d) centroids to assign every row to.
    pub centroids: Option<&'a [T]>,
    pub alignment: Option<&'a Alignment>,
    pub knn: Option<KnnJob<'a, T>>,
}

/// Row count, float64 mean and centred co-moment (d x d) of a set of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    pub n: u64,
    pub mean: Vec<f64>,
    pub m2: Vec<f64>,
}

impl Moments {
    /// The pairwise update of Chan, Golub & LeVeque (1979): accurate when the mean is large
    /// next to the spread.
    pub fn merge(self, other: Moments) -> Moments {
        if other.n == 0 {
            return self;
        }
        if self.n == 0 {
            return other;
        }
        let n = self.n + other.n;
        let f = (self.n as f64) * (other.n as f64) / n as f64;
        let w = other.n as f64 / n as f64;
        let delta: Vec<f64> = other
            .mean
            .iter()
            .zip(&self.mean)
            .map(|(b, a)| b - a)
            .collect();
        let d = delta.len();
        let mean = self
            .mean
            .iter()
            .zip(&delta)
            .map(|(a, dl)| a + dl * w)
            .collect();
        let mut m2 = self.m2;
        for i in 0..d {
            for j in 0..d {
                m2[i * d + j] += other.m2[i * d + j] + delta[i] * delta[j] * f;
            }
        }
        Moments { n, mean, m2 }
    }
}

/// The results of a chunk job (empty vectors / None for what was not asked).
#[derive(Debug, Clone, Default)]
pub struct ChunkOut {
    /// First row (in the chunk) holding NaN or Inf; nothing else is computed then.
    pub bad_row: Option<usize>,
    pub moments: Option<Moments>,
    /// Probe class (index into the model's classes) per row; -1: ambiguous, ask the model.
    pub probe_class: Vec<i32>,
    /// Nearest centroid per row.
    pub assign: Vec<i64>,
    /// Sum over rows of |U_k^T (z - mu)|^2 / |z - mu|^2 (float64, rows in order).
    pub da_sum: f64,
    /// Rows with z - mu = 0 (their term is 0 by convention).
    pub da_zero_rows: u64,
    /// k-NN: exact distances and global indices (m x width), ascending by (distance, index);
    /// width = min(k, chunk rows), missing candidates (inf, MASKED).
    pub knn_dist: Vec<f64>,
    pub knn_idx: Vec<i64>,
    pub knn_width: usize,
}

/// Partials of one tile.
struct TileOut {
    bad: Option<usize>,
    moments: Option<Moments>,
    probe: Vec<i32>,
    assign: Vec<i64>,
    da_sum: f64,
    da_zero: u64,
}

/// `s = (x - mean) / scale` row by row in `T` (as scikit-learn's `StandardScaler` in the
/// features' dtype) and the Euclidean norm of each scaled row.
#[inline(always)]
fn scale_rows_impl<T: Real>(
    rows: &[T],
    d: usize,
    mean: &[T],
    scale: &[T],
    s: &mut [T],
    norms: &mut [f64],
) {
    for ((row, si), nrm) in rows
        .chunks_exact(d)
        .zip(s.chunks_exact_mut(d))
        .zip(norms.iter_mut())
    {
        let mut acc = T::ZERO;
        for j in 0..d {
            let v = (row[j] - mean[j]) / scale[j];
            si[j] = v;
            acc = acc + v * v;
        }
        *nrm = acc.to_f64().sqrt();
    }
}

dispatch! {
    fn scale_rows<T: Real>(rows: &[T], d: usize, mean: &[T], scale: &[T], s: &mut [T], norms: &mut [f64]) => scale_rows_impl
}

/// The probe's class of `r` rows: scaled rows times the coefficients by the engine's GEMM,
/// then, per row, the top logit unless another one is within the rounding bound of the two
/// sums (ours and scikit-learn's, each within (d + 2) u (|s| |w_c| + |b_c|) of the exact value,
/// whatever the order of summation; a safety factor 2 on top): then -1.
fn tile_probe<T: Real>(
    tile: &[T],
    r: usize,
    d: usize,
    p: &Probe<T>,
    wnorm: &[f64],
    out: &mut [i32],
) {
    let c = p.intercept.len();
    let mut s = vec![T::ZERO; r * d];
    let mut snorm = vec![0f64; r];
    scale_rows(tile, d, &p.mean, &p.scale, &mut s, &mut snorm);
    let mut logits = vec![T::ZERO; r * c];
    gemm_abt(r, c, d, &s, &p.coef, &mut logits, c);
    let g = 2.0 * 2.0 * (d as f64 + 2.0) * T::UNIT_ROUNDOFF;
    let mut l = vec![0f64; c];
    let mut e = vec![0f64; c];
    for ((o, lg), &sn) in out.iter_mut().zip(logits.chunks_exact(c)).zip(&snorm) {
        for cl in 0..c {
            let b = p.intercept[cl].to_f64();
            l[cl] = lg[cl].to_f64() + b;
            // the sum's bound plus the rounding of the logit itself (in T), with margin
            e[cl] = g * (sn * wnorm[cl] + b.abs() + l[cl].abs()) + f64::MIN_POSITIVE;
        }
        *o = if c == 1 {
            if l[0].abs() <= 2.0 * e[0] {
                -1
            } else {
                (l[0] > 0.0) as i32
            }
        } else {
            let mut top = 0;
            for cl in 1..c {
                if l[cl] > l[top] {
                    top = cl;
                }
            }
            let clear = (0..c).all(|cl| cl == top || l[top] - l[cl] > 2.0 * (e[top] + e[cl]));
            if clear {
                top as i32
            } else {
                -1
            }
        };
    }
}

#[inline(always)]
fn assign_rows_impl<T: Real>(rows: &[T], d: usize, centroids: &[T], out: &mut [i64]) {
    for (row, o) in rows.chunks_exact(d).zip(out.iter_mut()) {
        let mut best = (f64::INFINITY, 0usize);
        for (c, cen) in centroids.chunks_exact(d).enumerate() {
            let v = sq_dist_f64(row, cen);
            if v < best.0 {
                best = (v, c);
            }
        }
        *o = best.1 as i64;
    }
}

dispatch! {
    fn assign_rows<T: Real>(rows: &[T], d: usize, centroids: &[T], out: &mut [i64]) => assign_rows_impl
}

#[inline(always)]
fn first_bad_impl<T: Real>(rows: &[T], d: usize) -> Option<usize> {
    for (i, row) in rows.chunks_exact(d).enumerate() {
        let mut bad = 0u32;
        for &v in row {
            bad |= (!v.is_finite()) as u32;
        }
        if bad != 0 {
            return Some(i);
        }
    }
    None
}

dispatch! {
    fn first_bad<T: Real>(rows: &[T], d: usize) -> Option<usize> => first_bad_impl
}

/// Moments of `r` rows: f64 mean, then the centred rows transposed (d x r) times themselves.
fn tile_moments<T: Real>(rows: &[T], r: usize, d: usize) -> Moments {
    let mut mean = vec![0f64; d];
    for row in rows.chunks_exact(d) {
        mean.iter_mut()
            .zip(row)
            .for_each(|(m, &v)| *m += v.to_f64());
    }
    mean.iter_mut().for_each(|m| *m /= r as f64);
    let mut z = vec![0f64; r * d];
    for (zi, row) in z.chunks_exact_mut(d).zip(rows.chunks_exact(d)) {
        for j in 0..d {
            zi[j] = row[j].to_f64() - mean[j];
        }
    }
    let mut m2 = vec![0f64; d * d];
    gemm_ata(r, d, &z, &mut m2);
    Moments {
        n: r as u64,
        mean,
        m2,
    }
}

/// Sum of the alignment terms of `r` rows, and how many rows are zero after centring.
fn tile_alignment<T: Real>(rows: &[T], r: usize, d: usize, a: &Alignment) -> (f64, u64) {
    let mut z: Vec<f64> = rows.iter().map(|v| v.to_f64()).collect();
    if let Some(mu) = &a.mean {
        for row in z.chunks_exact_mut(d) {
            row.iter_mut().zip(mu).for_each(|(v, m)| *v -= m);
        }
    }
    let mut proj = vec![0f64; r * a.p];
    gemm_abt(r, a.p, d, &z, &a.proj_t, &mut proj, a.p);
    let (mut sum, mut zero) = (0f64, 0u64);
    for (zi, pi) in z.chunks_exact(d).zip(proj.chunks_exact(a.p.max(1))) {
        let den: f64 = zi.iter().map(|v| v * v).sum();
        let pp: f64 = pi.iter().map(|v| v * v).sum();
        let num = if a.complement {
            (den - pp).max(0.0)
        } else {
            pp
        };
        zero += (den == 0.0) as u64;
        sum += num / den.max(f64::MIN_POSITIVE);
    }
    (sum, zero)
}

/// Keeps the `k` best of `best` (this query's running list) and `new`, by (distance, index).
fn merge_best(best: &mut Vec<(f64, i64)>, new: impl Iterator<Item = (f64, i64)>, k: usize) {
    best.extend(new);
    best.sort_unstable_by(by_value_then_index);
    best.truncate(k);
}

/// Runs `job` on the chunk `x` (n x d, as stored).
pub fn eval_chunk<T: Real>(
    x: Raw<'_>,
    n: usize,
    d: usize,
    job: &ChunkJob<'_, T>,
) -> CoreResult<ChunkOut> {
    if d == 0 || x.len() != n * d {
        return Err(CoreError::invalid(
            "x",
            format!("{} values for shape ({n}, {d})", n * d),
            format!("{}", x.len()),
        ));
    }
    if let Some(p) = job.probe {
        let c = p.intercept.len();
        if c == 0 || c > 64 || p.coef.len() != c * d || p.mean.len() != d || p.scale.len() != d {
            return Err(CoreError::invalid(
                "probe",
                format!("mean and scale of {d} values, coef (c, {d}) and intercept (c,) with 1 <= c <= 64"),
                format!("{} / {} / {} / {} values", p.mean.len(), p.scale.len(), p.coef.len(), c),
            ));
        }
    }
    if let Some(c) = job.centroids {
        if c.is_empty() || c.len() % d != 0 {
            return Err(CoreError::invalid(
                "centroids",
                format!("(k, {d}) with k >= 1"),
                format!("{} values", c.len()),
            ));
        }
    }
    if let Some(a) = job.alignment {
        if a.proj_t.len() != a.p * d || a.mean.as_ref().is_some_and(|m| m.len() != d) {
            return Err(CoreError::invalid(
                "alignment",
                format!("a ({}, {d}) basis and a mean of {d}", a.p),
                "other shapes",
            ));
        }
    }
    let mut out = ChunkOut::default();
    if job.probe.is_some() {
        out.probe_class = vec![0; n];
    }
    if job.centroids.is_some() {
        out.assign = vec![0; n];
    }
    let mut best: Vec<Vec<(f64, i64)>> = Vec::new();
    if let Some(kj) = &job.knn {
        transform_check(kj, d)?;
        best = vec![Vec::new(); kj.m];
    }
    let slab_rows = ((SLAB_BYTES / (d * std::mem::size_of::<T>())) / TILE_ROWS).max(1) * TILE_ROWS;
    let mut buf = vec![T::ZERO; slab_rows.min(n.max(1)) * d];
    let mut moments: Option<Moments> = None;
    let wnorm: Vec<f64> = job.probe.map_or(Vec::new(), |p| {
        p.coef
            .chunks_exact(d)
            .map(|w| {
                w.iter()
                    .map(|v| v.to_f64() * v.to_f64())
                    .sum::<f64>()
                    .sqrt()
            })
            .collect()
    });
    for s0 in (0..n).step_by(slab_rows) {
        let rows = slab_rows.min(n - s0);
        let slab = &mut buf[..rows * d];
        slab.par_chunks_mut(TILE_ROWS * d)
            .enumerate()
            .for_each(|(i, o)| x.fill((s0 + i * TILE_ROWS) * d, o));
        let slab = &buf[..rows * d];
        let n_tiles = rows.div_ceil(TILE_ROWS);
        let tiles: Vec<TileOut> = (0..n_tiles)
            .into_par_iter()
            .map(|i| {
                let tile = &slab[i * TILE_ROWS * d..((i + 1) * TILE_ROWS).min(rows) * d];
                let r = tile.len() / d;
                let mut t = TileOut {
                    bad: None,
                    moments: None,
                    probe: Vec::new(),
                    assign: Vec::new(),
                    da_sum: 0.0,
                    da_zero: 0,
                };
                if job.validate {
                    t.bad = first_bad(tile, d);
                    if t.bad.is_some() {
                        return t;
                    }
                }
                if job.moments {
                    t.moments = Some(tile_moments(tile, r, d));
                }
                if let Some(p) = job.probe {
                    t.probe = vec![0; r];
                    tile_probe(tile, r, d, p, &wnorm, &mut t.probe);
                }
                if let Some(c) = job.centroids {
                    t.assign = vec![0; r];
                    assign_rows(tile, d, c, &mut t.assign);
                }
                if let Some(a) = job.alignment {
                    (t.da_sum, t.da_zero) = tile_alignment(tile, r, d, a);
                }
                t
            })
            .collect();
        for (i, t) in tiles.into_iter().enumerate() {
            if let Some(b) = t.bad {
                out.bad_row = Some(s0 + i * TILE_ROWS + b);
                return Ok(out);
            }
            if let Some(m) = t.moments {
                moments = Some(match moments {
                    None => m,
                    Some(acc) => acc.merge(m),
                });
            }
            let r0 = s0 + i * TILE_ROWS;
            if !t.probe.is_empty() {
                out.probe_class[r0..r0 + t.probe.len()].copy_from_slice(&t.probe);
            }
            if !t.assign.is_empty() {
                out.assign[r0..r0 + t.assign.len()].copy_from_slice(&t.assign);
            }
            out.da_sum += t.da_sum;
            out.da_zero_rows += t.da_zero;
        }
        if let Some(kj) = &job.knn {
            knn_slab(kj, slab, rows, d, s0, &mut best)?;
        }
    }
    out.moments = moments;
    if let Some(kj) = &job.knn {
        let w = kj.k.min(n);
        out.knn_width = w;
        out.knn_dist = vec![f64::INFINITY; kj.m * w];
        out.knn_idx = vec![MASKED; kj.m * w];
        for (q, list) in best.iter().enumerate() {
            for (t, &(dist, j)) in list.iter().take(w).enumerate() {
                out.knn_dist[q * w + t] = dist;
                out.knn_idx[q * w + t] = j;
            }
        }
    }
    Ok(out)
}

fn transform_check<T: Real>(kj: &KnnJob<'_, T>, d: usize) -> CoreResult<()> {
    if kj.k < 1 {
        return Err(CoreError::invalid(
            "knn_k",
            "an int >= 1",
            format!("{}", kj.k),
        ));
    }
    if kj.queries.len() != kj.m * d || kj.m == 0 {
        return Err(CoreError::invalid(
            "knn_queries",
            format!("an (m, {d}) array with m >= 1"),
            format!("{} values", kj.queries.len()),
        ));
    }
    if let Some(e) = kj.exclude {
        if e.len() != kj.m {
            return Err(CoreError::invalid(
                "knn_exclude",
                format!("one index per query ({})", kj.m),
                format!("{}", e.len()),
            ));
        }
    }
    Ok(())
}

/// Searches the queries in one slab (rows [s0, s0 + rows) of the chunk) and merges.
fn knn_slab<T: Real>(
    kj: &KnnJob<'_, T>,
    slab: &[T],
    rows: usize,
    d: usize,
    s0: usize,
    best: &mut [Vec<(f64, i64)>],
) -> CoreResult<()> {
    let base = kj.offset + s0 as i64;
    let k = kj.k;
    if rows > k + 1 {
        let opt = KnnOptions {
            exclude_indices: kj.exclude.map(|e| e.to_vec()),
            index_offset: base,
            block_size: kj.block_size,
            ..KnnOptions::new(k)
        };
        let (dist, idx) = knn::kneighbors_exact(kj.queries, kj.m, slab, rows, d, &opt)?;
        best.par_iter_mut().enumerate().for_each(|(q, list)| {
            let new = (0..k).map(|t| (dist[q * k + t], idx[q * k + t]));
            merge_best(list, new, k);
        });
    } else {
        // A few rows: every distance, exactly (the blocked search needs k < rows).
        best.par_iter_mut().enumerate().for_each(|(q, list)| {
            let qr = &kj.queries[q * d..(q + 1) * d];
            let skip = kj.exclude.map_or(-1, |e| e[q]);
            let new = (0..rows)
                .filter(|&j| base + j as i64 != skip)
                .map(|j| (sq_dist_f64(qr, &slab[j * d..(j + 1) * d]), base + j as i64));
            merge_best(list, new, k);
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n * d)
            .map(|_| (rng.uniform() * 4.0 - 2.0) as f32)
            .collect()
    }

    #[test]
    fn knn_of_a_chunk_equals_one_search_and_brute_force() {
        let (n, d, m, k) = (5000, 7, 40, 3);
        let b = random(n, d, 1);
        let q = random(m, d, 2);
        let exclude: Vec<i64> = (0..m as i64)
            .map(|i| if i % 3 == 0 { 100 + 37 * i } else { -1 })
            .collect();
        let kj = KnnJob {
            queries: &q,
            m,
            k,
            exclude: Some(&exclude),
            offset: 100,
            block_size: Some(64),
        };
        let job = ChunkJob {
            knn: Some(kj),
            ..Default::default()
        };
        let got = eval_chunk::<f32>(Raw::F32(&b), n, d, &job).unwrap();
        for i in 0..m {
            let mut all: Vec<(f64, i64)> = (0..n)
                .filter(|&j| 100 + j as i64 != exclude[i])
                .map(|j| {
                    (
                        sq_dist_f64(&q[i * d..(i + 1) * d], &b[j * d..(j + 1) * d]),
                        100 + j as i64,
                    )
                })
                .collect();
            all.sort_by(by_value_then_index);
            assert_eq!(
                &got.knn_idx[i * k..(i + 1) * k],
                &all[..k].iter().map(|v| v.1).collect::<Vec<_>>()[..]
            );
            assert_eq!(
                &got.knn_dist[i * k..(i + 1) * k],
                &all[..k].iter().map(|v| v.0).collect::<Vec<_>>()[..]
            );
        }
        // a chunk of 2 rows with k = 3: both rows, the excluded one missing
        let job2 = ChunkJob {
            knn: Some(KnnJob {
                queries: &q[..d],
                m: 1,
                k: 3,
                exclude: Some(&[7]),
                offset: 6,
                block_size: None,
            }),
            ..Default::default()
        };
        let got = eval_chunk::<f32>(Raw::F32(&b[..2 * d]), 2, d, &job2).unwrap();
        assert_eq!(got.knn_width, 2);
        assert_eq!(got.knn_idx, vec![6, MASKED]);
        assert!(got.knn_dist[1].is_infinite());
    }

    #[test]
    fn moments_assign_and_validation() {
        let (n, d) = (3000, 5);
        let mut x = random(n, d, 3);
        let mut c = random(4, d, 4);
        // an exact duplicate centroid (ties go to the lower index) and rows far from the origin
        let c1: Vec<f32> = c[d..2 * d].to_vec();
        c[3 * d..4 * d].copy_from_slice(&c1);
        x[..100 * d].iter_mut().for_each(|v| *v += 3e4);
        let job = ChunkJob {
            validate: true,
            moments: true,
            centroids: Some(&c),
            ..Default::default()
        };
        let got = eval_chunk::<f32>(Raw::F32(&x), n, d, &job).unwrap();
        let m = got.moments.unwrap();
        assert_eq!(m.n, n as u64);
        let mean: Vec<f64> = (0..d)
            .map(|j| (0..n).map(|i| x[i * d + j] as f64).sum::<f64>() / n as f64)
            .collect();
        for j in 0..d {
            assert!((m.mean[j] - mean[j]).abs() < 1e-12);
            for l in 0..d {
                let want: f64 = (0..n)
                    .map(|i| (x[i * d + j] as f64 - mean[j]) * (x[i * d + l] as f64 - mean[l]))
                    .sum();
                assert!((m.m2[j * d + l] - want).abs() < 1e-9 * want.abs().max(1.0));
            }
        }
        for i in 0..n {
            let r = &x[i * d..(i + 1) * d];
            let mut best = (f64::INFINITY, 0);
            for k in 0..4 {
                let v = sq_dist_f64(r, &c[k * d..(k + 1) * d]);
                if v < best.0 {
                    best = (v, k);
                }
            }
            assert_eq!(got.assign[i], best.1 as i64);
        }
        let mut bad = x.clone();
        bad[2500 * d + 1] = f32::NAN;
        let got = eval_chunk::<f32>(Raw::F32(&bad), n, d, &job).unwrap();
        assert_eq!(got.bad_row, Some(2500));
    }

    #[test]
    fn probe_classes_and_alignment() {
        let (n, d, c) = (2000, 6, 3);
        let x = random(n, d, 5);
        let w = random(c, d, 6);
        let p = Probe {
            mean: vec![0.1; d],
            scale: vec![1.5; d],
            coef: w.clone(),
            intercept: vec![0.0, 0.2, -0.1],
        };
        let basis: Vec<f64> = (0..2 * d)
            .map(|i| if i % (d + 1) == 0 { 1.0 } else { 0.0 })
            .collect();
        let a = Alignment {
            proj_t: basis,
            p: 2,
            complement: false,
            mean: None,
        };
        let job = ChunkJob {
            probe: Some(&p),
            alignment: Some(&a),
            ..Default::default()
        };
        let got = eval_chunk::<f32>(Raw::F32(&x), n, d, &job).unwrap();
        let mut da = 0f64;
        for i in 0..n {
            let r = &x[i * d..(i + 1) * d];
            let s: Vec<f32> = r.iter().map(|&v| (v - 0.1) / 1.5).collect();
            let l: Vec<f64> = (0..c)
                .map(|k| {
                    (0..d)
                        .map(|j| s[j] as f64 * w[k * d + j] as f64)
                        .sum::<f64>()
                        + p.intercept[k] as f64
                })
                .collect();
            let top = (0..c).fold(0, |t, k| if l[k] > l[t] { k } else { t });
            if got.probe_class[i] >= 0 {
                assert_eq!(got.probe_class[i], top as i32);
            }
            let den: f64 = r.iter().map(|&v| (v as f64).powi(2)).sum();
            da += ((r[0] as f64).powi(2) + (r[1] as f64).powi(2)) / den;
        }
        assert!(got.probe_class.iter().filter(|&&v| v < 0).count() < 3);
        assert!((got.da_sum - da).abs() < 1e-9 * da);
    }
}
