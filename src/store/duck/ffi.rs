//! The slice of DuckDB's C API that iw-lab uses, resolved at run time from `libduckdb.so`.
//!
//! Owns: the raw types and the function table. Does not own: safety (see `super`), or finding
//! the library file (see `crate::libs`). Layouts follow `duckdb.h` of DuckDB 1.5.

use std::ffi::{c_char, c_void};

pub type Idx = u64;
pub type State = u32; // 0 = success, 1 = error
pub type RawDb = *mut c_void;
pub type RawConn = *mut c_void;
pub type RawAppender = *mut c_void;
pub type RawChunk = *mut c_void;
pub type RawVector = *mut c_void;

/// `duckdb_result`: six pointer-sized fields, passed by pointer and (to `duckdb_fetch_chunk`)
/// by value.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawResult {
    pub deprecated_column_count: Idx,
    pub deprecated_row_count: Idx,
    pub deprecated_rows_changed: Idx,
    pub deprecated_columns: *mut c_void,
    pub deprecated_error_message: *mut c_char,
    pub internal_data: *mut c_void,
}

impl RawResult {
    pub fn zeroed() -> Self {
        RawResult {
            deprecated_column_count: 0,
            deprecated_row_count: 0,
            deprecated_rows_changed: 0,
            deprecated_columns: std::ptr::null_mut(),
            deprecated_error_message: std::ptr::null_mut(),
            internal_data: std::ptr::null_mut(),
        }
    }
}

/// `duckdb_string_t`: 4-byte length, then 12 inlined bytes or a 4-byte prefix and a pointer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawString {
    pub length: u32,
    pub prefix_or_inline: [u8; 4],
    pub ptr_or_inline: [u8; 8],
}

/// DuckDB type ids (`duckdb_type`) this crate reads.
pub mod types {
    pub const BOOLEAN: u32 = 1;
    pub const TINYINT: u32 = 2;
    pub const SMALLINT: u32 = 3;
    pub const INTEGER: u32 = 4;
    pub const BIGINT: u32 = 5;
    pub const UTINYINT: u32 = 6;
    pub const USMALLINT: u32 = 7;
    pub const UINTEGER: u32 = 8;
    pub const UBIGINT: u32 = 9;
    pub const FLOAT: u32 = 10;
    pub const DOUBLE: u32 = 11;
    pub const HUGEINT: u32 = 16;
    pub const VARCHAR: u32 = 17;
    pub const DECIMAL: u32 = 19;
}

macro_rules! api {
    ($( $name:ident : fn($($arg:ty),*) $(-> $ret:ty)? ;)*) => {
        /// Function pointers into a loaded `libduckdb`.
        #[allow(non_snake_case)]
        pub struct Api {
            $( pub $name: unsafe extern "C" fn($($arg),*) $(-> $ret)?, )*
        }

        impl Api {
            /// Resolves every symbol, failing on the first one missing.
            ///
            /// # Safety
            /// `lib` must be a DuckDB 1.x C library whose symbols have the declared signatures.
            pub unsafe fn load(lib: &libloading::Library) -> Result<Api, libloading::Error> {
                Ok(Api {
                    $( $name: *unsafe { lib.get(concat!(stringify!($name), "\0").as_bytes())? }, )*
                })
            }
        }
    };
}

api! {
    duckdb_library_version: fn() -> *const c_char;
    duckdb_open: fn(*const c_char, *mut RawDb) -> State;
    duckdb_close: fn(*mut RawDb);
    duckdb_connect: fn(RawDb, *mut RawConn) -> State;
    duckdb_disconnect: fn(*mut RawConn);
    duckdb_query: fn(RawConn, *const c_char, *mut RawResult) -> State;
    duckdb_destroy_result: fn(*mut RawResult);
    duckdb_result_error: fn(*mut RawResult) -> *const c_char;
    duckdb_column_count: fn(*mut RawResult) -> Idx;
    duckdb_column_name: fn(*mut RawResult, Idx) -> *const c_char;
    duckdb_column_type: fn(*mut RawResult, Idx) -> u32;
    duckdb_row_count: fn(*mut RawResult) -> Idx;
    duckdb_value_varchar: fn(*mut RawResult, Idx, Idx) -> *mut c_char;
    duckdb_value_is_null: fn(*mut RawResult, Idx, Idx) -> bool;
    duckdb_free: fn(*mut c_void);
    duckdb_fetch_chunk: fn(RawResult) -> RawChunk;
    duckdb_destroy_data_chunk: fn(*mut RawChunk);
    duckdb_data_chunk_get_size: fn(RawChunk) -> Idx;
    duckdb_data_chunk_get_vector: fn(RawChunk, Idx) -> RawVector;
    duckdb_vector_get_data: fn(RawVector) -> *mut c_void;
    duckdb_vector_get_validity: fn(RawVector) -> *mut u64;
    duckdb_appender_create: fn(RawConn, *const c_char, *const c_char, *mut RawAppender) -> State;
    duckdb_appender_error: fn(RawAppender) -> *const c_char;
    duckdb_appender_flush: fn(RawAppender) -> State;
    duckdb_appender_destroy: fn(*mut RawAppender) -> State;
    duckdb_appender_end_row: fn(RawAppender) -> State;
    duckdb_append_varchar_length: fn(RawAppender, *const c_char, Idx) -> State;
    duckdb_append_double: fn(RawAppender, f64) -> State;
    duckdb_append_float: fn(RawAppender, f32) -> State;
    duckdb_append_int64: fn(RawAppender, i64) -> State;
    duckdb_append_uint64: fn(RawAppender, u64) -> State;
    duckdb_append_int32: fn(RawAppender, i32) -> State;
    duckdb_append_bool: fn(RawAppender, bool) -> State;
    duckdb_append_null: fn(RawAppender) -> State;
}
