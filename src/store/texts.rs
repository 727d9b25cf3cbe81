//! The generated text of one run, read from its views (`tables::open_run`: `texts`,
//! `judgments`): each output's text with the judges' verdicts on it.

use std::collections::HashMap;

use anyhow::Result;

use super::duck::{self, Connection, Row};

/// One generated output (a caption, or the raw text of a tag/JSON answer) and the judges'
/// verdicts on it.
#[derive(Debug, Clone)]
pub struct TextRow {
    pub variant: String,
    pub path: String,
    pub hash: String,
    pub repeat: u32,
    pub text: String,
    /// (judge, side of a pairwise comparison or empty, verdict, score when valid).
    pub verdicts: Vec<(String, String, Option<String>, Option<f64>)>,
}

/// A row's place by (variant, path, repeat).
type TextIndex = HashMap<(String, String, u32), usize>;

/// Every stored text output with its verdicts, by variant, path and repeat; verdicts on
/// outputs without text (a tagger's tags) follow, each output with a row of its own.
pub fn texts(conn: &Connection<'_>) -> Result<Vec<TextRow>> {
    let mut out: Vec<TextRow> = Vec::new();
    let mut index: TextIndex = HashMap::new();
    conn.query(
        "SELECT variant, path, image_hash, repeat, coalesce(caption, raw, '')
         FROM texts ORDER BY variant, path, repeat",
    )?
    .for_each_row(|r| {
        let row = TextRow {
            variant: r.str(0)?.unwrap_or_default().to_string(),
            path: r.str(1)?.unwrap_or_default().to_string(),
            hash: r.str(2)?.unwrap_or_default().to_string(),
            repeat: r.i64(3)?.unwrap_or(0) as u32,
            text: r.str(4)?.unwrap_or_default().to_string(),
            verdicts: Vec::new(),
        };
        index.insert(
            (row.variant.clone(), row.path.clone(), row.repeat),
            out.len(),
        );
        out.push(row);
        Ok(())
    })?;
    conn.query(
        "SELECT judge, variant, path, repeat, coalesce(side, ''), verdict, score, valid, image_hash
         FROM judgments ORDER BY judge, variant, path, repeat, side",
    )?
    .for_each_row(|r| {
        let k = judged_row(r, &mut out, &mut index)?;
        let valid = r.bool(7)?.unwrap_or(false);
        out[k].verdicts.push((
            r.str(0)?.unwrap_or_default().to_string(),
            r.str(4)?.unwrap_or_default().to_string(),
            r.str(5)?.map(str::to_string),
            if valid { r.f64(6)? } else { None },
        ));
        Ok(())
    })?;
    Ok(out)
}

/// The row a judgment (columns: judge, variant, path, repeat, ..., image hash at 8) is on; a
/// new row without text when its output has none.
fn judged_row(r: &Row<'_>, out: &mut Vec<TextRow>, index: &mut TextIndex) -> duck::Result<usize> {
    let key = (
        r.str(1)?.unwrap_or_default().to_string(),
        r.str(2)?.unwrap_or_default().to_string(),
        r.i64(3)?.unwrap_or(0) as u32,
    );
    if let Some(&k) = index.get(&key) {
        return Ok(k);
    }
    out.push(TextRow {
        variant: key.0.clone(),
        path: key.1.clone(),
        hash: r.str(8)?.unwrap_or_default().to_string(),
        repeat: key.2,
        text: String::new(),
        verdicts: Vec::new(),
    });
    index.insert(key, out.len() - 1);
    Ok(out.len() - 1)
}
