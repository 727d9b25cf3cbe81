//! An approximate nearest-neighbour index of unit-length vectors, kept in one file: an HNSW
//! graph (usearch) over `f16` copies of the vectors, by cosine distance, under caller-chosen
//! `u64` keys (the caller uses the first 8 bytes of an image's content hash).
//!
//! Built incrementally and resumably: [`VectorIndex::add_missing`] adds only the keys the
//! index lacks, in parallel, and saves a checkpoint every so many vectors, so a build that
//! was killed continues from its last checkpoint. Every save goes through [`crate::atomic`]
//! (a temporary file beside the index, fsynced, renamed over it), so a `kill -9` at any
//! moment leaves the previous checkpoint or the new one.
//!
//! The file is usearch's own format followed by a 48-byte trailer (`IWVIDX01`, the length of
//! what precedes it, and its BLAKE3 hash; usearch ignores trailing bytes). Opening checks the
//! trailer, so a truncated or damaged file is an error that names it, never a crash inside
//! the C++ loader; iw-lab does not rebuild it silently (the caller decides, since a rebuild
//! may take a while). Exact search for small collections is [`super::exact`].

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

/// The graph's shape and search effort. Defaults measured by `benches/vector_index.rs`
/// (1,000,000 clustered 512-d vectors: recall@10 0.95 at p50 6.6 ms; on vectors with no
/// cluster structure a graph needs far more effort, which is why single queries on large sets
/// use `super::pq` instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexParams {
    /// Neighbours per node in the graph (HNSW `M`; twice this on the base layer). Fixed when
    /// the file is created: an existing file keeps its own.
    pub connectivity: usize,
    /// Candidates considered when linking a new vector (`efConstruction`).
    pub expansion_add: usize,
    /// Candidates considered per search (`ef`); raised to `k` when smaller.
    pub expansion_search: usize,
}

impl Default for IndexParams {
    fn default() -> Self {
        // Measured (benches/README.md, 1M × 512-d clustered): recall@10 0.950 at p50 6.6 ms.
        IndexParams {
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 1024,
        }
    }
}

/// Marks the end of an iw-lab index file (then the payload length and its BLAKE3 hash).
const MAGIC: &[u8; 8] = b"IWVIDX01";

/// Bytes after usearch's payload: magic, payload length (u64 little-endian), BLAKE3 hash.
const TRAILER: u64 = 8 + 8 + 32;

/// Vectors added between progress reports (and the finest a checkpoint can fall).
const STEP: usize = 4_096;

/// One index file, loaded in memory; owns the usearch index and where it is saved.
pub struct VectorIndex {
    index: Index,
    path: PathBuf,
    dim: usize,
    params: IndexParams,
}

