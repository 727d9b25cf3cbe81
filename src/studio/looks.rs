//! What the studio keeps per listing for "similar images" and the duplicates view
//! (`super::similar`): each listed image's perceptual hash and embedding, computed once.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::similarity::dupes::{Found, Item};

/// A computation over every listed image: started by the first request that needs it, run
/// on a thread of its own, then kept as long as the listing is served.
#[derive(Default)]
pub enum Job<T> {
    #[default]
    Idle,
    Running(Instant),
    Ready(Arc<T>),
    /// Why, and when: asked again a while later, the job is tried again.
    Failed(String, Instant),
}

/// The perceptual hashes and embeddings of a listing, once asked for.
#[derive(Default)]
pub struct Looks {
    pub hashed: Mutex<Job<Hashed>>,
    pub embedded: Mutex<Job<Embedded>>,
}

/// The pHash of every readable listed image.
pub struct Hashed {
    /// One per readable file (a file reached twice through a link counts once).
    pub items: Vec<Item>,
    /// The listing id of each item.
    pub ids: Vec<usize>,
    /// Per listing id: its item (a second path to a file: that file's item).
    pub item_of: Vec<Option<usize>>,
    /// Files without a hash, and why.
    pub failed: Vec<(String, String)>,
    /// The groups at a distance, found again when a pair is marked "not a duplicate".
    pub found: Mutex<Option<(u32, Arc<Found>)>>,
}

/// The embedding of every readable listed image, one row per distinct content.
pub struct Embedded {
    pub dim: usize,
    pub data: Vec<f32>,
    /// Per row: the listing ids holding that content.
    pub ids: Vec<Vec<usize>>,
    /// Per listing id: its row.
    pub row_of: Vec<Option<u32>>,
    pub failed: Vec<(String, String)>,
}
