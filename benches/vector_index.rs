//! Nearest neighbours of image embeddings at library scale: iw-lab's HNSW index
//! (`similarity::index`) and its fast scan of product-quantised codes with an exact re-rank
//! (`similarity::pq`) against exact search (`similarity::exact`) over N synthetic 512-d unit
//! vectors (default 1,000,000), in two sets:
//!
//! - `mixture`: 1,000 clusters around random unit centres, each vector its centre plus
//!   Gaussian noise (σ per coordinate), normalised; clusters overlap a little (the share of
//!   true top-10 neighbours from another cluster is printed);
//! - `uniform`: i.i.d. Gaussian coordinates, normalised (uniform on the sphere): the hard case.
//!
//! Vectors come from a seeded splitmix64 + Box–Muller stream per row, so any range of rows
//! can be regenerated: the exact ground truth streams over regenerated chunks and the f32 set
//! is never held while the index is. Per set: the build through `VectorIndex::add_missing`
//! (checkpoints included), reopening the saved file, 1,000 fresh queries (k = 10,
//! single-threaded) at each `expansion_search` with p50/p95/p99 latency and recall@10, and
//! exact search latency (all cores) at 10k, 50k, 100k and N rows, with the size below which
//! exact search is the faster. Then the fast scan: codes learned and built over the f32 rows
//! (held in memory for the re-rank), and every query at each re-rank depth (the scan on all
//! cores). Peak RSS (VmHWM) per set.
//!
//! `IW_BENCH_N=20000 cargo bench --bench vector_index`. Other knobs: `IW_BENCH_SETS`
//! (`mixture,uniform`), `IW_BENCH_EF` (comma-separated `expansion_search` values to sweep),
//! `IW_BENCH_M` (connectivity), `IW_BENCH_EF_ADD`, `IW_BENCH_SIGMA` (0.10), `IW_BENCH_QUERIES`
//! (1000), `IW_BENCH_DIR` (where the index file goes; the system temp folder),
//! `IW_BENCH_RERANK` (re-rank depths of the fast scan), `IW_BENCH_HNSW=0` (skip the HNSW
//! build and queries: the fast scan and exact search only).

use std::time::Instant;

use iw_lab::similarity::exact;
use iw_lab::similarity::index::{IndexParams, VectorIndex};
use iw_lab::similarity::pq;
use rayon::prelude::*;

const DIM: usize = 512;
const CLUSTERS: usize = 1_000;
const K: usize = 10;
/// Rows generated at a time for the ground truth and the build (256 MiB of f32 at 512-d).
const CHUNK: usize = 131_072;
const SEED: u64 = 0x1A2B_3C4D_5E6F_7081;
/// Row streams: the indexed vectors, the queries, the mixture's centres.
const DATA: u64 = 1;
const QUERIES: u64 = 2;
const CENTRES: u64 = 3;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(v) => v.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => default.to_vec(),
    }
}

/// splitmix64: one well-mixed 64-bit value per step.
struct Rng(u64);

impl Rng {
    fn for_row(set: u64, stream: u64, row: u64) -> Rng {
        let mut r = Rng(SEED ^ set.wrapping_mul(0xA076_1D64_78BD_642F));
        r.0 ^= stream.wrapping_mul(0xE703_7ED1_A0B4_28DB);
        r.next();
        r.0 ^= row.wrapping_mul(0x8EBC_6AF0_9C88_C6E3);
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fills `out` with standard normal values (Box–Muller).
    fn gauss(&mut self, out: &mut [f32]) {
        for pair in out.chunks_mut(2) {
            let u1 = ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64;
            let u2 = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
            let r = (-2.0 * u1.ln()).sqrt();
            let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
            pair[0] = (r * c) as f32;
            if let Some(second) = pair.get_mut(1) {
                *second = (r * s) as f32;
            }
        }
    }
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
}

/// A distribution of vectors: `centres` empty for uniform.
struct Set {
    name: &'static str,
    id: u64,
    centres: Vec<f32>,
    sigma: f32,
}

impl Set {
    fn uniform() -> Set {
        Set {
            name: "uniform",
            id: 2,
            centres: Vec::new(),
            sigma: 0.0,
        }
    }

    fn mixture(sigma: f32) -> Set {
        let mut set = Set {
            name: "mixture",
            id: 1,
            centres: Vec::new(),
            sigma,
        };
        set.centres = set.rows(CENTRES, 0, CLUSTERS).0;
        set
    }

