//! `faces`: YuNet face detection with an optional SFace recogniser, run with ONNX Runtime.
//!
//! Per image: the picture letterboxed onto YuNet's 640×640 canvas (made on a worker thread,
//! [`Engine::prepare`]); the detector's three heads decoded and suppressed
//! (`crate::faces::detect`); each face that passes the size filter aligned to the 112×112
//! template from the full-resolution image, measured for sharpness and embedded; embeddings
//! matched one to one against the project's gallery. Tags: exactly one count tag (`no face`,
//! `1 face`, `N faces`, through the model's aliases), scored by the confidence in that
//! count, and `person:NAME` for each recognised face, scored by its similarity.

use std::sync::{Arc, Mutex};

use anyhow::{bail, Context as _, Result};
use image::RgbImage;
use ort::session::Session;
use ort::value::Tensor;

use super::{
    Capabilities, Category, Context, Detection, Engine, EngineError, Identity, Prepared, Region,
    TagScore,
};
use crate::config::{FacesSpec, Model};
use crate::dataset::ImageEntry;
use crate::faces::{align, detect, Gallery};
use crate::tags::Aliases;
use crate::words::Filter;

/// Bump when preprocessing or output handling changes (invalidates cached outputs).
pub const VERSION: u32 = 1;

/// The factory's entry for `faces`.
pub(super) struct Kind;

impl super::Maker for Kind {
    fn identify(&self, model: &Model, ctx: &Context, download: bool) -> Result<Option<Identity>> {
        identify(model, ctx, download)
    }

    fn capabilities(&self, _model: &Model) -> Capabilities {
        capabilities()
    }

    fn load(&self, model: &Model, identity: &Identity, ctx: &Context) -> Result<Arc<dyn Engine>> {
        Ok(Arc::new(FaceEngine::load(model, identity, ctx)?))
    }
}

fn capabilities() -> Capabilities {
    Capabilities {
        tags: true,
        regions: true,
        needs_pixels: true,
        max_batch: 1,
        ..Capabilities::default()
    }
}

fn spec(model: &Model) -> Result<&FacesSpec> {
    model
        .faces
        .as_ref()
        .with_context(|| format!("model `{}` has no face settings", model.name))
}

/// The gallery a recognising model matches against, checked against its recogniser.
fn gallery<'c>(model: &Model, ctx: &'c Context, recognizer: &str) -> Result<&'c Arc<Gallery>> {
    let Some(g) = ctx.gallery.as_ref().filter(|g| !g.people.is_empty()) else {
        bail!(
            "model `{}` recognises faces (`recognize: true`) but the project has no enrolled people; enrol them with `iw-lab faces enroll PEOPLE/`",
            model.name
        );
    };
    if g.recognizer != recognizer {
        bail!(
            "model `{}`: the project's face gallery was enrolled with another recogniser ({}); enrol again with this model (`iw-lab faces enroll --model ...`)",
            model.name,
            short(&g.recognizer)
        );
    }
    Ok(g)
}

fn short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

fn identify(model: &Model, ctx: &Context, download: bool) -> Result<Option<Identity>> {
    let faces = spec(model)?;
    let source = model
        .source_parsed
        .as_ref()
        .context("faces without a source")?;
    let Some(detector) = ctx.file("detector", model, source, model.sha256.as_deref(), download)?
    else {
        return Ok(None);
    };
    let mut files = vec![detector];
    if let Some(src) = &faces.recognizer_parsed {
        let sha = faces.recognizer_sha256.as_deref();
        let Some(f) = ctx.file("recognizer", model, src, sha, download)? else {
            return Ok(None);
        };
        files.push(f);
    }
    let people = if faces.recognize {
        gallery(model, ctx, &files[1].blake3)?.fingerprint()
    } else {
        String::new()
    };
    let settings = serde_json::to_string(faces)?;
    let fingerprint_src = format!(
        "faces/{VERSION}\ndetector:{}\nrecognizer:{}\nsettings:{settings}\naliases:{}\ngallery:{people}\n",
        files[0].blake3,
        files.get(1).map_or("", |f| f.blake3.as_str()),
        serde_json::to_string(&model.aliases)?
    );
    Ok(Some(Identity {
        kind: "faces",
        version: VERSION,
        fingerprint: blake3::hash(fingerprint_src.as_bytes())
            .to_hex()
            .to_string(),
        spec: serde_json::json!({ "faces": faces }),
        files,
    }))
}

