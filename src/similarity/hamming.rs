//! All pairs of hashes within a Hamming distance, without comparing every pair: multi-index
//! hashing. Each hash is cut into `m` chunks; if two hashes differ in at most `d` bits, some
//! chunk differs in at most `⌊d/m⌋` bits (pigeonhole). So every hash is filed under each of
//! its chunks, and each hash looks up the chunk values within `⌊d/m⌋` flips of its own; the
//! candidates found are verified on the full hash. A pair is reported once: by the first
//! chunk that qualifies it, from its lower index. `m` is chosen to minimise the expected
//! candidates for the number of hashes; each chunk's table is a flat array indexed by chunk
//! value. Small sets, and distances too large for the index to pay, are compared pair by pair.

/// Below this many hashes, every pair is compared (faster than building the tables).
const BRUTE_BELOW: usize = 2_000;

/// A pair of indices (`a < b`) and their distance.
pub type Pair = (u32, u32, u32);

/// Hashes of `words` 64-bit words each, flattened: hash `i` is `flat[i*words..(i+1)*words]`.
pub struct Hashes<'a> {
    pub flat: &'a [u64],
    pub words: usize,
}

impl Hashes<'_> {
    pub fn len(&self) -> usize {
        self.flat.len().checked_div(self.words).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, i: usize) -> &[u64] {
        &self.flat[i * self.words..(i + 1) * self.words]
    }

    fn distance(&self, i: usize, j: usize) -> u32 {
        super::hamming(self.get(i), self.get(j))
    }
}

/// Every pair within `max_distance`, sorted.
pub fn near_pairs(h: &Hashes<'_>, max_distance: u32) -> Vec<Pair> {
    let n = h.len();
    let bits = (h.words * 64) as u32;
    let (m, cost) = chunk_count(n, bits, max_distance);
    // Comparing every pair costs n/2 per hash; the index pays off well before that.
    let mut out = if n < BRUTE_BELOW || cost * 4.0 > n as f64 {
        brute_pairs(h, max_distance)
    } else {
        indexed_pairs(h, max_distance, m)
    };
    out.sort_unstable();
    out
}

/// Every pair within `max_distance`, comparing all of them (in parallel).
pub fn brute_pairs(h: &Hashes<'_>, max_distance: u32) -> Vec<Pair> {
    use rayon::prelude::*;
    let n = h.len();
    (0..n)
        .into_par_iter()
        .flat_map_iter(|i| {
            (i + 1..n).filter_map(move |j| {
                let d = h.distance(i, j);
                (d <= max_distance).then_some((i as u32, j as u32, d))
            })
        })
        .collect()
}