    /// Row `row` of `stream` into `out`; returns its cluster (0 for uniform).
    fn row(&self, stream: u64, row: u64, out: &mut [f32]) -> u16 {
        let mut rng = Rng::for_row(self.id, stream, row);
        let mixed = stream != CENTRES && !self.centres.is_empty();
        let cluster = if mixed {
            rng.next() % CLUSTERS as u64
        } else {
            0
        } as usize;
        rng.gauss(out);
        if mixed {
            let centre = &self.centres[cluster * DIM..(cluster + 1) * DIM];
            for (x, c) in out.iter_mut().zip(centre) {
                *x = c + self.sigma * *x;
            }
        }
        normalise(out);
        cluster as u16
    }

    /// Rows `start..start + count` of `stream`, and their clusters.
    fn rows(&self, stream: u64, start: usize, count: usize) -> (Vec<f32>, Vec<u16>) {
        let mut data = vec![0f32; count * DIM];
        let mut clusters = vec![0u16; count];
        data.par_chunks_mut(DIM)
            .zip(clusters.par_iter_mut())
            .enumerate()
            .for_each(|(i, (out, c))| *c = self.row(stream, (start + i) as u64, out));
        (data, clusters)
    }
}

/// Resets the process's peak RSS (Linux `clear_refs` 5), so each set reports its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted_ms.len() - 1) as f64 * p).round() as usize;
    sorted_ms[i]
}

/// Exact top-k of every query over all `n` rows, streaming over regenerated chunks.
fn ground_truth(set: &Set, n: usize, queries: &[f32]) -> (Vec<Vec<u32>>, Vec<u16>) {
    let m = queries.len() / DIM;
    let mut best: Vec<Vec<(u32, f32)>> = vec![Vec::new(); m];
    let mut clusters = Vec::with_capacity(n);
    for start in (0..n).step_by(CHUNK) {
        let (data, c) = set.rows(DATA, start, CHUNK.min(n - start));
        clusters.extend(c);
        let found = exact::top_k_many(&data, DIM, queries, K).expect("exact search");
        for (b, f) in best.iter_mut().zip(found) {
            b.extend(f.into_iter().map(|(r, d)| (r + start as u32, d)));
            b.sort_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(&y.0)));
            b.truncate(K);
        }
    }
    let rows = best
        .into_iter()
        .map(|b| b.into_iter().map(|r| r.0).collect())
        .collect();
    (rows, clusters)
}

/// Builds the index through `add_missing`, a chunk of generated rows at a time; returns the
/// seconds spent adding and saving (generation excluded).
fn build(set: &Set, n: usize, path: &std::path::Path, params: IndexParams) -> f64 {
    let mut idx = VectorIndex::open_or_create(path, DIM, params).expect("open");
    let mut secs = 0.0;
    for start in (0..n).step_by(CHUNK) {
        let count = CHUNK.min(n - start);
        let (data, _) = set.rows(DATA, start, count);
        let keys: Vec<u64> = (start as u64..(start + count) as u64).collect();
        let t = Instant::now();
        idx.add_missing(&keys, &data, 0, |_| {}).expect("add");
        secs += t.elapsed().as_secs_f64();
        eprintln!("  {}: {} / {n} added, {secs:.0} s", set.name, start + count);
    }
    secs
}

struct QueryRow {
    ef: usize,
    p50: f64,
    p95: f64,
    p99: f64,
    recall: f64,
}

/// Single-threaded search latency and recall@10 at one `expansion_search`.
fn measure(idx: &mut VectorIndex, ef: usize, queries: &[f32], truth: &[Vec<u32>]) -> QueryRow {
    idx.set_expansion_search(ef);
    let mut ms = Vec::with_capacity(truth.len());
    let mut hits = 0usize;
    for (q, want) in queries.chunks_exact(DIM).zip(truth) {
        let t = Instant::now();
        let got = idx.search(q, K).expect("search");
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        hits += got.iter().filter(|g| want.contains(&(g.0 as u32))).count();
    }
    summarise(&format!("expansion_search {ef}"), ef, ms, hits, truth.len())
}

/// Latency percentiles and recall@10 of one setting (`ms` per query, `hits` of `K` each).
fn summarise(what: &str, ef: usize, mut ms: Vec<f64>, hits: usize, queries: usize) -> QueryRow {
    ms.sort_by(f64::total_cmp);
    let row = QueryRow {
        ef,
        p50: percentile(&ms, 0.5),
        p95: percentile(&ms, 0.95),
        p99: percentile(&ms, 0.99),
        recall: hits as f64 / (queries * K) as f64,
    };
    eprintln!(
        "  {what}: p50 {:.2} ms, p95 {:.2} ms, recall@10 {:.4}",
        row.p50, row.p95, row.recall
    );
    row
}

