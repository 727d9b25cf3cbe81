//! The studio's listing tables and every query behind its grid: filtering by tags and
//! metadata, sorting, grouping, paging, tag counts and facets. The studio loads a folder's or a
//! run's images into an in-memory DuckDB (spilling past the memory limit) and asks here.
//!
//! ```text
//! items(id, path, folder, hash, width, height, format, generator, sampler, model, error)
//! item_tags(id, tag, shown)       tag: normalised (the match key); shown: as written
//! item_loras(id, lora)
//! item_flags(id, flag)            e.g. `error`, `failed`, `disagree`
//! item_values(id, key, value)     e.g. `f1`, `score:<tag>`: what a grid can sort by
//! tag_categories(tag, category)   a model's category of a tag (`character`, `rating`…)
//! tag_stats(tag, shown, n)        distinct tags and their image counts (autocomplete)
//! ```

use std::collections::BTreeMap;

use anyhow::Result;

use super::duck::{lit, Connection};

/// One image for the listing tables.
#[derive(Debug, Clone, Default)]
pub struct ItemRow {
    pub id: i64,
    pub path: String,
    pub hash: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub format: Option<String>,
    pub generator: Option<String>,
    pub sampler: Option<String>,
    pub model: Option<String>,
    pub loras: Vec<String>,
    /// Why the image cannot be shown or read, if it cannot.
    pub error: Option<String>,
    /// (normalised, as written).
    pub tags: Vec<(String, String)>,
    pub flags: Vec<String>,
    pub values: Vec<(String, f64)>,
}

/// Creates the listing tables.
pub fn create(conn: &Connection<'_>) -> Result<()> {
    conn.execute(
        "CREATE TABLE items(id BIGINT, path VARCHAR, folder VARCHAR, hash VARCHAR,
           width INTEGER, height INTEGER, format VARCHAR, generator VARCHAR, sampler VARCHAR,
           model VARCHAR, error VARCHAR);
         CREATE TABLE item_tags(id BIGINT, tag VARCHAR, shown VARCHAR, pos INTEGER);
         CREATE TABLE item_loras(id BIGINT, lora VARCHAR);
         CREATE TABLE item_flags(id BIGINT, flag VARCHAR);
         CREATE TABLE item_values(id BIGINT, key VARCHAR, value DOUBLE);
         CREATE TABLE tag_categories(tag VARCHAR, category VARCHAR);
         CREATE TABLE tag_stats(tag VARCHAR, shown VARCHAR, n BIGINT);",
    )?;
    Ok(())
}

fn folder_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(f, _)| f)
}

/// Appends images (and their tags, LoRAs, flags and values).
pub fn load(conn: &Connection<'_>, rows: &[ItemRow]) -> Result<()> {
    let mut a = conn.appender("items")?;
    for r in rows {
        a.i64(r.id)?
            .str(&r.path)?
            .str(folder_of(&r.path))?
            .opt_str(r.hash.as_deref())?
            .opt_i32(r.width)?
            .opt_i32(r.height)?
            .opt_str(r.format.as_deref())?
            .opt_str(r.generator.as_deref())?
            .opt_str(r.sampler.as_deref())?
            .opt_str(r.model.as_deref())?
            .opt_str(r.error.as_deref())?
            .end_row()?;
    }
    a.finish()?;
    let mut t = conn.appender("item_tags")?;
    for r in rows {
        for (pos, (tag, shown)) in r.tags.iter().enumerate() {
            t.i64(r.id)?
                .str(tag)?
                .str(shown)?
                .i32(pos as i32)?
                .end_row()?;
        }
    }
    t.finish()?;
    let mut l = conn.appender("item_loras")?;
    for r in rows {
        for lora in &r.loras {
            l.i64(r.id)?.str(lora)?.end_row()?;
        }
    }
    l.finish()?;
    let mut f = conn.appender("item_flags")?;
    for r in rows {
        for flag in &r.flags {
            f.i64(r.id)?.str(flag)?.end_row()?;
        }
    }
    f.finish()?;
    let mut v = conn.appender("item_values")?;
    for r in rows {
        for (k, x) in &r.values {
            v.i64(r.id)?.str(k)?.f64(*x)?.end_row()?;
        }
    }
    v.finish()?;
    Ok(())
}

/// Records the category of each (normalised) tag; the first one given for a tag wins.
pub fn load_categories(conn: &Connection<'_>, pairs: &[(String, String)]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let mut a = conn.appender("tag_categories")?;
    for (tag, cat) in pairs {
        if seen.insert(tag.as_str()) {
            a.str(tag)?.str(cat)?.end_row()?;
        }
    }
    a.finish()?;
    Ok(())
}

