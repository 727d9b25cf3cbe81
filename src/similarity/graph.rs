//! The k-nearest-neighbour graph of a set of unit-length vectors, by cosine distance: exact
//! for sets small enough to compare every pair, through an in-memory HNSW graph (usearch,
//! built and queried on all cores) above that. Clustering reads it.

use anyhow::{anyhow, bail, Result};
use rayon::prelude::*;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

/// Sets up to this size are searched exactly (every pair: 16k × 16k × 128 multiply-adds,
/// about 2 s on 2 cores).
pub const EXACT_MAX: usize = 16_384;

/// For each row of `vectors` (`n × dim`, row-major, unit length), its `k` nearest other rows
/// with their cosine distances (0–2), nearest first, ties by row. Approximate above
/// [`EXACT_MAX`] rows.
///
/// Errors when the shapes disagree or a value is not finite.
pub fn knn(vectors: &[f32], dim: usize, k: usize) -> Result<Vec<Vec<(u32, f32)>>> {
    if dim == 0 || !vectors.len().is_multiple_of(dim) {
        bail!("{} values are not rows of {dim}", vectors.len());
    }
    if let Some(i) = vectors.iter().position(|v| !v.is_finite()) {
        bail!("row {} holds a non-finite value", i / dim);
    }
    let n = vectors.len() / dim;
    if n > u32::MAX as usize {
        bail!("{n} vectors are more than one graph holds");
    }
    if n == 0 || k == 0 {
        return Ok(vec![Vec::new(); n]);
    }
    let mut out = if n <= EXACT_MAX {
        exact(vectors, dim, k + 1)?
    } else {
        approximate(vectors, dim, k + 1)?
    };
    out.par_iter_mut().enumerate().for_each(|(i, list)| {
        list.retain(|(j, _)| *j as usize != i);
        list.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        list.truncate(k);
    });
    Ok(out)
}

fn exact(vectors: &[f32], dim: usize, k: usize) -> Result<Vec<Vec<(u32, f32)>>> {
    const QUERIES: usize = 256;
    let lists: Vec<Vec<Vec<(u32, f32)>>> = vectors
        .par_chunks(QUERIES * dim)
        .map(|queries| {
            super::exact::top_k_many(vectors, dim, queries, k).map(|found| {
                found
                    .into_iter()
                    .map(|l| {
                        l.into_iter()
                            .map(|(row, d)| (row, d.clamp(0.0, 2.0)))
                            .collect()
                    })
                    .collect()
            })
        })
        .collect::<Result<_>>()?;
    Ok(lists.into_iter().flatten().collect())
}

fn approximate(vectors: &[f32], dim: usize, k: usize) -> Result<Vec<Vec<(u32, f32)>>> {
    let n = vectors.len() / dim;
    let index = Index::new(&IndexOptions {
        dimensions: dim,
        metric: MetricKind::Cos,
        quantization: ScalarKind::F32,
        connectivity: 16,
        expansion_add: 96,
        expansion_search: (4 * k).max(64),
        multi: false,
    })
    .map_err(|e| anyhow!("creating a neighbour graph: {e}"))?;
    let threads = rayon::current_num_threads().max(1);
    index
        .reserve_capacity_and_threads(n, threads)
        .map_err(|e| anyhow!("reserving room for {n} vectors: {e}"))?;
    (0..n).into_par_iter().try_for_each(|i| {
        index
            .add(i as u64, &vectors[i * dim..(i + 1) * dim])
            .map_err(|e| anyhow!("adding vector {i}: {e}"))
    })?;
    (0..n)
        .into_par_iter()
        .map(|i| {
            let found = index
                .search(&vectors[i * dim..(i + 1) * dim], k)
                .map_err(|e| anyhow!("searching for vector {i}: {e}"))?;
            Ok(found
                .keys
                .into_iter()
                .zip(found.distances)
                .filter(|(key, _)| (*key as usize) < n)
                .map(|(key, d)| (key as u32, if d.is_nan() { 2.0 } else { d.clamp(0.0, 2.0) }))
                .collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: Vec<f32>) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    #[test]
    fn neighbours_exclude_the_row_itself_and_are_sorted() {
        let rows = [
            unit(vec![1.0, 0.0]),
            unit(vec![1.0, 0.1]),
            unit(vec![0.0, 1.0]),
        ];
        let flat: Vec<f32> = rows.concat();
        let g = knn(&flat, 2, 2).unwrap();
        assert_eq!(g[0][0].0, 1);
        assert_eq!(g[0][1].0, 2);
        assert!(g[0][0].1 < g[0][1].1);
        assert!(g.iter().all(|l| l.len() == 2));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(knn(&[1.0, f32::NAN], 2, 1).is_err());
        assert!(knn(&[1.0, 0.0, 1.0], 2, 1).is_err());
        assert!(knn(&[], 4, 3).unwrap().is_empty());
    }
}