/// One image on the detector's canvas, with the image itself for the crops.
struct Canvas {
    tensor: Vec<f32>,
    letterbox: detect::Letterbox,
    /// The image, shrunk by `crop_scale` when it was large.
    image: RgbImage,
    crop_scale: f32,
}

/// One detector (and recogniser) session pair. Images run in parallel, one per lane, each
/// lane's sessions on a share of the cores: for models this small, images side by side keep
/// the cores busier than one image's operators spread over them.
struct Lane {
    detector: Mutex<Session>,
    recognizer: Option<Mutex<Session>>,
}

/// Lanes at most (each holds its own copy of the recogniser, 39 MB).
const MAX_LANES: usize = 4;

/// A loaded detector (and recogniser).
pub struct FaceEngine {
    lanes: Vec<Lane>,
    settings: FacesSpec,
    aliases: Aliases,
    gallery: Option<Arc<Gallery>>,
}

/// Checks that `session` has one float input of `shape` (a fixed-size image batch of 1).
fn check_input(session: &Session, shape: [i64; 4], what: &str) -> Result<()> {
    let input = session
        .inputs()
        .first()
        .context("the model has no inputs")?;
    let ort::value::ValueType::Tensor { shape: got, .. } = input.dtype() else {
        bail!("the {what}'s input `{}` is not a tensor", input.name());
    };
    let got: Vec<i64> = got.iter().copied().collect();
    if got.len() != 4 || got[1..] != shape[1..] {
        bail!(
            "the {what}'s input `{}` has shape {got:?}, not {shape:?}: is this the right model file?",
            input.name()
        );
    }
    Ok(())
}

/// One lane's sessions, checked: YuNet's input and heads, SFace's input.
fn lane(model: &Model, identity: &Identity, ctx: &Context, threads: usize) -> Result<Lane> {
    let what = |role: &str| format!("model `{}`: its {role}", model.name);
    let detector = super::onnx_session(ctx, &identity.files[0].path, threads, true)
        .with_context(|| what("detector"))?;
    let side = detect::SIDE as i64;
    check_input(&detector, [1, 3, side, side], "detector").with_context(|| what("detector"))?;
    for name in head_names(8) {
        if !detector.outputs().iter().any(|o| o.name() == name) {
            bail!("model `{}`: the detector has no output `{name}`; a `faces` model is YuNet 2023mar (outputs cls/obj/bbox/kps at strides 8, 16, 32)", model.name);
        }
    }
    let recognizer = match identity.files.get(1) {
        Some(f) => {
            let s = super::onnx_session(ctx, &f.path, threads, true)
                .with_context(|| what("recogniser"))?;
            let side = align::SIZE as i64;
            check_input(&s, [1, 3, side, side], "recogniser")
                .with_context(|| what("recogniser"))?;
            Some(Mutex::new(s))
        }
        None => None,
    };
    Ok(Lane {
        detector: Mutex::new(detector),
        recognizer,
    })
}

impl FaceEngine {
    pub fn load(model: &Model, identity: &Identity, ctx: &Context) -> Result<FaceEngine> {
        let settings = spec(model)?.clone();
        let threads = model
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let lanes = threads.clamp(1, MAX_LANES);
        let per_lane = (threads / lanes).max(1);
        let lanes = (0..lanes)
            .map(|_| lane(model, identity, ctx, per_lane))
            .collect::<Result<Vec<Lane>>>()?;
        let gallery = match (&settings.recognize, identity.files.get(1)) {
            (true, Some(f)) => Some(gallery(model, ctx, &f.blake3)?.clone()),
            _ => None,
        };
        Ok(FaceEngine {
            lanes,
            settings,
            aliases: model.aliases.clone(),
            gallery,
        })
    }

    /// Finds, measures and recognises the faces of one canvas.
    fn detect_one(
        &self,
        lane: &Lane,
        mut canvas: Canvas,
        floor: f32,
    ) -> Result<Detection, EngineError> {
        let tensor = std::mem::take(&mut canvas.tensor);
        let candidates = self.candidates(lane, tensor).map_err(EngineError::Model)?;
        let mut regions = Vec::new();
        let mut counted_scores = Vec::new();
        for c in candidates {
            let c = detect::to_image(&c, &canvas.letterbox);
            let is_face = c.score >= self.settings.score;
            let mut region = Region {
                x: c.x,
                y: c.y,
                w: c.w,
                h: c.h,
                score: c.score,
                landmarks: c.landmarks,
                blur: None,
                embedding: None,
                person: None,
                frame: (canvas.letterbox.width, canvas.letterbox.height),
                skipped: None,
            };
            if c.w.min(c.h) < self.settings.min_size {
                region.skipped = Some("small".into());
            } else if is_face {
                self.measure(lane, &canvas.image, canvas.crop_scale, &mut region)
                    .map_err(EngineError::Model)?;
            }
            if region.skipped.is_none() {
                counted_scores.push(c.score);
            }
            if is_face {
                regions.push(region);
            }
        }
        let counted = regions.iter().filter(|r| r.skipped.is_none()).count();
        let (tag, score) = detect::count(&counted_scores, counted, self.settings.max_count);
        let mut tags = vec![TagScore {
            tag: self.aliased(&tag).into(),
            score,
            category: Category::General,
        }];
        self.recognise(&mut regions, &mut tags, floor);
        Ok(Detection { tags, regions })
    }

