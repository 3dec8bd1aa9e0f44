//! k-means (Lloyd) with greedy k-means++ initialisation.
//!
//! * Data are f32 or f64, read in place; when they sit far from the origin (mean offset above
//!   the spread) or at an unsafe magnitude, each block of rows is centred on the column means
//!   and scaled by a power of two into a small buffer (as scikit-learn centres X). Each block
//!   is assigned by one GEMM against the centroids (|c|^2 - 2 x.c) and a vectorised arg-min.
//! * Centroid sums are accumulated in f64 per "super-chunk" of rows; the number of super-chunks
//!   depends on (n, k, d) only and they are reduced in order, so a seed gives the same result
//!   whatever the number of threads.
//! * k-means++ (greedy, 2 + ln k candidates per step, as scikit-learn) runs on a random
//!   subsample of `max(PP_MIN_SAMPLES, PP_SAMPLES_PER_CLUSTER * k)` rows when n is larger.
//! * Convergence as scikit-learn's Lloyd: stop when the labels do not change, or when the
//!   squared centre shift summed over clusters is at most `tol` times the mean column variance;
//!   then, unless the labels were stable, one more assignment so labels match the centroids.
//! * An empty cluster is re-seeded at the point farthest from its centroid (largest distance
//!   first, lowest index on ties), whose contribution is moved out of its old cluster.
//! * `n_init` restarts use independent streams of the seed; the lowest inertia wins (the first
//!   on ties). Inertia is recomputed exactly (f64) against the returned centroids.

use crate::distance;
use crate::error::{CoreError, CoreResult};
use crate::float::Real;
use crate::gemm::gemm_abt;
use crate::rng::Rng;
use crate::simd::{dispatch, LANES};
use crate::transform::{self, Transform};
use rayon::prelude::*;

/// Rows per assignment block (one GEMM each).
const BLOCK: usize = 256;
/// Largest number of f64 accumulators' bytes (super-chunks x k x d x 8) held at once.
const ACC_BUDGET: usize = 1 << 29;
const MAX_SUPER: usize = 64;
pub const PP_MIN_SAMPLES: usize = 8192;
pub const PP_SAMPLES_PER_CLUSTER: usize = 32;
/// Rows per work item in k-means++ and the inertia pass (fixed: sums are reduced in order).
const PP_CHUNK: usize = 2048;

#[derive(Debug, Clone)]
pub struct KMeansOptions {
    pub n_clusters: usize,
    pub n_init: usize,
    pub max_iter: usize,
    pub tol: f64,
    pub seed: u64,
}

