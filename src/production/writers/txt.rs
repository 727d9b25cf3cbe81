//! `.txt` captions for LoRA training: `tag, tag, tag`, trigger words first, character tags
//! next, the rating placed or left out, booru underscores or spaces, optional parenthesis
//! escaping, and three ways to treat an existing file.

use std::collections::HashSet;
use std::path::Path;

use super::{diff, ExistingMode, Rendered, TxtOptions};
use crate::postprocess::Decided;
use crate::tags;

fn split(text: &str, separator: &str) -> Vec<String> {
    let sep = separator.trim();
    let sep = if sep.is_empty() { "," } else { sep };
    text.split('\n')
        .flat_map(|l| l.split(sep))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Renders the caption of `image`. `existing` is the file's current text; `previous_ours` what
/// iw-lab added to it last time.
pub fn render(
    image: &Path,
    existing: Option<&str>,
    previous_ours: &[String],
    decided: &[Decided],
    opts: &TxtOptions,
) -> Rendered {
    let ours = opts.ordered(decided);
    let norm = |t: &str| tags::normalise(t).unwrap_or_default();
    let old: Vec<String> = existing
        .map(|t| split(t, &opts.separator))
        .unwrap_or_default();
    let (final_tags, added_by_us) = match (opts.existing, existing) {
        (ExistingMode::Overwrite, _) | (_, None) => (ours.clone(), ours.clone()),
        (mode, Some(_)) => {
            let prev: HashSet<String> = previous_ours.iter().map(|t| norm(t)).collect();
            let base: Vec<String> = match mode {
                ExistingMode::Keep => old
                    .iter()
                    .filter(|t| !prev.contains(&norm(t)))
                    .cloned()
                    .collect(),
                _ => old.clone(),
            };
            let mut present: HashSet<String> = base.iter().map(|t| norm(t)).collect();
            let mut out = base;
            let mut added = Vec::new();
            for t in &ours {
                if present.insert(norm(t)) {
                    out.push(t.clone());
                    added.push(t.clone());
                }
            }
            // In append mode, tags added earlier stay ours.
            if mode == ExistingMode::Append {
                let now: HashSet<String> = out.iter().map(|t| norm(t)).collect();
                for p in previous_ours {
                    if now.contains(&norm(p)) && !added.iter().any(|a| norm(a) == norm(p)) {
                        added.push(p.clone());
                    }
                }
            }
            (out, added)
        }
    };
    let content = format!("{}\n", final_tags.join(&opts.separator));
    let (added, removed) = diff(&old, &final_tags);
    Rendered {
        path: opts.path(image),
        unchanged: existing == Some(content.as_str()),
        content: content.into_bytes(),
        added,
        removed,
        ours: added_by_us,
    }
}

#[cfg(test)]
mod tests {
    use super::super::RatingPlacement;
    use super::*;
    use crate::config::Category;

    fn d(tag: &str, score: f32, category: Category) -> Decided {
        Decided {
            tag: tag.into(),
            score,
            category,
        }
    }

    fn decided() -> Vec<Decided> {
        vec![
            d("1girl", 0.99, Category::General),
            d("general", 0.9, Category::Rating),
            d("saber (fate)", 0.8, Category::Character),
            d("long hair", 0.7, Category::General),
            d("^_^", 0.6, Category::General),
        ]
    }

    fn text(r: &Rendered) -> String {
        String::from_utf8(r.content.clone()).unwrap()
    }

    #[test]
    fn ordering_and_spelling() {
        let img = Path::new("/d/img.png");
        let r = render(img, None, &[], &decided(), &TxtOptions::default());
        assert_eq!(r.path, Path::new("/d/img.txt"));
        assert_eq!(text(&r), "saber (fate), 1girl, long hair, ^_^\n");
        let opts = TxtOptions {
            trigger_words: vec!["mystyle".into()],
            rating: RatingPlacement::Last,
            underscores: true,
            escape_parentheses: true,
            separator: ",".into(),
            character_first: false,
            ..TxtOptions::default()
        };
        assert_eq!(
            text(&render(img, None, &[], &decided(), &opts)),
            "mystyle,1girl,saber_\\(fate\\),long_hair,^_^,general\n"
        );
    }

    #[test]
    fn existing_file_modes() {
        let img = Path::new("/d/img.png");
        let user = "my own tag, Long_Hair, old model tag\n";
        let prev = vec!["old model tag".to_string()];
        let keep = render(img, Some(user), &prev, &decided(), &TxtOptions::default());
        assert_eq!(
            text(&keep),
            "my own tag, Long_Hair, saber (fate), 1girl, ^_^\n"
        );
        assert_eq!(keep.removed, vec!["old model tag"]);
        assert_eq!(keep.ours, vec!["saber (fate)", "1girl", "^_^"]);
        let append = render(
            img,
            Some(user),
            &prev,
            &decided(),
            &TxtOptions {
                existing: ExistingMode::Append,
                ..Default::default()
            },
        );
        assert_eq!(
            text(&append),
            "my own tag, Long_Hair, old model tag, saber (fate), 1girl, ^_^\n"
        );
        let over = render(
            img,
            Some(user),
            &prev,
            &decided(),
            &TxtOptions {
                existing: ExistingMode::Overwrite,
                ..Default::default()
            },
        );
        assert_eq!(text(&over), "saber (fate), 1girl, long hair, ^_^\n");
        // A second identical pass changes nothing.
        let again = render(
            img,
            Some(&text(&keep)),
            &keep.ours,
            &decided(),
            &TxtOptions::default(),
        );
        assert!(again.unchanged && again.added.is_empty() && again.removed.is_empty());
    }
}
