//! A small safe layer over DuckDB's C API, loaded at run time (`dlopen`), the way `ort`'s
//! `load-dynamic` loads ONNX Runtime.
//!
//! Owns: opening databases and connections, running SQL, reading typed result chunks,
//! appending rows. Does not own: where the library comes from (`crate::libs` finds or downloads
//! it, then calls [`init`]), or any iw-lab table layout (`crate::store`).
//!
//! Why run-time loading: DuckDB's bundled C++ build takes over 35 minutes on a 2-core machine,
//! and build-time linking of a prebuilt library needs an environment variable and an rpath
//! before `cargo build` works. Loading the same prebuilt `libduckdb.so` (1.5.x) at run time keeps
//! `cargo build` free of setup, and the library is fetched, verified and cached like a model.

mod ffi;

use std::ffi::{c_char, CStr, CString};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use ffi::types;
use ffi::{Api, RawAppender, RawChunk, RawConn, RawDb, RawResult, RawString};

/// Errors from loading DuckDB or running SQL.
#[derive(Debug, thiserror::Error)]
pub enum DuckError {
    #[error("could not load the DuckDB library `{path}`")]
    Load {
        path: PathBuf,
        #[source]
        source: libloading::Error,
    },
    #[error("DuckDB library `{path}` is version {found}; iw-lab needs v1.x (v1.5 tested)")]
    Version { path: PathBuf, found: String },
    #[error("the DuckDB library has not been loaded (internal error: call libs::duckdb first)")]
    NotLoaded,
    #[error("DuckDB: {message}{}", sql.as_deref().map(|s| format!("\n  in SQL: {}", abbreviate(s))).unwrap_or_default())]
    Sql {
        message: String,
        sql: Option<String>,
    },
    #[error("column {column} has DuckDB type {found}, expected {expected}")]
    Type {
        column: usize,
        found: u32,
        expected: &'static str,
    },
}

