//! NovelAI: PNG text chunks (`Title`, `Description`, `Software`, `Source`, `Generation time`,
//! `Comment` JSON), the same record as JSON in a WebP's EXIF `UserComment`, or in the alpha
//! stealth payload.

use super::util::{num_f64, num_u32, param_text, parse_json_object, seed_of, text_of, Ctx};
use crate::metadata::{ExtraPrompt, GenMeta};
use serde_json::{Map, Value};

/// The record keys NovelAI writes beside `Comment`.
const RECORD_KEYS: &[&str] = &[
    "Title",
    "Description",
    "Software",
    "Source",
    "Generation time",
    "Comment",
];

/// Whether the carriers are NovelAI's.
pub fn detect(ctx: &Ctx) -> bool {
    if ctx
        .value("Software")
        .is_some_and(|s| s.trim().starts_with("NovelAI"))
    {
        return true;
    }
    json_records(ctx)
        .iter()
        .any(|(_, rec)| is_novelai_record(rec))
}

fn is_novelai_record(rec: &Map<String, Value>) -> bool {
    rec.get("Software")
        .and_then(Value::as_str)
        .is_some_and(|s| s.starts_with("NovelAI"))
        && rec.contains_key("Comment")
}

/// The NovelAI JSON records found in `exif:UserComment` and `stealth` carriers.
fn json_records(ctx: &Ctx) -> Vec<(usize, Map<String, Value>)> {
    ctx.all_of(&["exif:UserComment", "stealth"])
        .filter_map(|(i, c)| match parse_json_object(&c.value) {
            Some(Value::Object(m)) => Some((i, m)),
            _ => None,
        })
        .collect()
}

pub fn parse(ctx: &mut Ctx) -> GenMeta {
    let mut m = GenMeta {
        generator: Some("novelai".into()),
        ..GenMeta::default()
    };
    let record = assemble_record(ctx);
    let description = record
        .get("Description")
        .and_then(Value::as_str)
        .map(|d| d.trim_start_matches('\0').to_string());
    let c = comment_of(&record, &mut m.warnings).unwrap_or_default();
    let v4 = c.get("v4_prompt");
    let v4_neg = c.get("v4_negative_prompt");
    m.prompt = c
        .get("prompt")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| base_caption(v4))
        .or(description);
    m.negative_prompt = c
        .get("uc")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| base_caption(v4_neg));
    let img2img = read_settings(&mut m, &c);
    if let Some(source) = record.get("Source").and_then(Value::as_str) {
        let (model, hash) = split_source(source, v4.is_some());
        m.model = Some(model);
        m.model_hash = hash;
    }
    m.loras = Some(Vec::new());
    m.extra_prompts = characters(v4, v4_neg);
    keep_unmapped(&mut m, &c, &record, img2img);
    m
}

/// Assembles one record: PNG chunks win over EXIF JSON, which wins over stealth, which wins
/// over the WebP EXIF copies of the fields.
fn assemble_record(ctx: &mut Ctx) -> Map<String, Value> {
    let mut record: Map<String, Value> = Map::new();
    for key in RECORD_KEYS {
        if let Some(v) = ctx.take(key) {
            record.insert((*key).to_string(), Value::String(v.to_string()));
        }
    }
    let mut records = json_records(ctx);
    // `exif:UserComment` comes before `stealth` in `all_of` only by file order; sort so EXIF wins.
    records.sort_by_key(|(i, _)| ctx.carriers.entries[*i].key == "stealth");
    for (i, rec) in records {
        if !is_novelai_record(&rec) {
            continue;
        }
        ctx.consume(i);
        for (k, v) in rec {
            record.entry(k).or_insert(v);
        }
    }
    merge_exif_fields(ctx, &mut record);
    record
}

/// Fills the record fields still missing from their WebP EXIF copies.
fn merge_exif_fields(ctx: &mut Ctx, record: &mut Map<String, Value>) {
    for key in [
        "exif:Software",
        "exif:DocumentName",
        "exif:ImageDescription",
    ] {
        if let Some(v) = ctx.value(key) {
            let clean = v.trim_start_matches('\0').trim();
            ctx.consume_key(key);
            let field = match key {
                "exif:Software" => "Source",
                "exif:DocumentName" => "Title",
                _ => "Description",
            };
            record
                .entry(field.to_string())
                .or_insert_with(|| Value::String(clean.to_string()));
        }
    }
}

