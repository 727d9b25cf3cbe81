//! Tags: their categories, and a tag with its score.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Label categories (WD's `selected_tags.csv` numbers: 9 rating, 0 general, 4 character).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    General,
    Character,
    Rating,
    Artist,
    Copyright,
    Meta,
}

impl Category {
    /// From its name (`general`, `character`, ...).
    pub fn parse(s: &str) -> Option<Category> {
        Some(match s {
            "general" => Category::General,
            "character" => Category::Character,
            "rating" => Category::Rating,
            "artist" => Category::Artist,
            "copyright" => Category::Copyright,
            "meta" => Category::Meta,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Category::General => "general",
            Category::Character => "character",
            Category::Rating => "rating",
            Category::Artist => "artist",
            Category::Copyright => "copyright",
            Category::Meta => "meta",
        }
    }

    /// From a Danbooru / WD category number.
    pub fn from_number(n: i64) -> Option<Category> {
        Some(match n {
            0 => Category::General,
            1 => Category::Artist,
            3 => Category::Copyright,
            4 => Category::Character,
            5 => Category::Meta,
            9 => Category::Rating,
            _ => return None,
        })
    }
}

/// One tag with its score.
#[derive(Debug, Clone, PartialEq)]
pub struct TagScore {
    pub tag: Arc<str>,
    pub score: f32,
    pub category: Category,
}