fn abbreviate(sql: &str) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 300 {
        let cut: String = one_line.chars().take(300).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

pub type Result<T, E = DuckError> = std::result::Result<T, E>;

struct Loaded {
    api: Api,
    version: String,
    _lib: libloading::Library,
}

static LOADED: OnceLock<Loaded> = OnceLock::new();

/// Loads `libduckdb` from `path` once per process. Later calls are no-ops.
pub fn init(path: &Path) -> Result<()> {
    if LOADED.get().is_some() {
        return Ok(());
    }
    let load_err = |source| DuckError::Load {
        path: path.to_path_buf(),
        source,
    };
    // SAFETY: loading a shared library runs its initialisers; libduckdb's are benign.
    let lib = unsafe { libloading::Library::new(path) }.map_err(load_err)?;
    // SAFETY: the symbols are DuckDB's C API, whose signatures `ffi` declares.
    let api = unsafe { Api::load(&lib) }.map_err(load_err)?;
    // SAFETY: returns a static NUL-terminated string.
    let version = unsafe { CStr::from_ptr((api.duckdb_library_version)()) }
        .to_string_lossy()
        .into_owned();
    if !version.starts_with("v1.") {
        return Err(DuckError::Version {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let _ = LOADED.set(Loaded {
        api,
        version,
        _lib: lib,
    });
    Ok(())
}

fn api() -> Result<&'static Api> {
    LOADED.get().map(|l| &l.api).ok_or(DuckError::NotLoaded)
}

/// The loaded library's version string (for example `v1.5.6`).
pub fn version() -> Option<&'static str> {
    LOADED.get().map(|l| l.version.as_str())
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| DuckError::Sql {
        message: "SQL text contains a NUL byte".into(),
        sql: None,
    })
}

/// An open database (in memory, or a file). Shareable across threads; each thread opens its
/// own [`Connection`].
pub struct Database {
    raw: RawDb,
    api: &'static Api,
}

// SAFETY: DuckDB database handles are thread-safe; connections are not and are `!Sync`.
unsafe impl Send for Database {}
unsafe impl Sync for Database {}

impl Database {
    /// Opens an in-memory database.
    pub fn memory() -> Result<Database> {
        Self::open(None)
    }

    fn open(path: Option<&str>) -> Result<Database> {
        let api = api()?;
        let c_path = path.map(cstring).transpose()?;
        let mut raw: RawDb = std::ptr::null_mut();
        let p = c_path.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        // SAFETY: out-pointer is valid; path is NUL-terminated or null (in-memory).
        let state = unsafe { (api.duckdb_open)(p, &mut raw) };
        if state != 0 {
            return Err(DuckError::Sql {
                message: "could not open a DuckDB database".into(),
                sql: None,
            });
        }
        Ok(Database { raw, api })
    }

    pub fn connect(&self) -> Result<Connection<'_>> {
        let mut raw: RawConn = std::ptr::null_mut();
        // SAFETY: database handle is open; out-pointer valid.
        let state = unsafe { (self.api.duckdb_connect)(self.raw, &mut raw) };
        if state != 0 {
            return Err(DuckError::Sql {
                message: "could not connect to the DuckDB database".into(),
                sql: None,
            });
        }
        Ok(Connection {
            raw,
            api: self.api,
            _db: PhantomData,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // SAFETY: handle came from duckdb_open; connections borrow the database so are gone.
        unsafe { (self.api.duckdb_close)(&mut self.raw) }
    }
}

/// One connection: runs statements, reads results, appends rows. Not shareable across threads.
pub struct Connection<'db> {
    raw: RawConn,
    api: &'static Api,
    _db: PhantomData<&'db Database>,
}

// SAFETY: a connection may move to another thread, but not be used from two at once (!Sync).
unsafe impl Send for Connection<'_> {}

impl Connection<'_> {
    /// Runs one or more statements, discarding results.
    pub fn execute(&self, sql: &str) -> Result<()> {
        self.query(sql).map(drop)
    }

    /// Runs SQL and returns its (materialised) result.
    pub fn query(&self, sql: &str) -> Result<QueryResult<'_>> {
        let c_sql = cstring(sql)?;
        let mut raw = RawResult::zeroed();
        // SAFETY: connection open, SQL NUL-terminated, result out-pointer valid.
        let state = unsafe { (self.api.duckdb_query)(self.raw, c_sql.as_ptr(), &mut raw) };
        let result = QueryResult {
            raw,
            api: self.api,
            _conn: PhantomData,
        };
        if state != 0 {
            let mut result = result;
            let message = result.error().unwrap_or_else(|| "unknown error".into());
            return Err(DuckError::Sql {
                message,
                sql: Some(sql.to_string()),
            });
        }
        Ok(result)
    }

    /// Starts appending rows to `table` (in the main schema).
    pub fn appender(&self, table: &str) -> Result<Appender<'_>> {
        let c_table = cstring(table)?;
        let mut raw: RawAppender = std::ptr::null_mut();
        // SAFETY: valid connection, NUL-terminated table name, out-pointer valid.
        let state = unsafe {
            (self.api.duckdb_appender_create)(
                self.raw,
                std::ptr::null(),
                c_table.as_ptr(),
                &mut raw,
            )
        };
        let appender = Appender {
            raw,
            api: self.api,
            _conn: PhantomData,
        };
        if state != 0 {
            return Err(appender.error(&format!("could not append to table {table}")));
        }
        Ok(appender)
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        // SAFETY: handle came from duckdb_connect.
        unsafe { (self.api.duckdb_disconnect)(&mut self.raw) }
    }
}

/// A query result. Read it either chunk by chunk with typed accessors ([`Self::for_each_row`])
/// or as text cells ([`Self::into_text`]), not both.
pub struct QueryResult<'c> {
    raw: RawResult,
    api: &'static Api,
    _conn: PhantomData<&'c ()>,
}

