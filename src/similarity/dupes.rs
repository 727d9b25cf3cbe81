//! Duplicate groups: byte-identical files (same content hash) and near duplicates (perceptual
//! hashes within a Hamming distance, or embeddings within a cosine distance, whichever the
//! caller measures: [`find`], [`find_with`]), joined into connected components, each
//! with a suggested keeper. Pairs the user marked "not a duplicate" (by content, so renames
//! do not matter) are never reported.

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::path::Path;

use super::hamming::{near_pairs, Hashes};

/// The default distance of each method, in bits (docs/similarity.md: chosen on the labelled
/// set of `benches/dupes_accuracy.py`).
pub const DEFAULT_DISTANCES: &[(&str, u32)] = &[
    ("phash", 14),
    ("phash16", 80),
    ("dhash", 10),
    ("dhash16", 56),
    ("ahash", 8),
    ("ahash16", 40),
    ("blockhash", 6),
    ("blockhash16", 40),
];

/// The default distance of a method (0 for an unknown one).
pub fn default_distance(method: &str) -> u32 {
    DEFAULT_DISTANCES
        .iter()
        .find(|(m, _)| *m == method)
        .map_or(0, |(_, d)| *d)
}

/// Where a project (its state folder, `.iw-lab`) remembers pairs that are not duplicates.
pub fn not_duplicates_file(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("not-duplicates.jsonl")
}

/// One image to compare.
#[derive(Debug, Clone)]
pub struct Item {
    /// Path relative to the folder, with `/` separators.
    pub file: String,
    /// Content hash (blake3 of the bytes).
    pub content: String,
    /// The perceptual hash, as 64-bit words (empty when near pairs are measured otherwise).
    pub hash: Vec<u64>,
    /// Width × height.
    pub pixels: u64,
    pub format: Option<String>,
    /// Whether the file carries generation metadata.
    pub has_meta: bool,
}

impl Item {
    /// A scanned image as a candidate, with its perceptual hash (empty when near pairs are
    /// measured otherwise).
    pub fn of(img: &crate::dataset::ImageEntry, hash: Vec<u64>) -> Item {
        Item {
            file: img.rel.clone(),
            content: img.hash.clone(),
            hash,
            pixels: u64::from(img.width.unwrap_or(0)) * u64::from(img.height.unwrap_or(0)),
            format: img.format.clone(),
            has_meta: img.meta.is_some(),
        }
    }
}

/// A pair of items (`a < b`) and their distance (bits for hashes, cosine distance for
/// embeddings); `exact` when the bytes are the same.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub a: usize,
    pub b: usize,
    pub distance: f64,
    pub exact: bool,
}

/// A connected group of duplicates.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Items, sorted.
    pub items: Vec<usize>,
    pub keeper: usize,
    /// Every item has the same bytes.
    pub exact: bool,
    /// The largest distance of a pair inside the group.
    pub max_distance: f64,
}

/// Pairs and groups of [`find`].
#[derive(Debug, Default)]
pub struct Found {
    pub pairs: Vec<Pair>,
    pub groups: Vec<Group>,
    /// Pairs left out because they were marked "not a duplicate".
    pub dismissed: usize,
    /// Every pair is listed (else copies are represented by their first file; see [`find`]).
    pub complete: bool,
}

/// Above this many pairs, copies are represented by their first file.
pub const MAX_PAIRS: usize = 1_000_000;

/// Finds every pair within `max_distance` and the groups they form. Items must all have
/// hashes of one length.
pub fn find(items: &[Item], max_distance: u32, not_dupes: &NotDuplicates) -> Found {
    find_with(items, not_dupes, |firsts| {
        let words = items.first().map_or(1, |i| i.hash.len().max(1));
        let flat: Vec<u64> = firsts
            .iter()
            .flat_map(|&i| {
                let h = &items[i].hash;
                (0..words).map(move |w| h.get(w).copied().unwrap_or(0))
            })
            .collect();
        near_pairs(&Hashes { flat: &flat, words }, max_distance)
            .into_iter()
            .map(|(a, b, d)| (a as usize, b as usize, f64::from(d)))
            .collect()
    })
}