/// The product-quantised fast scan (`similarity::pq`): codes learned and built over the f32
/// rows (seconds returned), then every query at each re-rank depth (`QueryRow::ef` holds the
/// depth), the scan on all cores, the re-rank reading the f32 rows.
fn fast_scan(data: &[f32], n: usize, queries: &[f32], truth: &[Vec<u32>]) -> (f64, Vec<QueryRow>) {
    let t = Instant::now();
    let mut codes = pq::Codes::train(&data[..n.min(32_768) * DIM], DIM, 11).expect("train");
    for chunk in data.chunks(CHUNK * DIM) {
        codes.add(chunk).expect("encode");
    }
    let build_s = t.elapsed().as_secs_f64();
    eprintln!(
        "  fast scan: codes built in {build_s:.1} s ({} bytes a vector)",
        codes.bytes_per_vector()
    );
    let depths = env_list("IW_BENCH_RERANK", &[500, 1000, 2000, 4000]);
    let rows = depths
        .into_iter()
        .map(|r| {
            let mut ms = Vec::with_capacity(truth.len());
            let mut hits = 0usize;
            for (q, want) in queries.chunks_exact(DIM).zip(truth) {
                let t = Instant::now();
                let got = codes
                    .search(
                        q,
                        K,
                        r,
                        |_| true,
                        |i| exact::dot(&data[i as usize * DIM..(i as usize + 1) * DIM], q),
                    )
                    .expect("search");
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                hits += got.iter().filter(|g| want.contains(&g.0)).count();
            }
            summarise(&format!("fast scan, re-rank {r}"), r, ms, hits, truth.len())
        })
        .collect();
    (build_s, rows)
}