/// Counts the distinct tags once everything is loaded (autocomplete reads the counts).
pub fn summarise(conn: &Connection<'_>) -> Result<()> {
    conn.execute(
        "DELETE FROM tag_stats;
         INSERT INTO tag_stats SELECT tag, min(shown), count(DISTINCT id) FROM item_tags
         GROUP BY tag;",
    )?;
    Ok(())
}

/// Replaces one image's tags (and the counts of the tags it loses or gains).
pub fn set_tags(conn: &Connection<'_>, id: i64, tags: &[(String, String)]) -> Result<()> {
    let mut touched: Vec<String> = tags.iter().map(|(t, _)| lit(t)).collect();
    conn.query(&format!(
        "SELECT DISTINCT tag FROM item_tags WHERE id = {id}"
    ))?
    .for_each_row(|r| {
        touched.push(lit(r.str(0)?.unwrap_or("")));
        Ok(())
    })?;
    conn.execute(&format!("DELETE FROM item_tags WHERE id = {id}"))?;
    let mut t = conn.appender("item_tags")?;
    for (pos, (tag, shown)) in tags.iter().enumerate() {
        t.i64(id)?
            .str(tag)?
            .str(shown)?
            .i32(pos as i32)?
            .end_row()?;
    }
    t.finish()?;
    if !touched.is_empty() {
        let list = touched.join(", ");
        conn.execute(&format!(
            "DELETE FROM tag_stats WHERE tag IN ({list});
             INSERT INTO tag_stats SELECT tag, min(shown), count(DISTINCT id) FROM item_tags
             WHERE tag IN ({list}) GROUP BY tag;"
        ))?;
    }
    Ok(())
}

/// Which images a grid shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Normalised tags the image must have (all of them, or any with `any`).
    pub tags: Vec<String>,
    pub any: bool,
    /// Normalised tags the image must not have.
    pub without: Vec<String>,
    pub generator: Option<String>,
    pub sampler: Option<String>,
    pub model: Option<String>,
    pub lora: Option<String>,
    /// The folder and its subfolders (`""` is the root).
    pub folder: Option<String>,
    /// Flags the image must carry (all of them).
    pub flags: Vec<String>,
    /// A substring of the path (ignoring case).
    pub name: Option<String>,
}

/// How a grid is ordered.
#[derive(Debug, Clone, PartialEq)]
pub enum Sort {
    Name,
    /// Most tags first.
    TagCount,
    /// Most tags shared with this image first.
    Shared(i64),
    /// By an `item_values` key: highest first, or lowest first with `ascending`.
    Value {
        key: String,
        ascending: bool,
    },
}

/// How a grid is grouped (the group is sorted on first).
#[derive(Debug, Clone, PartialEq)]
pub enum Group {
    None,
    /// The image's tag that is most frequent in the whole listing.
    DominantTag,
    Sampler,
    Generator,
    Model,
    Lora,
    Folder,
    /// The image's most frequent tag of this category (`character`: group by character),
    /// among its tags and its predicted tags (`score:` values).
    Category(String),
}

fn where_clause(f: &Filter) -> String {
    let mut w = vec!["TRUE".to_string()];
    if !f.tags.is_empty() {
        let list = f.tags.iter().map(|t| lit(t)).collect::<Vec<_>>().join(", ");
        let need = if f.any { 1 } else { f.tags.len() };
        w.push(format!(
            "i.id IN (SELECT id FROM item_tags WHERE tag IN ({list}) GROUP BY id \
             HAVING count(DISTINCT tag) >= {need})"
        ));
    }
    if !f.without.is_empty() {
        let list = f
            .without
            .iter()
            .map(|t| lit(t))
            .collect::<Vec<_>>()
            .join(", ");
        w.push(format!(
            "i.id NOT IN (SELECT id FROM item_tags WHERE tag IN ({list}))"
        ));
    }
    for (col, v) in [
        ("generator", &f.generator),
        ("sampler", &f.sampler),
        ("model", &f.model),
    ] {
        if let Some(v) = v {
            w.push(format!("i.{col} = {}", lit(v)));
        }
    }
    if let Some(l) = &f.lora {
        w.push(format!(
            "i.id IN (SELECT id FROM item_loras WHERE lora = {})",
            lit(l)
        ));
    }
    if let Some(d) = &f.folder {
        if !d.is_empty() {
            w.push(format!(
                "(i.folder = {0} OR starts_with(i.folder, {0} || '/'))",
                lit(d)
            ));
        }
    }
    for flag in &f.flags {
        w.push(format!(
            "i.id IN (SELECT id FROM item_flags WHERE flag = {})",
            lit(flag)
        ));
    }
    if let Some(n) = &f.name {
        w.push(format!(
            "contains(lower(i.path), {})",
            lit(&n.to_lowercase())
        ));
    }
    w.join(" AND ")
}