impl KMeansOptions {
    pub fn new(n_clusters: usize) -> Self {
        KMeansOptions {
            n_clusters,
            n_init: 1,
            max_iter: 100,
            tol: 1e-4,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KMeansResult<T> {
    pub labels: Vec<i64>,
    /// (k x d) row-major, in the input's precision.
    pub centroids: Vec<T>,
    pub inertia: f64,
    pub n_iter: usize,
}

/// Runs k-means on the row-major (n x d) `x`. `init`: optional (k x d) initial centroids
/// (then every restart starts from them, so one is enough).
pub fn kmeans<T: Real>(
    x: &[T],
    n: usize,
    d: usize,
    opt: &KMeansOptions,
    init: Option<&[T]>,
) -> CoreResult<KMeansResult<T>> {
    transform::check_shape(x, n, d, "x", 1)?;
    let k = opt.n_clusters;
    if k < 1 || k > n {
        return Err(CoreError::invalid(
            "n_clusters",
            format!("an int in [1, n_samples = {n}]"),
            format!("{k}"),
        ));
    }
    if opt.n_init < 1 {
        return Err(CoreError::invalid(
            "n_init",
            "an int >= 1",
            format!("{}", opt.n_init),
        ));
    }
    if opt.max_iter < 1 {
        return Err(CoreError::invalid(
            "max_iter",
            "an int >= 1",
            format!("{}", opt.max_iter),
        ));
    }
    if !(opt.tol >= 0.0 && opt.tol.is_finite()) {
        return Err(CoreError::invalid(
            "tol",
            "a finite number >= 0",
            format!("{}", opt.tol),
        ));
    }
    if let Some(c) = init {
        if c.len() != k * d {
            return Err(CoreError::invalid(
                "init",
                format!("an array of shape ({k}, {d})"),
                format!("{} values", c.len()),
            ));
        }
        transform::max_deviation(c, d, None, "init")?;
    }
    let stats = transform::column_stats(x, n, d, "x")?;
    let init_dev = match init {
        Some(c) => transform::max_deviation(c, d, Some(&stats.mean), "init")?,
        None => 0.0,
    };
    // Centre and rescale (as scikit-learn centres X) unless the data already sit near the
    // origin (mean offset below the spread) at a safe magnitude: then rows are read in place.
    let offset2: f64 = stats.mean.iter().map(|v| v * v).sum();
    let top = stats.max_dev + stats.mean.iter().fold(0f64, |a, v| a.max(v.abs()));
    let top = top.max(init.map_or(0.0, |c| c.iter().fold(0f64, |a, v| a.max(v.to_f64().abs()))));
    let identity = offset2 <= stats.mean_var * d as f64 && transform::in_safe_range::<T>(top);
    let (scale, mean) = if identity {
        (1.0, vec![0f64; d])
    } else {
        (
            transform::pow2_scale(stats.max_dev.max(init_dev)),
            stats.mean.clone(),
        )
    };
    let tf = Transform {
        center: (!identity).then(|| mean.iter().map(|&v| T::from_f64(v)).collect()),
        scale: T::from_f64(scale),
        unit: false,
    };
    let tol = opt.tol * stats.mean_var * scale * scale;
    let job = Job {
        x,
        n,
        d,
        k,
        tf: &tf,
        n_super: n_super(n, k, d),
    };

    let runs = if init.is_some() { 1 } else { opt.n_init };
    let mut best: Option<KMeansResult<T>> = None;
    for run in 0..runs {
        let centers = match init {
            Some(c) => {
                let mut buf = vec![T::ZERO; k * d];
                let mut norms = vec![T::ZERO; k];
                tf.apply(c, d, &mut buf, &mut norms);
                buf.iter().map(|v| v.to_f64()).collect()
            }
            None => job.kmeans_pp(&mut Rng::stream(opt.seed, run as u64)),
        };
        let (labels, centers, n_iter) = job.lloyd(centers, opt.max_iter, tol);
        // Back to the original space.
        let centroids: Vec<T> = centers
            .chunks_exact(d)
            .flat_map(|c| {
                c.iter()
                    .zip(&mean)
                    .map(|(&v, &mu)| T::from_f64(v / scale + mu))
            })
            .collect();
        let inertia = job.inertia(&labels, &centroids);
        if best.as_ref().is_none_or(|b| inertia < b.inertia) {
            best = Some(KMeansResult {
                labels: labels.iter().map(|&l| l as i64).collect(),
                centroids,
                inertia,
                n_iter,
            });
        }
    }
    Ok(best.expect("at least one run"))
}

/// Number of super-chunks (accumulators): a function of the problem size only.
fn n_super(n: usize, k: usize, d: usize) -> usize {
    let by_rows = n.div_ceil(4 * BLOCK);
    let by_memory = (ACC_BUDGET / (k * d * 8).max(1)).max(1);
    by_rows.min(by_memory).clamp(1, MAX_SUPER)
}

struct Job<'a, T: Real> {
    x: &'a [T],
    n: usize,
    d: usize,
    k: usize,
    tf: &'a Transform<T>,
    n_super: usize,
}

/// Per super-chunk output of an assignment pass.
struct Partial {
    sums: Vec<f64>,
    counts: Vec<u64>,
}

/// Assigns one block: scores |c|^2 - 2 x.c in place in `tile` (rows x k), arg-min per row,
/// writes labels and approximate squared distances, and adds rows to `acc` when given.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn assign_block_impl<T: Real>(
    tile: &mut [T],
    k: usize,
    d: usize,
    cnorm: &[T],
    xbuf: &[T],
    xnorm: &[T],
    labels: &mut [u32],
    mind: &mut [T],
    acc: Option<&mut Partial>,
) {
    let two = T::ONE + T::ONE;
    let rows = labels.len();
    let mut acc = acc;
    for r in 0..rows {
        let row = &mut tile[r * k..(r + 1) * k];
        // One vectorised pass: scores in place, and per lane the minimum and the first index
        // holding it; then the lowest index among the lanes holding the overall minimum.
        let mut lane_min = [T::INFINITY; LANES];
        let mut lane_idx = [0u32; LANES];
        let mut rc = row.chunks_exact_mut(LANES);
        let mut cc = cnorm.chunks_exact(LANES);
        let mut base = 0u32;
        for (rv, cv) in (&mut rc).zip(&mut cc) {
            for t in 0..LANES {
                let v = cv[t] - two * rv[t];
                rv[t] = v;
                let better = v < lane_min[t];
                lane_min[t] = if better { v } else { lane_min[t] };
                lane_idx[t] = if better { base + t as u32 } else { lane_idx[t] };
            }
            base += LANES as u32;
        }
        let mut best = T::INFINITY;
        let mut j = u32::MAX;
        for t in 0..LANES {
            if lane_min[t] < best || (lane_min[t] == best && lane_idx[t] < j) {
                best = lane_min[t];
                j = lane_idx[t];
            }
        }
        for (t, (rv, &cv)) in rc
            .into_remainder()
            .iter_mut()
            .zip(cc.remainder())
            .enumerate()
        {
            *rv = cv - two * *rv;
            if *rv < best {
                best = *rv;
                j = base + t as u32;
            }
        }
        let j = if j == u32::MAX { 0 } else { j as usize };
        labels[r] = j as u32;
        let dist = xnorm[r] + best;
        mind[r] = if dist > T::ZERO { dist } else { T::ZERO };
        if let Some(p) = acc.as_deref_mut() {
            p.counts[j] += 1;
            let s = &mut p.sums[j * d..(j + 1) * d];
            for (a, &v) in s.iter_mut().zip(&xbuf[r * d..(r + 1) * d]) {
                *a += v.to_f64();
            }
        }
    }
}

dispatch! {
    #[allow(clippy::too_many_arguments)]
    fn assign_block<T: Real>(tile: &mut [T], k: usize, d: usize, cnorm: &[T], xbuf: &[T], xnorm: &[T], labels: &mut [u32], mind: &mut [T], acc: Option<&mut Partial>) => assign_block_impl
}

/// `out[r * t + j] = rows[r] . cands[j]` for a few (t) candidate rows: a dot-product kernel
/// for the thin products of k-means++, where a GEMM would spend its time packing `rows`.
#[inline(always)]
fn thin_dots_impl<T: Real>(rows: &[T], d: usize, cands: &[T], out: &mut [T]) {
    let t = cands.len() / d;
    for (row, o) in rows.chunks_exact(d).zip(out.chunks_exact_mut(t)) {
        for (c, oj) in cands.chunks_exact(d).zip(o.iter_mut()) {
            let mut acc = [T::ZERO; LANES];
            let mut rc = row.chunks_exact(LANES);
            let mut cc = c.chunks_exact(LANES);
            for (a, b) in (&mut rc).zip(&mut cc) {
                for l in 0..LANES {
                    acc[l] = acc[l] + a[l] * b[l];
                }
            }
            let mut s = T::ZERO;
            for (&a, &b) in rc.remainder().iter().zip(cc.remainder()) {
                s = s + a * b;
            }
            let mut half = LANES / 2;
            while half > 0 {
                for l in 0..half {
                    acc[l] = acc[l] + acc[l + half];
                }
                half /= 2;
            }
            *oj = s + acc[0];
        }
    }
}

dispatch! {
    fn thin_dots<T: Real>(rows: &[T], d: usize, cands: &[T], out: &mut [T]) => thin_dots_impl
}

impl<T: Real> Job<'_, T> {
    /// One assignment pass over all rows against centroids `ct` (transformed space, k x d).
    /// Returns the summed partials when `accumulate`.
    fn assign(
        &self,
        ct: &[T],
        labels: &mut [u32],
        mind: &mut [T],
        accumulate: bool,
    ) -> Option<Partial> {
        let (d, k) = (self.d, self.k);
        let cnorm: Vec<T> = ct
            .chunks_exact(d)
            .map(|c| T::from_f64(c.iter().map(|v| v.to_f64() * v.to_f64()).sum()))
            .collect();
        let rows_per = self.n.div_ceil(self.n_super);
        let partials: Vec<Option<Partial>> = labels
            .par_chunks_mut(rows_per)
            .zip(mind.par_chunks_mut(rows_per))
            .enumerate()
            .map(|(s, (lab, md))| {
                let mut part = accumulate.then(|| Partial {
                    sums: vec![0.0; k * d],
                    counts: vec![0; k],
                });
                let mut xbuf = if self.tf.is_identity() {
                    Vec::new()
                } else {
                    vec![T::ZERO; BLOCK * d]
                };
                let mut xnorm = [T::ZERO; BLOCK];
                let mut tile = vec![T::ZERO; BLOCK * k];
                let r0 = s * rows_per;
                for (b, (lab_b, md_b)) in
                    lab.chunks_mut(BLOCK).zip(md.chunks_mut(BLOCK)).enumerate()
                {
                    let rows = lab_b.len();
                    let start = r0 + b * BLOCK;
                    let src = &self.x[start * d..(start + rows) * d];
                    // Rows already near the origin at a safe scale are read in place.
                    let xmat: &[T] = if self.tf.is_identity() {
                        transform::row_norms(src, d, &mut xnorm[..rows]);
                        src
                    } else {
                        self.tf
                            .apply(src, d, &mut xbuf[..rows * d], &mut xnorm[..rows]);
                        &xbuf[..rows * d]
                    };
                    gemm_abt(rows, k, d, xmat, ct, &mut tile, k);
                    assign_block(
                        &mut tile[..rows * k],
                        k,
                        d,
                        &cnorm,
                        xmat,
                        &xnorm[..rows],
                        lab_b,
                        md_b,
                        part.as_mut(),
                    );
                }
                part
            })
            .collect();
        if !accumulate {
            return None;
        }
        let mut total = Partial {
            sums: vec![0.0; k * d],
            counts: vec![0; k],
        };
        for p in partials.into_iter().flatten() {
            total
                .sums
                .iter_mut()
                .zip(&p.sums)
                .for_each(|(a, b)| *a += b);
            total
                .counts
                .iter_mut()
                .zip(&p.counts)
                .for_each(|(a, b)| *a += b);
        }
        Some(total)
    }