/// The record's `Comment` as a JSON object (it is a string in PNG chunks, an object in JSON
/// records); warns when it is a string that is not one.
fn comment_of(
    record: &Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Option<Map<String, Value>> {
    match record.get("Comment") {
        Some(Value::String(s)) => match parse_json_object(s) {
            Some(Value::Object(c)) => Some(c),
            _ => {
                warnings.push("NovelAI Comment is not a JSON object; only Description read".into());
                None
            }
        },
        Some(Value::Object(c)) => Some(c.clone()),
        _ => None,
    }
}

/// The base caption of a V4 (negative) prompt.
fn base_caption(v: Option<&Value>) -> Option<String> {
    v.and_then(|p| p.get("caption"))
        .and_then(|cap| cap.get("base_caption"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The sampling settings from the comment; returns whether it was an img2img request (whose
/// `strength` is the denoise).
fn read_settings(m: &mut GenMeta, c: &Map<String, Value>) -> bool {
    m.steps = c.get("steps").and_then(num_u32);
    m.cfg = c.get("scale").and_then(num_f64);
    m.seed = c.get("seed").and_then(seed_of);
    m.sampler = c.get("sampler").and_then(text_of);
    m.scheduler = c.get("noise_schedule").and_then(text_of);
    m.width = c.get("width").and_then(num_u32);
    m.height = c.get("height").and_then(num_u32);
    let img2img = c
        .get("request_type")
        .and_then(Value::as_str)
        .is_some_and(|r| r.contains("Img2Img"));
    if img2img {
        m.denoise = c.get("strength").and_then(num_f64);
    }
    img2img
}

/// Keeps the comment keys not mapped to a field, and the record's title and generation time,
/// as params.
fn keep_unmapped(
    m: &mut GenMeta,
    c: &Map<String, Value>,
    record: &Map<String, Value>,
    img2img: bool,
) {
    const MAPPED: &[&str] = &[
        "prompt",
        "uc",
        "steps",
        "scale",
        "seed",
        "sampler",
        "noise_schedule",
        "width",
        "height",
        "v4_prompt",
        "v4_negative_prompt",
    ];
    for (k, v) in c {
        if MAPPED.contains(&k.as_str()) || (img2img && k == "strength") {
            continue;
        }
        if let Some(t) = param_text(v) {
            m.params.insert(k.clone(), t);
        }
    }
    for key in ["Title", "Generation time"] {
        if let Some(t) = record.get(key).and_then(param_text) {
            m.params.insert(key.to_string(), t);
        }
    }
}

/// `Source` → (model, hash). Legacy sources (`Stable Diffusion 1D44365E`) split into name and
/// 8-hex id, as d3x-at does; V4+ sources (`NovelAI Diffusion V4.5 C02D4F98`) are the model
/// name whole, as enslo reports them.
fn split_source(source: &str, v4: bool) -> (String, Option<String>) {
    let s = source.trim();
    if !v4 && !s.starts_with("NovelAI Diffusion") {
        if let Some((name, id)) = s.rsplit_once(' ') {
            if id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return (name.trim().to_string(), Some(id.to_string()));
            }
        }
    }
    (s.to_string(), None)
}

/// V4 character prompts, with their negative and centre.
fn characters(v4: Option<&Value>, v4_neg: Option<&Value>) -> Vec<ExtraPrompt> {
    let chars = |v: Option<&Value>| {
        v.and_then(|p| p.get("caption"))
            .and_then(|c| c.get("char_captions"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let pos = chars(v4);
    let neg = chars(v4_neg);
    pos.iter()
        .enumerate()
        .filter_map(|(i, ch)| {
            let prompt = ch.get("char_caption").and_then(Value::as_str)?.to_string();
            let negative_prompt = neg
                .get(i)
                .and_then(|n| n.get("char_caption"))
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string);
            let centers: Vec<String> = ch
                .get("centers")
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| {
                            let x = c.get("x").and_then(num_f64)?;
                            let y = c.get("y").and_then(num_f64)?;
                            Some(format!("x={x},y={y}"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some(ExtraPrompt {
                kind: "character".into(),
                prompt,
                negative_prompt,
                region: (!centers.is_empty()).then(|| centers.join(";")),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Carriers;

    #[test]
    fn v4_characters_and_full_source() {
        let comment = r#"{"prompt": "2girls", "uc": "bad", "steps": 28, "scale": 5.0, "seed": 17, "sampler": "k_euler_ancestral", "noise_schedule": "karras", "width": 1024, "height": 1024, "strength": 0.7, "request_type": "PromptGenerateRequest",
          "v4_prompt": {"caption": {"base_caption": "2girls", "char_captions": [{"char_caption": "girl, miku", "centers": [{"x": 0.5, "y": 0.3}]}]}, "use_coords": true},
          "v4_negative_prompt": {"caption": {"base_caption": "bad", "char_captions": [{"char_caption": "", "centers": [{"x": 0.5, "y": 0.3}]}]}}}"#;
        let c = Carriers::from_pairs(&[
            ("Software", "NovelAI"),
            ("Source", "NovelAI Diffusion V4.5 4BDE2A90"),
            ("Description", "2girls"),
            ("Comment", comment),
        ]);
        let mut ctx = Ctx::new(&c);
        assert!(detect(&ctx));
        let m = parse(&mut ctx);
        assert_eq!(m.prompt.as_deref(), Some("2girls"));
        assert_eq!(m.negative_prompt.as_deref(), Some("bad"));
        assert_eq!(m.model.as_deref(), Some("NovelAI Diffusion V4.5 4BDE2A90"));
        assert_eq!(m.model_hash, None);
        assert_eq!(m.denoise, None);
        assert_eq!(m.extra_prompts.len(), 1);
        assert_eq!(m.extra_prompts[0].kind, "character");
        assert_eq!(m.extra_prompts[0].region.as_deref(), Some("x=0.5,y=0.3"));
        assert_eq!(m.extra_prompts[0].negative_prompt, None);
        assert_eq!(ctx.unread().count(), 0);
    }

    #[test]
    fn legacy_prompt_from_description_and_split_source() {
        let c = Carriers::from_pairs(&[
            ("Title", "AI generated image"),
            ("Description", "masterpiece, cat"),
            ("Software", "NovelAI"),
            ("Source", "Stable Diffusion 1D44365E"),
            (
                "Comment",
                r#"{"steps": 50, "sampler": "k_euler_ancestral", "seed": 22, "strength": 0.4, "noise": 0.0, "scale": 10.0, "uc": "lowres"}"#,
            ),
        ]);
        let mut ctx = Ctx::new(&c);
        let m = parse(&mut ctx);
        assert_eq!(m.prompt.as_deref(), Some("masterpiece, cat"));
        assert_eq!(m.model.as_deref(), Some("Stable Diffusion"));
        assert_eq!(m.model_hash.as_deref(), Some("1D44365E"));
        assert_eq!(m.cfg, Some(10.0));
        assert_eq!(m.params.get("strength").map(String::as_str), Some("0.4"));
    }

    #[test]
    fn webp_user_comment_record_and_bad_comment() {
        let rec = r#"{"Comment":"{\"prompt\": \"p\", \"seed\": 5}","Description":"\u0000\u0000\u0000\u0000p","Software":"NovelAI","Source":"NovelAI Diffusion V4.5 C02D4F98","Title":"NovelAI generated image"}"#;
        let c = Carriers::from_pairs(&[
            ("exif:Software", "NovelAI Diffusion V4.5 C02D4F98"),
            ("exif:ImageDescription", "\0\0\0\0p"),
            ("exif:UserComment", rec),
        ]);
        let mut ctx = Ctx::new(&c);
        assert!(detect(&ctx));
        let m = parse(&mut ctx);
        assert_eq!(m.prompt.as_deref(), Some("p"));
        assert_eq!(m.seed, Some(5));
        assert_eq!(m.model.as_deref(), Some("NovelAI Diffusion V4.5 C02D4F98"));
        assert_eq!(ctx.unread().count(), 0);

        let c = Carriers::from_pairs(&[
            ("Software", "NovelAI"),
            ("Description", "d"),
            ("Comment", "{oops"),
        ]);
        let mut ctx = Ctx::new(&c);
        let m = parse(&mut ctx);
        assert_eq!(m.prompt.as_deref(), Some("d"));
        assert_eq!(m.warnings.len(), 1);
    }
}
