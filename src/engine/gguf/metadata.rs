//! Typed reads of GGUF metadata values.
//!
//! GGUF writers disagree on integer widths (`token_type` is i32 in one file, u32 in another), so
//! every integer read here accepts any integer type that fits. Errors name the key; the caller
//! adds the file.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Result};
use candle_core::quantized::gguf_file::Value;

pub(super) type Metadata = HashMap<String, Value>;

/// An integer of any width, as `i64`.
pub(super) fn as_int(v: &Value) -> Option<i64> {
    Some(match v {
        Value::U8(x) => *x as i64,
        Value::I8(x) => *x as i64,
        Value::U16(x) => *x as i64,
        Value::I16(x) => *x as i64,
        Value::U32(x) => *x as i64,
        Value::I32(x) => *x as i64,
        Value::U64(x) => i64::try_from(*x).ok()?,
        Value::I64(x) => *x,
        _ => return None,
    })
}

pub(super) fn opt_str<'a>(md: &'a Metadata, key: &str) -> Result<Option<&'a str>> {
    match md.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => bail!("`{key}` should be a string, found {:?}", v.value_type()),
    }
}

pub(super) fn req_str<'a>(md: &'a Metadata, key: &str) -> Result<&'a str> {
    opt_str(md, key)?.ok_or_else(|| anyhow!("missing `{key}`"))
}

pub(super) fn opt_u32(md: &Metadata, key: &str) -> Result<Option<u32>> {
    match md.get(key) {
        None => Ok(None),
        Some(v) => as_int(v)
            .and_then(|i| u32::try_from(i).ok())
            .map(Some)
            .ok_or_else(|| anyhow!("`{key}` should be a non-negative integer, found {v:?}")),
    }
}

pub(super) fn opt_bool(md: &Metadata, key: &str) -> Result<Option<bool>> {
    match md.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => bail!("`{key}` should be a bool, found {:?}", v.value_type()),
    }
}

fn req_array<'a>(md: &'a Metadata, key: &str) -> Result<&'a [Value]> {
    match md.get(key) {
        None => bail!("missing `{key}`"),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => bail!("`{key}` should be an array, found {:?}", v.value_type()),
    }
}

pub(super) fn str_array<'a>(md: &'a Metadata, key: &str) -> Result<Vec<&'a str>> {
    req_array(md, key)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.as_str()),
            v => bail!(
                "`{key}[{i}]` should be a string, found {:?}",
                v.value_type()
            ),
        })
        .collect()
}

pub(super) fn int_array(md: &Metadata, key: &str) -> Result<Vec<i64>> {
    req_array(md, key)?
        .iter()
        .enumerate()
        .map(|(i, v)| as_int(v).ok_or_else(|| anyhow!("`{key}[{i}]` should be an integer")))
        .collect()
}

pub(super) fn f32_array(md: &Metadata, key: &str) -> Result<Vec<f32>> {
    req_array(md, key)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::F32(x) => Ok(*x),
            Value::F64(x) => Ok(*x as f32),
            _ => bail!("`{key}[{i}]` should be a float"),
        })
        .collect()
}