impl QueryResult<'_> {
    fn error(&mut self) -> Option<String> {
        // SAFETY: result struct is valid (possibly errored).
        let p = unsafe { (self.api.duckdb_result_error)(&mut self.raw) };
        // SAFETY: DuckDB returns null or a NUL-terminated string owned by the result.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    /// Column names and DuckDB type ids.
    pub fn columns(&mut self) -> Vec<(String, u32)> {
        // SAFETY: result is valid; indices below column_count.
        let n = unsafe { (self.api.duckdb_column_count)(&mut self.raw) };
        (0..n)
            .map(|i| unsafe {
                let name = (self.api.duckdb_column_name)(&mut self.raw, i);
                let name = if name.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(name).to_string_lossy().into_owned()
                };
                (name, (self.api.duckdb_column_type)(&mut self.raw, i))
            })
            .collect()
    }

    /// Calls `f` for every row, in order, with typed accessors.
    pub fn for_each_row(&mut self, mut f: impl FnMut(&Row<'_>) -> Result<()>) -> Result<()> {
        let types: Vec<u32> = self.columns().into_iter().map(|(_, t)| t).collect();
        loop {
            // SAFETY: result is valid and not yet read through the deprecated value API.
            let raw = unsafe { (self.api.duckdb_fetch_chunk)(self.raw) };
            if raw.is_null() {
                return Ok(());
            }
            let chunk = Chunk::new(raw, self.api, &types);
            for i in 0..chunk.size {
                f(&Row { chunk: &chunk, i })?;
            }
        }
    }

    /// Materialises every cell as text (`None` for NULL), with column names and types.
    pub fn into_text(mut self) -> TextTable {
        let columns = self.columns();
        // SAFETY: result valid; the value API is only used on a fully materialised result.
        let rows = unsafe { (self.api.duckdb_row_count)(&mut self.raw) };
        let mut out = Vec::with_capacity(rows as usize);
        for r in 0..rows {
            let mut row = Vec::with_capacity(columns.len());
            for c in 0..columns.len() as u64 {
                // SAFETY: indices in range; returned string is freed with duckdb_free.
                let cell = unsafe {
                    if (self.api.duckdb_value_is_null)(&mut self.raw, c, r) {
                        None
                    } else {
                        let p = (self.api.duckdb_value_varchar)(&mut self.raw, c, r);
                        if p.is_null() {
                            None
                        } else {
                            let s = CStr::from_ptr(p).to_string_lossy().into_owned();
                            (self.api.duckdb_free)(p.cast());
                            Some(s)
                        }
                    }
                };
                row.push(cell);
            }
            out.push(row);
        }
        TextTable { columns, rows: out }
    }
}

impl Drop for QueryResult<'_> {
    fn drop(&mut self) {
        // SAFETY: result came from duckdb_query (destroy is valid after errors too).
        unsafe { (self.api.duckdb_destroy_result)(&mut self.raw) }
    }
}

/// A result as text cells, for printing.
#[derive(Debug, Clone)]
pub struct TextTable {
    pub columns: Vec<(String, u32)>,
    pub rows: Vec<Vec<Option<String>>>,
}

struct Vector {
    data: *const u8,
    validity: *const u64,
    ty: u32,
}

struct Chunk {
    raw: RawChunk,
    api: &'static Api,
    size: usize,
    vectors: Vec<Vector>,
}

impl Chunk {
    fn new(raw: RawChunk, api: &'static Api, types: &[u32]) -> Chunk {
        // SAFETY: chunk is valid; vector indices are below the column count.
        let size = unsafe { (api.duckdb_data_chunk_get_size)(raw) } as usize;
        let vectors = types
            .iter()
            .enumerate()
            .map(|(i, &ty)| unsafe {
                let v = (api.duckdb_data_chunk_get_vector)(raw, i as u64);
                Vector {
                    data: (api.duckdb_vector_get_data)(v) as *const u8,
                    validity: (api.duckdb_vector_get_validity)(v),
                    ty,
                }
            })
            .collect();
        Chunk {
            raw,
            api,
            size,
            vectors,
        }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: chunk came from duckdb_fetch_chunk.
        unsafe { (self.api.duckdb_destroy_data_chunk)(&mut self.raw) }
    }
}

/// One row of a chunk. Accessors check the column's type and return `None` for NULL.
pub struct Row<'a> {
    chunk: &'a Chunk,
    i: usize,
}

