//! A tagger's label table: names (normalised, aliased) and categories, from WD's
//! `selected_tags.csv`, a one-per-line file, or an inline list.

use std::path::Path;
use std::sync::Arc;

use crate::config::Category;
use crate::tags::{self, Aliases};

/// One output label of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// Normalised and aliased tag name.
    pub tag: Arc<str>,
    pub category: Category,
}

/// Errors reading a label file.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("cannot read labels file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("labels file {path}: {reason}")]
    Format { path: String, reason: String },
}

/// Reads a label file: CSV with a `name` column (and optional numeric `category`, WD style)
/// when it ends in `.csv`, else one label per line.
pub fn read_file(path: &Path, aliases: &Aliases) -> Result<Vec<Label>, LabelsError> {
    let display = path.display().to_string();
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if !is_csv {
        let text = std::fs::read_to_string(path).map_err(|e| LabelsError::Read {
            path: display.clone(),
            reason: e.to_string(),
        })?;
        let raw: Vec<(String, Option<Category>)> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| (l.to_string(), None))
            .collect();
        return from_names(&raw, aliases).map_err(|reason| LabelsError::Format {
            path: display,
            reason,
        });
    }
    let mut reader = csv::Reader::from_path(path).map_err(|e| LabelsError::Read {
        path: display.clone(),
        reason: e.to_string(),
    })?;
    let headers = reader.headers().map_err(|e| LabelsError::Format {
        path: display.clone(),
        reason: e.to_string(),
    })?;
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let name_col = col("name").ok_or_else(|| LabelsError::Format {
        path: display.clone(),
        reason: "no `name` column in the header".into(),
    })?;
    let cat_col = col("category");
    let mut raw = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| LabelsError::Format {
            path: display.clone(),
            reason: format!("row {}: {e}", i + 2),
        })?;
        let name = rec.get(name_col).unwrap_or_default().to_string();
        let category = match cat_col.and_then(|c| rec.get(c)) {
            Some(c) => {
                let n: i64 = c.trim().parse().map_err(|_| LabelsError::Format {
                    path: display.clone(),
                    reason: format!("row {}: category `{c}` is not a number", i + 2),
                })?;
                Some(Category::from_number(n).unwrap_or(Category::General))
            }
            None => None,
        };
        raw.push((name, category));
    }
    from_names(&raw, aliases).map_err(|reason| LabelsError::Format {
        path: display,
        reason,
    })
}

/// Builds labels from raw names: normalised, aliased, category defaulting to general.
pub fn from_names(
    raw: &[(String, Option<Category>)],
    aliases: &Aliases,
) -> Result<Vec<Label>, String> {
    if raw.is_empty() {
        return Err("no labels".into());
    }
    raw.iter()
        .enumerate()
        .map(|(i, (name, category))| {
            let tag = tags::normalise(name).ok_or_else(|| format!("label {} is empty", i + 1))?;
            Ok(Label {
                tag: Arc::from(aliases.apply(tag)),
                category: category.unwrap_or(Category::General),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wd_csv_with_quoted_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("selected_tags.csv");
        std::fs::write(
            &p,
            "tag_id,name,category,count\n9999999,general,9,0\n1000,long_hair,0,5000\n1001,\"hello, \"\"world\"\"\",0,4999\n5000,saber_(fate),4,900\n",
        )
        .unwrap();
        let labels = read_file(&p, &Aliases::default()).unwrap();
        let names: Vec<&str> = labels.iter().map(|l| &*l.tag).collect();
        assert_eq!(
            names,
            ["general", "long hair", "hello, \"world\"", "saber (fate)"]
        );
        assert_eq!(labels[0].category, Category::Rating);
        assert_eq!(labels[3].category, Category::Character);
    }

    #[test]
    fn reads_line_lists_and_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("top_tags.txt");
        std::fs::write(&p, "long hair\n^_^\n\nsfw\n").unwrap();
        let aliases = Aliases::from_pairs([("sfw", "general")]);
        let labels = read_file(&p, &aliases).unwrap();
        let names: Vec<&str> = labels.iter().map(|l| &*l.tag).collect();
        assert_eq!(names, ["long hair", "^_^", "general"]);
    }
}
