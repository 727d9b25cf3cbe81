//! One-to-one assignment of detected faces to known people.
//!
//! Each detected face has a similarity to every person (the cosine similarity of the face to
//! that person's best gallery match). Naming each face after its own best match can give two
//! faces in one photo the same name, and picking the best pair first and repeating (greedy)
//! can lose: if face 0 matches Amy at 0.9 and Bob at 0.8 while face 1 matches only Amy (0.85),
//! greedy gives Amy to face 0 and leaves face 1 unnamed, although face 0 → Bob and face 1 →
//! Amy is better overall. [`assign`] instead finds the assignment whose total similarity is
//! the largest, with no person used twice and every named pair at or above a threshold.
//!
//! This is the classic assignment problem, solved with the Hungarian (Kuhn–Munkres) method in
//! its shortest-augmenting-path form, O(faces² · (faces + people)). To let a face stay
//! unnamed, every face also gets the choice of a "nobody" column worth zero (one such column
//! per face, so there are always enough). A pair below the threshold, or with a similarity
//! that is not a finite number, is forbidden: it is given a cost worse than "nobody", so an
//! optimal assignment never uses it (swapping it for a free "nobody" column is strictly
//! better), and the result maps any such pair to `None` as a safeguard anyway. A pair with a
//! negative similarity can be allowed by a negative threshold, but it would lower the total,
//! so it is never chosen.
//!
//! Sums are kept in `f64`. Ties between equally good assignments are broken deterministically
//! by the order of the search: faces are placed in index order and, among equally cheap
//! columns, the lowest index is taken first, so in a plain tie the lower-numbered face keeps
//! its person and a face prefers the lower-numbered person.

/// Cost of a forbidden pair. Allowed pairs cost `-similarity` and the "nobody" columns cost
/// 0, so any positive value keeps forbidden pairs out of an optimal solution; a small one
/// keeps the potentials at the scale of the similarities, so no precision is lost.
const FORBIDDEN_COST: f64 = 1.0;

/// Assigns faces to people one-to-one, maximising the total similarity.
///
/// `similarity` is row-major `faces × people`. Returns, for each face, `Some((person,
/// similarity))` or `None` when the face is best left unnamed. No person appears twice, every
/// named pair has a similarity `>= threshold`, and the sum of the named similarities is the
/// largest possible. Non-finite similarities are never assigned; a slice whose length is not
/// `faces * people` gives all `None`.
pub fn assign(
    similarity: &[f32],
    faces: usize,
    people: usize,
    threshold: f32,
) -> Vec<Option<(usize, f32)>> {
    let mut out = vec![None; faces];
    if faces == 0 || people == 0 || faces.checked_mul(people) != Some(similarity.len()) {
        return out;
    }
    let allowed = |s: f32| s.is_finite() && s >= threshold;
    let columns = people + faces;
    let cost = |face: usize, column: usize| -> f64 {
        if column >= people {
            return 0.0;
        }
        match similarity.get(face * people + column) {
            Some(&s) if allowed(s) => -f64::from(s),
            _ => FORBIDDEN_COST,
        }
    };
    let Some(column_of_face) = hungarian(faces, columns, cost) else {
        return out;
    };
    for (face, column) in column_of_face.into_iter().enumerate() {
        let Some(column) = column else { continue };
        if column >= people {
            continue;
        }
        if let Some(&s) = similarity.get(face * people + column) {
            if allowed(s) {
                if let Some(slot) = out.get_mut(face) {
                    *slot = Some((column, s));
                }
            }
        }
    }
    out
}

