//! Nearest neighbours by a full scan of product-quantised codes, then an exact re-rank: the
//! search that keeps its recall where a graph loses it (vectors with no cluster structure,
//! where HNSW must visit most of the collection; `benches/vector_index.rs`).
//!
//! Each unit vector is cut into 2-dimensional pieces; each piece is replaced by the nearest of
//! 16 centroids learned for that position (k-means on a sample), a 4-bit code, so a 512-d
//! vector is 128 bytes. A query scores every vector by the sum over pieces of (query piece ·
//! centroid), read from per-query tables of 16 entries quantised to 5 bits, so eight of them
//! add up in a byte and AVX2's byte shuffle looks up 32 vectors at once ("fast scan", as in
//! FAISS and ScaNN). The `r` best scores are then re-ranked by the exact dot product with the
//! caller's vectors. Recall depends on `r`, not on how the vectors are spread.
//!
//! Codes are laid out in blocks of 32 vectors; within a block, for each group of 8 pieces,
//! 4 rows of 32 bytes, byte `j` of row `t` holding vector `j`'s codes for pieces `2t` (low
//! nibble) and `2t + 1` (high nibble) of the group.

use anyhow::{bail, Result};
use rayon::prelude::*;

/// Dimensions per piece.
const SUB: usize = 2;
/// Centroids per piece (4-bit codes).
const CENTROIDS: usize = 16;
/// Vectors per block.
const BLOCK: usize = 32;
/// Pieces whose table entries are summed in one byte (8 × 31 ≤ 255).
const GROUP: usize = 8;
/// Table entries are quantised to 0..=LEVELS.
const LEVELS: f32 = 31.0;
/// Most dimensions: (dim / 2 / 8) groups × 248 must fit a 16-bit sum.
const MAX_DIM: usize = 4096;
/// Rows the centroids are learned from, and k-means rounds.
const TRAIN_ROWS: usize = 32_768;
const ROUNDS: usize = 12;

/// Product-quantised codes of a set of vectors (see the module docs).
pub struct Codes {
    dim: usize,
    /// Pieces, a multiple of [`GROUP`] (missing dimensions count as zeros).
    pieces: usize,
    /// `pieces × CENTROIDS × SUB` floats.
    centroids: Vec<f32>,
    /// Whole blocks; the last one padded with code 0.
    codes: Vec<u8>,
    len: usize,
    /// The caller's key of each vector, in order.
    keys: Vec<u64>,
}