/// One image of a page of the grid.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Listed {
    pub id: i64,
    pub path: String,
    pub hash: Option<String>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub error: Option<String>,
    pub group: Option<String>,
    /// The sort key's value (shared tags, a score…), when the sort has one.
    pub key: Option<f64>,
    pub tags: Vec<String>,
}

/// A page of the grid.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Page {
    pub total: u64,
    pub items: Vec<Listed>,
}

fn group_expr(g: &Group) -> String {
    match g {
        Group::None => "NULL".into(),
        Group::Sampler => "i.sampler".into(),
        Group::Generator => "i.generator".into(),
        Group::Model => "i.model".into(),
        Group::Folder => "i.folder".into(),
        Group::Lora => "(SELECT min(lora) FROM item_loras l WHERE l.id = i.id)".into(),
        Group::DominantTag => "(SELECT arg_max(t.shown, f.n) FROM item_tags t \
             JOIN freq f ON f.tag = t.tag WHERE t.id = i.id)"
            .into(),
        Group::Category(c) => format!(
            "(SELECT arg_max(x.tag, coalesce(f.n, 0)) FROM
               (SELECT t.tag FROM item_tags t WHERE t.id = i.id
                UNION SELECT substr(v.key, 7) FROM item_values v
                WHERE v.id = i.id AND starts_with(v.key, 'score:')) x
               JOIN tag_categories c ON c.tag = x.tag LEFT JOIN freq f ON f.tag = x.tag
             WHERE c.category = {})",
            lit(c)
        ),
    }
}

fn sort_expr(s: &Sort) -> (String, &'static str) {
    match s {
        Sort::Name => ("NULL".into(), ""),
        Sort::TagCount => (
            "(SELECT count(*) FROM item_tags t WHERE t.id = i.id)".into(),
            " DESC",
        ),
        Sort::Shared(other) => (
            format!(
                "(SELECT count(*) FROM item_tags t WHERE t.id = i.id AND t.tag IN \
                 (SELECT tag FROM item_tags WHERE id = {other}))"
            ),
            " DESC",
        ),
        Sort::Value { key, ascending } => (
            format!(
                "(SELECT max(value) FROM item_values v WHERE v.id = i.id AND v.key = {})",
                lit(key)
            ),
            if *ascending {
                " NULLS LAST"
            } else {
                " DESC NULLS LAST"
            },
        ),
    }
}

/// One page of the filtered, sorted, grouped grid, with each image's first `tags_each` tags.
pub fn page(
    conn: &Connection<'_>,
    f: &Filter,
    sort: &Sort,
    group: Group,
    (offset, limit): (u64, u64),
    tags_each: usize,
) -> Result<Page> {
    let w = where_clause(f);
    let mut total = 0u64;
    conn.query(&format!("SELECT count(*) FROM items i WHERE {w}"))?
        .for_each_row(|r| {
            total = r.i64(0)?.unwrap_or(0) as u64;
            Ok(())
        })?;
    let (key, dir) = sort_expr(sort);
    let g = group_expr(&group);
    let sql = format!(
        "WITH freq AS (SELECT tag, count(*) AS n FROM item_tags GROUP BY tag),
         sel AS (SELECT i.id, i.path, i.hash, i.width, i.height, i.error, CAST({g} AS VARCHAR) AS grp,
                        CAST({key} AS DOUBLE) AS k
                 FROM items i WHERE {w}
                 ORDER BY grp NULLS LAST, k{dir}, i.path LIMIT {limit} OFFSET {offset})
         SELECT s.id, s.path, s.hash, s.width, s.height, s.error, s.grp, s.k,
                (SELECT string_agg(t.shown, chr(31) ORDER BY t.pos) FROM
                   (SELECT * FROM item_tags t WHERE t.id = s.id ORDER BY pos LIMIT {tags_each}) t)
         FROM sel s ORDER BY s.grp NULLS LAST, s.k{dir}, s.path"
    );
    let mut items = Vec::new();
    conn.query(&sql)?.for_each_row(|r| {
        items.push(Listed {
            id: r.i64(0)?.unwrap_or(0),
            path: r.str(1)?.unwrap_or("").to_string(),
            hash: r.str(2)?.map(str::to_string),
            width: r.i64(3)?,
            height: r.i64(4)?,
            error: r.str(5)?.map(str::to_string),
            group: r.str(6)?.map(str::to_string),
            key: r.f64(7)?,
            tags: r
                .str(8)?
                .map(|s| s.split('\u{1f}').map(str::to_string).collect())
                .unwrap_or_default(),
        });
        Ok(())
    })?;
    Ok(Page { total, items })
}

