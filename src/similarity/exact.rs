//! Exact nearest neighbours of unit-length `f32` vectors by cosine distance, comparing the
//! query with every row: the ground truth for [`super::index`], and the search itself for
//! collections small enough that scanning them beats an index (see `benches/vector_index.rs`
//! for where that crossover lies).
//!
//! Rows are stored row-major in one `&[f32]` (`n × dim`). The distance of a row is
//! `1 − row·query`, clamped to `[0, 2]` (the cosine distance, since the vectors are unit
//! length). Results are sorted by distance, then by row, so they are deterministic whatever
//! the thread count. Each thread keeps a bounded max-heap of its best `k`; the `n` distances
//! are never sorted. Rows whose distance is NaN (a NaN in the row) are left out.
//!
//! The dot product runs on 16 independent lanes so the compiler vectorises it, with AVX2 and
//! FMA when the CPU has them. Blocks of rows are scanned in parallel (rayon); within a block,
//! queries are taken a tile at a time so a tile and the block stay in cache together.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use anyhow::{bail, Result};
use rayon::prelude::*;

/// A row and its cosine distance from the query.
pub type Neighbour = (u32, f32);

/// Rows per parallel task (512 KiB of 512-d rows: fits a core's L2 cache).
const BLOCK_ROWS: usize = 256;

/// Queries compared with a block's rows before moving to the next tile of queries.
const QUERY_TILE: usize = 16;

/// The `k` rows of `data` (`n × dim`, row-major) nearest to `query` by cosine distance.
///
/// Returns fewer than `k` when `data` has fewer rows (none for `k = 0` or no rows).
/// Errors when `dim` is 0, `data` is not a whole number of rows, `query` is not `dim` long or
/// holds a non-finite value, or there are more rows than a `u32` counts.
pub fn top_k(data: &[f32], dim: usize, query: &[f32], k: usize) -> Result<Vec<Neighbour>> {
    if query.len() != dim {
        bail!(
            "the query has {} values but the rows have {dim}",
            query.len()
        );
    }
    Ok(top_k_many(data, dim, query, k)?.pop().unwrap_or_default())
}

/// [`top_k`] for several queries at once (`queries` is `m × dim`, row-major), reading `data`
/// once for all of them; one list per query, in order.
///
/// Errors as [`top_k`] does, naming the first bad query.
pub fn top_k_many(
    data: &[f32],
    dim: usize,
    queries: &[f32],
    k: usize,
) -> Result<Vec<Vec<Neighbour>>> {
    check(data, dim, queries)?;
    let m = queries.len() / dim;
    if k == 0 || data.is_empty() {
        return Ok(vec![Vec::new(); m]);
    }
    let fresh = || vec![TopK::new(k); m];
    let heaps = if data.len() <= BLOCK_ROWS * dim {
        let mut heaps = fresh();
        scan(data, 0, dim, queries, &mut heaps);
        heaps
    } else {
        data.par_chunks(BLOCK_ROWS * dim)
            .enumerate()
            .fold(fresh, |mut heaps, (b, block)| {
                scan(block, (b * BLOCK_ROWS) as u32, dim, queries, &mut heaps);
                heaps
            })
            .reduce(fresh, merge)
    };
    Ok(heaps.into_iter().map(TopK::into_sorted).collect())
}

/// The shape checks shared by [`top_k`] and [`top_k_many`].
fn check(data: &[f32], dim: usize, queries: &[f32]) -> Result<()> {
    if dim == 0 {
        bail!("vectors must have at least one dimension");
    }
    if !data.len().is_multiple_of(dim) {
        bail!(
            "the data holds {} values, not a whole number of {dim}-dimensional rows",
            data.len()
        );
    }
    if !queries.len().is_multiple_of(dim) {
        bail!(
            "the queries hold {} values, not a whole number of {dim}-dimensional vectors",
            queries.len()
        );
    }
    if data.len() / dim > u32::MAX as usize {
        bail!(
            "{} rows are more than exact search counts",
            data.len() / dim
        );
    }
    if let Some(bad) = queries
        .chunks_exact(dim)
        .position(|q| q.iter().any(|x| !x.is_finite()))
    {
        bail!("query {bad} holds a non-finite value");
    }
    Ok(())
}