    fn aliased(&self, tag: &str) -> String {
        match crate::tags::normalise(tag) {
            Some(n) => self.aliases.apply(n),
            None => tag.to_string(),
        }
    }

    /// The detector's candidates on the canvas, suppressed, strongest first.
    fn candidates(&self, lane: &Lane, tensor: Vec<f32>) -> Result<Vec<detect::Candidate>, String> {
        let side = detect::SIDE as usize;
        let tensor =
            Tensor::from_array(([1usize, 3, side, side], tensor)).map_err(|e| e.to_string())?;
        let mut session = lane.detector.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session
            .run(ort::inputs![tensor])
            .map_err(|e| format!("the detector failed: {e}"))?;
        let mut candidates = Vec::new();
        for stride in detect::STRIDES {
            let [cls, obj, bbox, kps] = head_names(stride);
            let get = |name: &str| -> Result<&[f32], String> {
                let value = outputs
                    .get(name)
                    .ok_or_else(|| format!("the detector gave no `{name}`"))?;
                value
                    .try_extract_tensor::<f32>()
                    .map(|(_, v)| v)
                    .map_err(|e| format!("`{name}`: {e}"))
            };
            let head = detect::Head {
                stride,
                cls: get(&cls)?,
                obj: get(&obj)?,
                bbox: get(&bbox)?,
                kps: get(&kps)?,
            };
            detect::decode(&head, detect::CANDIDATE_FLOOR, &mut candidates);
        }
        Ok(detect::suppress(candidates, self.settings.nms))
    }

    /// Aligns a face, measures its sharpness and embeds it (when there is a recogniser).
    fn measure(
        &self,
        lane: &Lane,
        image: &RgbImage,
        scale: f32,
        region: &mut Region,
    ) -> Result<(), String> {
        let Some(recognizer) = &lane.recognizer else {
            return Ok(());
        };
        let landmarks = region.landmarks.map(|v| v * scale);
        let Some(t) = align::estimate(&landmarks) else {
            region.skipped = Some("no landmarks".into());
            return Ok(());
        };
        let crop = align::warp(image, &t);
        let sharpness = align::sharpness(&crop);
        region.blur = Some(sharpness);
        if sharpness < self.settings.min_sharpness {
            region.skipped = Some("blurry".into());
            return Ok(());
        }
        let side = align::SIZE as usize;
        let tensor = Tensor::from_array(([1usize, 3, side, side], align::tensor(&crop)))
            .map_err(|e| e.to_string())?;
        let mut session = recognizer.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session
            .run(ort::inputs![tensor])
            .map_err(|e| format!("the recogniser failed: {e}"))?;
        let (_, values) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| format!("the recogniser's output: {e}"))?;
        region.embedding = unit(values);
        if region.embedding.is_none() {
            return Err(format!(
                "the recogniser gave {} values, not a finite non-zero embedding",
                values.len()
            ));
        }
        Ok(())
    }

    /// Matches the counted faces to the gallery and adds a tag per recognised person.
    fn recognise(&self, regions: &mut [Region], tags: &mut Vec<TagScore>, floor: f32) {
        let Some(gallery) = &self.gallery else {
            return;
        };
        let which: Vec<usize> = (0..regions.len())
            .filter(|&i| regions[i].skipped.is_none() && regions[i].embedding.is_some())
            .collect();
        let faces: Vec<&[f32]> = which
            .iter()
            .filter_map(|&i| regions[i].embedding.as_deref())
            .collect();
        let found = gallery.recognise(&faces, self.settings.min_similarity);
        for (&i, hit) in which.iter().zip(found) {
            let Some((p, similarity)) = hit else { continue };
            let name = gallery.people[p].name.clone();
            let score = similarity.clamp(0.0, 1.0);
            if score >= floor {
                tags.push(TagScore {
                    tag: format!("person:{name}").into(),
                    score,
                    category: Category::Character,
                });
            }
            regions[i].person = Some((name, similarity));
        }
    }
}