impl Codes {
    /// Learns the centroids from `sample` (rows of `dim`, up to [`TRAIN_ROWS`] of them are
    /// used) with a seeded k-means, and starts with no vectors.
    pub fn train(sample: &[f32], dim: usize, seed: u64) -> Result<Codes> {
        if dim == 0 || !sample.len().is_multiple_of(dim) || sample.is_empty() {
            bail!("training needs whole rows of {dim} values");
        }
        if dim > MAX_DIM {
            bail!("{dim} dimensions: the scan's 16-bit sums hold up to {MAX_DIM}");
        }
        if sample.iter().any(|x| !x.is_finite()) {
            bail!("training rows hold a value that is not finite");
        }
        let rows = (sample.len() / dim).min(TRAIN_ROWS);
        let pieces = dim.div_ceil(SUB).div_ceil(GROUP) * GROUP;
        let centroids: Vec<f32> = (0..pieces)
            .into_par_iter()
            .flat_map_iter(|p| {
                let points: Vec<[f32; SUB]> = (0..rows)
                    .map(|r| piece(&sample[r * dim..(r + 1) * dim], p))
                    .collect();
                kmeans(&points, seed ^ p as u64).into_iter().flatten()
            })
            .collect();
        Ok(Codes {
            dim,
            pieces,
            centroids,
            codes: Vec::new(),
            len: 0,
            keys: Vec::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of codes per vector.
    pub fn bytes_per_vector(&self) -> usize {
        self.pieces / 2
    }

    /// The key of each vector, in order.
    pub fn keys(&self) -> &[u64] {
        &self.keys
    }

    /// Encodes `rows` (whole rows of `dim`) and appends them, in order, under keys counting
    /// on from the number of vectors.
    pub fn add(&mut self, rows: &[f32]) -> Result<()> {
        let from = self.len as u64;
        let keys: Vec<u64> = (from..from + (rows.len() / self.dim.max(1)) as u64).collect();
        self.add_keyed(&keys, rows)
    }

    /// Encodes `rows` (whole rows of `dim`) and appends them with their `keys`, in order.
    pub fn add_keyed(&mut self, keys: &[u64], rows: &[f32]) -> Result<()> {
        if !rows.len().is_multiple_of(self.dim) || rows.len() / self.dim != keys.len() {
            bail!(
                "{} keys need as many whole rows of {} values",
                keys.len(),
                self.dim
            );
        }
        if rows.iter().any(|x| !x.is_finite()) {
            bail!("a row holds a value that is not finite");
        }
        let n = keys.len();
        self.keys.extend_from_slice(keys);
        let codes: Vec<Vec<u8>> = rows
            .par_chunks(self.dim)
            .map(|v| {
                (0..self.pieces)
                    .map(|p| self.nearest(&piece(v, p), p))
                    .collect()
            })
            .collect();
        for (i, c) in codes.iter().enumerate() {
            self.put(self.len + i, c);
        }
        self.len += n;
        Ok(())
    }

    /// The nearest centroid of piece `p` to `x`.
    fn nearest(&self, x: &[f32; SUB], p: usize) -> u8 {
        let cs = &self.centroids[p * CENTROIDS * SUB..(p + 1) * CENTROIDS * SUB];
        let mut best = (f32::INFINITY, 0u8);
        for (j, c) in cs.chunks_exact(SUB).enumerate() {
            let d: f32 = c.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum();
            if d < best.0 {
                best = (d, j as u8);
            }
        }
        best.1
    }

    /// Writes vector `i`'s codes into its block.
    fn put(&mut self, i: usize, codes: &[u8]) {
        let block_bytes = BLOCK * self.pieces / 2;
        let (b, j) = (i / BLOCK, i % BLOCK);
        if self.codes.len() < (b + 1) * block_bytes {
            self.codes.resize((b + 1) * block_bytes, 0);
        }
        let block = &mut self.codes[b * block_bytes..(b + 1) * block_bytes];
        for (t, pair) in codes.chunks_exact(2).enumerate() {
            block[t * BLOCK + j] = pair[0] | pair[1] << 4;
        }
    }

    /// The per-query tables: for each piece, its 16 dot products quantised to 0..=31, and
    /// the scale and offset that turn a summed score back into a dot product.
    fn tables(&self, query: &[f32]) -> (Vec<u8>, f32, f32) {
        let mut lut = vec![0f32; self.pieces * CENTROIDS];
        for p in 0..self.pieces {
            let q = piece(query, p);
            let cs = &self.centroids[p * CENTROIDS * SUB..(p + 1) * CENTROIDS * SUB];
            for (j, c) in cs.chunks_exact(SUB).enumerate() {
                lut[p * CENTROIDS + j] = c.iter().zip(&q).map(|(a, b)| a * b).sum();
            }
        }
        let mut offset = 0.0;
        let mut range = 0f32;
        let mins: Vec<f32> = lut
            .chunks_exact(CENTROIDS)
            .map(|t| {
                let (lo, hi) = t
                    .iter()
                    .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                        (a.min(x), b.max(x))
                    });
                offset += lo;
                range = range.max(hi - lo);
                lo
            })
            .collect();
        let step = if range > 0.0 { range / LEVELS } else { 1.0 };
        let q8 = lut
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                ((x - mins[i / CENTROIDS]) / step)
                    .round()
                    .clamp(0.0, LEVELS) as u8
            })
            .collect();
        (q8, step, offset)
    }

    /// The approximate score (higher: nearer) of every vector, in order.
    pub fn scores(&self, query: &[f32]) -> Result<Vec<u16>> {
        if query.len() != self.dim || query.iter().any(|x| !x.is_finite()) {
            bail!("the query must be {} finite values", self.dim);
        }
        let (lut, _, _) = self.tables(query);
        let block_bytes = BLOCK * self.pieces / 2;
        let mut out = vec![0u16; self.codes.len() / block_bytes * BLOCK];
        // Enough blocks per task to keep a core busy a while, few enough to spread.
        out.par_chunks_mut(BLOCK * 256)
            .zip(self.codes.par_chunks(block_bytes * 256))
            .for_each(|(scores, codes)| {
                for (s, c) in scores
                    .chunks_exact_mut(BLOCK)
                    .zip(codes.chunks_exact(block_bytes))
                {
                    scan_block(c, &lut, self.pieces, s);
                }
            });
        out.truncate(self.len);
        Ok(out)
    }

    /// The `k` vectors nearest to `query` by cosine distance: the `r` best approximate scores
    /// re-ranked by `dot(row)`, the exact dot product of the query with vector `row`; only
    /// vectors `keep` accepts (the caller's way to leave out vectors it no longer has).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        r: usize,
        keep: impl Fn(u32) -> bool + Sync,
        dot: impl Fn(u32) -> f32 + Sync,
    ) -> Result<Vec<(u32, f32)>> {
        let mut scores = self.scores(query)?;
        // Vectors the caller does not keep never take a candidate's place.
        let kept: usize = scores
            .par_iter_mut()
            .enumerate()
            .map(|(i, s)| {
                if keep(i as u32) {
                    1
                } else {
                    *s = 0;
                    0
                }
            })
            .sum();
        let candidates = best(&scores, r.max(k).min(kept));
        let mut hits: Vec<(u32, f32)> = candidates
            .par_iter()
            .filter_map(|&i| {
                let d = dot(i);
                (keep(i) && d.is_finite()).then_some((i, (1.0 - d).clamp(0.0, 2.0)))
            })
            .collect();
        hits.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        hits.truncate(k);
        Ok(hits)
    }
}

