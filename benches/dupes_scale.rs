//! Near-duplicate search at library scale: all pairs of 64-bit perceptual hashes within
//! Hamming distance 6 among 1,000,000, through iw-lab's multi-index hashing
//! (`similarity::hamming::near_pairs`), against comparing every pair (rayon, all cores).
//!
//! The hashes are a library's shape: uniform random hashes (distinct photos) plus clusters of
//! near copies (re-encodes, resizes: 1–8 flipped bits from their original).
//!
//! `cargo bench --bench dupes_scale -- [N] [--no-brute]`

use std::time::Instant;

use iw_lab::similarity::hamming::{brute_pairs, near_pairs, Hashes};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let n: usize = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let brute = !args.iter().any(|a| a == "--no-brute");
    let d = 6;
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    // 80% distinct photos; 20% near copies of an earlier hash.
    let mut flat: Vec<u64> = Vec::with_capacity(n);
    for i in 0..n {
        if i > 0 && next() % 5 == 0 {
            let mut h = flat[(next() % i as u64) as usize];
            for _ in 0..1 + next() % 8 {
                h ^= 1 << (next() % 64);
            }
            flat.push(h);
        } else {
            flat.push(next());
        }
    }
    let h = Hashes {
        flat: &flat,
        words: 1,
    };
    let t = Instant::now();
    let pairs = near_pairs(&h, d);
    let indexed = t.elapsed().as_secs_f64();
    println!("hashes: {n}, distance <= {d}");
    println!(
        "multi-index hashing: {} pairs in {indexed:.2} s",
        pairs.len()
    );
    if brute {
        let t = Instant::now();
        let mut all = brute_pairs(&h, d);
        let secs = t.elapsed().as_secs_f64();
        all.sort_unstable();
        println!("every pair compared: {} pairs in {secs:.2} s", all.len());
        println!("same pairs: {}", all == pairs);
        println!("speed-up: {:.1}x", secs / indexed);
        assert_eq!(
            all, pairs,
            "the index must find exactly the brute-force pairs"
        );
    }
}
