//! Finding alike images from their vectors: near-duplicate pairs of perceptual hashes
//! ([`hamming`]), duplicate groups with a suggested keeper ([`dupes`]), nearest neighbours of
//! embeddings by exact search ([`exact`]), through an HNSW index ([`index`]), and by a
//! fast scan of product-quantised codes with an exact re-rank ([`pq`]).
//!
//! Pure apart from the files it is given (the index file, the project's list of pairs marked
//! "not a duplicate"); it knows nothing of runs or models.

pub mod dupes;
pub mod exact;
pub mod graph;
pub mod hamming;
pub mod index;
pub mod pq;

pub use crate::imaging::perceptual::{hamming, parse_hex};

/// Connected components of `n` items joined by `pairs`, each sorted, in order of their
/// first item; singletons left out.
pub fn components(n: usize, pairs: impl IntoIterator<Item = (u32, u32)>) -> Vec<Vec<u32>> {
    let mut parent: Vec<u32> = (0..n as u32).collect();
    fn find(parent: &mut [u32], mut x: u32) -> u32 {
        while parent[x as usize] != x {
            parent[x as usize] = parent[parent[x as usize] as usize];
            x = parent[x as usize];
        }
        x
    }
    for (a, b) in pairs {
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            parent[hi as usize] = lo;
        }
    }
    let mut groups: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
    for i in 0..n as u32 {
        let r = find(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    groups.into_values().filter(|g| g.len() > 1).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn components_join_transitively() {
        let g = super::components(6, [(0, 3), (3, 5), (1, 2)]);
        assert_eq!(g, vec![vec![0, 3, 5], vec![1, 2]]);
        assert!(super::components(3, []).is_empty());
    }
}