/// Marks an iw-lab codes file (then the payload length and its BLAKE3 hash at the end).
const MAGIC: &[u8; 8] = b"IWPQ0001";

impl Codes {
    /// The file form: `MAGIC`, dim, pieces, len (u64 little-endian each), the centroids (f32),
    /// the keys (u64), the codes; then the length of all that and its BLAKE3 hash.
    fn to_bytes(&self) -> Vec<u8> {
        let mut b =
            Vec::with_capacity(64 + self.centroids.len() * 4 + self.len * 8 + self.codes.len());
        b.extend_from_slice(MAGIC);
        for v in [self.dim as u64, self.pieces as u64, self.len as u64] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        self.centroids
            .iter()
            .for_each(|c| b.extend_from_slice(&c.to_le_bytes()));
        self.keys
            .iter()
            .for_each(|k| b.extend_from_slice(&k.to_le_bytes()));
        b.extend_from_slice(&self.codes);
        let len = b.len() as u64;
        let hash = blake3::hash(&b);
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(hash.as_bytes());
        b
    }

    /// Saves to `path` atomically (a `kill -9` leaves the old file or the new one).
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        crate::atomic::write(path, &self.to_bytes())
            .map_err(|e| anyhow::anyhow!("saving {}: {e}", path.display()))
    }

    /// Loads what [`Codes::save`] wrote; an error naming the file when it is not such a
    /// file, is truncated or damaged.
    pub fn load(path: &std::path::Path) -> Result<Codes> {
        let bytes =
            std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Self::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    fn from_bytes(b: &[u8]) -> Result<Codes> {
        let bad = || anyhow::anyhow!("not an iw-lab codes file, or truncated or damaged");
        if b.len() < 32 + 40 || &b[..8] != MAGIC {
            return Err(bad());
        }
        let (body, trailer) = b.split_at(b.len() - 40);
        let u64_at = |s: &[u8], at: usize| -> u64 {
            u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]))
        };
        if u64_at(trailer, 0) != body.len() as u64 || blake3::hash(body).as_bytes() != &trailer[8..]
        {
            return Err(bad());
        }
        let (dim, pieces, len) = (u64_at(body, 8), u64_at(body, 16), u64_at(body, 24));
        let ok = dim > 0
            && dim <= MAX_DIM as u64
            && pieces == (dim as usize).div_ceil(SUB).div_ceil(GROUP) as u64 * GROUP as u64;
        if !ok {
            return Err(bad());
        }
        let (dim, pieces, len) = (
            dim as usize,
            pieces as usize,
            usize::try_from(len).map_err(|_| bad())?,
        );
        let nc = pieces * CENTROIDS * SUB;
        let blocks = len.div_ceil(BLOCK);
        let want = 32usize
            .checked_add(nc * 4)
            .and_then(|x| x.checked_add(len.checked_mul(8)?))
            .and_then(|x| x.checked_add(blocks.checked_mul(BLOCK * pieces / 2)?));
        if want != Some(body.len()) {
            return Err(bad());
        }
        let mut at = 32;
        let centroids: Vec<f32> = body[at..at + nc * 4]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
            .collect();
        at += nc * 4;
        let keys: Vec<u64> = body[at..at + len * 8]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        at += len * 8;
        if centroids.iter().any(|c| !c.is_finite()) {
            return Err(bad());
        }
        Ok(Codes {
            dim,
            pieces,
            centroids,
            codes: body[at..].to_vec(),
            len,
            keys,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }
}

