//! Metrics per group of images sharing an attribute the index holds: `folder`, `generator`,
//! `sampler`, `model` (the generation checkpoint) or `lora` (an image with several LoRAs is in
//! each of their groups). Images without the attribute form the group `(none)`. The values
//! come from the store (`store::images::attribute_values`).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::eval::{at_threshold, count, scores, Scores};
use super::scores::VariantScores;

pub use crate::store::images::{ATTRIBUTES, NONE};

/// One group's scores.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub value: String,
    #[serde(flatten)]
    pub scores: Scores,
}

/// A variant's groups at one threshold, largest first (ties by value).
#[derive(Debug, Clone, Serialize)]
pub struct Groups {
    pub variant: String,
    pub threshold: f64,
    pub by: String,
    pub groups: Vec<Group>,
}

/// Scores per group over the labelled images, at `threshold` (as `iw-lab metrics`).
pub fn groups(
    v: &VariantScores,
    threshold: f64,
    by: &str,
    values: &HashMap<String, Vec<String>>,
) -> Groups {
    let mut members: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let none = vec![NONE.to_string()];
    for img in v.labelled() {
        let vals = values.get(&v.images[img].path).unwrap_or(&none);
        let mut vals: Vec<&str> = vals.iter().map(String::as_str).collect();
        vals.sort();
        vals.dedup();
        for val in vals {
            members.entry(val).or_default().push(img);
        }
    }
    let mut groups: Vec<Group> = members
        .into_iter()
        .map(|(value, imgs)| Group {
            value: value.to_string(),
            scores: scores(&count(v, &imgs, |img| at_threshold(v, img, threshold))),
        })
        .collect();
    groups.sort_by(|a, b| {
        b.scores
            .images
            .cmp(&a.scores.images)
            .then_with(|| a.value.cmp(&b.value))
    });
    Groups {
        variant: v.variant.clone(),
        threshold,
        by: by.to_string(),
        groups,
    }
}