/// Number of combinations C(n, k).
pub fn choose(n: u64, k: u64) -> f64 {
    if k > n {
        return 0.0;
    }
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// Chunks are at most this wide, so each chunk's table is a flat array of 2^width buckets.
const MAX_WIDTH: u32 = 24;

/// The expected work per hash with `m` chunks (uniform hashes): per chunk, every probe within
/// radius ⌊d/m⌋ costs a table lookup (a likely cache miss: weighed as 8 candidate checks)
/// plus the hashes it finds.
fn chunk_cost(n: usize, bits: u32, d: u32, m: u32) -> f64 {
    let width = bits.div_ceil(m);
    let probes: f64 = (0..=(d / m) as u64).map(|k| choose(width as u64, k)).sum();
    m as f64 * probes * (8.0 + n as f64 / 2f64.powi(width as i32))
}

/// The chunk count with the least expected work, and that work per hash.
fn chunk_count(n: usize, bits: u32, d: u32) -> (u32, f64) {
    (bits.div_ceil(MAX_WIDTH)..=bits.min(64))
        .map(|m| (m, chunk_cost(n, bits, d, m)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((bits.min(64), f64::INFINITY))
}

/// Bits `[start, start+len)` of a hash (bit 0 = the first word's most significant), as an
/// integer (`len` ≤ 64).
fn chunk(hash: &[u64], start: u32, len: u32) -> u64 {
    let mut v = 0u64;
    for b in start..start + len {
        let word = hash[(b / 64) as usize];
        v = v << 1 | (word >> (63 - b % 64) & 1);
    }
    v
}

/// One chunk's table: the indices of the hashes by chunk value (`ids[offsets[v]..offsets[v+1]]`).
struct Table {
    offsets: Vec<u32>,
    ids: Vec<u32>,
}

impl Table {
    fn new(values: &[u32], width: u32) -> Table {
        let mut offsets = vec![0u32; (1usize << width) + 1];
        for &v in values {
            offsets[v as usize + 1] += 1;
        }
        for i in 1..offsets.len() {
            offsets[i] += offsets[i - 1];
        }
        let mut next = offsets.clone();
        let mut ids = vec![0u32; values.len()];
        for (i, &v) in values.iter().enumerate() {
            ids[next[v as usize] as usize] = i as u32;
            next[v as usize] += 1;
        }
        Table { offsets, ids }
    }

    fn get(&self, v: u64) -> &[u32] {
        let v = v as usize;
        &self.ids[self.offsets[v] as usize..self.offsets[v + 1] as usize]
    }
}

/// Multi-index hashing with `m` chunks (see the module docs).
fn indexed_pairs(h: &Hashes<'_>, d: u32, m: u32) -> Vec<Pair> {
    use rayon::prelude::*;
    let n = h.len();
    let bits = (h.words * 64) as u32;
    let width = bits.div_ceil(m).min(MAX_WIDTH);
    let spans: Vec<(u32, u32)> = (0..bits.div_ceil(width))
        .map(|c| (c * width, width.min(bits - c * width)))
        .collect();
    let r = d / spans.len() as u32;
    // Per chunk: the chunk value of every hash, and the table of hashes by value.
    let values: Vec<Vec<u32>> = spans
        .par_iter()
        .map(|&(start, len)| (0..n).map(|i| chunk(h.get(i), start, len) as u32).collect())
        .collect();
    let tables: Vec<Table> = spans
        .par_iter()
        .zip(&values)
        .map(|(&(_, len), v)| Table::new(v, len))
        .collect();
    // Per chunk, its bits as a mask over the hash's words.
    let masks: Vec<Vec<u64>> = spans
        .iter()
        .map(|&(start, len)| {
            let mut m = vec![0u64; h.words];
            for b in start..start + len {
                m[(b / 64) as usize] |= 1 << (63 - b % 64);
            }
            m
        })
        .collect();
    (0..n)
        .into_par_iter()
        .flat_map_iter(|i| {
            let mut found = Vec::new();
            let mut xor = vec![0u64; h.words];
            for (c, &(_, len)) in spans.iter().enumerate() {
                for_each_within(values[c][i] as u64, len, r, &mut |probe| {
                    for &j in tables[c].get(probe) {
                        let j = j as usize;
                        if j <= i {
                            continue;
                        }
                        for (x, (a, b)) in xor.iter_mut().zip(h.get(i).iter().zip(h.get(j))) {
                            *x = a ^ b;
                        }
                        let dist: u32 = xor.iter().map(|x| x.count_ones()).sum();
                        if dist > d {
                            continue;
                        }
                        // Report from the first chunk within the radius only.
                        let first = masks
                            .iter()
                            .position(|m| {
                                m.iter()
                                    .zip(&xor)
                                    .map(|(m, x)| (m & x).count_ones())
                                    .sum::<u32>()
                                    <= r
                            })
                            .expect("the probing chunk qualifies");
                        if first == c {
                            found.push((i as u32, j as u32, dist));
                        }
                    }
                });
            }
            found
        })
        .collect()
}

/// Calls `f` with every value within `r` bit flips of `v` (a `len`-bit value).
fn for_each_within(v: u64, len: u32, r: u32, f: &mut dyn FnMut(u64)) {
    fn go(v: u64, from: u32, len: u32, left: u32, f: &mut dyn FnMut(u64)) {
        f(v);
        if left == 0 {
            return;
        }
        for b in from..len {
            go(v ^ (1 << b), b + 1, len, left - 1, f);
        }
    }
    go(v, 0, len, r, f);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed
    }

    /// Hashes in clusters: random centres, members a few flips away.
    fn clustered(n: usize, words: usize, seed: u64) -> Vec<u64> {
        let mut s = seed;
        let mut out = Vec::new();
        let mut centre: Vec<u64> = Vec::new();
        for i in 0..n {
            if i % 5 == 0 {
                centre = (0..words).map(|_| lcg(&mut s)).collect();
            }
            let mut h = centre.clone();
            for _ in 0..(lcg(&mut s) % 9) {
                let b = lcg(&mut s) % (64 * words as u64);
                h[(b / 64) as usize] ^= 1 << (b % 64);
            }
            out.extend(h);
        }
        out
    }

    #[test]
    fn indexed_search_finds_exactly_the_brute_force_pairs() {
        for (words, d) in [(1, 0), (1, 3), (1, 6), (1, 10), (4, 12), (4, 30)] {
            let flat = clustered(3_000, words, 7 + d as u64);
            let h = Hashes { flat: &flat, words };
            let mut brute = brute_pairs(&h, d);
            brute.sort_unstable();
            for m in [3, 4, 11, 12, d + 1] {
                let width = (words as u32 * 64).div_ceil(m);
                let probes: f64 = (0..=(d / m) as u64).map(|k| choose(width as u64, k)).sum();
                if width > MAX_WIDTH || probes > 2_000.0 {
                    continue;
                }
                let mut got = indexed_pairs(&h, d, m);
                got.sort_unstable();
                assert_eq!(got, brute, "words {words}, d {d}, m {m}");
            }
            assert_eq!(near_pairs(&h, d), brute);
        }
    }

    proptest! {
        #[test]
        fn any_hashes_any_distance(flat in proptest::collection::vec(any::<u64>(), 0..60), d in 0u32..70) {
            let h = Hashes { flat: &flat, words: 1 };
            let mut brute = brute_pairs(&h, d);
            brute.sort_unstable();
            let m = chunk_count(h.len(), 64, d).0;
            let mut got = indexed_pairs(&h, d, m);
            got.sort_unstable();
            prop_assert_eq!(got, brute);
        }
    }
}