/// Minimum-cost assignment of `rows` rows to distinct columns (`rows <= columns`), with
/// `cost(row, column)` finite. Returns the column of each row, or `None` if the search
/// could not finish (only possible with non-finite costs, which callers never pass).
///
/// This is the potentials-based Hungarian method: rows are added one at a time and each is
/// placed along a shortest augmenting path (Dijkstra on reduced costs). Index 0 of the
/// internal arrays is a sentinel, so rows and columns are numbered from 1 there.
fn hungarian(
    rows: usize,
    columns: usize,
    cost: impl Fn(usize, usize) -> f64,
) -> Option<Vec<Option<usize>>> {
    if rows > columns {
        return None;
    }
    let mut u = vec![0.0f64; rows + 1];
    let mut v = vec![0.0f64; columns + 1];
    // row_of[j]: the row (1-based, 0 = none) holding column j.
    let mut row_of = vec![0usize; columns + 1];
    let mut way = vec![0usize; columns + 1];
    for row in 1..=rows {
        row_of[0] = row;
        let mut j0 = 0usize;
        let mut min_to = vec![f64::INFINITY; columns + 1];
        let mut used = vec![false; columns + 1];
        loop {
            used[j0] = true;
            let i0 = row_of[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=columns {
                if used[j] {
                    continue;
                }
                let reduced = cost(i0 - 1, j - 1) - u[i0] - v[j];
                if reduced < min_to[j] {
                    min_to[j] = reduced;
                    way[j] = j0;
                }
                if min_to[j] < delta {
                    delta = min_to[j];
                    j1 = j;
                }
            }
            if j1 == 0 || !delta.is_finite() {
                return None;
            }
            for j in 0..=columns {
                if used[j] {
                    u[row_of[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_to[j] -= delta;
                }
            }
            j0 = j1;
            if row_of[j0] == 0 {
                break;
            }
        }
        // Flip the augmenting path back to the sentinel.
        while j0 != 0 {
            let j1 = way[j0];
            row_of[j0] = row_of[j1];
            j0 = j1;
        }
    }
    let mut column_of_row = vec![None; rows];
    for (j, &row) in row_of.iter().enumerate().skip(1) {
        if row >= 1 {
            if let Some(slot) = column_of_row.get_mut(row - 1) {
                *slot = Some(j - 1);
            }
        }
    }
    Some(column_of_row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(result: &[Option<(usize, f32)>]) -> f64 {
        result.iter().flatten().map(|&(_, s)| f64::from(s)).sum()
    }

    /// Checks the invariants every result must satisfy.
    fn check_valid(
        sim: &[f32],
        faces: usize,
        people: usize,
        threshold: f32,
        r: &[Option<(usize, f32)>],
    ) {
        assert_eq!(r.len(), faces);
        let mut seen = vec![false; people];
        for (face, a) in r.iter().enumerate() {
            if let Some((p, s)) = *a {
                assert!(p < people);
                assert!(!seen[p], "person {p} assigned twice");
                seen[p] = true;
                assert_eq!(s.to_bits(), sim[face * people + p].to_bits());
                assert!(s.is_finite() && s >= threshold);
            }
        }
    }

    /// Best total over all injections (each face: a distinct allowed person, or nobody).
    fn brute_force(sim: &[f32], faces: usize, people: usize, threshold: f32) -> f64 {
        fn go(
            face: usize,
            sim: &[f32],
            faces: usize,
            people: usize,
            t: f32,
            used: &mut [bool],
        ) -> f64 {
            if face == faces {
                return 0.0;
            }
            let mut best = go(face + 1, sim, faces, people, t, used);
            for p in 0..people {
                let s = sim[face * people + p];
                if !used[p] && s.is_finite() && s >= t {
                    used[p] = true;
                    let v = f64::from(s) + go(face + 1, sim, faces, people, t, used);
                    used[p] = false;
                    if v > best {
                        best = v;
                    }
                }
            }
            best
        }
        go(0, sim, faces, people, threshold, &mut vec![false; people])
    }

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn unit(&mut self) -> f32 {
            (self.next() % 1_000_000) as f32 / 1_000_000.0
        }
    }

    #[test]
    fn beats_greedy() {
        let sim = [0.9, 0.8, 0.85, 0.1];
        let r = assign(&sim, 2, 2, 0.5);
        assert_eq!(r, vec![Some((1, 0.8)), Some((0, 0.85))]);
    }

    #[test]
    fn threshold_respected() {
        let sim = [0.9, 0.8, 0.85, 0.1];
        // Face 0 → Bob is now forbidden, so face 0 takes Amy and face 1 stays unnamed.
        let r = assign(&sim, 2, 2, 0.85);
        assert_eq!(r, vec![Some((0, 0.9)), None]);
        assert_eq!(assign(&sim, 2, 2, 0.95), vec![None, None]);
        assert_eq!(assign(&sim, 2, 2, f32::NAN), vec![None, None]);
    }

    #[test]
    fn more_faces_than_people() {
        let sim = [0.7, 0.9, 0.6];
        let r = assign(&sim, 3, 1, 0.5);
        assert_eq!(r, vec![None, Some((0, 0.9)), None]);
    }

    #[test]
    fn more_people_than_faces() {
        let sim = [0.2, 0.7, 0.9, 0.1];
        let r = assign(&sim, 1, 4, 0.5);
        assert_eq!(r, vec![Some((2, 0.9))]);
    }

    #[test]
    fn degenerate_inputs() {
        assert!(assign(&[], 0, 0, 0.0).is_empty());
        assert!(assign(&[], 0, 5, 0.0).is_empty());
        assert_eq!(assign(&[], 3, 0, 0.0), vec![None, None, None]);
        assert_eq!(assign(&[0.9, 0.8], 2, 2, 0.0), vec![None, None]);
        let sim = [f32::NAN, 0.6, f32::INFINITY, f32::NEG_INFINITY];
        let r = assign(&sim, 2, 2, f32::NEG_INFINITY);
        assert_eq!(r, vec![Some((1, 0.6)), None]);
    }

    #[test]
    fn negative_similarities_are_never_worth_it() {
        let sim = [-0.1, -0.5];
        assert_eq!(assign(&sim, 2, 1, -1.0), vec![None, None]);
    }

    #[test]
    fn ties_go_to_lower_index() {
        assert_eq!(assign(&[0.8, 0.8], 2, 1, 0.5), vec![Some((0, 0.8)), None]);
        assert_eq!(assign(&[0.8, 0.8], 1, 2, 0.5), vec![Some((0, 0.8))]);
    }

    #[test]
    fn matches_brute_force_on_random_cases() {
        let mut rng = Lcg(0x1234_5678);
        for _ in 0..3000 {
            let faces = (rng.next() % 6) as usize;
            let people = (rng.next() % 6) as usize;
            let threshold = rng.unit() * 0.8 - 0.2;
            let sim: Vec<f32> = (0..faces * people)
                .map(|_| match rng.next() % 20 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    // Coarse values make exact ties common.
                    2..=6 => (rng.next() % 5) as f32 / 5.0,
                    _ => rng.unit() * 2.0 - 1.0,
                })
                .collect();
            let r = assign(&sim, faces, people, threshold);
            check_valid(&sim, faces, people, threshold, &r);
            let want = brute_force(&sim, faces, people, threshold);
            assert!(
                (total(&r) - want).abs() < 1e-5,
                "got {} want {want} for {sim:?}",
                total(&r)
            );
            assert_eq!(r, assign(&sim, faces, people, threshold), "deterministic");
        }
    }

    #[test]
    fn larger_case_is_fast_and_valid() {
        let mut rng = Lcg(7);
        let (faces, people) = (300, 200);
        let sim: Vec<f32> = (0..faces * people).map(|_| rng.unit()).collect();
        let r = assign(&sim, faces, people, 0.3);
        check_valid(&sim, faces, people, 0.3, &r);
        assert_eq!(r.iter().flatten().count(), people);
    }
}
