//! Datasets on disk: the image files (`scan`) and their ground truth (`ground_truth`).
//!
//! Called by the runner and by `iw-lab plan`; reads files, writes only the hash index under
//! the project's `.iw-lab/` folder.

pub mod ground_truth;
pub mod names;
pub mod scan;
mod spec;

pub use scan::{scan, ImageEntry, ImageMeta, Scan};
pub use spec::{Dataset, GroundTruth};