    /// Transformed row i in f64.
    fn row_f64(&self, i: usize) -> Vec<f64> {
        let (d, tf) = (self.d, self.tf);
        let mut buf = vec![T::ZERO; d];
        let mut nrm = [T::ZERO];
        tf.apply(&self.x[i * d..(i + 1) * d], d, &mut buf, &mut nrm);
        buf.iter().map(|v| v.to_f64()).collect()
    }

    /// Lloyd iterations from `centers` (transformed space, f64). Returns (labels, centers, n_iter).
    fn lloyd(
        &self,
        mut centers: Vec<f64>,
        max_iter: usize,
        tol: f64,
    ) -> (Vec<u32>, Vec<f64>, usize) {
        let (n, d, k) = (self.n, self.d, self.k);
        let mut labels = vec![0u32; n];
        let mut labels_old = vec![u32::MAX; n];
        let mut mind = vec![T::ZERO; n];
        let mut strict = false;
        let mut n_iter = 0;
        for it in 0..max_iter {
            n_iter = it + 1;
            let ct: Vec<T> = centers.iter().map(|&v| T::from_f64(v)).collect();
            let mut p = self
                .assign(&ct, &mut labels, &mut mind, true)
                .expect("accumulated");
            self.relocate_empty(&mut p, &labels, &mind);
            let mut shift = 0.0;
            for j in 0..k {
                let c = &mut centers[j * d..(j + 1) * d];
                if p.counts[j] == 0 {
                    continue; // keeps its centre (only when fewer distinct points than clusters)
                }
                let inv = 1.0 / p.counts[j] as f64;
                for (cv, &s) in c.iter_mut().zip(&p.sums[j * d..(j + 1) * d]) {
                    let new = s * inv;
                    shift += (new - *cv) * (new - *cv);
                    *cv = new;
                }
            }
            if labels == labels_old {
                strict = true;
                break;
            }
            if shift <= tol {
                break;
            }
            labels_old.copy_from_slice(&labels);
        }
        if !strict {
            let ct: Vec<T> = centers.iter().map(|&v| T::from_f64(v)).collect();
            self.assign(&ct, &mut labels, &mut mind, false);
        }
        (labels, centers, n_iter)
    }

