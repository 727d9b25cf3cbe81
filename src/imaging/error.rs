//! Why an image could not be used: the one error of the decoding gate (`decode`) and the
//! JPEG decoder (`jpeg`), which both name it.

/// Why an image could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty file")]
    Empty,
    #[error("not an image: unrecognised format (first bytes {0})")]
    UnknownFormat(String),
    #[error("{format} image of {width}x{height} = {pixels} pixels exceeds the limit of {limit} pixels (possible decompression bomb; raise max_pixels to allow it)")]
    TooLarge {
        format: String,
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
    #[error("truncated {0} file (no end-of-image marker)")]
    Truncated(String),
    #[error("corrupt {format} file: {message}")]
    Corrupt { format: String, message: String },
    #[error("{format} image has zero width or height")]
    ZeroSize { format: String },
}