/// Piece `p` of `v` (zeros past its end).
fn piece(v: &[f32], p: usize) -> [f32; SUB] {
    let mut out = [0f32; SUB];
    for (d, o) in out.iter_mut().enumerate() {
        *o = v.get(p * SUB + d).copied().unwrap_or(0.0);
    }
    out
}

/// Seeded k-means of 2-d points into [`CENTROIDS`] centroids (fewer points: repeats).
fn kmeans(points: &[[f32; SUB]], seed: u64) -> Vec<[f32; SUB]> {
    let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut c: Vec<[f32; SUB]> = (0..CENTROIDS)
        .map(|_| points[(next() % points.len() as u64) as usize])
        .collect();
    let mut assign = vec![0usize; points.len()];
    for _ in 0..ROUNDS {
        for (a, x) in assign.iter_mut().zip(points) {
            *a = (0..CENTROIDS)
                .min_by(|&i, &j| dist(&c[i], x).total_cmp(&dist(&c[j], x)))
                .unwrap_or(0);
        }
        let mut sum = [[0f64; SUB]; CENTROIDS];
        let mut count = [0usize; CENTROIDS];
        for (&a, x) in assign.iter().zip(points) {
            count[a] += 1;
            for d in 0..SUB {
                sum[a][d] += f64::from(x[d]);
            }
        }
        for j in 0..CENTROIDS {
            if count[j] > 0 {
                for d in 0..SUB {
                    c[j][d] = (sum[j][d] / count[j] as f64) as f32;
                }
            } else {
                // An empty centroid restarts at a random point.
                c[j] = points[(next() % points.len() as u64) as usize];
            }
        }
    }
    c
}

fn dist(a: &[f32; SUB], b: &[f32; SUB]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Scores one block of 32 vectors into `out`.
fn scan_block(codes: &[u8], lut: &[u8], pieces: usize, out: &mut [u16]) {
    // What the vector code reads, checked once per 32 vectors.
    assert!(pieces.is_multiple_of(GROUP) && pieces <= MAX_DIM.div_ceil(SUB));
    assert!(codes.len() >= pieces / 2 * BLOCK && lut.len() >= pieces * CENTROIDS);
    assert!(out.len() >= BLOCK);
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { scan_block_avx2(codes, lut, pieces, out) };
            return;
        }
    }
    scan_block_scalar(codes, lut, pieces, out);
}

