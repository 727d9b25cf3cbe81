//! The words every layer shares: plain types with no behaviour beyond their own (names,
//! presets, small constructors). This module imports nothing from the crate, so any module may
//! use it; it is the bottom layer of the architecture (`docs/architecture.md`).

pub mod identity;
pub mod image;
pub mod kinds;
pub mod metric;
pub mod region;
pub mod tag;
pub mod vector;

pub use identity::{FileInfo, Identity};
pub use image::{
    ChannelOrder, Filter, Format, ImageSpec, Layout, OutputActivation, PreprocessSpec, Preset,
};
pub use kinds::{
    ChooseBy, EnsembleMethod, GroundTruthKind, ModelKind, OutputKind, Reference, ScoreRepeats,
    SidecarFormat,
};
pub use metric::{Direction, Metric};
pub use region::Region;
pub use tag::{Category, TagScore};
pub use vector::Vector;

/// The similarity at or above which an embedding match of a free-text tag onto the
/// vocabulary counts (measured for all-MiniLM-L6-v2; see `vocab`).
pub const DEFAULT_VOCAB_THRESHOLD: f32 = 0.78;
