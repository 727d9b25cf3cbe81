//! Reading ground-truth tags for a dataset's images, from each kind of source.
//!
//! Every source goes through the same normalisation (`crate::tags`) and the dataset's alias
//! table, so tags from a `.txt` sidecar, a JSON sidecar, a labels file and a model's label list
//! compare equal when they mean the same tag. An image with no entry in a source is
//! *unlabelled* there (and not scored); an empty sidecar is a labelled image with no tags.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{Dataset, GroundTruth};
use crate::tags::{self, Aliases};
use crate::words::GroundTruthKind;

use super::ImageEntry;

/// Ground truth for one source: per image (same order as the images), `None` when unlabelled.
#[derive(Debug)]
pub struct Loaded {
    pub tags: Vec<Option<Vec<String>>>,
    /// Tags that must not be predicted (a prompt source's negative prompt), per image.
    pub negative: Option<Vec<Option<Vec<String>>>>,
    /// Problems worth reporting: (file, reason).
    pub problems: Vec<(String, String)>,
}

/// Loads one ground-truth source for `images`.
pub fn load(ds: &Dataset, gt: &GroundTruth, images: &[ImageEntry]) -> Loaded {
    match gt.kind {
        GroundTruthKind::Txt | GroundTruthKind::Json => load_sidecars(ds, gt, images),
        GroundTruthKind::Labels => load_labels_file(ds, gt, images),
        GroundTruthKind::Prompt => load_prompts(ds, gt, images),
    }
}

/// The name under which a source's must-not-predict tags are stored in `ground_truth`.
pub fn negative_source(name: &str) -> String {
    format!("{name}.negative")
}

/// Positive tags of one image's prompts (main and character/area prompts), and the negative
/// prompt's tags minus those; `None` when the image has no prompt or its prompt asks for no
/// tag at all (a caption-only prompt is not scored as "no tags").
pub fn prompt_tags(
    meta: &super::ImageMeta,
    min_weight: f64,
    aliases: &Aliases,
) -> Option<(Vec<String>, Vec<String>)> {
    use crate::prompt::{parse, Dialect};
    let prompt = meta.prompt.as_deref()?;
    let dialect = Dialect::for_generator(meta.generator.as_deref().unwrap_or(""));
    let mut positive = Vec::new();
    for text in std::iter::once(prompt).chain(meta.extra_prompts.iter().map(String::as_str)) {
        let parsed = parse(text, dialect);
        positive.extend(
            parsed
                .tags
                .into_iter()
                .filter(|t| t.weight > 0.0 && t.weight >= min_weight)
                .map(|t| t.tag),
        );
    }
    let positive = finish(positive, aliases);
    if positive.is_empty() {
        return None;
    }
    let negative = meta
        .negative_prompt
        .as_deref()
        .map(|text| {
            let tags = parse(text, dialect)
                .tags
                .into_iter()
                .filter(|t| t.weight > 0.0)
                .map(|t| t.tag)
                .collect();
            finish(tags, aliases)
                .into_iter()
                .filter(|t| !positive.contains(t))
                .collect()
        })
        .unwrap_or_default();
    Some((positive, negative))
}

fn load_prompts(ds: &Dataset, gt: &GroundTruth, images: &[ImageEntry]) -> Loaded {
    let mut tags = Vec::with_capacity(images.len());
    let mut negative = Vec::with_capacity(images.len());
    for img in images {
        match img
            .meta
            .as_deref()
            .and_then(|m| prompt_tags(m, gt.min_weight, &ds.aliases))
        {
            Some((pos, neg)) => {
                tags.push(Some(pos));
                negative.push(Some(neg));
            }
            None => {
                tags.push(None);
                negative.push(None);
            }
        }
    }
    Loaded {
        tags,
        negative: gt.negative.then_some(negative),
        problems: Vec::new(),
    }
}

fn finish(list: Vec<String>, aliases: &Aliases) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    list.into_iter()
        .map(|t| aliases.apply(t))
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

