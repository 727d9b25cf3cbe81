//! Grouping unrecognised faces into people, incrementally, by immich's rule (a density rule
//! in the family of DBSCAN/HDBSCAN):
//!
//! 1. A face with at least `min_faces` faces (itself included) within `max_distance` cosine
//!    distance is a *core* face. Core faces, in a fixed order, join the cluster of their
//!    nearest clustered neighbour within the distance, or start a new cluster.
//! 2. Every other face only *joins*: the cluster of its nearest clustered neighbour within
//!    the distance, if there is one; otherwise it stays unclustered (noise), and may join a
//!    cluster at a later run, when more faces of that person have come.
//!
//! Faces that already have a cluster keep it (ids stay stable across reruns, and a merge or
//! split made by hand is never undone); new clusters take fresh ids. Only noise can start a
//! cluster, and only a dense group of faces can: one blurry face never founds a person.

use anyhow::Result;

/// The rule's two numbers.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Params {
    /// Cosine distance within which two faces are neighbours.
    pub max_distance: f32,
    /// Faces (the face itself included) within the distance that make a core face.
    pub min_faces: usize,
}

impl Default for Params {
    /// 0.5 (cosine similarity 0.5) and 3. SFace's published same-person threshold is cosine
    /// 0.363 (OpenCV's LFW evaluation): that is the right line for deciding one pair, but
    /// clustering chains pairs, and one wrong link merges two people, so the link is drawn
    /// tighter, as immich does (its default is 0.5 and 3 faces too). A missed link costs less:
    /// the face waits for the next run or a manual merge.
    fn default() -> Self {
        Params {
            max_distance: 0.5,
            min_faces: 3,
        }
    }
}

/// Neighbours consulted per face: enough to count a core and to find a clustered neighbour.
fn neighbours_wanted(params: &Params) -> usize {
    params.min_faces.max(16)
}

/// Clusters the faces `embeddings` (`n × dim`, unit length). `previous[i]` is face i's
/// cluster from an earlier run (kept); new clusters are numbered from `*next_id` on, which is
/// advanced. Returns each face's cluster, `None` for noise.
pub fn cluster(
    embeddings: &[f32],
    dim: usize,
    previous: &[Option<u32>],
    next_id: &mut u32,
    params: &Params,
) -> Result<Vec<Option<u32>>> {
    let graph = crate::similarity::graph::knn(embeddings, dim, neighbours_wanted(params))?;
    Ok(assign(&graph, previous, next_id, params))
}

/// The rule over a neighbour graph (each list nearest first, without the face itself).
pub fn assign(
    graph: &[Vec<(u32, f32)>],
    previous: &[Option<u32>],
    next_id: &mut u32,
    params: &Params,
) -> Vec<Option<u32>> {
    let n = graph.len();
    let mut out: Vec<Option<u32>> = (0..n).map(|i| previous.get(i).copied().flatten()).collect();
    let close = |i: usize| {
        graph[i]
            .iter()
            .filter(|(_, d)| *d <= params.max_distance)
            .map(|(j, _)| *j as usize)
            .filter(|j| *j < n)
    };
    let core: Vec<bool> = (0..n)
        .map(|i| close(i).count() + 1 >= params.min_faces.max(1))
        .collect();
    for i in 0..n {
        if out[i].is_some() || !core[i] {
            continue;
        }
        let joined = close(i).find_map(|j| out[j]);
        out[i] = Some(joined.unwrap_or_else(|| {
            let id = *next_id;
            *next_id = next_id.saturating_add(1);
            id
        }));
    }
    for i in 0..n {
        if out[i].is_none() {
            out[i] = close(i).find_map(|j| {
                if core[j] || previous.get(j).copied().flatten().is_some() {
                    out[j]
                } else {
                    None
                }
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three tight groups of 4 faces in 8-d, one far-off face.
    fn data() -> (Vec<f32>, usize) {
        let dim = 8;
        let mut v = Vec::new();
        for g in 0..3 {
            for m in 0..4 {
                let mut row = vec![0f32; dim];
                row[g] = 1.0;
                row[3 + m % 4] = 0.15;
                let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.extend(row.iter().map(|x| x / norm));
            }
        }
        let mut lone = vec![0f32; dim];
        lone[7] = 1.0;
        v.extend(lone);
        (v, dim)
    }

    #[test]
    fn dense_groups_become_clusters_and_a_lone_face_stays_noise() {
        let (v, dim) = data();
        let mut next = 0;
        let out = cluster(&v, dim, &[], &mut next, &Params::default()).unwrap();
        assert_eq!(next, 3);
        for g in 0..3 {
            let ids: Vec<_> = out[g * 4..g * 4 + 4].iter().collect();
            assert!(ids.iter().all(|c| **c == Some(g as u32)), "{out:?}");
        }
        assert_eq!(out[12], None);
    }

    #[test]
    fn earlier_clusters_keep_their_ids() {
        let (v, dim) = data();
        let mut previous = vec![None; 13];
        previous[4] = Some(40);
        let mut next = 41;
        let out = cluster(&v, dim, &previous, &mut next, &Params::default()).unwrap();
        assert!(out[4..8].iter().all(|c| *c == Some(40)), "{out:?}");
        assert_eq!(next, 43);
    }

    #[test]
    fn a_pair_is_no_cluster_but_joins_one() {
        let mut next = 0;
        // Faces 0 and 1 are close but only two: no core.
        let graph = vec![vec![(1, 0.1)], vec![(0, 0.1)]];
        let out = assign(&graph, &[], &mut next, &Params::default());
        assert_eq!(out, vec![None, None]);
        let out = assign(&graph, &[Some(7), None], &mut next, &Params::default());
        assert_eq!(out, vec![Some(7), Some(7)]);
        assert_eq!(next, 0);
    }
}