impl VectorIndex {
    /// Loads the index at `path`, or starts an empty one there when no file exists (nothing is
    /// written until the first checkpoint). Removes temporary files that a killed save left
    /// beside it.
    ///
    /// Errors, naming the file, when it holds vectors of another dimension, was not written
    /// by this module, or is truncated or corrupt (delete it to rebuild).
    pub fn open_or_create(path: &Path, dim: usize, params: IndexParams) -> Result<VectorIndex> {
        if dim == 0 {
            bail!("vectors must have at least one dimension");
        }
        let index = Index::new(&options(dim, &params))
            .map_err(|e| anyhow!("creating a vector index for {}: {e}", path.display()))?;
        let mut this = VectorIndex {
            index,
            path: path.to_path_buf(),
            dim,
            params,
        };
        if let Some(dir) = path.parent().filter(|d| d.is_dir()) {
            crate::atomic::clean_stale_temps(dir);
        }
        match std::fs::metadata(path) {
            Ok(_) => this.load()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        this.set_expansion_search(params.expansion_search);
        this.index.change_expansion_add(params.expansion_add);
        this.reserve(this.len())?;
        Ok(this)
    }

    /// Checks the trailer and header, then loads the file into memory.
    fn load(&mut self) -> Result<()> {
        let shown = self.path.display().to_string();
        verify_trailer(&self.path)?;
        let name = utf8(&self.path)?;
        let meta = Index::metadata(name).map_err(|e| anyhow!("{shown}: unreadable header: {e}"))?;
        if meta.dimensions as usize != self.dim {
            bail!(
                "{shown} holds {}-dimensional vectors, not {}; delete it to rebuild the index",
                meta.dimensions,
                self.dim
            );
        }
        if meta.metric != MetricKind::Cos || meta.quantization != ScalarKind::F16 || meta.multi {
            bail!("{shown} is not a cosine f16 index written by iw-lab; delete it to rebuild");
        }
        self.index
            .load(name)
            .map_err(|e| anyhow!("{shown}: cannot load the vector index: {e}"))
    }

    /// Adds the vectors whose keys the index lacks (`vectors` is `keys.len() × dim`,
    /// row-major; a key repeated in `keys` is added once, from its first row), in parallel.
    /// Saves a checkpoint after every `checkpoint_every` added vectors (rounded to blocks of
    /// 4,096; 0: only at the end) and at the end when anything was added. `progress` is told
    /// how many have been added so far. Returns how many were added.
    ///
    /// Errors when the shapes disagree, a vector holds a non-finite value, a key is
    /// `u64::MAX` (usearch's free-slot marker), or a save fails; what was saved stays valid.
    pub fn add_missing(
        &mut self,
        keys: &[u64],
        vectors: &[f32],
        checkpoint_every: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<usize> {
        self.check_batch(keys, vectors)?;
        let todo = self.missing(keys);
        if todo.is_empty() {
            return Ok(0);
        }
        self.reserve(self.len() + todo.len())?;
        let every = match checkpoint_every {
            0 => todo.len(),
            n => n.div_ceil(STEP) * STEP,
        };
        let mut added = 0;
        for part in todo.chunks(every) {
            for step in part.chunks(STEP) {
                self.add_rows(step, keys, vectors)?;
                added += step.len();
                progress(added);
            }
            self.save()?;
        }
        Ok(added)
    }

    /// The shape, value and key checks of [`VectorIndex::add_missing`].
    fn check_batch(&self, keys: &[u64], vectors: &[f32]) -> Result<()> {
        if vectors.len() != keys.len() * self.dim {
            bail!(
                "{} keys need {} values of {}-dimensional vectors, got {}",
                keys.len(),
                keys.len() * self.dim,
                self.dim,
                vectors.len()
            );
        }
        if let Some(i) = keys.iter().position(|&k| k == u64::MAX) {
            bail!("key {} (row {i}) is reserved by the index", u64::MAX);
        }
        let bad = vectors
            .par_chunks(self.dim)
            .position_any(|v| v.iter().any(|x| !x.is_finite()));
        if let Some(i) = bad {
            bail!(
                "the vector for key {} (row {i}) holds a non-finite value",
                keys[i]
            );
        }
        Ok(())
    }

    /// Rows of `keys` not yet in the index, first occurrence of each key only.
    fn missing(&self, keys: &[u64]) -> Vec<usize> {
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        (0..keys.len())
            .filter(|&i| seen.insert(keys[i]) && !self.index.contains(keys[i]))
            .collect()
    }

    /// Adds `rows` of the batch in parallel (capacity reserved beforehand).
    fn add_rows(&self, rows: &[usize], keys: &[u64], vectors: &[f32]) -> Result<()> {
        rows.par_iter().try_for_each(|&i| {
            let vector = &vectors[i * self.dim..(i + 1) * self.dim];
            self.index.add(keys[i], vector).map_err(|e| {
                anyhow!(
                    "adding key {} to the vector index {}: {e}",
                    keys[i],
                    self.path.display()
                )
            })
        })
    }

    /// Room for `capacity` vectors and a search or insertion from every thread at once.
    fn reserve(&self, capacity: usize) -> Result<()> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .max(rayon::current_num_threads());
        self.index
            .reserve_capacity_and_threads(capacity, threads)
            .map_err(|e| anyhow!("reserving room for {capacity} vectors: {e}"))
    }

    /// Saves the index to its file atomically and durably (a checkpoint).
    pub fn save(&self) -> Result<()> {
        let shown = self.path.display();
        let staged = crate::atomic::stage_new(&self.path, &[], self.path.exists())
            .with_context(|| format!("saving {shown}"))?;
        let tmp = utf8(staged.path())?;
        self.index
            .save(tmp)
            .map_err(|e| anyhow!("saving the vector index to {tmp}: {e}"))?;
        append_trailer(staged.path()).with_context(|| format!("saving {shown}"))?;
        staged
            .commit_written()
            .with_context(|| format!("saving {shown}"))
    }

    /// The `k` nearest keys to `query` and their cosine distances (in `[0, 2]`), nearest
    /// first (ties by key). Approximate: see [`IndexParams::expansion_search`].
    ///
    /// Searches may run from as many threads at once as the machine has cores (or rayon
    /// threads, if more); errors when `query` is not `dim` long or holds a non-finite value.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<(u64, f32)>> {
        if query.len() != self.dim {
            bail!(
                "the query has {} values but {} holds {}-dimensional vectors",
                query.len(),
                self.path.display(),
                self.dim
            );
        }
        if query.iter().any(|x| !x.is_finite()) {
            bail!("the query holds a non-finite value");
        }
        if k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let found = self
            .index
            .search(query, k)
            .map_err(|e| anyhow!("searching {}: {e}", self.path.display()))?;
        let mut out: Vec<(u64, f32)> = found
            .keys
            .into_iter()
            .zip(found.distances)
            .map(|(key, d)| (key, if d.is_nan() { 2.0 } else { d.clamp(0.0, 2.0) }))
            .collect();
        out.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Changes the search effort (for this session; not saved).
    pub fn set_expansion_search(&mut self, expansion: usize) {
        self.params.expansion_search = expansion;
        self.index.change_expansion_search(expansion);
    }

    /// The number of vectors held.
    pub fn len(&self) -> usize {
        self.index.size()
    }

    /// Whether the index holds no vectors.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` has a vector in the index.
    pub fn contains(&self, key: u64) -> bool {
        self.index.contains(key)
    }

    /// The vectors' dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The parameters in use (the file's own connectivity once loaded).
    pub fn params(&self) -> IndexParams {
        IndexParams {
            connectivity: self.index.connectivity(),
            ..self.params
        }
    }

    /// The file the index is saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The SIMD kernel usearch picked for the distances (`serial` when none), for reports.
    pub fn hardware_acceleration(&self) -> String {
        self.index.hardware_acceleration()
    }
}

fn options(dim: usize, params: &IndexParams) -> IndexOptions {
    IndexOptions {
        dimensions: dim,
        metric: MetricKind::Cos,
        quantization: ScalarKind::F16,
        connectivity: params.connectivity,
        expansion_add: params.expansion_add,
        expansion_search: params.expansion_search,
        multi: false,
    }
}

/// usearch takes paths as UTF-8 strings.
fn utf8(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| anyhow!("{}: the vector index needs a UTF-8 path", path.display()))
}

