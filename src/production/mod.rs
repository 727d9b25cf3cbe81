//! Production: freezing a run's variant into a production config (`promote`), and the pass
//! that tags real folders with it (`tag`), writing sidecars (`writers`) safely and
//! incrementally, remembering what it did (`state`).

pub mod promote;
mod state;
pub mod tag;
pub mod writers;

pub use tag::{collect, tag, Change, ImageReport, Request, Summary};