/// [`find`] with near pairs measured by `near`: given the first item of each distinct
/// content, it returns the pairs of those (indices into its argument) that are near, with
/// their distances.
pub fn find_with(
    items: &[Item],
    not_dupes: &NotDuplicates,
    near: impl FnOnce(&[usize]) -> Vec<(usize, usize, f64)>,
) -> Found {
    // One hash per distinct content.
    let mut contents: Vec<&str> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut by_content: HashMap<&str, usize> = HashMap::new();
    for (i, it) in items.iter().enumerate() {
        let c = *by_content.entry(&it.content).or_insert_with(|| {
            contents.push(&it.content);
            members.push(Vec::new());
            contents.len() - 1
        });
        members[c].push(i);
    }
    let firsts: Vec<usize> = members.iter().map(|m| m[0]).collect();
    let mut found = Found::default();
    let near: Vec<(usize, usize, f64)> = near(&firsts)
        .into_iter()
        .filter(|&(ca, cb, _)| {
            let mark = not_dupes.contains(contents[ca], contents[cb]);
            found.dismissed += mark as usize;
            !mark
        })
        .collect();
    // Every pair of files, unless copies would make that too many (a thousand identical
    // black images are half a million pairs): then each content is represented by its first
    // file, which every other copy pairs with.
    let complete: usize = members
        .iter()
        .map(|m| m.len() * (m.len() - 1) / 2)
        .sum::<usize>()
        + near
            .iter()
            .map(|&(a, b, _)| members[a].len() * members[b].len())
            .sum::<usize>();
    found.complete = complete <= MAX_PAIRS;
    let pair = |a: usize, b: usize, distance: f64, exact: bool| Pair {
        a: a.min(b),
        b: a.max(b),
        distance,
        exact,
    };
    for m in &members {
        for (x, &a) in m.iter().enumerate() {
            let others = if found.complete {
                &m[x + 1..]
            } else if x == 0 {
                &m[1..]
            } else {
                &[][..]
            };
            found
                .pairs
                .extend(others.iter().map(|&b| pair(a, b, 0.0, true)));
        }
    }
    for (ca, cb, d) in near {
        if found.complete {
            for &a in &members[ca] {
                found
                    .pairs
                    .extend(members[cb].iter().map(|&b| pair(a, b, d, false)));
            }
        } else {
            found
                .pairs
                .push(pair(members[ca][0], members[cb][0], d, false));
        }
    }
    found.pairs.sort_by_key(|p| (p.a, p.b));
    found.groups = groups(items, &found.pairs);
    found
}

/// The connected components of `pairs`, each with its keeper and largest distance.
fn groups(items: &[Item], pairs: &[Pair]) -> Vec<Group> {
    let comps = super::components(items.len(), pairs.iter().map(|p| (p.a as u32, p.b as u32)));
    let mut group_of = vec![usize::MAX; items.len()];
    for (g, comp) in comps.iter().enumerate() {
        for &i in comp {
            group_of[i as usize] = g;
        }
    }
    let mut max_d = vec![0f64; comps.len()];
    for p in pairs {
        let g = group_of[p.a];
        max_d[g] = max_d[g].max(p.distance);
    }
    comps
        .into_iter()
        .zip(max_d)
        .map(|(comp, max_distance)| {
            let members: Vec<usize> = comp.into_iter().map(|i| i as usize).collect();
            let first = &items[members[0]].content;
            Group {
                keeper: keeper(items, &members),
                exact: members.iter().all(|&i| &items[i].content == first),
                max_distance,
                items: members,
            }
        })
        .collect()
}

/// Formats by preference for keeping: lossless before lossy.
fn format_rank(format: Option<&str>) -> u8 {
    match format {
        Some("png") => 0,
        Some("tiff") => 1,
        Some("bmp") => 2,
        Some("webp") => 3,
        Some("jpeg") => 4,
        Some("gif") => 5,
        _ => 6,
    }
}