/// Merges the heaps of two parts of the data, query by query.
fn merge(mut a: Vec<TopK>, b: Vec<TopK>) -> Vec<TopK> {
    for (ha, hb) in a.iter_mut().zip(b) {
        for c in hb.heap {
            ha.offer(c.row, c.distance);
        }
    }
    a
}

/// Offers every row of `block` (whose first row is `first_row`) to every query's heap.
fn scan(block: &[f32], first_row: u32, dim: usize, queries: &[f32], heaps: &mut [TopK]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { scan_avx2_fma(block, first_row, dim, queries, heaps) };
        }
    }
    scan_impl::<false>(block, first_row, dim, queries, heaps)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scan_avx2_fma(
    block: &[f32],
    first_row: u32,
    dim: usize,
    queries: &[f32],
    heaps: &mut [TopK],
) {
    scan_impl::<true>(block, first_row, dim, queries, heaps)
}

#[inline(always)]
fn scan_impl<const FMA: bool>(
    block: &[f32],
    first_row: u32,
    dim: usize,
    queries: &[f32],
    heaps: &mut [TopK],
) {
    let tiles = queries
        .chunks(QUERY_TILE * dim)
        .zip(heaps.chunks_mut(QUERY_TILE));
    for (tile, tile_heaps) in tiles {
        for (r, row) in block.chunks_exact(dim).enumerate() {
            let row_id = first_row + r as u32;
            for (q, heap) in tile.chunks_exact(dim).zip(tile_heaps.iter_mut()) {
                let distance = (1.0 - dot_impl::<FMA>(q, row)).clamp(0.0, 2.0);
                heap.offer(row_id, distance);
            }
        }
    }
}

/// `Σ a[i]·b[i]` over the shorter of the two, vectorised (AVX2 and FMA when the CPU has
/// them). Summation order differs from a plain loop, so the last bits may differ too.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { dot_avx2_fma(a, b) };
        }
    }
    dot_impl::<false>(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2_fma(a: &[f32], b: &[f32]) -> f32 {
    dot_impl::<true>(a, b)
}

/// Sixteen independent accumulators (two AVX registers) hide the latency of each add; with
/// `FMA`, each step is one fused multiply-add (without it, `mul_add` would be a libm call).
#[inline(always)]
fn dot_impl<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..16 {
            lanes[i] = if FMA {
                x[i].mul_add(y[i], lanes[i])
            } else {
                lanes[i] + x[i] * y[i]
            };
        }
    }
    let mut sum = 0f32;
    for (&x, &y) in ar.iter().zip(br) {
        sum += x * y;
    }
    for i in 0..8 {
        lanes[i] += lanes[i + 8];
    }
    for i in 0..4 {
        lanes[i] += lanes[i + 4];
    }
    sum + (lanes[0] + lanes[2]) + (lanes[1] + lanes[3])
}

/// A candidate: ordered by distance, then row (a total order, so results are deterministic).
#[derive(Clone, Copy)]
struct Candidate {
    distance: f32,
    row: u32,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.row.cmp(&other.row))
    }
}

/// The best `k` candidates seen so far: a max-heap whose top is the worst kept.
#[derive(Clone)]
struct TopK {
    k: usize,
    heap: BinaryHeap<Candidate>,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    #[inline]
    fn offer(&mut self, row: u32, distance: f32) {
        if distance.is_nan() {
            return;
        }
        let c = Candidate { distance, row };
        if self.heap.len() < self.k {
            self.heap.push(c);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if c < *worst {
                *worst = c;
            }
        }
    }

