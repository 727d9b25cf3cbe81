//! The image files of one run, read from its views (`tables::open_run`: `images`,
//! `image_loras`): each with its generation metadata, and the values of an attribute images
//! are grouped by.

use std::collections::HashMap;

use anyhow::{bail, Result};

use super::duck::{self, Connection, Row};

/// The attributes one can group images by.
pub const ATTRIBUTES: &[&str] = &["folder", "generator", "sampler", "model", "lora"];

/// The group of images without the attribute.
pub const NONE: &str = "(none)";

/// One image file of a run, with its generation metadata.
#[derive(Debug, Clone, Default)]
pub struct ImageRow {
    pub path: String,
    pub hash: String,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub format: Option<String>,
    pub labelled: bool,
    pub meta: Vec<(String, String)>,
    pub prompt: Option<String>,
    pub negative: Option<String>,
}

/// Generation settings, shown as "name value" in this order; they are the columns after
/// `prompt`/`negative_prompt` in [`images`]' query.
const SETTINGS: &[&str] = &[
    "generator",
    "model",
    "model_hash",
    "sampler",
    "scheduler",
    "seed",
    "steps",
    "cfg",
    "size",
    "vae",
    "clip_skip",
    "denoise",
];

/// Path → values of attribute `by` (one of [`ATTRIBUTES`]; an image with several LoRAs has
/// each; an image without the attribute has [`NONE`]), over the run whose views are open on
/// `conn`.
pub fn attribute_values(conn: &Connection<'_>, by: &str) -> Result<HashMap<String, Vec<String>>> {
    let sql = match by {
        "lora" => "SELECT i.path, l.lora FROM images i LEFT JOIN (SELECT DISTINCT path, lora FROM image_loras) l ON l.path = i.path".to_string(),
        "folder" | "generator" | "sampler" | "model" => {
            format!("SELECT path, CAST({by} AS VARCHAR) FROM images")
        }
        _ => bail!(
            "cannot group by `{by}`; expected one of: {}",
            ATTRIBUTES.join(", ")
        ),
    };
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    conn.query(&sql)?.for_each_row(|r| {
        let path = r.str(0)?.unwrap_or_default().to_string();
        let value = r.str(1)?.map(str::to_string);
        let e = out.entry(path).or_default();
        match value {
            Some(v) => e.push(v),
            None => e.push(NONE.to_string()),
        }
        Ok(())
    })?;
    Ok(out)
}

/// Every image file of the run whose views are open on `conn`, by path, with its generation
/// settings and LoRAs (`name:weight`) as `meta`; `has_truth`: whether the run has ground
/// truth (without, no image is labelled).
pub fn images(conn: &Connection<'_>, has_truth: bool) -> Result<Vec<ImageRow>> {
    let loras = loras(conn)?;
    let mut out = Vec::new();
    conn.query(
        "SELECT path, image_hash, width, height, format, labelled, prompt, negative_prompt,
                generator, model, model_hash, sampler, scheduler, CAST(seed AS VARCHAR),
                CAST(steps AS VARCHAR), CAST(cfg AS DOUBLE),
                CASE WHEN gen_width IS NOT NULL THEN gen_width || '×' || gen_height END,
                vae, CAST(clip_skip AS VARCHAR), CAST(denoise AS DOUBLE)
         FROM images ORDER BY path",
    )?
    .for_each_row(|r| {
        let path = r.str(0)?.unwrap_or_default().to_string();
        let mut meta = settings(r, 8)?;
        if let Some(ls) = loras.get(&path) {
            meta.push(("loras".into(), ls.join(", ")));
        }
        out.push(ImageRow {
            hash: r.str(1)?.unwrap_or_default().to_string(),
            width: r.i64(2)?,
            height: r.i64(3)?,
            format: r.str(4)?.map(str::to_string),
            labelled: has_truth && r.bool(5)?.unwrap_or(false),
            prompt: r.str(6)?.map(str::to_string),
            negative: r.str(7)?.map(str::to_string),
            meta,
            path,
        });
        Ok(())
    })?;
    Ok(out)
}

/// The [`SETTINGS`] an image has (not null, not empty), from column `first` on.
fn settings(r: &Row<'_>, first: usize) -> duck::Result<Vec<(String, String)>> {
    let mut meta = Vec::new();
    for (k, name) in SETTINGS.iter().enumerate() {
        let col = first + k;
        let value = match *name {
            "cfg" | "denoise" => r.f64(col)?.map(trim_num),
            _ => r.str(col)?.map(str::to_string),
        };
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            meta.push((name.to_string(), v));
        }
    }
    Ok(meta)
}

/// Each path's LoRAs, by name: `name:weight`, or `name` without a weight.
fn loras(conn: &Connection<'_>) -> Result<HashMap<String, Vec<String>>> {
    let mut loras: HashMap<String, Vec<String>> = HashMap::new();
    conn.query("SELECT path, lora, weight FROM image_loras ORDER BY path, lora")?
        .for_each_row(|r| {
            let name = r.str(1)?.unwrap_or_default();
            let w = r.f64(2)?;
            loras
                .entry(r.str(0)?.unwrap_or_default().to_string())
                .or_default()
                .push(match w {
                    Some(w) => format!("{name}:{}", trim_num(w)),
                    None => name.to_string(),
                });
            Ok(())
        })?;
    Ok(loras)
}

/// A number with at most four decimals, trailing zeros dropped.
fn trim_num(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}