/// The item to keep: the most pixels, then PNG over JPEG (lossless first), then the one with
/// generation metadata, then the shortest path, then the first by name.
pub fn keeper(items: &[Item], group: &[usize]) -> usize {
    *group
        .iter()
        .min_by(|&&a, &&b| {
            let (x, y) = (&items[a], &items[b]);
            y.pixels
                .cmp(&x.pixels)
                .then(format_rank(x.format.as_deref()).cmp(&format_rank(y.format.as_deref())))
                .then(y.has_meta.cmp(&x.has_meta))
                .then(x.file.len().cmp(&y.file.len()))
                .then(x.file.cmp(&y.file))
        })
        .expect("a group is never empty")
}

/// The pairs the user marked "not a duplicate", by content hash (a JSON Lines file in the
/// project: `{"a": HASH, "b": HASH, "files": [A, B], "at": TIME}`).
#[derive(Debug, Default)]
pub struct NotDuplicates {
    pairs: BTreeSet<(String, String)>,
    /// Lines that could not be read (skipped).
    pub skipped: usize,
}

fn ordered(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl NotDuplicates {
    /// Reads the file (none yet: an empty list). Unreadable lines are skipped and counted.
    pub fn load(path: &Path) -> std::io::Result<NotDuplicates> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e),
        };
        let mut out = Self::default();
        for line in bytes.split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let v: Option<serde_json::Value> = serde_json::from_slice(line).ok();
            match v
                .as_ref()
                .and_then(|v| Some((v.get("a")?.as_str()?, v.get("b")?.as_str()?)))
            {
                Some((a, b)) => {
                    out.pairs.insert(ordered(a, b));
                }
                None => out.skipped += 1,
            }
        }
        Ok(out)
    }

    pub fn contains(&self, a: &str, b: &str) -> bool {
        !self.pairs.is_empty() && self.pairs.contains(&ordered(a, b))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Appends a pair to the file (one line, written at once and synced).
    pub fn remember(
        path: &Path,
        a: (&str, &str),
        b: (&str, &str),
        at: &str,
    ) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let line = serde_json::json!({"a": a.0, "b": b.0, "files": [a.1, b.1], "at": at});
        // A line cut short (a crash mid-write elsewhere) must not swallow this one.
        let ends_cleanly = match std::fs::read(path) {
            Ok(bytes) => bytes.last().is_none_or(|&b| b == b'\n'),
            Err(_) => true,
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let lead = if ends_cleanly { "" } else { "\n" };
        f.write_all(format!("{lead}{line}\n").as_bytes())?;
        f.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(file: &str, content: &str, hash: u64, pixels: u64, format: &str) -> Item {
        Item {
            file: file.into(),
            content: content.into(),
            hash: vec![hash],
            pixels,
            format: Some(format.into()),
            has_meta: false,
        }
    }

    #[test]
    fn groups_exact_and_near_duplicates_with_keepers() {
        let items = vec![
            item("a.jpg", "c1", 0b1111, 100, "jpeg"),
            item("b.png", "c2", 0b0111, 100, "png"),
            item("copy/a.jpg", "c1", 0b1111, 100, "jpeg"),
            item("far.png", "c3", u64::MAX, 500, "png"),
            item("x.png", "c4", 0xF0F0_0000_0000_0000, 10, "png"),
            item("y.png", "c5", 0xF0F0_0000_0000_0000, 10, "png"),
        ];
        let mut not = NotDuplicates::default();
        not.pairs.insert(ordered("c4", "c5"));
        let f = find(&items, 2, &not);
        assert_eq!(f.dismissed, 1);
        assert_eq!(f.groups.len(), 1);
        let g = &f.groups[0];
        assert_eq!(g.items, vec![0, 1, 2]);
        assert_eq!(g.keeper, 1, "same pixels: PNG over JPEG");
        assert!(!g.exact);
        assert_eq!(g.max_distance, 1.0);
        assert!(f.pairs.iter().any(|p| p.a == 0 && p.b == 2 && p.exact));
    }

    #[test]
    fn not_duplicates_survive_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nd.jsonl");
        std::fs::write(&p, b"garbage\n\xff\xfe\n").unwrap();
        NotDuplicates::remember(&p, ("h1", "a.png"), ("h2", "b\u{1F600}.png"), "now").unwrap();
        let nd = NotDuplicates::load(&p).unwrap();
        assert!(nd.contains("h2", "h1"));
        assert_eq!(nd.skipped, 2);
    }
}