/// One tag of the filtered images, with its count and category (when a model gave one).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TagCount {
    /// As written.
    pub tag: String,
    /// Normalised.
    pub key: String,
    pub count: u64,
    pub category: Option<String>,
}

/// Tag counts over the filtered images, most frequent first.
pub fn tag_counts(conn: &Connection<'_>, f: &Filter, limit: u64) -> Result<Vec<TagCount>> {
    let w = where_clause(f);
    let sql = format!(
        "SELECT min(t.shown), t.tag, count(DISTINCT t.id) AS n, any_value(c.category)
         FROM item_tags t JOIN items i ON i.id = t.id
         LEFT JOIN tag_categories c ON c.tag = t.tag WHERE {w}
         GROUP BY t.tag ORDER BY n DESC, t.tag LIMIT {limit}"
    );
    let mut out = Vec::new();
    conn.query(&sql)?.for_each_row(|r| {
        out.push(TagCount {
            tag: r.str(0)?.unwrap_or("").to_string(),
            key: r.str(1)?.unwrap_or("").to_string(),
            count: r.i64(2)?.unwrap_or(0) as u64,
            category: r.str(3)?.map(str::to_string),
        });
        Ok(())
    })?;
    Ok(out)
}

/// Tags starting with (then containing) `q`, most frequent first: autocomplete.
pub fn complete(conn: &Connection<'_>, q: &str, limit: u64) -> Result<Vec<(String, u64)>> {
    let q = lit(&q.to_lowercase());
    let sql = format!(
        "SELECT shown, n, starts_with(tag, {q}) AS p FROM tag_stats
         WHERE contains(tag, {q}) ORDER BY p DESC, n DESC, tag LIMIT {limit}"
    );
    let mut out = Vec::new();
    conn.query(&sql)?.for_each_row(|r| {
        out.push((
            r.str(0)?.unwrap_or("").to_string(),
            r.i64(1)?.unwrap_or(0) as u64,
        ));
        Ok(())
    })?;
    Ok(out)
}

/// The values each metadata field takes, with counts: field → [(value, count)].
pub fn facets(conn: &Connection<'_>) -> Result<BTreeMap<String, Vec<(String, u64)>>> {
    let mut out = BTreeMap::new();
    for (field, sql) in [
        (
            "generator",
            "SELECT generator, count(*) FROM items WHERE generator IS NOT NULL GROUP BY ALL",
        ),
        (
            "sampler",
            "SELECT sampler, count(*) FROM items WHERE sampler IS NOT NULL GROUP BY ALL",
        ),
        (
            "model",
            "SELECT model, count(*) FROM items WHERE model IS NOT NULL GROUP BY ALL",
        ),
        (
            "lora",
            "SELECT lora, count(DISTINCT id) FROM item_loras GROUP BY ALL",
        ),
        (
            "folder",
            "SELECT folder, count(*) FROM items WHERE folder <> '' GROUP BY ALL",
        ),
        (
            "flag",
            "SELECT flag, count(DISTINCT id) FROM item_flags GROUP BY ALL",
        ),
        (
            "category",
            "SELECT category, count(*) FROM tag_categories GROUP BY ALL",
        ),
    ] {
        let mut v = Vec::new();
        conn.query(&format!("{sql} ORDER BY 2 DESC, 1 LIMIT 200"))?
            .for_each_row(|r| {
                v.push((
                    r.str(0)?.unwrap_or("").to_string(),
                    r.i64(1)?.unwrap_or(0) as u64,
                ));
                Ok(())
            })?;
        out.insert(field.to_string(), v);
    }
    Ok(out)
}

/// The ids of images whose path is `path`.
pub fn id_of(conn: &Connection<'_>, path: &str) -> Result<Option<i64>> {
    let mut id = None;
    conn.query(&format!("SELECT id FROM items WHERE path = {}", lit(path)))?
        .for_each_row(|r| {
            id = r.i64(0)?;
            Ok(())
        })?;
    Ok(id)
}

/// The paths of the filtered images (for exporting a selection), in path order.
pub fn paths(conn: &Connection<'_>, f: &Filter, limit: u64) -> Result<Vec<String>> {
    let w = where_clause(f);
    let mut out = Vec::new();
    conn.query(&format!(
        "SELECT i.path FROM items i WHERE {w} ORDER BY i.path LIMIT {limit}"
    ))?
    .for_each_row(|r| {
        out.push(r.str(0)?.unwrap_or("").to_string());
        Ok(())
    })?;
    Ok(out)
}