/// Appends the trailer (magic, payload length, BLAKE3 of the payload) to what usearch wrote.
fn append_trailer(path: &Path) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)?;
    let len = file.metadata()?.len();
    let hash = hash_prefix(&mut file, len)?;
    let mut trailer = Vec::with_capacity(TRAILER as usize);
    trailer.extend_from_slice(MAGIC);
    trailer.extend_from_slice(&len.to_le_bytes());
    trailer.extend_from_slice(hash.as_bytes());
    file.write_all(&trailer)
}

/// Checks that `path` ends with a trailer whose length and hash match what precedes it.
fn verify_trailer(path: &Path) -> Result<()> {
    let shown = path.display();
    let hint = "delete it to rebuild the index";
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {shown}"))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading {shown}"))?
        .len();
    let mut trailer = [0u8; TRAILER as usize];
    if len < TRAILER {
        bail!("{shown} is truncated or not an iw-lab vector index ({len} bytes); {hint}");
    }
    file.seek(SeekFrom::Start(len - TRAILER))
        .and_then(|_| file.read_exact(&mut trailer))
        .with_context(|| format!("reading {shown}"))?;
    let payload = u64::from_le_bytes(trailer[8..16].try_into().unwrap_or_default());
    if &trailer[..8] != MAGIC || payload != len - TRAILER {
        bail!("{shown} is truncated or not an iw-lab vector index; {hint}");
    }
    let hash = hash_prefix(&mut file, payload).with_context(|| format!("reading {shown}"))?;
    if hash.as_bytes()[..] != trailer[16..] {
        bail!("{shown} is corrupt (its checksum does not match); {hint}");
    }
    Ok(())
}