    /// Re-seeds every empty cluster at a far point (see the module doc).
    fn relocate_empty(&self, p: &mut Partial, labels: &[u32], mind: &[T]) {
        let d = self.d;
        let empty: Vec<usize> = (0..self.k).filter(|&j| p.counts[j] == 0).collect();
        if empty.is_empty() {
            return;
        }
        let mut order: Vec<(T, usize)> = mind.iter().copied().zip(0..).collect();
        let far_first = |a: &(T, usize), b: &(T, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        let e = empty.len();
        if e < order.len() {
            order.select_nth_unstable_by(e - 1, far_first);
        }
        order.truncate(e);
        order.sort_unstable_by(far_first);
        for (&j, &(_, i)) in empty.iter().zip(&order) {
            let xi = self.row_f64(i);
            let old = labels[i] as usize;
            if p.counts[old] > 1 {
                p.counts[old] -= 1;
                p.sums[old * d..(old + 1) * d]
                    .iter_mut()
                    .zip(&xi)
                    .for_each(|(s, v)| *s -= v);
            }
            p.counts[j] = 1;
            p.sums[j * d..(j + 1) * d].copy_from_slice(&xi);
        }
    }

    /// Greedy k-means++ on a subsample; returns k centres (transformed space, f64).
    fn kmeans_pp(&self, rng: &mut Rng) -> Vec<f64> {
        let (n, d, k) = (self.n, self.d, self.k);
        let n_sub = n.min(PP_MIN_SAMPLES.max(PP_SAMPLES_PER_CLUSTER * k));
        let ids: Vec<usize> = if n_sub == n {
            (0..n).collect()
        } else {
            rng.sample_sorted(n, n_sub)
        };
        let mut sub = vec![T::ZERO; n_sub * d];
        let mut snorm = vec![T::ZERO; n_sub];
        sub.par_chunks_mut(PP_CHUNK * d)
            .zip(snorm.par_chunks_mut(PP_CHUNK))
            .enumerate()
            .for_each(|(c, (dst, nrm))| {
                for (r, (row, nv)) in dst.chunks_exact_mut(d).zip(nrm.iter_mut()).enumerate() {
                    let i = ids[c * PP_CHUNK + r];
                    self.tf.apply(
                        &self.x[i * d..(i + 1) * d],
                        d,
                        row,
                        std::slice::from_mut(nv),
                    );
                }
            });
        let trials = 2 + (k as f64).ln().floor() as usize;
        let mut centers: Vec<f64> = Vec::with_capacity(k * d);
        let first = rng.below(n_sub);
        centers.extend(sub[first * d..(first + 1) * d].iter().map(|v| v.to_f64()));
        // Squared distances of every subsample row i to candidate rows `cand` (min'd with
        // `closest`), into dist[i * t + j]; returns the potential (sum) of each candidate.
        let mut dist = vec![0f64; n_sub * trials];
        let distances = |cand: &[usize], closest: Option<&[f64]>, dist: &mut [f64]| -> Vec<f64> {
            let t = cand.len();
            let cmat: Vec<T> = cand
                .iter()
                .flat_map(|&c| sub[c * d..(c + 1) * d].iter().copied())
                .collect();
            let cn: Vec<f64> = cand.iter().map(|&c| snorm[c].to_f64()).collect();
            let sums: Vec<Vec<f64>> = dist[..n_sub * t]
                .par_chunks_mut(PP_CHUNK * t)
                .enumerate()
                .map(|(c, out)| {
                    let r0 = c * PP_CHUNK;
                    let rows = out.len() / t;
                    let mut dots = vec![T::ZERO; rows * t];
                    thin_dots(&sub[r0 * d..(r0 + rows) * d], d, &cmat, &mut dots);
                    let mut sums = vec![0f64; t];
                    for r in 0..rows {
                        let xn = snorm[r0 + r].to_f64();
                        for j in 0..t {
                            let mut v = (xn + cn[j] - 2.0 * dots[r * t + j].to_f64()).max(0.0);
                            if let Some(cl) = closest {
                                v = v.min(cl[r0 + r]);
                            }
                            out[r * t + j] = v;
                            sums[j] += v;
                        }
                    }
                    sums
                })
                .collect();
            let mut pots = vec![0f64; t];
            for part in sums {
                pots.iter_mut().zip(&part).for_each(|(p, v)| *p += v);
            }
            pots
        };
        let pots = distances(&[first], None, &mut dist);
        let mut closest: Vec<f64> = dist[..n_sub].to_vec();
        let mut pot = pots[0];
        let mut cum = vec![0f64; n_sub];
        for _ in 1..k {
            let mut s = 0.0;
            for (c, &v) in cum.iter_mut().zip(&closest) {
                s += v;
                *c = s;
            }
            let cand: Vec<usize> = (0..trials)
                .map(|_| {
                    let r = rng.uniform() * pot;
                    cum.partition_point(|&v| v < r).min(n_sub - 1)
                })
                .collect();
            let pots = distances(&cand, Some(&closest), &mut dist);
            let mut best = 0;
            for j in 1..trials {
                if pots[j] < pots[best] {
                    best = j;
                }
            }
            for (i, c) in closest.iter_mut().enumerate() {
                *c = dist[i * trials + best];
            }
            pot = pots[best];
            let c = cand[best];
            centers.extend(sub[c * d..(c + 1) * d].iter().map(|v| v.to_f64()));
        }
        centers
    }

    /// Exact sum of squared distances of the rows to their centroids (original space, f64).
    fn inertia(&self, labels: &[u32], centroids: &[T]) -> f64 {
        let d = self.d;
        let parts: Vec<f64> = self
            .x
            .par_chunks(PP_CHUNK * d)
            .zip(labels.par_chunks(PP_CHUNK))
            .map(|(rows, lab)| distance::sum_sq_dist(rows, d, lab, centroids))
            .collect();
        parts.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `per` points around each of `centers` (uniform noise of half-width `spread`).
    fn blobs(centers: &[[f32; 2]], per: usize, spread: f32, seed: u64) -> (Vec<f32>, Vec<usize>) {
        let mut rng = Rng::new(seed);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..per {
            for (c, ctr) in centers.iter().enumerate() {
                x.push(ctr[0] + spread * (2.0 * rng.uniform() as f32 - 1.0));
                x.push(ctr[1] + spread * (2.0 * rng.uniform() as f32 - 1.0));
                y.push(c);
            }
        }
        (x, y)
    }

    /// Same partition up to a relabelling.
    fn same_partition(a: &[i64], b: &[usize]) -> bool {
        let mut map = std::collections::HashMap::new();
        let mut inv = std::collections::HashMap::new();
        a.iter()
            .zip(b)
            .all(|(&x, &y)| *map.entry(x).or_insert(y) == y && *inv.entry(y).or_insert(x) == x)
    }

    #[test]
    fn recovers_separated_blobs_deterministically() {
        let centers = [
            [0.0, 0.0],
            [10.0, 0.0],
            [0.0, 10.0],
            [10.0, 10.0],
            [5.0, 20.0],
        ];
        let (x, y) = blobs(&centers, 200, 1.0, 3);
        let n = y.len();
        let opt = KMeansOptions {
            n_init: 3,
            ..KMeansOptions::new(5)
        };
        let r = kmeans(&x, n, 2, &opt, None).unwrap();
        assert!(same_partition(&r.labels, &y));
        assert_eq!(r, kmeans(&x, n, 2, &opt, None).unwrap());
        // Inertia is the exact sum over points of the squared distance to their centroid.
        let direct: f64 = (0..n)
            .map(|i| {
                distance::sq_dist_f64(
                    &x[i * 2..i * 2 + 2],
                    &r.centroids[r.labels[i] as usize * 2..r.labels[i] as usize * 2 + 2],
                )
            })
            .sum();
        assert!((r.inertia - direct).abs() < 1e-9 * direct);
        // The centroids are the means of their points.
        for c in 0..5 {
            let pts: Vec<usize> = (0..n).filter(|&i| r.labels[i] == c as i64).collect();
            let mean: f64 = pts.iter().map(|&i| x[i * 2] as f64).sum::<f64>() / pts.len() as f64;
            assert!((mean - r.centroids[c * 2] as f64).abs() < 1e-4);
        }
    }

    #[test]
    fn given_init_converges_like_lloyd_by_hand() {
        // 1-D, two clusters, from centres 0 and 1: Lloyd by hand gives {0,1,2} and {10,11}.
        let x = [0.0f64, 1.0, 2.0, 10.0, 11.0];
        let r = kmeans(&x, 5, 1, &KMeansOptions::new(2), Some(&[0.0, 1.0])).unwrap();
        assert_eq!(r.labels, vec![0, 0, 0, 1, 1]);
        assert!((r.centroids[0] - 1.0).abs() < 1e-12 && (r.centroids[1] - 10.5).abs() < 1e-12);
        assert!((r.inertia - 2.5).abs() < 1e-12);
    }

    #[test]
    fn empty_clusters_are_reseeded() {
        // Both initial centres far on one side: one cluster is empty after the first assignment.
        let x = [0.0f32, 0.1, 0.2, 5.0, 5.1, 5.2];
        let r = kmeans(&x, 6, 1, &KMeansOptions::new(2), Some(&[100.0, 101.0])).unwrap();
        assert!(
            same_partition(&r.labels, &[0, 0, 0, 1, 1, 1]),
            "{:?}",
            r.labels
        );
        // More clusters than distinct points.
        let x = [1.0f32, 1.0, 1.0, 2.0];
        let r = kmeans(&x, 4, 1, &KMeansOptions::new(3), None).unwrap();
        assert!(r.inertia.abs() < 1e-12);
    }

    #[test]
    fn large_offsets_and_subsampled_init() {
        let centers = [[1e6, 1e6], [1e6 + 50.0, 1e6], [1e6, 1e6 + 50.0]];
        let (x, y) = blobs(&centers, 4000, 2.0, 9);
        let r = kmeans(&x, y.len(), 2, &KMeansOptions::new(3), None).unwrap();
        assert!(same_partition(&r.labels, &y));
    }

    #[test]
    fn bad_arguments() {
        let x = [0.0f32, 1.0, 2.0];
        let e = |o: KMeansOptions| kmeans(&x, 3, 1, &o, None).unwrap_err().to_string();
        assert!(e(KMeansOptions::new(4)).starts_with("n_clusters"));
        assert!(e(KMeansOptions::new(0)).starts_with("n_clusters"));
        assert!(e(KMeansOptions {
            n_init: 0,
            ..KMeansOptions::new(1)
        })
        .starts_with("n_init"));
        assert!(e(KMeansOptions {
            tol: f64::NAN,
            ..KMeansOptions::new(1)
        })
        .starts_with("tol"));
        let bad = [0.0f32, f32::INFINITY];
        assert!(kmeans(&bad, 2, 1, &KMeansOptions::new(1), None)
            .unwrap_err()
            .to_string()
            .contains("row 1"));
    }
}