fn scan_block_scalar(codes: &[u8], lut: &[u8], pieces: usize, out: &mut [u16]) {
    out.fill(0);
    for t in 0..pieces / 2 {
        let row = &codes[t * BLOCK..(t + 1) * BLOCK];
        let (lo, hi) = (
            &lut[2 * t * CENTROIDS..(2 * t + 1) * CENTROIDS],
            &lut[(2 * t + 1) * CENTROIDS..(2 * t + 2) * CENTROIDS],
        );
        for (o, &c) in out.iter_mut().zip(row) {
            *o += u16::from(lo[(c & 15) as usize]) + u16::from(hi[(c >> 4) as usize]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_block_avx2(codes: &[u8], lut: &[u8], pieces: usize, out: &mut [u16]) {
    use std::arch::x86_64::*;
    let nibble = _mm256_set1_epi8(15);
    let low_byte = _mm256_set1_epi16(255);
    let (mut even, mut odd) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    for g in 0..pieces / GROUP {
        let mut sum = _mm256_setzero_si256();
        for t in 0..GROUP / 2 {
            let row = g * GROUP / 2 + t;
            // SAFETY: the block holds pieces / 2 rows of 32 bytes; the tables 16 bytes a piece.
            let c = _mm256_loadu_si256(codes.as_ptr().add(row * BLOCK).cast());
            let tlo = _mm_loadu_si128(lut.as_ptr().add(2 * row * CENTROIDS).cast());
            let thi = _mm_loadu_si128(lut.as_ptr().add((2 * row + 1) * CENTROIDS).cast());
            let lo = _mm256_and_si256(c, nibble);
            let hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), nibble);
            let a = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(tlo), lo);
            let b = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(thi), hi);
            sum = _mm256_add_epi8(sum, _mm256_add_epi8(a, b));
        }
        even = _mm256_add_epi16(even, _mm256_and_si256(sum, low_byte));
        odd = _mm256_add_epi16(odd, _mm256_srli_epi16(sum, 8));
    }
    let (mut e, mut o) = ([0u16; 16], [0u16; 16]);
    _mm256_storeu_si256(e.as_mut_ptr().cast(), even);
    _mm256_storeu_si256(o.as_mut_ptr().cast(), odd);
    for t in 0..16 {
        out[2 * t] = e[t];
        out[2 * t + 1] = o[t];
    }
}