/// BLAKE3 of the first `len` bytes of `file`, read a mebibyte at a time.
fn hash_prefix(file: &mut std::fs::File, len: u64) -> std::io::Result<blake3::Hash> {
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        file.read_exact(&mut buf[..want])?;
        hasher.update(&buf[..want]);
        left -= want as u64;
    }
    Ok(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::similarity::exact;

    fn unit_rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let mut out = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let row: Vec<f32> = (0..dim).map(|_| next()).collect();
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            out.extend(row.iter().map(|x| x / norm));
        }
        out
    }

    fn keys(n: usize) -> Vec<u64> {
        (0..n as u64).map(|i| i * 7 + 1).collect()
    }

    fn params() -> IndexParams {
        IndexParams {
            connectivity: 16,
            expansion_add: 64,
            expansion_search: 128,
        }
    }

    #[test]
    fn finds_what_exact_search_finds() {
        let (n, dim) = (3_000, 48);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vectors.usearch");
        let data = unit_rows(n, dim, 1);
        let mut idx = VectorIndex::open_or_create(&path, dim, params()).unwrap();
        assert_eq!(idx.add_missing(&keys(n), &data, 1_000, |_| {}).unwrap(), n);
        let idx = VectorIndex::open_or_create(&path, dim, params()).unwrap();
        assert_eq!(idx.len(), n);
        let queries = unit_rows(100, dim, 2);
        let mut hits = 0;
        for q in queries.chunks_exact(dim) {
            let want: Vec<u64> = exact::top_k(&data, dim, q, 10)
                .unwrap()
                .iter()
                .map(|r| r.0 as u64 * 7 + 1)
                .collect();
            let got = idx.search(q, 10).unwrap();
            assert!(got.windows(2).all(|w| w[0].1 <= w[1].1));
            hits += got.iter().filter(|g| want.contains(&g.0)).count();
        }
        let recall = hits as f64 / 1_000.0;
        assert!(recall >= 0.95, "recall@10 {recall}");
        let own = idx.search(&data[5 * dim..6 * dim], 1).unwrap();
        assert_eq!(own[0].0, 36);
        assert!(own[0].1 < 1e-3, "{own:?}");
    }

    #[test]
    fn a_resumed_build_adds_only_what_is_missing() {
        let (n, dim) = (2_000, 16);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.usearch");
        let (data, keys) = (unit_rows(n, dim, 3), keys(n));
        let half = n / 2;
        let mut idx = VectorIndex::open_or_create(&path, dim, params()).unwrap();
        idx.add_missing(&keys[..half], &data[..half * dim], 0, |_| {})
            .unwrap();
        // Killed after adding more but before its next checkpoint.
        let rows: Vec<usize> = (half..half + 300).collect();
        idx.reserve(n).unwrap();
        idx.add_rows(&rows, &keys, &data).unwrap();
        drop(idx);
        let mut idx = VectorIndex::open_or_create(&path, dim, params()).unwrap();
        assert_eq!(idx.len(), half);
        assert_eq!(idx.add_missing(&keys, &data, 0, |_| {}).unwrap(), n - half);
        assert_eq!(idx.len(), n);
        assert!(keys.iter().all(|&k| idx.contains(k)));
        assert_eq!(idx.add_missing(&keys, &data, 0, |_| {}).unwrap(), 0);
        // A key repeated within one batch is added once.
        let twice = [9_999, 9_999];
        let v = [&data[..dim], &data[..dim]].concat();
        assert_eq!(idx.add_missing(&twice, &v, 0, |_| {}).unwrap(), 1);
        let idx = VectorIndex::open_or_create(&path, dim, params()).unwrap();
        assert_eq!(idx.len(), n + 1);
    }

    #[test]
    fn checkpoints_are_saved_during_the_build() {
        let (n, dim) = (10_000, 4);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.usearch");
        let data = unit_rows(n, dim, 4);
        let mut idx = VectorIndex::open_or_create(&path, dim, params()).unwrap();
        let mut on_disk = Vec::new();
        idx.add_missing(&keys(n), &data, STEP, |done| {
            let saved = path.exists().then(|| {
                VectorIndex::open_or_create(&path, dim, params())
                    .unwrap()
                    .len()
            });
            on_disk.push((done, saved));
        })
        .unwrap();
        let want = vec![(4_096, None), (8_192, Some(4_096)), (n, Some(8_192))];
        assert_eq!(on_disk, want);
        let idx = VectorIndex::open_or_create(&path, dim, params()).unwrap();
        assert_eq!(idx.len(), n);
    }

    /// Run in a child process: builds with a checkpoint every 4,096 vectors until killed.
    fn build_until_killed(path: &Path) {
        let (n, dim) = (40_000, 32);
        let data = unit_rows(n, dim, 6);
        let mut idx = VectorIndex::open_or_create(path, dim, params()).unwrap();
        idx.add_missing(&keys(n), &data, STEP, |_| {}).unwrap();
    }

    #[test]
    fn a_build_killed_at_any_moment_leaves_a_checkpoint() {
        const CHILD: &str = "IW_LAB_INDEX_KILL_TEST";
        if let Some(path) = std::env::var_os(CHILD) {
            return build_until_killed(Path::new(&path));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.usearch");
        let exe = std::env::current_exe().unwrap();
        let name = "similarity::index::tests::a_build_killed_at_any_moment_leaves_a_checkpoint";
        let mut lens = Vec::new();
        for delay_ms in [150, 400, 700, 1_000, 1_300, 1_600] {
            let mut child = std::process::Command::new(&exe)
                .args([name, "--exact", "--test-threads=1"])
                .env(CHILD, &path)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            if path.exists() {
                let idx = VectorIndex::open_or_create(&path, 32, params()).unwrap();
                assert!(
                    idx.len().is_multiple_of(STEP) || idx.len() == 40_000,
                    "{}",
                    idx.len()
                );
                lens.push(idx.len());
            }
        }
        assert!(lens.windows(2).all(|w| w[0] <= w[1]), "{lens:?}");
    }

    #[test]
    fn a_file_of_another_dimension_or_damaged_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.usearch");
        let mut idx = VectorIndex::open_or_create(&path, 8, params()).unwrap();
        idx.add_missing(&keys(200), &unit_rows(200, 8, 5), 0, |_| {})
            .unwrap();
        let err = VectorIndex::open_or_create(&path, 16, params())
            .err()
            .unwrap();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("v.usearch") && msg.contains("8-dimensional"),
            "{msg}"
        );
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        bad[good.len() / 2] ^= 0x40;
        std::fs::write(&path, &bad).unwrap();
        let msg = format!(
            "{:#}",
            VectorIndex::open_or_create(&path, 8, params())
                .err()
                .unwrap()
        );
        assert!(
            msg.contains("v.usearch") && msg.contains("corrupt"),
            "{msg}"
        );
        for cut in [
            &good[..good.len() - 1],
            &good[..100],
            b"hello".as_slice(),
            b"".as_slice(),
        ] {
            std::fs::write(&path, cut).unwrap();
            let msg = format!(
                "{:#}",
                VectorIndex::open_or_create(&path, 8, params())
                    .err()
                    .unwrap()
            );
            assert!(
                msg.contains("v.usearch") && msg.contains("truncated"),
                "{msg}"
            );
        }
        std::fs::write(&path, &good).unwrap();
        assert_eq!(
            VectorIndex::open_or_create(&path, 8, params())
                .unwrap()
                .len(),
            200
        );
    }

    #[test]
    fn bad_input_is_an_error_and_leftovers_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.usearch");
        let stale = dir.path().join(".iw-lab-4000000000-abc.tmp");
        std::fs::write(&stale, b"half a save").unwrap();
        let mut idx = VectorIndex::open_or_create(&path, 2, params()).unwrap();
        assert!(!stale.exists());
        assert!(idx.search(&[1.0, 0.0], 5).unwrap().is_empty());
        assert!(idx.add_missing(&[1], &[1.0], 0, |_| {}).is_err());
        assert!(idx.add_missing(&[1], &[f32::NAN, 0.0], 0, |_| {}).is_err());
        assert!(idx
            .add_missing(&[u64::MAX], &[1.0, 0.0], 0, |_| {})
            .is_err());
        assert!(!path.exists(), "nothing added, nothing saved");
        idx.add_missing(&[1, 2], &[1.0, 0.0, 0.0, 1.0], 0, |_| {})
            .unwrap();
        assert!(idx.search(&[1.0], 1).is_err());
        assert!(idx.search(&[f32::INFINITY, 0.0], 1).is_err());
        assert!(idx.search(&[1.0, 0.0], 0).unwrap().is_empty());
        let got = idx.search(&[1.0, 0.0], 10).unwrap();
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!(VectorIndex::open_or_create(&path, 0, params()).is_err());
    }
}
