//! `onnx-tagger`: multi-label taggers and classifiers in ONNX, run with ONNX Runtime.
//!
//! Preprocessing is data (`crate::words::PreprocessSpec`); the input size comes from the
//! graph unless set. Batches when the batch dimension is dynamic. A failed batch is retried
//! image by image so one bad input fails alone.

use std::sync::Mutex;

use anyhow::{bail, Context as _, Result};
use image::RgbImage;
use ort::session::Session;
use ort::value::{Tensor, ValueType};

use super::labels::{self, Label};
use super::{Capabilities, Context, Engine, EngineError, Identity, Prepared, TagScore};
use crate::config::files::Layout;
use crate::config::{Labels, Model};
use crate::dataset::ImageEntry;
use crate::imaging;
use crate::words::PreprocessSpec;

/// Bump when preprocessing or output handling changes (invalidates cached outputs).
pub const VERSION: u32 = 1;

/// The factory's entry for `onnx-tagger`.
pub(super) struct Kind;

impl super::Maker for Kind {
    fn identify(&self, model: &Model, ctx: &Context, download: bool) -> Result<Option<Identity>> {
        identify(model, ctx, download)
    }

    fn capabilities(&self, model: &Model) -> Capabilities {
        capabilities(model)
    }

    fn load(
        &self,
        model: &Model,
        identity: &Identity,
        ctx: &Context,
    ) -> Result<std::sync::Arc<dyn Engine>> {
        Ok(std::sync::Arc::new(OnnxTagger::load(model, identity, ctx)?))
    }
}

fn identify(model: &Model, ctx: &Context, download: bool) -> Result<Option<Identity>> {
    let source = model
        .source_parsed
        .as_ref()
        .context("onnx-tagger without a source")?;
    let Some(weights) = ctx.file("weights", model, source, model.sha256.as_deref(), download)?
    else {
        return Ok(None);
    };
    let mut files = vec![weights];
    let labels_id = match (&model.labels, &model.labels_parsed) {
        (Some(Labels::Source { sha256, .. }), Some(src)) => {
            let Some(f) = ctx.file("labels", model, src, sha256.as_deref(), download)? else {
                return Ok(None);
            };
            let id = f.blake3.clone();
            files.push(f);
            id
        }
        (Some(Labels::Inline(list)), _) => blake3::hash(serde_json::to_string(list)?.as_bytes())
            .to_hex()
            .to_string(),
        _ => bail!("model `{}` has no labels", model.name),
    };
    let fingerprint_src = format!(
        "onnx-tagger/{VERSION}\nweights:{}\nlabels:{labels_id}\naliases:{}\n",
        files[0].blake3,
        serde_json::to_string(&model.aliases)?
    );
    Ok(Some(Identity {
        kind: "onnx-tagger",
        version: VERSION,
        fingerprint: blake3::hash(fingerprint_src.as_bytes())
            .to_hex()
            .to_string(),
        spec: serde_json::json!({ "preprocess": model.preprocess }),
        files,
    }))
}

/// What an ONNX tagger can do: tags with scores from pixels, in batches of up to
/// `batch_size` (1 when the graph's batch dimension is fixed, known once loaded).
fn capabilities(model: &Model) -> Capabilities {
    Capabilities {
        tags: true,
        needs_pixels: true,
        max_batch: model.batch_size.max(1),
        ..Capabilities::default()
    }
}

/// A loaded ONNX tagger.
pub struct OnnxTagger {
    session: Mutex<Session>,
    spec: PreprocessSpec,
    labels: Vec<Label>,
    batch: usize,
    model_name: String,
}

impl OnnxTagger {
    pub fn load(model: &Model, identity: &Identity, ctx: &Context) -> Result<OnnxTagger> {
        let weights = &identity.files[0].path;
        let what = || format!("model `{}`: loading {}", model.name, weights.display());
        let threads = model
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let session = super::onnx_session(ctx, weights, threads, false).with_context(what)?;
        let labels = match &model.labels {
            Some(Labels::Inline(list)) => labels::from_names(list, &model.aliases)
                .map_err(|e| anyhow::anyhow!("model `{}`: labels: {e}", model.name))?,
            _ => {
                let path = &identity.files.get(1).context("labels file")?.path;
                labels::read_file(path, &model.aliases)
                    .with_context(|| format!("model `{}`", model.name))?
            }
        };
        let (spec, dynamic_batch, outputs) =
            input_shape(&session, &model.preprocess).with_context(what)?;
        if let Some(n) = outputs {
            if n != labels.len() {
                bail!(
                    "model `{}`: the labels list {} labels but the model outputs {n} scores",
                    model.name,
                    labels.len()
                );
            }
        }
        Ok(OnnxTagger {
            session: Mutex::new(session),
            spec,
            labels,
            batch: if dynamic_batch {
                model.batch_size.max(1)
            } else {
                1
            },
            model_name: model.name.clone(),
        })
    }