/// The indices of the `r` highest scores (ties at the threshold: the first ones).
fn best(scores: &[u16], r: usize) -> Vec<u32> {
    if r >= scores.len() {
        return (0..scores.len() as u32).collect();
    }
    let mut hist = vec![0usize; 1 << 16];
    for &s in scores {
        hist[s as usize] += 1;
    }
    // The lowest score kept: take whole buckets from the top until r are taken.
    let (mut taken, mut cut) = (0usize, u16::MAX);
    for s in (0..hist.len()).rev() {
        if taken + hist[s] >= r {
            cut = s as u16;
            break;
        }
        taken += hist[s];
    }
    let mut at_cut = r - taken;
    let mut out = Vec::with_capacity(r);
    for (i, &s) in scores.iter().enumerate() {
        if s > cut {
            out.push(i as u32);
        } else if s == cut && at_cut > 0 {
            out.push(i as u32);
            at_cut -= 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut out: Vec<f32> = (0..n * dim)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        for v in out.chunks_exact_mut(dim) {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= norm);
        }
        out
    }

    #[test]
    fn the_vector_scan_equals_the_scalar_one() {
        for dim in [2, 3, 16, 17, 64] {
            let data = rows(100, dim, dim as u64);
            let mut c = Codes::train(&data, dim, 1).unwrap();
            c.add(&data).unwrap();
            let (lut, _, _) = c.tables(&data[..dim]);
            let block_bytes = BLOCK * c.pieces / 2;
            for block in c.codes.chunks_exact(block_bytes) {
                let (mut a, mut b) = ([0u16; BLOCK], [0u16; BLOCK]);
                scan_block(block, &lut, c.pieces, &mut a);
                scan_block_scalar(block, &lut, c.pieces, &mut b);
                assert_eq!(a, b, "dim {dim}");
            }
            assert_eq!(c.scores(&data[..dim]).unwrap().len(), 100);
        }
    }

    #[test]
    fn scores_track_the_dot_product_and_search_finds_the_exact_neighbours() {
        let dim = 64;
        let data = rows(3000, dim, 7);
        let mut c = Codes::train(&data, dim, 3).unwrap();
        c.add(&data[..1000 * dim]).unwrap();
        c.add(&data[1000 * dim..]).unwrap();
        assert_eq!(c.len(), 3000);
        let q = &data[42 * dim..43 * dim];
        let dot = |i: u32| -> f32 {
            let v = &data[i as usize * dim..(i as usize + 1) * dim];
            v.iter().zip(q).map(|(a, b)| a * b).sum()
        };
        // The approximate score orders like the dot product (a strong rank correlation).
        let (lut, step, offset) = c.tables(q);
        let _ = lut;
        let scores = c.scores(q).unwrap();
        let err: f32 = scores
            .iter()
            .enumerate()
            .map(|(i, &s)| (offset + step * s as f32 - dot(i as u32)).abs())
            .sum::<f32>()
            / 3000.0;
        assert!(err < 0.05, "mean error {err}");
        // Re-ranking every vector is exact search.
        let all = c.search(q, 10, 3000, |_| true, dot).unwrap();
        let mut exact: Vec<(u32, f32)> = (0..3000).map(|i| (i, 1.0 - dot(i))).collect();
        exact.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        assert_eq!(all, exact[..10].to_vec());
        assert_eq!(all[0].0, 42);
        // A tenth re-ranked still finds the query itself first.
        assert_eq!(c.search(q, 10, 300, |_| true, dot).unwrap()[0].0, 42);
        // Left-out vectors never come back, and the rest still fill the list.
        let odd = c.search(q, 10, 300, |i| i % 2 == 1, dot).unwrap();
        assert_eq!(odd.len(), 10);
        assert!(odd
            .iter()
            .all(|h| h.0 % 2 == 1 && (0.0..=2.0).contains(&h.1)));
        assert!(c.search(q, 10, 300, |_| false, dot).unwrap().is_empty());
    }

    #[test]
    fn a_saved_file_loads_the_same_and_damage_is_an_error() {
        let dim = 20;
        let data = rows(70, dim, 5);
        let mut c = Codes::train(&data, dim, 1).unwrap();
        c.add_keyed(&(100..170).collect::<Vec<u64>>(), &data)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pq");
        c.save(&path).unwrap();
        let back = Codes::load(&path).unwrap();
        assert_eq!(back.keys(), c.keys());
        assert_eq!(
            back.scores(&data[..dim]).unwrap(),
            c.scores(&data[..dim]).unwrap()
        );
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 8, 40, bytes.len() / 2, bytes.len() - 1] {
            assert!(Codes::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[50] ^= 1;
        assert!(Codes::from_bytes(&flipped).is_err());
        let err = Codes::load(&dir.path().join("none.pq")).err().unwrap();
        assert!(format!("{err:#}").contains("none.pq"));
    }

    #[test]
    fn the_largest_sums_fit_at_the_largest_dimension() {
        let pieces = MAX_DIM / SUB;
        let codes = vec![0xFFu8; pieces / 2 * BLOCK];
        let lut = vec![LEVELS as u8; pieces * CENTROIDS];
        let (mut a, mut b) = ([0u16; BLOCK], [0u16; BLOCK]);
        scan_block(&codes, &lut, pieces, &mut a);
        scan_block_scalar(&codes, &lut, pieces, &mut b);
        assert_eq!(a, b);
        assert_eq!(a[0] as usize, pieces * LEVELS as usize);
    }

    #[test]
    fn best_keeps_exactly_r_of_the_highest() {
        let scores = [5u16, 9, 9, 1, 9, 7, 0];
        assert_eq!(best(&scores, 2), vec![1, 2]);
        assert_eq!(best(&scores, 4), vec![1, 2, 4, 5]);
        assert_eq!(best(&scores, 10).len(), 7);
        assert!(best(&scores, 0).is_empty());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(Codes::train(&[], 4, 0).is_err());
        assert!(Codes::train(&[1.0, 2.0, 3.0], 2, 0).is_err());
        assert!(Codes::train(&[f32::NAN, 0.0], 2, 0).is_err());
        let mut c = Codes::train(&[1.0, 0.0, 0.0, 1.0], 2, 0).unwrap();
        assert!(c.add(&[1.0]).is_err());
        assert!(c.scores(&[1.0]).is_err());
        assert!(c.scores(&[f32::NAN, 0.0]).is_err());
        assert!(c.scores(&[1.0, 0.0]).unwrap().is_empty());
    }
}