/// p50 of exact search (all cores) over the first `size` rows, for each size.
fn exact_latency(data: &[f32], sizes: &[usize], queries: &[f32]) -> Vec<(usize, f64)> {
    sizes
        .iter()
        .map(|&size| {
            let reps = if size > 200_000 { 30 } else { 200 };
            let mut ms: Vec<f64> = queries
                .chunks_exact(DIM)
                .cycle()
                .take(reps)
                .map(|q| {
                    let t = Instant::now();
                    let r = exact::top_k(&data[..size * DIM], DIM, q, K).expect("exact");
                    std::hint::black_box(r);
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            ms.sort_by(f64::total_cmp);
            eprintln!(
                "  exact search over {size}: p50 {:.2} ms",
                percentile(&ms, 0.5)
            );
            (size, percentile(&ms, 0.5))
        })
        .collect()
}

/// The size at which exact search takes `target_ms`, interpolated linearly between the
/// measured sizes (exact search's cost is linear in the rows).
fn crossover(points: &[(usize, f64)], target_ms: f64) -> String {
    let mut prev = (0usize, 0.0f64);
    for &(n, ms) in points {
        if ms >= target_ms {
            let f = (target_ms - prev.1) / (ms - prev.1).max(1e-9);
            return format!("≈ {:.0}", prev.0 as f64 + f * (n - prev.0) as f64);
        }
        prev = (n, ms);
    }
    format!("> {} (exact is faster at every measured size)", prev.0)
}

struct SetResult {
    name: &'static str,
    build_s: f64,
    open_s: f64,
    file_mib: f64,
    rows: Vec<QueryRow>,
    exact: Vec<(usize, f64)>,
    cross_share: Option<f64>,
    crossover: String,
    peak_mib: f64,
    pq_build_s: f64,
    pq_rows: Vec<QueryRow>,
}

fn run_set(set: &Set, n: usize, nq: usize, params: IndexParams, efs: &[usize]) -> SetResult {
    reset_peak_rss();
    let (queries, qclusters) = set.rows(QUERIES, 0, nq);
    let t = Instant::now();
    let (truth, clusters) = ground_truth(set, n, &queries);
    eprintln!(
        "  {}: ground truth in {:.1} s",
        set.name,
        t.elapsed().as_secs_f64()
    );
    let cross_share = (!set.centres.is_empty()).then(|| {
        let cross: usize = truth
            .iter()
            .zip(&qclusters)
            .map(|(t, &c)| t.iter().filter(|&&r| clusters[r as usize] != c).count())
            .sum();
        cross as f64 / (nq * K) as f64
    });
    drop(clusters);
    let dir = match std::env::var_os("IW_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temp folder");
    let path = dir.path().join(format!("{}.usearch", set.name));
    let hnsw = env("IW_BENCH_HNSW", 1) != 0;
    let build_s = if hnsw {
        build(set, n, &path, params)
    } else {
        VectorIndex::open_or_create(&path, DIM, params)
            .expect("open")
            .save()
            .expect("save");
        0.0
    };
    let t = Instant::now();
    let mut idx = VectorIndex::open_or_create(&path, DIM, params).expect("reopen");
    let open_s = t.elapsed().as_secs_f64();
    eprintln!(
        "  {}: distance kernel {}",
        set.name,
        idx.hardware_acceleration()
    );
    assert_eq!(idx.len(), if hnsw { n } else { 0 });
    let file_mib = std::fs::metadata(&path).map_or(0.0, |m| m.len() as f64 / 1048576.0);
    let rows: Vec<QueryRow> = if hnsw {
        efs.iter()
            .map(|&ef| measure(&mut idx, ef, &queries, &truth))
            .collect()
    } else {
        Vec::new()
    };
    let hnsw_p50 = rows
        .iter()
        .find(|r| r.ef == params.expansion_search)
        .or(rows.first())
        .map_or(f64::NAN, |r| r.p50);
    drop(idx);
    drop(dir);
    let (data, _) = set.rows(DATA, 0, n);
    let mut sizes: Vec<usize> = [10_000, 50_000, 100_000]
        .into_iter()
        .filter(|&s| s < n)
        .collect();
    sizes.push(n);
    let exact = exact_latency(&data, &sizes, &queries);
    let (pq_build_s, pq_rows) = fast_scan(&data, n, &queries, &truth);
    drop(data);
    SetResult {
        pq_build_s,
        pq_rows,
        name: set.name,
        build_s,
        open_s,
        file_mib,
        rows,
        crossover: crossover(&exact, hnsw_p50),
        exact,
        cross_share,
        peak_mib: peak_rss_mib(),
    }
}

fn print(results: &[SetResult], n: usize, params: IndexParams) {
    println!("\n## vector_index: {n} × {DIM}-d, k = {K}, f16 cosine HNSW (usearch)");
    println!(
        "connectivity {}, expansion_add {}, default expansion_search {}; rayon threads {}; usearch SIMD: {}\n",
        params.connectivity,
        params.expansion_add,
        params.expansion_search,
        rayon::current_num_threads(),
        usearch::hardware_acceleration_available(),
    );
    println!("| set | build (s) | reopen (s) | file (MiB) | expansion_search | p50 (ms) | p95 (ms) | p99 (ms) | recall@10 | exact p50 at N (ms) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let exact_n = r.exact.last().map_or(f64::NAN, |e| e.1);
        for q in &r.rows {
            println!(
                "| {} | {:.1} | {:.2} | {:.0} | {} | {:.2} | {:.2} | {:.2} | {:.4} | {:.1} |",
                r.name,
                r.build_s,
                r.open_s,
                r.file_mib,
                q.ef,
                q.p50,
                q.p95,
                q.p99,
                q.recall,
                exact_n
            );
        }
    }
    println!("\n### fast scan of product-quantised codes (similarity::pq), f32 re-rank\n");
    println!("| set | codes built (s) | re-ranked | p50 (ms) | p95 (ms) | p99 (ms) | recall@10 |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in results {
        for q in &r.pq_rows {
            println!(
                "| {} | {:.1} | {} | {:.2} | {:.2} | {:.2} | {:.4} |",
                r.name, r.pq_build_s, q.ef, q.p50, q.p95, q.p99, q.recall
            );
        }
    }
    println!("\n| set | rows | exact p50 (ms, all cores) |\n|---|---:|---:|");
    for r in results {
        for (size, ms) in &r.exact {
            println!("| {} | {size} | {ms:.2} |", r.name);
        }
    }
    println!();
    for r in results {
        println!(
            "- {}: exact search is faster than the index (default expansion_search) below {} rows; VmHWM {:.0} MiB{}",
            r.name,
            r.crossover,
            r.peak_mib,
            r.cross_share
                .map(|s| format!("; true top-10 from another cluster: {:.1}%", s * 100.0))
                .unwrap_or_default()
        );
    }
}

fn main() {
    let n: usize = env("IW_BENCH_N", 1_000_000);
    let nq: usize = env("IW_BENCH_QUERIES", 1_000);
    let d = IndexParams::default();
    let params = IndexParams {
        connectivity: env("IW_BENCH_M", d.connectivity),
        expansion_add: env("IW_BENCH_EF_ADD", d.expansion_add),
        expansion_search: d.expansion_search,
    };
    let mut efs = env_list("IW_BENCH_EF", &[128, 256, 512, 1024]);
    if !efs.contains(&params.expansion_search) {
        efs.push(params.expansion_search);
    }
    efs.sort_unstable();
    let sigma: f32 = env("IW_BENCH_SIGMA", 0.10);
    let names = std::env::var("IW_BENCH_SETS").unwrap_or_else(|_| "mixture,uniform".into());
    let mut results = Vec::new();
    for name in names.split(',') {
        let set = match name.trim() {
            "mixture" => Set::mixture(sigma),
            "uniform" => Set::uniform(),
            other => panic!("unknown set {other:?} (mixture, uniform)"),
        };
        eprintln!("{}: {n} vectors", set.name);
        results.push(run_set(&set, n, nq, params, &efs));
    }
    print(&results, n, params);
}