    fn run(&self, batch: &[Vec<f32>], floor: f32) -> Result<Vec<Vec<TagScore>>, String> {
        let per = self.spec.tensor_len();
        let mut data = Vec::with_capacity(per * batch.len());
        for t in batch {
            data.extend_from_slice(t);
        }
        let shape = self.spec.shape(batch.len());
        let tensor = Tensor::from_array((shape, data)).map_err(|e| e.to_string())?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session
            .run(ort::inputs![tensor])
            .map_err(|e| e.to_string())?;
        let (out_shape, values) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| e.to_string())?;
        let n_labels = self.labels.len();
        if values.len() != n_labels * batch.len() {
            return Err(format!(
                "model `{}` returned {} values (shape {:?}) for {} image(s) × {n_labels} labels",
                self.model_name,
                values.len(),
                out_shape,
                batch.len()
            ));
        }
        Ok(values
            .chunks_exact(n_labels)
            .map(|row| {
                let mut row = row.to_vec();
                imaging::activate(self.spec.output, &mut row);
                super::filter_scores(
                    self.labels.iter().zip(row).map(|(l, score)| TagScore {
                        tag: l.tag.clone(),
                        score,
                        category: l.category,
                    }),
                    floor,
                )
            })
            .collect())
    }
}

/// Reads the input size and batch mode from the graph; checks the layout and element type.
fn input_shape(
    session: &Session,
    spec: &PreprocessSpec,
) -> Result<(PreprocessSpec, bool, Option<usize>)> {
    let input = session
        .inputs()
        .first()
        .context("the model has no inputs")?;
    let ValueType::Tensor { ty, shape, .. } = input.dtype() else {
        bail!("input `{}` is not a tensor", input.name());
    };
    if *ty != ort::value::TensorElementType::Float32 {
        bail!(
            "input `{}` has element type {ty:?}; only float32 inputs are supported",
            input.name()
        );
    }
    let dims: Vec<i64> = shape.iter().copied().collect();
    if dims.len() != 4 {
        bail!(
            "input `{}` has shape {dims:?}; expected 4 dimensions (an image batch)",
            input.name()
        );
    }
    let (h, w, c) = match spec.layout {
        Layout::Nhwc => (dims[1], dims[2], dims[3]),
        Layout::Nchw => (dims[2], dims[3], dims[1]),
    };
    if c > 0 && c != 3 {
        bail!(
            "input `{}` has shape {dims:?}: {c} channels where the {} layout puts 3; check `layout` (or the preset)",
            input.name(),
            match spec.layout {
                Layout::Nhwc => "nhwc",
                Layout::Nchw => "nchw",
            }
        );
    }
    if h > 0 && w > 0 && h != w {
        bail!(
            "input `{}` is {h}x{w}; only square inputs are supported",
            input.name()
        );
    }
    let mut spec = spec.clone();
    match (spec.size, h) {
        (Some(s), h) if h > 0 && s as i64 != h => {
            bail!("preprocess.size is {s} but the model's input is {h}x{h}")
        }
        (None, h) if h > 0 => spec.size = Some(h as u32),
        (None, _) => bail!("the model's input size is dynamic; set preprocess.size"),
        _ => {}
    }
    if spec.resize.is_some_and(|r| Some(r) < spec.size) {
        bail!(
            "preprocess.resize must be at least the input size {}",
            spec.size.unwrap_or(0)
        );
    }
    let outputs = session.outputs().first().and_then(|o| match o.dtype() {
        ValueType::Tensor { shape, .. } => {
            shape.last().copied().filter(|d| *d > 0).map(|d| d as usize)
        }
        _ => None,
    });
    Ok((spec, dims[0] < 0, outputs))
}

impl Engine for OnnxTagger {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tags: true,
            needs_pixels: true,
            max_batch: self.batch,
            ..Capabilities::default()
        }
    }

    fn kind(&self) -> &'static str {
        "onnx-tagger"
    }

    fn prepare(
        &self,
        _image: &ImageEntry,
        pixels: Option<&RgbImage>,
    ) -> Result<Prepared, EngineError> {
        let img = pixels.ok_or_else(|| EngineError::Input("no pixels".into()))?;
        let mut out = Vec::with_capacity(self.spec.tensor_len());
        imaging::preprocess(&self.spec, img, &mut out);
        Ok(Prepared::Tensor(out))
    }

    fn infer(&self, batch: Vec<Prepared>, floor: f32) -> Vec<Result<Vec<TagScore>, EngineError>> {
        let tensors: Vec<Vec<f32>> = batch
            .into_iter()
            .map(|p| match p {
                Prepared::Tensor(t) => t,
                Prepared::Done(_) | Prepared::Vector(_) | Prepared::Staged(_) => Vec::new(),
            })
            .collect();
        match self.run(&tensors, floor) {
            Ok(rows) => rows.into_iter().map(Ok).collect(),
            Err(_) if tensors.len() > 1 => tensors
                .iter()
                .map(|t| {
                    self.run(std::slice::from_ref(t), floor)
                        .map(|mut r| r.remove(0))
                        .map_err(EngineError::Model)
                })
                .collect(),
            Err(e) => vec![Err(EngineError::Model(format!("inference failed: {e}")))],
        }
    }
}