/// Sidecar candidates for an image: `stem.ext` first, then `name.png.ext`.
pub fn sidecar_candidates(
    root: &Path,
    dir: Option<&Path>,
    rel: &str,
    extension: &str,
) -> Vec<PathBuf> {
    let base = dir.unwrap_or(root).join(super::names::rel_path(rel));
    let mut out = vec![base.with_extension(extension.trim_start_matches('.'))];
    let mut full = base.into_os_string();
    full.push(extension);
    out.push(PathBuf::from(full));
    out
}

fn load_sidecars(ds: &Dataset, gt: &GroundTruth, images: &[ImageEntry]) -> Loaded {
    let mut problems = Vec::new();
    let tags = images
        .iter()
        .map(|img| {
            let path = sidecar_candidates(&ds.root, gt.dir.as_deref(), &img.rel, &gt.extension)
                .into_iter()
                .find(|p| p.is_file())?;
            let text = match std::fs::read(&path) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) => {
                    problems.push((
                        path.display().to_string(),
                        format!("cannot read ground truth: {e}"),
                    ));
                    return None;
                }
            };
            let list = match gt.kind {
                GroundTruthKind::Json => match parse_json_tags(&text) {
                    Ok(l) => l,
                    Err(reason) => {
                        problems.push((path.display().to_string(), reason));
                        return None;
                    }
                },
                _ => tags::parse_list(&text, &gt.separator),
            };
            Some(finish(list, &ds.aliases))
        })
        .collect();
    Loaded {
        tags,
        negative: None,
        problems,
    }
}

/// Tags from a JSON document: `{"tags": [..]}`, `{"tags": {"tag": score}}` (any score counts),
/// `{"tags": "a, b"}`, or a bare list.
pub fn parse_json_tags(text: &str) -> Result<Vec<String>, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let tags = match &v {
        serde_json::Value::Object(o) => o.get("tags").ok_or("JSON has no `tags` key")?,
        other => other,
    };
    json_tag_list(tags)
}

fn json_tag_list(v: &serde_json::Value) -> Result<Vec<String>, String> {
    use serde_json::Value;
    let raw: Vec<String> = match v {
        Value::Array(a) => a
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        Value::Object(o) => o.keys().cloned().collect(),
        Value::String(s) => return Ok(tags::parse_list(s, ",")),
        _ => return Err("`tags` must be a list, an object of scores, or a string".into()),
    };
    let mut seen = std::collections::HashSet::new();
    Ok(raw
        .iter()
        .filter_map(|t| tags::normalise(t))
        .filter(|t| seen.insert(t.clone()))
        .collect())
}

fn load_labels_file(ds: &Dataset, gt: &GroundTruth, images: &[ImageEntry]) -> Loaded {
    let mut problems = Vec::new();
    let file = gt.file.as_deref().expect("labels source has a file");
    let rows = match read_labels_rows(file) {
        Ok(r) => r,
        Err(reason) => {
            problems.push((file.display().to_string(), reason));
            return Loaded {
                tags: vec![None; images.len()],
                negative: None,
                problems,
            };
        }
    };
    // Match by relative path, then by file name, then by stem.
    let mut by_rel: HashMap<&str, usize> = HashMap::new();
    let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
    let mut by_stem: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, img) in images.iter().enumerate() {
        by_rel.insert(img.rel.as_str(), i);
        let name = img.rel.rsplit('/').next().unwrap_or(&img.rel).to_string();
        let stem = name
            .rsplit_once('.')
            .map_or(name.clone(), |(s, _)| s.to_string());
        by_name.entry(name).or_default().push(i);
        by_stem.entry(stem).or_default().push(i);
    }
    let mut tags: Vec<Option<Vec<String>>> = vec![None; images.len()];
    let mut unmatched = 0usize;
    for (key, list) in rows {
        let key = key.replace('\\', "/");
        let key = key.trim_start_matches("./");
        let idx = by_rel.get(key).copied().or_else(|| {
            let name = key.rsplit('/').next().unwrap_or(key);
            let unique = |v: Option<&Vec<usize>>| v.filter(|v| v.len() == 1).map(|v| v[0]);
            unique(by_name.get(name)).or_else(|| unique(by_stem.get(name)))
        });
        match idx {
            Some(i) => {
                let entry = tags[i].get_or_insert_with(Vec::new);
                entry.extend(list);
            }
            None => unmatched += 1,
        }
    }
    if unmatched > 0 {
        problems.push((
            file.display().to_string(),
            format!("{unmatched} row(s) name no image of dataset `{}`", ds.name),
        ));
    }
    let tags = tags
        .into_iter()
        .map(|t| t.map(|l| finish(l, &ds.aliases)))
        .collect();
    Loaded {
        tags,
        negative: None,
        problems,
    }
}

