//! The `phash` engine: every perceptual hash of each image (pHash, dHash, aHash and
//! blockhash at 8×8 and 16×16; `crate::imaging::perceptual`). No model file: the identity is
//! the algorithm version, so a change to how hashes are computed never reuses stale ones.
//! Hashing is cheap next to decoding, so each image gets all of them in one decode, on the
//! worker threads.

use std::sync::Arc;

use image::RgbImage;

use crate::config::Model;
use crate::dataset::ImageEntry;
use crate::engine::{Capabilities, Engine, EngineError, Identity, Prepared, Vector};
use crate::imaging::perceptual;

/// Bumped whenever a hash could change for the same pixels.
const VERSION: u32 = 2;

/// The factory's entry for `phash`.
pub(crate) struct Kind;

impl crate::engine::Maker for Kind {
    fn identify(
        &self,
        model: &Model,
        _ctx: &crate::engine::Context,
        _download: bool,
    ) -> anyhow::Result<Option<Identity>> {
        Ok(Some(identity(&methods_of(model)?)))
    }

    fn capabilities(&self, _model: &Model) -> Capabilities {
        capabilities()
    }

    fn load(
        &self,
        model: &Model,
        _identity: &Identity,
        _ctx: &crate::engine::Context,
    ) -> anyhow::Result<Arc<dyn Engine>> {
        Ok(Arc::new(Phash {
            methods: methods_of(model)?,
        }))
    }
}

/// The methods a model computes: its `methods` parameter (the built-in model of `dupes
/// --method M` computes M alone), else all of them.
fn methods_of(model: &Model) -> anyhow::Result<Vec<perceptual::Method>> {
    let Some(list) = model.params.get("methods") else {
        return Ok(perceptual::METHODS.to_vec());
    };
    let names = list.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut out = Vec::new();
    for n in names {
        let name = n.as_str().unwrap_or_default();
        match perceptual::method(name) {
            Some(m) => out.push(m),
            None => anyhow::bail!("model `{}`: unknown hash method `{name}`", model.name),
        }
    }
    Ok(out)
}

/// Identified by the algorithm version and the methods it computes.
fn identity(methods: &[perceptual::Method]) -> Identity {
    let methods: Vec<&str> = methods.iter().map(|m| m.name).collect();
    let mut id = crate::engine::identity_of_spec(
        "phash",
        serde_json::json!({"version": VERSION, "methods": methods, "grey": "pillow-L", "resize": "pillow-lanczos"}),
    );
    id.version = VERSION;
    id
}

fn capabilities() -> Capabilities {
    Capabilities {
        vectors: true,
        max_batch: 64,
        parallelism: 1,
        ..Capabilities::default()
    }
}

/// The hashing engine.
pub struct Phash {
    methods: Vec<perceptual::Method>,
}

impl Engine for Phash {
    fn capabilities(&self) -> Capabilities {
        capabilities()
    }

    fn kind(&self) -> &'static str {
        "phash"
    }

    /// Reads, checks and decodes the stored pixels (no orientation, no compositing: what
    /// `imagehash` sees), then hashes.
    fn prepare(
        &self,
        image: &ImageEntry,
        _pixels: Option<&RgbImage>,
    ) -> Result<Prepared, EngineError> {
        let bytes = image.read_verified().map_err(EngineError::Input)?;
        let max = crate::config::resolve::DEFAULT_MAX_PIXELS;
        let img = crate::imaging::decode::decode_pixels(&bytes, max)
            .map_err(|e| EngineError::Input(e.to_string()))?;
        let palette = perceptual::is_palette(&bytes);
        drop(bytes);
        Ok(Prepared::Vector(Vector::Hashes(perceptual::hash_all(
            &img,
            palette,
            &self.methods,
        ))))
    }

    fn vectors(&self, batch: Vec<Prepared>) -> Vec<Result<Vector, EngineError>> {
        batch
            .into_iter()
            .map(|p| match p {
                Prepared::Vector(v) => Ok(v),
                _ => Err(EngineError::Input("the phash engine got no hashes".into())),
            })
            .collect()
    }
}
