//! Requantisation of weights candle's CPU backend has no SIMD kernel for.
//!
//! candle 0.11.1 runs Q4_1, Q5_0 and Q5_1 matrix products through scalar loops (no AVX2 or NEON
//! path), which made SmolLM2-135M Q4_1 read ~8 prompt tokens/s and generate ~2 tokens/s on two
//! cores. Such tensors are turned into Q8_0 at load, whose kernels are vectorised. Q8_0's
//! rounding error (at most amax/254 per block of 32) is about an eighth of a Q4_1 block's own
//! half step, so answers match the file's almost always but not bit for bit with llama.cpp.
//!
//! The rewrite goes through a GGUF file in memory: peak memory during load is about twice the
//! requantised weights. Files in other quantisations (Q4_0, Q8_0, the K-quants) load as they
//! are.

use std::io::{Cursor, Read, Seek};

use anyhow::{Context as _, Result};
use candle_core::quantized::gguf_file::{self, Content};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Device;

/// Whether `dtype` runs through candle's scalar CPU loops.
fn slow_on_cpu(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1)
}

/// Whether any tensor of `content` would be requantised.
pub(super) fn needed(content: &Content) -> bool {
    content
        .tensor_infos
        .values()
        .any(|t| slow_on_cpu(t.ggml_dtype))
}

/// The same model as a GGUF file in memory, slow tensors requantised to Q8_0.
pub(super) fn to_q8_0<R: Read + Seek>(
    content: &Content,
    reader: &mut R,
) -> Result<Cursor<Vec<u8>>> {
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors: Vec<(&str, QTensor)> = Vec::with_capacity(names.len());
    for name in names {
        let tensor = content
            .tensor(reader, name, &Device::Cpu)
            .with_context(|| format!("cannot read tensor `{name}`"))?;
        let tensor = if slow_on_cpu(tensor.dtype()) {
            let values = tensor.dequantize(&Device::Cpu)?;
            QTensor::quantize(&values, GgmlDType::Q8_0)
                .with_context(|| format!("cannot requantise `{name}` to Q8_0"))?
        } else {
            tensor
        };
        tensors.push((name, tensor));
    }
    // The rewrite is 32-byte aligned whatever the original said.
    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.alignment")
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let size: usize = tensors
        .iter()
        .map(|(_, t)| t.storage_size_in_bytes() + 32)
        .sum();
    let mut out = Cursor::new(Vec::with_capacity(size + (1 << 20)));
    gguf_file::write(&mut out, &metadata, &refs).context("cannot rewrite the model")?;
    out.set_position(0);
    Ok(out)
}
