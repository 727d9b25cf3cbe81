//! What a vector engine gives per image: perceptual hashes or an embedding.

/// One image's vector output.
#[derive(Debug, Clone, PartialEq)]
pub enum Vector {
    /// Perceptual hashes, one per method: `(method, hex)`, the hex as Python's `imagehash`
    /// prints it (the first bit is the most significant).
    Hashes(Vec<(String, String)>),
    /// An embedding, unit length.
    Embedding(Vec<f32>),
}

impl Vector {
    /// The hash of `method`, when this is a set of hashes that has it.
    pub fn hash(&self, method: &str) -> Option<&str> {
        match self {
            Vector::Hashes(h) => h
                .iter()
                .find(|(m, _)| m == method)
                .map(|(_, hex)| hex.as_str()),
            Vector::Embedding(_) => None,
        }
    }

    /// The embedding, when this is one.
    pub fn embedding(&self) -> Option<&[f32]> {
        match self {
            Vector::Embedding(v) => Some(v),
            Vector::Hashes(_) => None,
        }
    }
}