    fn into_sorted(self) -> Vec<Neighbour> {
        let sorted = self.heap.into_sorted_vec();
        sorted.into_iter().map(|c| (c.row, c.distance)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: every distance computed plainly (in f64), all sorted.
    fn naive(data: &[f32], dim: usize, query: &[f32], k: usize) -> Vec<Neighbour> {
        let mut all: Vec<(u32, f32)> = data
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, row)| {
                let d: f64 = row
                    .iter()
                    .zip(query)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                (i as u32, (1.0 - d).clamp(0.0, 2.0) as f32)
            })
            .filter(|(_, d)| !d.is_nan())
            .collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }

    fn unit_rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        let mut out = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let row: Vec<f32> = (0..dim)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            out.extend(row.iter().map(|x| x / norm));
        }
        out
    }

    /// Same rows as the reference; distances equal within float rounding (the reference
    /// sums in f64, so near-ties may swap: compared as sets of rows past the tolerance).
    fn assert_matches(got: &[Neighbour], want: &[Neighbour]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g.1 - w.1).abs() < 1e-5, "{got:?} vs {want:?}");
        }
        for w in 1..got.len() {
            let (a, b) = (got[w - 1], got[w]);
            assert!(
                a.1 < b.1 || (a.1 == b.1 && a.0 < b.0),
                "not sorted: {got:?}"
            );
        }
    }

    #[test]
    fn finds_the_nearest_rows_in_order() {
        let data = [1.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.6, 0.8];
        let got = top_k(&data, 2, &[1.0, 0.0], 3).unwrap();
        let rows: Vec<u32> = got.iter().map(|n| n.0).collect();
        assert_eq!(rows, vec![0, 3, 1]);
        assert!((got[1].1 - 0.4).abs() < 1e-6);
        assert_eq!(top_k(&data, 2, &[-1.0, 0.0], 1).unwrap(), vec![(2, 0.0)]);
    }

    #[test]
    fn large_inputs_match_the_reference_across_threads() {
        let dim = 67;
        let data = unit_rows(3_000, dim, 7);
        let queries = unit_rows(20, dim, 99);
        let got = top_k_many(&data, dim, &queries, 10).unwrap();
        for (q, g) in queries.chunks_exact(dim).zip(&got) {
            assert_matches(g, &naive(&data, dim, q, 10));
        }
    }

    #[test]
    fn bad_shapes_are_errors_and_nan_rows_are_skipped() {
        let err = top_k(&[1.0, 0.0, 0.0], 2, &[1.0, 0.0], 1).unwrap_err();
        assert!(err.to_string().contains("whole number"), "{err}");
        let err = top_k(&[1.0, 0.0], 2, &[1.0], 1).unwrap_err();
        assert!(err.to_string().contains("query has 1 values"), "{err}");
        assert!(top_k(&[], 0, &[], 1).is_err());
        assert!(top_k(&[1.0, 0.0], 2, &[f32::NAN, 0.0], 1).is_err());
        let data = [f32::NAN, 0.0, 0.0, 1.0, 1.0, 0.0];
        let got = top_k(&data, 2, &[1.0, 0.0], 5).unwrap();
        assert_eq!(got, vec![(2, 0.0), (1, 1.0)]);
        assert!(top_k(&data, 2, &[1.0, 0.0], 0).unwrap().is_empty());
        assert!(top_k(&[], 2, &[1.0, 0.0], 3).unwrap().is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn agrees_with_the_reference(
            n in 0usize..700,
            dim in 1usize..40,
            k in 0usize..30,
            seed in any::<u64>(),
            nan_row in proptest::option::of(0usize..700),
        ) {
            let mut data = unit_rows(n, dim, seed);
            if let Some(r) = nan_row.filter(|&r| r < n) {
                data[r * dim] = f32::NAN;
            }
            let query = unit_rows(1, dim, seed ^ 0x9E37_79B9);
            let got = top_k(&data, dim, &query, k).unwrap();
            let want = naive(&data, dim, &query, k);
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                prop_assert!((g.1 - w.1).abs() < 1e-5, "{:?} vs {:?}", got, want);
            }
            prop_assert!(top_k(&data, dim + 1, &query, k).is_err());
        }
    }
}