impl<'a> Row<'a> {
    fn vector(&self, col: usize) -> &'a Vector {
        &self.chunk.vectors[col]
    }

    pub fn is_null(&self, col: usize) -> bool {
        let v = self.vector(col);
        if v.validity.is_null() {
            return false;
        }
        // SAFETY: validity mask has one bit per row of the chunk.
        let word = unsafe { *v.validity.add(self.i / 64) };
        word & (1u64 << (self.i % 64)) == 0
    }

    /// # Safety
    /// The caller has checked the vector's element type is `T`.
    unsafe fn at<T: Copy>(&self, col: usize) -> T {
        // SAFETY: row index below chunk size; element type checked by caller.
        unsafe { *(self.vector(col).data as *const T).add(self.i) }
    }

    /// A VARCHAR cell.
    pub fn str(&self, col: usize) -> Result<Option<&'a str>> {
        let v = self.vector(col);
        if v.ty != types::VARCHAR {
            return Err(DuckError::Type {
                column: col,
                found: v.ty,
                expected: "VARCHAR",
            });
        }
        if self.is_null(col) {
            return Ok(None);
        }
        // SAFETY: VARCHAR vectors hold duckdb_string_t values.
        let s: RawString = unsafe { self.at(col) };
        let len = s.length as usize;
        let bytes: &'a [u8] = if len <= 12 {
            // SAFETY: inlined strings live inside the vector element itself.
            let base = unsafe { (v.data as *const RawString).add(self.i) } as *const u8;
            unsafe { std::slice::from_raw_parts(base.add(4), len) }
        } else {
            let ptr = usize::from_ne_bytes(s.ptr_or_inline) as *const u8;
            // SAFETY: non-inlined strings point to chunk-owned memory of `len` bytes.
            unsafe { std::slice::from_raw_parts(ptr, len) }
        };
        Ok(Some(std::str::from_utf8(bytes).unwrap_or("\u{FFFD}")))
    }

    /// An integer cell of any integer type, as `i64`.
    pub fn i64(&self, col: usize) -> Result<Option<i64>> {
        if self.is_null(col) {
            return Ok(None);
        }
        let v = self.vector(col);
        // SAFETY: each arm reads the element type the type id names.
        let x = unsafe {
            match v.ty {
                types::TINYINT => self.at::<i8>(col) as i64,
                types::SMALLINT => self.at::<i16>(col) as i64,
                types::INTEGER => self.at::<i32>(col) as i64,
                types::BIGINT => self.at::<i64>(col),
                types::UTINYINT => self.at::<u8>(col) as i64,
                types::USMALLINT => self.at::<u16>(col) as i64,
                types::UINTEGER => self.at::<u32>(col) as i64,
                types::UBIGINT => self.at::<u64>(col) as i64,
                types::HUGEINT => self.at::<i128>(col) as i64,
                types::BOOLEAN => self.at::<bool>(col) as i64,
                found => {
                    return Err(DuckError::Type {
                        column: col,
                        found,
                        expected: "an integer",
                    })
                }
            }
        };
        Ok(Some(x))
    }

    /// A numeric cell (float, double or integer), as `f64`.
    pub fn f64(&self, col: usize) -> Result<Option<f64>> {
        if self.is_null(col) {
            return Ok(None);
        }
        let v = self.vector(col);
        // SAFETY: each arm reads the element type the type id names.
        match v.ty {
            types::DOUBLE => Ok(Some(unsafe { self.at::<f64>(col) })),
            types::FLOAT => Ok(Some(unsafe { self.at::<f32>(col) } as f64)),
            _ => self.i64(col).map(|x| x.map(|x| x as f64)),
        }
    }

    /// A BOOLEAN cell.
    pub fn bool(&self, col: usize) -> Result<Option<bool>> {
        self.i64(col).map(|x| x.map(|x| x != 0))
    }
}

/// Appends rows to one table; values go in column order, then [`Appender::end_row`].
/// Rows are flushed by [`Appender::finish`] (or, ignoring errors, on drop).
pub struct Appender<'c> {
    raw: RawAppender,
    api: &'static Api,
    _conn: PhantomData<&'c ()>,
}