/// Rows of (file, tags) from a CSV (header with a file column and a tags column) or JSON
/// Lines (`{"file": ..., "tags": ...}`) labels file.
fn read_labels_rows(path: &Path) -> Result<Vec<(String, Vec<String>)>, String> {
    let is_jsonl = path.extension().is_some_and(|e| {
        e.eq_ignore_ascii_case("jsonl")
            || e.eq_ignore_ascii_case("ndjson")
            || e.eq_ignore_ascii_case("json")
    });
    if is_jsonl {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
        let mut rows = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| format!("line {}: invalid JSON: {e}", n + 1))?;
            let file = ["file", "path", "image", "filename"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|f| f.as_str()))
                .ok_or_else(|| format!("line {}: no `file` key", n + 1))?;
            let tags = v
                .get("tags")
                .ok_or_else(|| format!("line {}: no `tags` key", n + 1))?;
            rows.push((
                file.to_string(),
                json_tag_list(tags).map_err(|e| format!("line {}: {e}", n + 1))?,
            ));
        }
        return Ok(rows);
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| format!("cannot read CSV: {e}"))?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("bad CSV header: {e}"))?
        .iter()
        .map(|h| h.trim().to_lowercase())
        .collect();
    let find = |names: &[&str]| headers.iter().position(|h| names.contains(&h.as_str()));
    let file_col = find(&["file", "path", "image", "filename"])
        .ok_or("CSV needs a `file` (or path/image/filename) column")?;
    let tags_col = find(&["tags", "tag", "labels", "label"])
        .ok_or("CSV needs a `tags` (or tag/labels) column")?;
    let mut rows = Vec::new();
    for (n, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| format!("CSV row {}: {e}", n + 2))?;
        let (Some(file), Some(tags)) = (rec.get(file_col), rec.get(tags_col)) else {
            continue;
        };
        // "file,tags" rows hold a comma list; "file,tag" rows hold one tag each (merged above).
        rows.push((file.to_string(), tags::parse_list(tags, ",")));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_forms() {
        assert_eq!(
            parse_json_tags(r#"{"tags": ["Long_Hair", "smile"]}"#).unwrap(),
            vec!["long hair", "smile"]
        );
        assert_eq!(
            parse_json_tags(r#"{"tags": {"cat": 0.9}}"#).unwrap(),
            vec!["cat"]
        );
        assert_eq!(
            parse_json_tags(r#"{"tags": "a, b"}"#).unwrap(),
            vec!["a", "b"]
        );
        assert_eq!(parse_json_tags(r#"["x"]"#).unwrap(), vec!["x"]);
        assert!(parse_json_tags("{").is_err());
        assert!(parse_json_tags(r#"{"x": 1}"#).is_err());
    }

    #[test]
    fn sidecar_names() {
        let c = sidecar_candidates(Path::new("/d"), None, "a/b.png", ".txt");
        assert_eq!(
            c,
            vec![PathBuf::from("/d/a/b.txt"), PathBuf::from("/d/a/b.png.txt")]
        );
    }
}