/// The four outputs of the head at `stride`.
fn head_names(stride: u32) -> [String; 4] {
    ["cls", "obj", "bbox", "kps"].map(|h| format!("{h}_{stride}"))
}

/// `values` scaled to unit length; `None` when empty, zero or not finite.
fn unit(values: &[f32]) -> Option<Vec<f32>> {
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
    (norm.is_finite() && norm > 0.0).then(|| values.iter().map(|v| v / norm).collect())
}

/// The longest side of the image kept for the face crops: a queued image costs at most
/// 3072² × 3 bytes (28 MB) whatever the photo, and a face big enough to detect on the 640 px
/// canvas keeps well over the recogniser's 112 px at this size.
const CROP_SIDE: u32 = 3072;

/// The detector's input: the image resized (bilinear, as Pillow) onto the canvas at the top
/// left, planar B, G, R, 0–255, black elsewhere; with the image for the crops, shrunk to
/// [`CROP_SIDE`] when larger.
fn canvas(img: RgbImage) -> Canvas {
    let lb = detect::Letterbox::fit(img.width(), img.height());
    let (sw, sh) = crate::imaging::fit_longest_side(img.width(), img.height(), CROP_SIDE);
    let img = if (sw, sh) == img.dimensions() {
        img
    } else {
        crate::imaging::resample::resize(&img, sw, sh, Filter::Bilinear)
    };
    let small = crate::imaging::resample::resize(&img, lb.scaled_w, lb.scaled_h, Filter::Bilinear);
    let side = detect::SIDE as usize;
    let plane = side * side;
    let mut tensor = vec![0f32; plane * 3];
    let w = lb.scaled_w as usize;
    for (y, row) in small.as_raw().chunks_exact(w * 3).enumerate() {
        for (x, px) in row.chunks_exact(3).enumerate() {
            let i = y * side + x;
            tensor[i] = px[2] as f32;
            tensor[plane + i] = px[1] as f32;
            tensor[2 * plane + i] = px[0] as f32;
        }
    }
    Canvas {
        tensor,
        crop_scale: img.width() as f32 / lb.width as f32,
        letterbox: lb,
        image: img,
    }
}

impl Engine for FaceEngine {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_batch: self.lanes.len(),
            ..capabilities()
        }
    }

    fn kind(&self) -> &'static str {
        "faces"
    }

    fn prepare(
        &self,
        _image: &ImageEntry,
        pixels: Option<&RgbImage>,
    ) -> Result<Prepared, EngineError> {
        let img = pixels.ok_or_else(|| EngineError::Input("no pixels".into()))?;
        Ok(Prepared::Staged(Box::new(canvas(img.clone()))))
    }

    fn prepare_owned(
        &self,
        _image: &ImageEntry,
        pixels: RgbImage,
    ) -> Result<Prepared, EngineError> {
        Ok(Prepared::Staged(Box::new(canvas(pixels))))
    }

    fn detect(&self, batch: Vec<Prepared>, floor: f32) -> Vec<Result<Detection, EngineError>> {
        let one = |lane: &Lane, p: Prepared| match p {
            Prepared::Staged(any) => match any.downcast::<Canvas>() {
                Ok(canvas) => self.detect_one(lane, *canvas, floor),
                Err(_) => Err(EngineError::Input("not a face canvas".into())),
            },
            _ => Err(EngineError::Input("not a face canvas".into())),
        };
        if batch.len() <= 1 {
            return batch.into_iter().map(|p| one(&self.lanes[0], p)).collect();
        }
        // One image per lane, side by side (a batch is never larger than the lanes).
        std::thread::scope(|scope| {
            let running: Vec<_> = batch
                .into_iter()
                .zip(self.lanes.iter().cycle())
                .map(|(p, lane)| {
                    scope.spawn(move || {
                        crate::panics::catch(|| one(lane, p))
                            .unwrap_or_else(|m| Err(EngineError::Model(m)))
                    })
                })
                .collect();
            running
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(EngineError::Model("a face worker panicked".into()))
                    })
                })
                .collect()
        })
    }

    fn infer(&self, batch: Vec<Prepared>, floor: f32) -> Vec<Result<Vec<TagScore>, EngineError>> {
        self.detect(batch, floor)
            .into_iter()
            .map(|r| r.map(|d| d.tags))
            .collect()
    }
}