impl Appender<'_> {
    fn error(&self, context: &str) -> DuckError {
        // SAFETY: appender handle valid (possibly errored); string owned by the appender.
        let p = unsafe { (self.api.duckdb_appender_error)(self.raw) };
        let detail = if p.is_null() {
            "unknown error".to_string()
        } else {
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        };
        DuckError::Sql {
            message: format!("{context}: {detail}"),
            sql: None,
        }
    }

    fn check(&mut self, state: u32) -> Result<&mut Self> {
        if state == 0 {
            Ok(self)
        } else {
            Err(self.error("append failed"))
        }
    }

    pub fn str(&mut self, s: &str) -> Result<&mut Self> {
        // SAFETY: pointer and length describe a valid UTF-8 buffer.
        let state = unsafe {
            (self.api.duckdb_append_varchar_length)(
                self.raw,
                s.as_ptr() as *const c_char,
                s.len() as u64,
            )
        };
        self.check(state)
    }

    pub fn opt_str(&mut self, s: Option<&str>) -> Result<&mut Self> {
        match s {
            Some(s) => self.str(s),
            None => self.null(),
        }
    }

    pub fn f64(&mut self, x: f64) -> Result<&mut Self> {
        let state = unsafe { (self.api.duckdb_append_double)(self.raw, x) };
        self.check(state)
    }

    pub fn f32(&mut self, x: f32) -> Result<&mut Self> {
        let state = unsafe { (self.api.duckdb_append_float)(self.raw, x) };
        self.check(state)
    }

    pub fn i64(&mut self, x: i64) -> Result<&mut Self> {
        let state = unsafe { (self.api.duckdb_append_int64)(self.raw, x) };
        self.check(state)
    }

    pub fn u64(&mut self, x: u64) -> Result<&mut Self> {
        let state = unsafe { (self.api.duckdb_append_uint64)(self.raw, x) };
        self.check(state)
    }

    pub fn i32(&mut self, x: i32) -> Result<&mut Self> {
        let state = unsafe { (self.api.duckdb_append_int32)(self.raw, x) };
        self.check(state)
    }

    pub fn opt_i32(&mut self, x: Option<u32>) -> Result<&mut Self> {
        match x.and_then(|v| i32::try_from(v).ok()) {
            Some(v) => self.i32(v),
            None => self.null(),
        }
    }

    pub fn bool(&mut self, x: bool) -> Result<&mut Self> {
        let state = unsafe { (self.api.duckdb_append_bool)(self.raw, x) };
        self.check(state)
    }

    pub fn null(&mut self) -> Result<&mut Self> {
        let state = unsafe { (self.api.duckdb_append_null)(self.raw) };
        self.check(state)
    }

    pub fn end_row(&mut self) -> Result<()> {
        let state = unsafe { (self.api.duckdb_appender_end_row)(self.raw) };
        self.check(state).map(drop)
    }

    /// Flushes appended rows into the table.
    pub fn finish(mut self) -> Result<()> {
        let state = unsafe { (self.api.duckdb_appender_flush)(self.raw) };
        self.check(state).map(drop)
    }
}

impl Drop for Appender<'_> {
    fn drop(&mut self) {
        // SAFETY: handle came from duckdb_appender_create; destroy flushes and frees it.
        unsafe {
            (self.api.duckdb_appender_destroy)(&mut self.raw);
        }
    }
}

/// Quotes a string as a SQL literal.
pub fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Quotes a path as a SQL string literal.
pub fn path_lit(p: &Path) -> String {
    lit(&p.to_string_lossy())
}

/// A SQL list literal of paths, for `read_parquet([...])`.
pub fn path_list(paths: &[PathBuf]) -> String {
    let items: Vec<String> = paths.iter().map(|p| path_lit(p)).collect();
    format!("[{}]", items.join(", "))
}

static DUCK_READY: std::sync::OnceLock<()> = std::sync::OnceLock::new();

/// Finds DuckDB's library ([`crate::libs::duckdb_library`]) and loads it, once per process.
pub fn ensure(fetcher: &crate::fetch::Fetcher) -> anyhow::Result<()> {
    if DUCK_READY.get().is_some() {
        return Ok(());
    }
    let path = crate::libs::duckdb_library(fetcher)?;
    init(&path)?;
    let _ = DUCK_READY.set(());
    Ok(())
}
