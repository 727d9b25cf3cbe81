//! Clustering 100,000 synthetic 128-d face embeddings with `faces cluster`'s rule: the time,
//! the peak memory of the process, and how well the clusters recover the identities.
//!
//! `cargo bench --bench face_cluster` (`IW_BENCH_FACES=N` for another size). The set: 5,000
//! identities of 20 faces each (a unit centre; each face the centre plus Gaussian noise,
//! normalised, so faces of one person have cosine ≈ 0.7 with each other and ≈ 0 with
//! others, like SFace on clean photos), with 0.5% of faces replaced by loners.

use std::time::Instant;

use iw_lab::faces::cluster::{cluster, Params};

fn main() {
    let n: usize = std::env::var("IW_BENCH_FACES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dim = 128;
    let per = 20;
    let mut rng = Rng(0x5EED);
    let people = n / per;
    let centres: Vec<Vec<f32>> = (0..people)
        .map(|_| unit((0..dim).map(|_| rng.normal()).collect()))
        .collect();
    let mut data = Vec::with_capacity(n * dim);
    let mut truth = Vec::with_capacity(n);
    for i in 0..n {
        let p = i % people.max(1);
        let loner = rng.next().is_multiple_of(200);
        let v: Vec<f32> = if loner {
            unit((0..dim).map(|_| rng.normal()).collect())
        } else {
            // Noise of norm ~0.65 around a unit centre: pairwise cosine ≈ 0.7.
            unit(
                centres[p]
                    .iter()
                    .map(|c| c + rng.normal() * 0.058)
                    .collect(),
            )
        };
        data.extend(v);
        truth.push(if loner { usize::MAX } else { p });
    }
    let start = Instant::now();
    let mut next = 0;
    let out = cluster(&data, dim, &[], &mut next, &Params::default()).expect("cluster");
    let secs = start.elapsed().as_secs_f64();
    // Purity: faces whose cluster's majority identity is their own; and identities split.
    let mut by: std::collections::HashMap<u32, Vec<usize>> = std::collections::HashMap::new();
    for (i, c) in out.iter().enumerate() {
        if let Some(c) = c {
            by.entry(*c).or_default().push(truth[i]);
        }
    }
    let mut pure = 0usize;
    for members in by.values() {
        let mut counts: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
        for m in members {
            *counts.entry(*m).or_default() += 1;
        }
        pure += counts.values().max().copied().unwrap_or(0);
    }
    let clustered = out.iter().filter(|c| c.is_some()).count();
    println!(
        "faces {n}, dim {dim}: {secs:.2} s, peak RSS {:.0} MB, {} clusters for {people} people, {clustered} clustered ({:.1}%), purity {:.4}",
        peak_rss_mb(),
        by.len(),
        100.0 * clustered as f64 / n as f64,
        pure as f64 / clustered.max(1) as f64
    );
}

fn unit(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.into_iter().map(|x| x / n).collect()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn normal(&mut self) -> f32 {
        let u1 = ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
