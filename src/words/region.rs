//! A region of an image a detector found: a face, with its box, landmarks, score and (when a
//! recogniser ran) its embedding and the person it was matched to.

/// One detected region, in the pixels of the upright image.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    /// Left, top, width and height, clipped to the image.
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    /// The detector's confidence, 0–1.
    pub score: f32,
    /// Five landmarks as x, y pairs: the eye, the other eye, the nose tip, the mouth corners
    /// (left to right as the image shows them).
    pub landmarks: [f32; 10],
    /// Sharpness: the variance of the Laplacian of the aligned face (lower is blurrier);
    /// `None` when no face crop was made.
    pub blur: Option<f32>,
    /// The recogniser's unit-length embedding, when one ran.
    pub embedding: Option<Vec<f32>>,
    /// The enrolled person it was matched to, as enrolled, with the cosine similarity.
    pub person: Option<(String, f32)>,
    /// The size (width, height) of the upright image the box is in.
    pub frame: (u32, u32),
    /// Why the region does not count as a face (`small`, `blurry`, `low score`); `None` when
    /// it counts.
    pub skipped: Option<String>,
}
