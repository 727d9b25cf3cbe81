//! `iw-lab query RUN "SQL"`: ad-hoc DuckDB SQL over one run's tables (`images`, `image_loras`,
//! `ground_truth`, `cells`, `outputs`, `failures`) and all runs (`all_cells`, `all_outputs`,
//! `all_failures`, `runs`).

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Map, Value};

use super::table::Table;
use super::Env;
use crate::store;
use crate::store::duck::types;
use crate::ui;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run id, unique prefix, `latest`, or a run folder.
    pub run: String,
    /// The SQL.
    pub sql: String,
    /// One JSON object per row.
    #[arg(long)]
    pub json: bool,
}

pub fn run(env: &Env, args: Args) -> Result<ExitCode> {
    let run = store::resolve_run(&env.project.runs_dir(), &args.run)?;
    crate::store::duck::ensure(&env.fetcher)?;
    let db = crate::store::open_db()?;
    let conn = db.connect()?;
    store::tables::open_run(&conn, &run)?;
    store::tables::open_all(&conn, &env.project.runs_dir())?;
    let table = conn.query(&args.sql)?.into_text();
    if args.json {
        for row in &table.rows {
            let mut obj = Map::new();
            for ((name, ty), cell) in table.columns.iter().zip(row) {
                obj.insert(name.clone(), typed(*ty, cell.as_deref()));
            }
            ui::json_line(&Value::Object(obj));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let names: Vec<&str> = table.columns.iter().map(|(n, _)| n.as_str()).collect();
    let mut t = Table::new(&names);
    for row in &table.rows {
        t.row(
            row.iter()
                .map(|c| c.clone().unwrap_or_else(|| "NULL".into()))
                .collect(),
        );
    }
    ui::out(t.render());
    ui::note(format!("({} rows)", table.rows.len()));
    Ok(ExitCode::SUCCESS)
}

fn typed(ty: u32, cell: Option<&str>) -> Value {
    let Some(s) = cell else { return Value::Null };
    match ty {
        types::BOOLEAN => json!(s == "true"),
        types::TINYINT
        | types::SMALLINT
        | types::INTEGER
        | types::BIGINT
        | types::UTINYINT
        | types::USMALLINT
        | types::UINTEGER
        | types::UBIGINT
        | types::HUGEINT => s.parse::<i64>().map_or_else(|_| json!(s), |v| json!(v)),
        types::FLOAT | types::DOUBLE | types::DECIMAL => {
            s.parse::<f64>().map_or_else(|_| json!(s), |v| json!(v))
        }
        _ => json!(s),
    }
}
